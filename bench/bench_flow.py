"""Throughput of the whole flow vs a plain Python loop over the same topic and the same models.

    python bench/bench_flow.py [--ticks 600000] [--symbols 8] [--repeat 3] [--cpu 0]
                               [--baseline ec9925c | --no-baseline]

Every run is a process of its own pinned to one core (`--cpu`); all read the same Kafka topic from
one local Tansu broker with the same client (confluent-kafka, partitions assigned, no group join)
and write their rows to a fresh chdb directory. The runs:

- the plain loop: consume -> `PartitionIngest` -> `TradingDesk` -> `Store`, nothing else;
- this tree's flow with recovery off, and with recovery on (2 s snapshots);
- the same two flows of the baseline commit (default ec9925c, before the re-layout), extracted
  with `git archive` into a temporary directory and run with PYTHONPATH pointing there (skipped,
  with a line saying why, when git or the commit is not available).

A round runs each of them once, in an order rotated from round to round (no run always goes
first or right after the same other run); ratios are taken within a round, on the same data, and
the table shows their median and range over the rounds. Every run must report the same result
counts (decisions, orders, read back from its store); the benchmark fails when they differ.

Two ratios: by wall time, what the target (flow >= 0.85x the loop) is stated in; and by quiet
time, wall time minus the time the run spent queued for a core that another process held (the
kernel's scheduler accounting, `flow_child.Clock`). On a shared machine the queueing changes
from run to run and can swamp everything else; the quiet ratio is what a quiet machine shows.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from flow_child import Stopwatch, pin, result_counts  # noqa: E402

from connectors.files.replay import replay  # noqa: E402
from connectors.kafka.broker import LocalBroker, ensure_topics  # noqa: E402
from connectors.sim.scenario import generate_scenario, past_start_ms  # noqa: E402
from models.config.settings import Settings  # noqa: E402

BASELINE = "ec9925c"
"""The last commit before the redesign's re-layout into subpackages (issue 10)."""

COUNTS = ("decisions", "orders")


def settings_doc(
    work: Path, symbols: list[str], market_topic: str, recovery: bool
) -> dict[str, Any]:
    """The benchmark's settings as plain JSON: only keys that the baseline's settings have too,
    so one document configures both trees."""
    return {
        "symbols": {s: {} for s in symbols},
        "kafka": {"topics": {"market": market_topic}},
        "clickhouse": {"path": str(work / "clickhouse")},
        "recovery": {
            "enabled": recovery,
            "dir": str(work / "recovery"),
            "snapshot_interval": "2s",
        },
    }


def bench_settings(work: Path, symbols: list[str], market_topic: str, recovery: bool) -> Settings:
    return Settings.model_validate(settings_doc(work, symbols, market_topic, recovery))


# ------------------------------------------------------------------------------------ children
def child_loop(settings: Settings, bootstrap: str) -> dict[str, Any]:
    """The plain loop: consume -> PartitionIngest -> TradingDesk -> Store, nothing else."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    from connectors.kafka.source import CONSUMER_TUNING
    from connectors.store.clickhouse import ROW_CONVERTERS, Store
    from models.core.events import BarEvent
    from models.desk.desk import TradingDesk
    from models.market.ingest import PartitionIngest, RawBatch, Record

    store = Store.open(settings.clickhouse)
    store.apply_schema()
    topic = settings.kafka.topics.market
    watch = Stopwatch()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "BENCH_IGNORED",
            "enable.auto.commit": "false",
            "enable.partition.eof": "true",
            **CONSUMER_TUNING,
        }
    )
    meta = consumer.list_topics(topic, timeout=10)
    parts = list(meta.topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, -2) for p in parts])
    ingest = PartitionIngest(settings)
    desk = TradingDesk.create(settings)
    eof: set[int] = set()
    events = 0
    rows: list[Any] = []
    last_write = time.perf_counter()
    while len(eof) < len(parts):
        batch = consumer.consume(5000, 0.05)
        out: list[Any] = []
        records: list[Record] = []
        for m in batch:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition() or 0)
                continue
            events += 1
            _, ts = m.timestamp()
            records.append((m.offset() or 0, ts, m.value(), None))
        if records:  # one partition in the benchmark topic
            ingest.process_batch(RawBatch(topic, parts[0], records), out)
        if len(eof) == len(parts):
            out.extend(ingest.flush())
        for item in out:
            if isinstance(item, BarEvent):
                for rec in desk.on_bar_event(item):
                    rows.append(rec)
            elif type(item) in ROW_CONVERTERS:
                rows.append(item)
        # the same write batching as the flow: every 0.5 s, and at the end
        if rows and (len(eof) == len(parts) or time.perf_counter() - last_write >= 0.5):
            store.insert_models(rows)
            rows = []
            last_write = time.perf_counter()
    clock = watch.stop()
    consumer.close()
    counts = result_counts(store)
    store.close()
    return {**clock.as_dict(), **counts, "events": events}


# ------------------------------------------------------------------------------------ runs
@dataclass(frozen=True)
class Run:
    """One configuration: `tree` is the code it runs (this tree or the baseline's extract)."""

    key: str
    label: str
    kind: str  # "loop" or "flow"
    recovery: bool
    tree: Path


def run_child(
    run: Run, work: Path, symbols: list[str], topic: str, bootstrap: str, cpu: int
) -> dict[str, Any]:
    cfg = work / "settings.json"
    work.mkdir(parents=True, exist_ok=True)
    cfg.write_text(json.dumps(settings_doc(work, symbols, topic, run.recovery)), encoding="utf-8")
    args = ["--settings", str(cfg), "--bootstrap", bootstrap, "--cpu", str(cpu)]
    if run.kind == "loop":
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "loop", *args]
    else:
        cmd = [sys.executable, str(BENCH / "flow_child.py"), *args]
    # Only the run's own tree on the path: the caller's PYTHONPATH may name another one.
    env = {**os.environ, "PYTHONPATH": str(run.tree)}
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=False, cwd=run.tree, env=env, timeout=1800
    )
    if out.returncode != 0:
        raise SystemExit(f"{run.label} failed:\n{out.stderr[-3000:]}")
    result = dict(json.loads(out.stdout.strip().splitlines()[-1]))
    if run.kind == "flow" and Path(result["tree"]) != run.tree.resolve():
        raise SystemExit(f"{run.label} imported its code from {result['tree']}, not {run.tree}")
    return result


def extract_baseline(rev: str, dest: Path) -> tuple[Path | None, str]:
    """The tree of commit `rev`, extracted under `dest` (nothing in the repository changes: no
    worktree to register or clean up); None and the reason when that is not possible."""
    try:
        found = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if found.returncode != 0:
            return None, f"commit {rev} is not in {ROOT}'s repository"
        commit = found.stdout.strip()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", commit],
            capture_output=True,
            check=False,
        )
    except OSError as err:
        return None, f"git is not available ({err.strerror or err})"
    if archive.returncode != 0:
        return None, f"git archive {rev} failed: {archive.stderr.decode(errors='replace')[-300:]}"
    tree = dest / f"baseline-{commit[:10]}"
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tree, filter="data")
    return tree, f"baseline {rev} ({commit[:10]}) extracted to {tree}"


# ------------------------------------------------------------------------------------ report
def spread(values: Sequence[float]) -> str:
    """Median and range: `0.93 (0.91-0.95)`."""
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def ratios(base: list[dict[str, Any]], other: list[dict[str, Any]], quiet: bool) -> list[float]:
    """Per round: base time / other time (above 1: `other` is the faster)."""

    def secs(r: dict[str, Any]) -> float:
        return float(r["elapsed_s"]) - (float(r["queued_s"]) if quiet else 0.0)

    return [secs(b) / secs(o) for b, o in zip(base, other, strict=True)]


def report(runs: list[Run], results: dict[str, list[dict[str, Any]]], events: int) -> bool:
    """Prints the table; returns whether every run reported the same result counts."""
    loop = results["loop"]
    head = (
        f"{'':40} {'wall s':>7} {'events/s':>9} {'cpu s':>6} {'queued s':>8} {'decisions':>9} "
        f"{'orders':>6}  {'vs loop, wall':>17}  {'vs loop, quiet':>17}"
    )
    print(head)
    seen: set[tuple[int, ...]] = set()
    for run in runs:
        rs = results[run.key]
        wall = statistics.median(float(r["elapsed_s"]) for r in rs)
        cpu = statistics.median(float(r["cpu_s"]) for r in rs)
        queued = statistics.median(float(r["queued_s"]) for r in rs)
        counts = {tuple(int(r[c]) for c in COUNTS) for r in rs}
        seen |= counts
        dec, orders = (str(c) for c in next(iter(counts))) if len(counts) == 1 else ("DIFFER",) * 2
        print(
            f"{run.label:40} {wall:7.2f} {events / wall:9,.0f} {cpu:6.2f} {queued:8.2f} {dec:>9} "
            f"{orders:>6}  {spread(ratios(loop, rs, False)):>17}  "
            f"{spread(ratios(loop, rs, True)):>17}"
        )
    pairs = [(r, b) for r in runs for b in runs if b.key == f"base-{r.key}"]
    for new, old in pairs:
        print(
            f"this tree / baseline, {new.label.split(', ', 1)[1]}: "
            f"wall {spread(ratios(results[old.key], results[new.key], False))}, "
            f"quiet {spread(ratios(results[old.key], results[new.key], True))} "
            "(above 1: this tree is faster)"
        )
    agree = len(seen) == 1
    print(
        "result counts: every run agrees"
        if agree
        else f"result counts DIFFER between runs: {sorted(seen)}"
    )
    return agree


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ticks", type=int, default=600_000)
    ap.add_argument("--symbols", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3, help="rounds (ratios: median and range)")
    ap.add_argument("--cpu", type=int, default=0, help="the core every run is pinned to")
    ap.add_argument("--baseline", default=BASELINE, help="commit whose flow to compare with")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--child")
    ap.add_argument("--settings")
    ap.add_argument("--bootstrap")
    args = ap.parse_args()
    if args.child:
        pin(args.cpu)
        settings = Settings.model_validate_json(Path(args.settings).read_text(encoding="utf-8"))
        print(json.dumps(child_loop(settings, args.bootstrap)))
        return 0

    started = time.perf_counter()
    symbols = [f"SIM{chr(65 + i)}" for i in range(args.symbols)]
    rate = 4.0
    duration = max(60, int(args.ticks / (rate * len(symbols))))
    with tempfile.TemporaryDirectory(prefix="stratflow-bench-") as tmp, LocalBroker(tmp) as broker:
        work = Path(tmp)
        topic = "bench.market"
        ensure_topics(
            broker.bootstrap, bench_settings(work, symbols, topic, False).kafka.topics.all(), 1
        )
        ticks = generate_scenario(symbols, past_start_ms(duration), duration, rate, seed=3)
        n = replay(broker.bootstrap, topic, ticks).published
        print(f"published {n:,} ticks ({len(symbols)} symbols, 1-minute bars) to a local Tansu")
        runs = [
            Run("loop", "plain loop (same client, models, store)", "loop", False, ROOT),
            Run("off", "flow, recovery off", "flow", False, ROOT),
            Run("on", "flow, recovery on (2 s snapshots)", "flow", True, ROOT),
        ]
        if args.no_baseline:
            print("baseline: skipped (--no-baseline)")
        else:
            tree, note = extract_baseline(args.baseline, work)
            print(f"baseline: {note}" if tree else f"baseline: skipped, {note}")
            if tree is not None:
                for run in runs[1:]:
                    label = f"{args.baseline} " + run.label
                    runs.append(Run(f"base-{run.key}", label, "flow", run.recovery, tree))
        results: dict[str, list[dict[str, Any]]] = {run.key: [] for run in runs}
        for rnd in range(args.repeat):
            k = rnd % len(runs)
            line = []
            for run in runs[k:] + runs[:k]:
                res = run_child(
                    run, work / f"{run.key}-{rnd}", symbols, topic, broker.bootstrap, args.cpu
                )
                results[run.key].append(res)
                line.append(f"{run.key} {res['elapsed_s']:.2f}s (queued {res['queued_s']:.2f}s)")
            print(f"round {rnd + 1}/{args.repeat}: " + ", ".join(line), flush=True)
    agree = report(runs, results, n)
    print(f"benchmark wall time {time.perf_counter() - started:.0f} s")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
