"""Run the pipeline in this process, with Bytewax recovery when configured.

Crash safety = Bytewax's recovery store (source offsets + every operator's state, snapshotted
each epoch) + idempotent effects (ClickHouse rows replace by id; orders carry a client order id
derived from the decision). After a kill, the run resumes from the last completed epoch and
re-emits that epoch's outputs, which land on the same rows.

`python -m dataflows.run CONFIG BOOTSTRAP [--tail]` is the entry point the crash test kills.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from types import FrameType

from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from connectors.execution_gateway import ExecutionGateway
from connectors.gpt_gateway import GptGateway, gpt_status
from connectors.kafka_io import topic_end_offsets
from connectors.notifier import Notifier
from dataflows.pipeline import FlowSpec, build_flow
from dataflows.progress import FlowCounters, ProgressDisplay
from models.config import Settings, load_settings, parse_duration_ms

MANIFEST = "stratflow-inputs.json"


class RecoveryMismatch(ValueError):
    """The recovery state belongs to another set of input topics: resuming it cannot work."""


class RecoveryDirError(ValueError):
    """`recovery.dir` cannot be created or written (a missing parent, a file in the way, ...)."""


RESUME_NOTE = "the next run resumes from the last snapshot"
"""What a stopped run says about the next one, unless the caller knows better (`stop_note`)."""


def recovery_config(settings: Settings) -> RecoveryConfig | None:
    """Bytewax's recovery store, plus a manifest of the input topics it was written for.

    Bytewax cannot resume state keyed by partitions of other topics (it panics), so a changed
    topic set is refused up front with the way out, instead of a Rust stack trace.
    """
    if not settings.recovery.enabled:
        return None
    db_dir = Path(settings.recovery.dir)
    try:
        return _recovery_config(db_dir, settings)
    except OSError as err:
        reason = "not a directory" if db_dir.exists() and not db_dir.is_dir() else err.strerror
        where = f" ({err.filename})" if err.filename and str(err.filename) != str(db_dir) else ""
        raise RecoveryDirError(
            f"recovery.dir {db_dir} is not usable: {reason or err}{where}"
        ) from None


def _recovery_config(db_dir: Path, settings: Settings) -> RecoveryConfig:
    topics = settings.kafka.topics
    inputs = sorted([topics.market, topics.news, topics.social])
    manifest = db_dir / MANIFEST
    if db_dir.is_dir() and any(db_dir.glob("part-*.sqlite3")):
        if manifest.is_file():
            try:
                recorded = json.loads(manifest.read_text(encoding="utf-8"))["inputs"]
                if not isinstance(recorded, list):
                    raise TypeError("inputs is not a list")
                recorded = [str(t) for t in recorded]
            except (ValueError, KeyError, TypeError) as err:
                raise RecoveryMismatch(
                    f"recovery state in {db_dir} has an unreadable {MANIFEST} ({err}): point "
                    "recovery.dir at a new directory (or delete this one to start over)"
                ) from None
            if recorded != inputs:
                raise RecoveryMismatch(
                    f"recovery state in {db_dir} was written for topics {', '.join(recorded)}, "
                    f"not {', '.join(inputs)}: point recovery.dir at a new directory "
                    "(or delete this one to start over)"
                )
    else:
        db_dir.mkdir(parents=True, exist_ok=True)
        init_db_dir(db_dir, 1)  # type: ignore[no-untyped-call]
    manifest.write_text(json.dumps({"inputs": inputs}), encoding="utf-8")
    return RecoveryConfig(db_dir)  # type: ignore[no-untyped-call]


_BEFORE_EXIT: list[Callable[[], object]] = []
"""Quick last words of a run stopped by a signal (e.g. send the alerts still queued)."""


def stop_message(signum: int, counters: FlowCounters | None, note: str) -> str:
    """The one line a run stopped by a signal leaves: what it did so far and what comes next."""
    done = f" after {counters.line()}" if counters is not None else ""
    return f"stratflow: {signal.Signals(signum).name}, stopped{done}; {note}"


def _stop_handler(
    counters: FlowCounters | None, note: str
) -> Callable[[int, FrameType | None], None]:
    def _stop_now(signum: int, _frame: FrameType | None) -> None:
        """Ctrl-C / SIGTERM: leave at once. Everything up to the last snapshot is written (sinks
        flush synchronously), and a restart resumes from that snapshot and redoes the rest,
        landing on the same rows; so stopping hard loses nothing, while an interrupt raised
        inside the engine would only end in a panic report."""
        for last_words in _BEFORE_EXIT:
            with contextlib.suppress(Exception):  # stopping must not fail on a courtesy
                last_words()
        # The progress bar may be mid-line, with the cursor hidden: show it, start a new line.
        fresh_line = "\x1b[?25h\n" if sys.stderr.isatty() else ""
        sys.stderr.write(fresh_line + stop_message(signum, counters, note) + "\n")
        sys.stderr.flush()
        os._exit(130 if signum == signal.SIGINT else 143)

    return _stop_now


def input_total(settings: Settings, bootstrap: str) -> int | None:
    """Messages in the input topics now: the length of a bounded run (None if unknown)."""
    topics = settings.kafka.topics
    try:
        return sum(
            sum(topic_end_offsets(bootstrap, t).values())
            for t in (topics.market, topics.news, topics.social)
        )
    except Exception:  # progress display only: never fail a run over it
        return None


def run_pipeline(
    settings: Settings,
    spec: FlowSpec,
    *,
    progress: bool = False,
    environ: Mapping[str, str] | None = None,
    say: Callable[[str], None] | None = None,
    orders: ExecutionGateway | None = None,
    stop_note: str | None = None,
) -> None:
    """Blocks until the input ends (`tail=False`) or forever (`tail=True`). Says once, at
    start, who writes the strategies (GPT, or the local engine and why).

    On SIGINT/SIGTERM the process leaves at once with one line: the counts so far (with
    `progress`) and `stop_note` (default: the next run resumes from the last snapshot; a
    caller whose state does not outlive the process, such as the demo, says so instead)."""
    counters = FlowCounters() if progress else None
    if stop_note is None:
        stop_note = (
            RESUME_NOTE
            if settings.recovery.enabled
            else "recovery is off: the next run starts from the beginning"
        )
    gateway = GptGateway.from_settings(
        settings, os.environ if environ is None else environ, live=spec.tail
    )
    (say or _stderr)(gpt_status(settings, gateway))
    notifier = Notifier(settings.notify) if settings.notify.urls else None
    if notifier is not None:
        (say or _stderr)("alerts: " + ", ".join(notifier.targets))
        _BEFORE_EXIT.append(lambda: notifier.close(2.0))
    flow = build_flow(
        settings, spec, counters=counters, gateway=gateway, orders=orders, notifier=notifier
    )
    epoch = timedelta(milliseconds=parse_duration_ms(settings.recovery.snapshot_interval))
    recovery = recovery_config(settings)
    stop_now = _stop_handler(counters, stop_note)
    previous = {sig: signal.signal(sig, stop_now) for sig in (signal.SIGINT, signal.SIGTERM)}
    display: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if counters is not None:
        total = None if spec.tail else input_total(settings, spec.bootstrap)
        display = ProgressDisplay(counters, total)
    try:
        with display:
            cli_main(flow, epoch_interval=epoch, recovery_config=recovery)  # type: ignore[no-untyped-call]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if gateway is not None:
            gateway.close()
        if orders is not None:
            orders.close()
        if notifier is not None:
            notifier.close()
            st = notifier.stats()
            (say or _stderr)(
                f"alerts: {st.delivered} delivered, {st.failed} failed, "
                f"{st.rate_limited} held back by the rate limit, {st.dropped} dropped"
            )


def _stderr(line: str) -> None:
    sys.stderr.write(f"stratflow: {line}\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataflows.run")
    parser.add_argument("config")
    parser.add_argument("bootstrap")
    parser.add_argument("--tail", action="store_true")
    args = parser.parse_args(argv)
    settings = load_settings(args.config, os.environ)
    run_pipeline(settings, FlowSpec(bootstrap=args.bootstrap, tail=args.tail))
    return 0


if __name__ == "__main__":
    sys.exit(main())
