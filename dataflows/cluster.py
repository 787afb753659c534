"""The flow as a Bytewax cluster of processes on this machine, one worker each, on loopback.

Why processes: chdb and the flow's Python hold the GIL, so threads in one process take turns;
processes run side by side. `dataflows.placement` says what runs where (ingest apart from the
desk and the store); this module starts the other processes, hands them the run, and keeps them
tied to the one that started them (process 0: the command line's own):
- each child is forked from process 0 (`Cluster.spawn`: a fresh interpreter spent seconds
  importing the flow's modules, more than a backtest's flow gains), as early as the caller can
  (a backtest forks before it starts the broker), and waits for its job (settings, run id, the
  input partitions, the cluster's addresses), sent on a pipe when process 0 runs the flow;
- its progress counts come back on a pipe, totals every `COUNTS_EVERY_S`, added to process 0's
  `FlowCounters`, so the progress display and the stop line count the whole cluster;
- it dies with process 0 (`PR_SET_PDEATHSIG`; Ctrl-C reaches the whole process group, and a
  child leaves quietly on it, process 0 says what happened), and a child that fails fails the
  run with one line (`ClusterFailed`) after its own error.
Timely (Bytewax's engine) connects process i to every process below it and retries each second
until it listens, printing on stdout; a child's stdout is therefore not the command's.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import IO, Any

from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig
from bytewax.run import cli_main

from dataflows.pacing import Lag
from dataflows.pipeline import FlowSpec, build_flow, kafka_source
from dataflows.placement import Placement
from dataflows.progress import FlowCounters
from models.config.settings import Settings

_FORK = multiprocessing.get_context("fork")

MAX_PROCESSES = 16
"""More processes than input partitions only idle; this bounds a typo."""

COUNTS_EVERY_S = 0.2
"""How often a child sends its progress counts to process 0."""


class ClusterFailed(RuntimeError):
    """A process of the cluster stopped before the run ended (its own error is above)."""


@dataclass(frozen=True)
class ChildJob:
    """What a child process needs to build the same flow as process 0, at its place."""

    settings: Settings
    spec: FlowSpec
    run_id: str
    partitions: tuple[tuple[str, int], ...]
    addresses: tuple[str, ...]
    process: int
    epoch: timedelta
    recovery_dir: str | None
    notify: bool
    count: bool
    """Whether to count progress (process 0 does: counting adds steps, and every process must
    build the same steps); the counts go to process 0 on the pipe it was forked with."""
    shape: tuple[str, ...]
    """Process 0's step ids (`flow_shape`): a child whose flow differs refuses to run, as
    Timely would otherwise connect unrelated steps and wait forever."""
    rows_apart: bool = False
    """The desk's rows are written in process 1 (`Placement.rows_apart`)."""

    @property
    def placement(self) -> Placement:
        return placement_for(self.settings, len(self.addresses), self.process, self.rows_apart)


def flow_shape(flow: Dataflow) -> tuple[str, ...]:
    """Every step id of `flow`, nested ones too, in order."""
    ids: list[str] = []

    def walk(steps: list[Any]) -> None:
        for step in steps:
            ids.append(str(step.step_id))
            walk(list(step.substeps))

    walk(list(flow.substeps))
    return tuple(ids)


CLUSTER_FROM_MESSAGES = 500_000
"""A backtest of at least this many messages runs on two processes by default (when the
machine has two CPUs for it). Measured with the SMA 10/20 file on 2 cores shared with other
work: 200k bars, median flow 6.48 s on one process and 6.01 s on two at load ~1.2 (-7%), 6.88
and 6.98 s at load 2-8 (none); 1M bars, 30.7 and 26.3 s at load ~1.3 (-14.5%). The desk's
process does 14-17% less CPU work on two (5.2 against 6.1 s on 200k bars), the other adds
1.5 s (ingest), and starting it and sharing the cores take about 0.5-1 s."""


def default_processes(messages: int, cpus: int | None = None) -> int:
    """The processes a backtest of `messages` input messages runs on unless told: two from
    `CLUSTER_FROM_MESSAGES` on, if this process may use two CPUs or more, else one."""
    usable = len(os.sched_getaffinity(0)) if cpus is None else cpus
    return 2 if usable >= 2 and messages >= CLUSTER_FROM_MESSAGES else 1


def placement_for(
    settings: Settings, processes: int, process: int, rows_apart: bool = False
) -> Placement:
    """With a ClickHouse server every process writes its own rows; embedded chdb, process 0,
    or with `rows_apart` process 1 (and the desk's rows are written there either way)."""
    return Placement(
        processes, process, shared_store=bool(settings.clickhouse.url), rows_apart=rows_apart
    )


def store_may_move(settings: Settings) -> bool:
    """Whether a forked process may hold this run's store (`Placement.rows_apart`): always
    with a ClickHouse server; embedded chdb only if this process never started it (its engine
    threads do not survive a fork: a child using it crashed, e.g. a second backtest run
    in-process after a first on one process)."""
    return bool(settings.clickhouse.url) or "chdb" not in sys.modules


def loopback_addresses(n: int) -> tuple[str, ...]:
    """`n` free loopback ports, one per process (asked of the kernel, then released for the
    processes to bind)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return tuple(f"127.0.0.1:{s.getsockname()[1]}" for s in socks)
    finally:
        for s in socks:
            s.close()


class Cluster:
    """The child processes of one run (1..N-1), seen from process 0.

    `spawn` forks them early (each then waits for its job), so a caller with something else
    to do first has them ready; `start` hands them their jobs, just before process 0 runs the
    flow. Each child's exit is awaited by a thread of its own (the only one that reaps it)."""

    def __init__(self, processes: int) -> None:
        if processes < 2:
            raise ValueError("a cluster has at least two processes")
        self.processes = processes
        self.lag = Lag(processes)  # shared with the children: made before they are forked
        self.addresses: tuple[str, ...] = ()
        self.counters: FlowCounters | None = None
        self.children: list[BaseProcess] = []
        self._jobs: list[Connection] = []  # the job pipe to each child, until `start`
        self._counts: list[int] = []  # each child's counts pipe, read end, until `start`
        self._ended: list[threading.Event] = []
        self._codes: dict[int, int] = {}  # process -> exit code, once it ended
        self._readers: list[threading.Thread] = []
        self.finished = False

    def spawn(self) -> Cluster:
        """Fork processes 1..N-1; they wait for `start`. Idempotent."""
        while len(self.children) < self.processes - 1:
            process = len(self.children) + 1
            jobs_in, jobs_out = _FORK.Pipe(duplex=False)
            counts_in, counts_out = os.pipe()
            child = _FORK.Process(
                target=_child_main,
                args=(jobs_in, counts_out, self.lag),
                name=f"stratflow-flow-{process}",
                daemon=True,
            )
            try:
                child.start()
            except BaseException:
                os.close(counts_in)
                raise
            finally:
                jobs_in.close()
                os.close(counts_out)
            self.children.append(child)
            self._jobs.append(jobs_out)
            self._counts.append(counts_in)
            ended = threading.Event()
            self._ended.append(ended)
            threading.Thread(
                target=self._watch,
                args=(process, child, ended),
                name=f"cluster-watch-{process}",
                daemon=True,
            ).start()
        return self

    def start(
        self,
        settings: Settings,
        spec: FlowSpec,
        *,
        run_id: str,
        partitions: tuple[tuple[str, int], ...],
        epoch: timedelta,
        recovery_dir: str | None,
        notify: bool,
        shape: tuple[str, ...],
        counters: FlowCounters | None,
        rows_apart: bool = False,
    ) -> None:
        """Hand every child its job; they connect to process 0 when it runs the flow."""
        self.spawn()
        self.raise_failed()
        self.addresses = loopback_addresses(self.processes)
        self.counters = counters
        for process, (jobs, counts) in enumerate(
            zip(self._jobs, self._counts, strict=True), start=1
        ):
            job = ChildJob(
                settings,
                spec,
                run_id,
                partitions,
                self.addresses,
                process,
                epoch,
                recovery_dir,
                notify,
                counters is not None,
                shape,
                rows_apart,
            )
            with jobs:
                jobs.send(job)
            reader = threading.Thread(
                target=self._read_counts,
                args=(os.fdopen(counts, "rb"),),
                name=f"cluster-counts-{process}",
                daemon=True,
            )
            reader.start()
            self._readers.append(reader)
        self._jobs, self._counts = [], []

    def _watch(self, process: int, child: BaseProcess, ended: threading.Event) -> None:
        """Reap a child. One that fails must fail process 0 too: once connected, Timely
        notices the lost peer and process 0's flow stops with an error; before that, process 0
        waits for the child's connection in a blocking accept that nothing else ends, so it is
        handed a connection that fails Timely's handshake."""
        child.join()
        code = child.exitcode if child.exitcode is not None else -1
        self._codes[process] = code
        ended.set()
        if code != 0 and not self.finished and self.addresses:
            host, port = self.addresses[0].rsplit(":", 1)
            with contextlib.suppress(OSError), socket.create_connection((host, int(port)), 1) as s:
                s.sendall(bytes(16))  # not Timely's handshake magic

    def _read_counts(self, pipe: IO[bytes]) -> None:
        """Totals from a child, as deltas into process 0's counters."""
        last = (0, 0, 0, 0)
        with pipe:
            for line in pipe:
                try:
                    now = tuple(int(x) for x in line.split())
                except ValueError:
                    continue
                if len(now) != 4:
                    continue
                if self.counters is not None:
                    d = [a - b for a, b in zip(now, last, strict=True)]
                    self.counters.add(records=d[0], bars=d[1], decisions=d[2], dead=d[3])
                last = (now[0], now[1], now[2], now[3])

    def failed(self) -> list[tuple[int, int]]:
        """(process, exit code) of every child that has stopped with an error."""
        return sorted((p, code) for p, code in self._codes.items() if code != 0)

    def finish(self, timeout_s: float = 30.0) -> None:
        """After process 0's flow ended: wait for the children to end too (they end with the
        same input), take their last counts, and fail if one of them failed."""
        deadline = time.monotonic() + timeout_s
        for ended in self._ended:
            ended.wait(max(0.0, deadline - time.monotonic()))
        for reader in self._readers:
            reader.join(timeout=max(0.0, deadline - time.monotonic()))
        self.finished = True
        stuck = [p for p, ended in enumerate(self._ended, start=1) if not ended.is_set()]
        self.kill()
        if stuck:
            raise ClusterFailed(f"process {stuck[0]} of the flow did not end with process 0")
        self.raise_failed()

    def raise_failed(self, wait_s: float = 0.0) -> None:
        """`ClusterFailed` if a child has failed; `wait_s`: after process 0's flow failed, how
        long a child's end may take to be seen (a lost peer fails process 0 at once)."""
        deadline = time.monotonic() + wait_s
        while not self._codes and time.monotonic() < deadline:
            time.sleep(0.01)
        self._raise_failed()

    def _raise_failed(self) -> None:
        for process, code in self.failed():
            raise ClusterFailed(f"process {process} of the flow failed (exit code {code})")

    def kill(self) -> None:
        """Stop every child now (a run stopped or failed in process 0, or never started)."""
        for jobs in self._jobs:
            jobs.close()
        for fd in self._counts:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._jobs, self._counts = [], []
        for child, ended in zip(self.children, self._ended, strict=True):
            if not ended.is_set():
                with contextlib.suppress(OSError, ValueError):
                    child.kill()
        for ended in self._ended:
            ended.wait(5)


# ------------------------------------------------------------------------------- the child
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: the kernel sends SIGKILL when the process that started this one ends."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the parent already left
            os._exit(1)


def _quiet_exit(signum: int, _frame: Any) -> None:
    os._exit(130 if signum == signal.SIGINT else 143)


@contextlib.contextmanager
def _sending_counts(counters: FlowCounters | None, fd: int) -> Iterator[None]:
    """Totals to process 0 every `COUNTS_EVERY_S`, and once more at the end."""
    if counters is None:
        os.close(fd)
        yield
        return
    pipe = os.fdopen(fd, "w", buffering=1)
    stop = threading.Event()

    def send() -> None:
        c = counters
        with c.lock:
            line = f"{c.records} {c.bars} {c.decisions} {c.dead_letters}\n"
        with contextlib.suppress(OSError):
            pipe.write(line)

    def loop() -> None:
        while not stop.wait(COUNTS_EVERY_S):
            send()

    thread = threading.Thread(target=loop, name="cluster-counts", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        send()
        with contextlib.suppress(OSError):
            pipe.close()


def run_child(job: ChildJob, counts_fd: int, lag: Lag | None = None) -> None:
    """Build the flow at this process's place and run it with the cluster."""
    from dataflows.run import fewer_collections  # dataflows.run imports this module

    counters = FlowCounters() if job.count else None
    flow = build_flow(
        job.settings,
        job.spec,
        counters=counters,
        run_id=job.run_id,
        source=kafka_source(job.settings, job.spec, job.partitions),
        placement=job.placement,
        notify=job.notify,
        lag=lag,
    )
    if flow_shape(flow) != job.shape:
        raise RuntimeError(
            f"process {job.process} built another flow than process 0 "
            f"({len(flow_shape(flow))} steps against {len(job.shape)})"
        )
    recovery = (
        RecoveryConfig(Path(job.recovery_dir))  # type: ignore[no-untyped-call]
        if job.recovery_dir is not None
        else None
    )
    with _sending_counts(counters, counts_fd), fewer_collections(bounded=not job.spec.tail):
        cli_main(  # type: ignore[no-untyped-call]
            flow,
            process_id=job.process,
            addresses=list(job.addresses),
            epoch_interval=job.epoch,
            recovery_config=recovery,
        )


def _child_main(jobs: Connection, counts_fd: int, lag: Lag) -> None:
    """A forked child: wait for the job, run it, leave without running anything of process
    0's (no atexit handlers, no finalizers of objects it copied)."""
    _die_with_parent()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _quiet_exit)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # Timely's connection retries print there
    try:
        job = jobs.recv()
    except (EOFError, OSError):  # process 0 ran no flow
        os._exit(0)
    finally:
        jobs.close()
    code = 0
    try:
        run_child(job, counts_fd, lag)
    except BaseException as err:
        sys.stderr.write(f"stratflow: process {job.process} of the flow failed: {err}\n")
        code = 1
    finally:
        sys.stderr.flush()
    os._exit(code)
