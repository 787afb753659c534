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
import gc
import json
import os
import secrets
import shutil
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from connectors.exchange.gateway import ExecutionGateway
from connectors.gpt.gateway import GptGateway, gpt_status
from connectors.kafka.io import topic_end_offsets
from connectors.notify.notifier import Notifier
from dataflows.cluster import Cluster, ClusterFailed, flow_shape, placement_for
from dataflows.pipeline import FlowSpec, build_flow, kafka_source
from dataflows.progress import FlowCounters, ProgressDisplay
from models.config.base import parse_duration_ms
from models.config.settings import (
    Settings,
    load_settings,
    result_settings,
    settings_changes,
    settings_hash,
)

MANIFEST = "stratflow-inputs.json"


class RecoveryMismatch(ValueError):
    """The recovery state belongs to another set of input topics: resuming it cannot work."""


class RecoveryDirError(ValueError):
    """`recovery.dir` cannot be created or written (a missing parent, a file in the way, ...)."""


STATE_FORMAT = 4
"""The layout of the operators' snapshotted state. Snapshots are pickles of our classes, so a
release that moves or reshapes them cannot read older snapshots: 1 = flat `models/` (before the
stage subpackages), 2 = stage subpackages and the desk's components, 3 = features as registered
classes (`models.signals.indicators`), 4 = own SMA/EMA/RSI/stdev kernels instead of talipp
objects. The manifest records it; resuming another format is
refused with the way out instead of failing inside Bytewax."""

UNRECOVERED_CLUSTER_EPOCH = timedelta(hours=1)
"""The epoch of a bounded cluster run without recovery (a backtest), where epochs only pace
the input: Bytewax lets a source read one epoch ahead of the slowest step and, while it waits,
wakes it again at once, without pause. On two processes the ingest process, faster than the
desk's, waited at every epoch's end: at 2 s epochs that spin was 5.7 of its 7.2 CPU seconds on
the 200k-bar run, at 10 s still 5.7 of 12.9 on 1M bars, taken from the desk's process on a
shared machine. So no epoch ends during such a run; `dataflows.pacing` keeps the ingest
processes a few lanes ahead of the desk instead (without it, reading everything ahead took 4.1
GB in process 0 on 1M bars, against 2.3 GB on one process)."""

RESUME_NOTE = "the next run resumes from the last snapshot"
"""What a stopped run says about the next one, unless the caller knows better (`stop_note`)."""


class ConfigChanged(RecoveryMismatch):
    """The recovery state was written under settings that change results: resuming it would
    mix two configurations (or, worse, print the old run's results as the new one's)."""


@dataclass(frozen=True)
class RunState:
    """Who this run is and what it resumes: `run_id` (stamped on every row it writes; a
    resumed run keeps the id it started with), `resumed`, the Bytewax recovery store (None
    when recovery is off) and, after `fresh`, the id of the run whose state was discarded."""

    run_id: str
    resumed: bool
    recovery: RecoveryConfig | None
    discarded_run_id: str | None = None
    processes: int = 1
    """The processes the run's flow runs on (`run_pipeline`'s `processes`): its keyed steps
    and their recovery state are placed for that many (`dataflows.placement`)."""


def new_run_id(now: datetime | None = None) -> str:
    """UTC start time and a short random part: sortable, and unique across machines."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def open_run_state(settings: Settings, *, fresh: bool = False, processes: int = 1) -> RunState:
    """The run's id and recovery store, after checking that any state to resume was written
    for the same input topics and the same result settings
    (`models.config.settings.result_settings`).

    Bytewax cannot resume state keyed by partitions of other topics (it panics), and state
    built under other settings would carry the old run's decisions into the new one, so both
    are refused up front with what changed and the way out; `fresh` discards the old state
    instead (the caller deletes that run's rows: `discarded_run_id`). State written by a run on
    another number of `processes` is refused too: its keys are placed for that many."""
    if not settings.recovery.enabled:
        return RunState(new_run_id(), False, None, processes=processes)
    db_dir = Path(settings.recovery.dir)
    try:
        return _open_run_state(db_dir, settings, fresh, processes)
    except OSError as err:
        reason = "not a directory" if db_dir.exists() and not db_dir.is_dir() else err.strerror
        where = f" ({err.filename})" if err.filename and str(err.filename) != str(db_dir) else ""
        raise RecoveryDirError(
            f"recovery.dir {db_dir} is not usable: {reason or err}{where}"
        ) from None


def recovery_config(settings: Settings) -> RecoveryConfig | None:
    """Bytewax's recovery store (see `open_run_state`, which also says who the run is)."""
    return open_run_state(settings).recovery


def _read_manifest(db_dir: Path) -> dict[str, Any]:
    manifest = db_dir / MANIFEST
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
            raise TypeError("inputs is not a list")
        return doc
    except (ValueError, TypeError) as err:
        raise RecoveryMismatch(
            f"recovery state in {db_dir} has an unreadable {MANIFEST} ({err}): start afresh "
            f"with --fresh (or point recovery.dir at a new directory)"
        ) from None


def _open_run_state(db_dir: Path, settings: Settings, fresh: bool, processes: int) -> RunState:
    topics = settings.kafka.topics
    inputs = sorted([topics.market, topics.news, topics.social])
    doc = result_settings(settings)
    digest = settings_hash(doc)
    manifest = db_dir / MANIFEST
    has_state = db_dir.is_dir() and any(db_dir.glob("part-*.sqlite3"))
    old: dict[str, Any] | None = None
    if has_state and manifest.is_file():
        try:
            old = _read_manifest(db_dir)
        except RecoveryMismatch:
            if not fresh:  # --fresh is the way out of an unreadable manifest too
                raise
    discarded: str | None = None
    if has_state and fresh:
        discarded = (str(old.get("run_id") or "") or None) if old is not None else None
        shutil.rmtree(db_dir)
        has_state = False
    if has_state and old is not None:
        recorded = [str(t) for t in old["inputs"]]
        if recorded != inputs:
            raise RecoveryMismatch(
                f"recovery state in {db_dir} was written for topics {', '.join(recorded)}, "
                f"not {', '.join(inputs)}: start afresh with --fresh (or point recovery.dir "
                "at a new directory)"
            )
        written = old.get("state_format", 1)
        if written != STATE_FORMAT:
            raise RecoveryMismatch(
                f"recovery state in {db_dir} was written by another stratflow release (state "
                f"format {written}, this release reads {STATE_FORMAT}): start afresh with "
                f"--fresh (or point recovery.dir at a new directory)"
            )
        ran_on = old.get("processes", 1)
        if ran_on != processes:
            raise RecoveryMismatch(
                f"recovery state in {db_dir} was written by a run on {ran_on} process"
                f"{'' if ran_on == 1 else 'es'}: resume it with --processes {ran_on}, or start "
                "afresh with --fresh (or point recovery.dir at a new directory)"
            )
        if old.get("settings_hash") != digest:
            before = old.get("settings")
            changed = (
                settings_changes(before, doc)
                if isinstance(before, dict)
                else "it was written before settings were recorded"
            )
            raise ConfigChanged(
                f"the configuration changed since {db_dir} was written ({changed}); "
                f"start afresh with --fresh (or rm -rf {db_dir})"
            )
    resumed = has_state
    run_id = str(old.get("run_id") or "") if resumed and old is not None else ""
    run_id = run_id or new_run_id()
    if not resumed:
        db_dir.mkdir(parents=True, exist_ok=True)
        init_db_dir(db_dir, 1)  # type: ignore[no-untyped-call]
    record = {
        "inputs": inputs,
        "run_id": run_id,
        "settings_hash": digest,
        "settings": doc,
        "state_format": STATE_FORMAT,
        "processes": processes,
    }
    manifest.write_text(json.dumps(record, indent=1, sort_keys=True), encoding="utf-8")
    recovery = RecoveryConfig(db_dir)  # type: ignore[no-untyped-call]
    return RunState(run_id, resumed, recovery, discarded, processes)


_BEFORE_EXIT: list[Callable[[], object]] = []
"""Quick last words of a run stopped by a signal (e.g. send the alerts still queued)."""


def stop_message(signum: int, counters: FlowCounters | None, note: str) -> str:
    """The line a run stopped by a signal leaves: what it did so far and what comes next;
    after a paper or exchange run, a second one with its orders, fills and P&L."""
    done = f" after {counters.line()}" if counters is not None else ""
    trading = counters.trading_line() if counters is not None else None
    more = f"\nstratflow: {trading}" if trading else ""
    return f"stratflow: {signal.Signals(signum).name}, stopped{done}; {note}{more}"


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
    run_state: RunState | None = None,
    trading: str | None = None,
    counters: FlowCounters | None = None,
    processes: int = 1,
    cluster: Cluster | None = None,
    rows_apart: bool = False,
) -> RunState:
    """Blocks until the input ends (`tail=False`) or forever (`tail=True`). Says once, at
    start, who writes the strategies (GPT, or the local engine and why).

    On SIGINT/SIGTERM the process leaves at once with one line: the counts so far (with
    `progress`) and `stop_note` (default: the next run resumes from the last snapshot; a
    caller whose state does not outlive the process, such as the demo, says so instead).

    `run_state` (from `open_run_state`) names the run and its recovery store; without it
    the run's state is opened here. Returns it, so the caller can read this run's rows.
    `trading` (what the orders are, for a paper or exchange run) adds a line with the orders
    placed, fills and P&L when the run stops. `counters`: the caller's (the control API of
    `stratflow run --api` reads them), else new ones with `progress`.

    `processes` > 1 runs the flow as a Bytewax cluster of that many processes on this machine
    (`dataflows.cluster`): this one is process 0, with the desk, its gateways, the notifier and
    the store; the others read and ingest the input. A child that fails fails the run
    (`ClusterFailed`); a stop or a failure here stops the children. `cluster`: the children,
    spawned early by the caller (else here). `rows_apart`: the store and the Kafka output in
    process 1 instead (`dataflows.placement`; only for a caller that does not hold the store
    itself while the flow runs: a backtest reads its run after the flow has ended)."""
    if counters is None and progress:
        counters = FlowCounters()
    if stop_note is None:
        stop_note = (
            RESUME_NOTE
            if settings.recovery.enabled
            else "recovery is off: the next run starts from the beginning"
        )
    state = run_state or open_run_state(settings, processes=processes)
    if state.recovery is not None and state.processes != processes:
        raise ValueError(f"run state opened for {state.processes} processes, run on {processes}")
    gateway = GptGateway.from_settings(
        settings, os.environ if environ is None else environ, live=spec.tail, run=state.run_id
    )
    (say or _stderr)(gpt_status(settings, gateway))
    notifier = Notifier(settings.notify) if settings.notify.urls else None
    if notifier is not None:
        (say or _stderr)("alerts: " + ", ".join(notifier.targets))
        _BEFORE_EXIT.append(lambda: notifier.close(2.0))
    if counters is not None:
        counters.run_id = state.run_id
        counters.trading = trading
        counters.currency = settings.execution.currency
    epoch = timedelta(milliseconds=parse_duration_ms(settings.recovery.snapshot_interval))
    recovery = state.recovery
    if processes > 1 and recovery is None and not spec.tail:
        epoch = max(epoch, UNRECOVERED_CLUSTER_EPOCH)
    source = None
    if processes > 1:  # every process builds the flow of the same partitions
        source = kafka_source(settings, spec)
        cluster = cluster or Cluster(processes)
        if cluster.processes != processes:
            raise ValueError(f"a cluster of {cluster.processes} processes, not {processes}")
    flow = build_flow(
        settings,
        spec,
        counters=counters,
        gateway=gateway,
        orders=orders,
        notifier=notifier,
        run_id=state.run_id,
        source=source,
        placement=placement_for(settings, processes, 0, rows_apart),
        lag=cluster.lag if cluster is not None else None,
    )
    stop_now = _stop_handler(counters, stop_note)
    previous = {sig: signal.signal(sig, stop_now) for sig in (signal.SIGINT, signal.SIGTERM)}
    display: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
    if counters is not None:
        total = None if spec.tail else input_total(settings, spec.bootstrap)
        display = ProgressDisplay(counters, total)
    cluster_args: dict[str, Any] = {}
    try:
        if processes > 1 and cluster is not None and source is not None:
            _BEFORE_EXIT.append(cluster.kill)
            cluster.start(
                settings,
                spec,
                run_id=state.run_id,
                partitions=source.partitions,
                epoch=epoch,
                recovery_dir=str(settings.recovery.dir) if recovery is not None else None,
                notify=notifier is not None,
                shape=flow_shape(flow),
                counters=counters,
                rows_apart=rows_apart,
            )
            cluster_args = {"process_id": 0, "addresses": list(cluster.addresses)}
        with display, fewer_collections(bounded=not spec.tail):
            try:
                cli_main(flow, epoch_interval=epoch, recovery_config=recovery, **cluster_args)  # type: ignore[no-untyped-call]
            except BaseException as err:  # a lost peer is a pyo3 PanicException: BaseException
                if cluster is not None and not isinstance(err, KeyboardInterrupt | SystemExit):
                    cluster.raise_failed(wait_s=2.0)  # a child that failed is why, if one did
                raise
            if cluster is not None:
                cluster.finish()
    finally:
        if cluster is not None:
            cluster.kill()
            with contextlib.suppress(ValueError):
                _BEFORE_EXIT.remove(cluster.kill)
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
    return state


GC_GEN0_THRESHOLD = 50_000
"""Allocations between young-generation collections while the flow runs (CPython's default
is 700). Every bar makes dozens of short-lived containers, and each collection also walks
the survivors of the last, so at the default a backtest spent about a tenth of its time in
the collector; cycles are rare here, and 50,000 young objects are a few MB at most."""


@contextlib.contextmanager
def fewer_collections(*, bounded: bool = False) -> Iterator[None]:
    """Collect garbage cycles less often while the flow runs, and never walk what exists
    before it starts (modules, settings: `gc.freeze`); the caller's settings come back after.

    A bounded run (a backtest) does not collect cycles at all until it ends: the flow makes
    almost none (its records are acyclic), and with the desk's state and a million bars' worth
    of survivors each older-generation pass walked a large heap for nothing. Measured on 200k
    bars: the same peak RSS (955 vs 961 MB) and 8-20% less flow time. A live run keeps
    collecting (it never ends), at `GC_GEN0_THRESHOLD`."""
    thresholds = gc.get_threshold()
    enabled = gc.isenabled()
    gc.freeze()
    gc.set_threshold(max(thresholds[0], GC_GEN0_THRESHOLD), *thresholds[1:])
    if bounded:
        gc.disable()
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        if enabled:
            gc.enable()
        gc.unfreeze()


def _stderr(line: str) -> None:
    sys.stderr.write(f"stratflow: {line}\n")
    sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataflows.run")
    parser.add_argument("config")
    parser.add_argument("bootstrap")
    parser.add_argument("--tail", action="store_true")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument(
        "--rows-apart", action="store_true", help="the store and Kafka output in process 1"
    )
    args = parser.parse_args(argv)
    settings = load_settings(args.config, os.environ)
    try:
        run_pipeline(
            settings,
            FlowSpec(bootstrap=args.bootstrap, tail=args.tail),
            processes=args.processes,
            rows_apart=args.rows_apart,
        )
    except (RecoveryMismatch, ClusterFailed) as err:
        _stderr(str(err))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
