"""CPU time of what the flow does with the rows after the desk made them, this tree against a
baseline commit in the same run: the Kafka output messages and the ClickHouse writes.

    python bench/bench_store_rows.py [--bars 50000] [--repeat 3] [--baseline 4e9a197]
                                     [--no-baseline] [--save-events F | --events F]

A backtest of `--bars` one-minute bars with the SMA 10/20 crossover (`bench_backtest_flow.py`'s
data and strategy file) is run once in this tree, and two things are captured in the order the
flow made them: the lanes of rows the Kafka output took (decisions, orders, fills, alerts) and
every batch the store was handed (`Store.insert(table, rows)`, per table as the flow's write
batches gathered them). Then, in a process of its own per tree and round (rounds alternate
which tree goes first; `--repeat` rounds, best kept), on those same rows:

- kafka: each lane's messages, in the flow's order, as the tree's flow makes them (this tree:
  `dataflows.lanes.lane_messages`, keys and values; a tree without it: `kafka_messages`, one
  `KafkaSinkMessage` each); what the Kafka sink then does (produce) is not in it;
- store: every batch through `Store.insert`, in the flow's order, into a fresh chdb directory
  (the Python that builds the rows, lines or Arrow tables, and the engine's insert), after a
  warm-up insert of each table (the engine's first insert of a format costs ~0.15 s once);

each as CPU time (`time.process_time`: the machine is shared, wall time is not this code's)
beside its row count, and kafka + store in the flow's interleaving as the total. The baseline
is the commit `--baseline` extracted with `git archive` (default: main when the outputs work
of the acting path started). `--save-events F` keeps the capture, `--events F` measures a kept
one instead of running the backtest again (a 200,000-bar capture takes ~40 s). Both trees
must publish the same Kafka keys and values in the same order and store the same rows (every
table read back, row by row; and as many rows in the engine's parts): the bench fails
otherwise.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
"""This tree; on the path of the parent only (a child imports the tree on its PYTHONPATH)."""
BASELINE = "4e9a197"
"""main when the outputs work on the acting bars (decision rows as the engine keeps them,
...) started; f34cd7d before the one before (one Kafka item per lane, parts once, Arrow rows)."""

KAFKA_TABLES = ("decisions", "orders", "fills", "alerts")


def capture(bars: int, work: Path) -> dict[str, Any]:
    """The Kafka lanes and the store's batches of a backtest, in the order the flow made them:
    `events` is a list of ("kafka", lane) and ("store", (table, rows))."""
    import contextlib

    import dataflows.pipeline as pipeline
    from api.backtest import run_backtest
    from api.backtest_cmd import open_data, with_run_settings
    from api.cli import settings_from
    from bench.bench_backtest_flow import STRATEGY, write_bars
    from connectors.files.strategy_file import read_strategy_files
    from connectors.store.clickhouse import Store

    events: list[tuple[str, Any]] = []
    insert, messages = Store.insert, pipeline.lane_messages

    def keep_insert(self: Store, table: str, rows: Any) -> int:
        events.append(("store", (table, list(rows))))
        return insert(self, table, rows)

    def keep_lane(topics: Any, lane: Any) -> Any:
        if lane[0] in KAFKA_TABLES:
            events.append(("kafka", (lane[0], list(lane[1]))))
        return messages(topics, lane)

    csv, strategy = work / "SIMA.csv", work / "cross.yaml"
    write_bars(csv, bars)
    strategy.write_text(STRATEGY, encoding="utf-8")
    settings = with_run_settings(
        settings_from(None), read_strategy_files([strategy]), None, 0.0, 0.0
    )
    Store.insert = keep_insert  # type: ignore[method-assign]
    pipeline.lane_messages = keep_lane
    try:
        with contextlib.ExitStack() as stack:
            data = open_data(settings, [str(csv)], "SIMA", None, stack)
            run_backtest(settings, data, work / "run", say=lambda _l: None, progress=False)
    finally:
        Store.insert = insert  # type: ignore[method-assign]
        pipeline.lane_messages = messages
    return {"events": events}


# ------------------------------------------------------------------- the child: one tree, once
def measure(events_path: Path, store_dir: Path) -> dict[str, Any]:
    """In the tree on PYTHONPATH: CPU time of the Kafka messages and the store's inserts."""
    import connectors.store.rows as store_rows
    import dataflows.lanes as lanes
    from connectors.store.clickhouse import TABLES, Store
    from models.config.settings import ClickHouseConfig, TopicsConfig

    events = pickle.loads(events_path.read_bytes())["events"]
    gc.freeze()  # as a bounded run does (dataflows/run.py): no cycle collection while timed
    gc.disable()
    topics = TopicsConfig()
    lane_messages = getattr(lanes, "lane_messages", None)
    kafka_cpu: dict[str, float] = {}
    store_cpu: dict[str, float] = {}
    rows: dict[str, int] = {}
    sent: dict[str, int] = {}
    digest = hashlib.sha256()
    published: list[tuple[str, list[Any], list[Any]]] = []
    with Store.open(ClickHouseConfig(path=str(store_dir)), run_id="warm-up") as store:
        store.apply_schema()
        # No background merge: its CPU would land on whichever insert it overlaps, and what a
        # merge drops (a decision's older version in an earlier part) would vary the rows held.
        store.execute("SYSTEM STOP MERGES")
        # The engine's first insert of a format costs ~0.15 s once (not per table): paid here
        # by one batch of each table, under another run id, so no table's figure carries it.
        warmed: set[str] = set()
        for kind, (table, batch) in events:
            if kind == "store" and table not in warmed:
                warmed.add(table)
                store.insert(table, batch)
        # What the warm-up serialized is made again when timed.
        getattr(store_rows, "forget_json", store_rows._JSON_OF.clear)()
        store.run_id = "bench"
        clock = time.process_time
        started = clock()
        for kind, (table, batch) in events:
            t0 = clock()
            if kind == "kafka":
                if lane_messages is not None:
                    topic, keys, values = lane_messages(topics, (table, batch))
                    published.append((topic, keys, values))
                else:
                    msgs = lanes.kafka_messages(topics, (table, batch))
                    published.append(
                        (msgs[0].topic, [m.key for m in msgs], [m.value for m in msgs])
                    )
                kafka_cpu[table] = kafka_cpu.get(table, 0.0) + clock() - t0
                sent[table] = sent.get(table, 0) + len(batch)
            else:
                n = store.insert(table, batch)
                store_cpu[table] = store_cpu.get(table, 0.0) + clock() - t0
                rows[table] = rows.get(table, 0) + n
        total = clock() - started
        for topic, keys, values in published:
            for key, value in zip(keys, values, strict=True):
                digest.update(b"%s\0%s\0%s\n" % (topic.encode(), key, value))
        stored = hashlib.sha256()
        for table in TABLES:
            texts = sorted(
                repr(sorted(row.items()))
                for row in store.query(
                    f"SELECT * EXCEPT run_id FROM {store.table(table)} WHERE run_id = 'bench'"
                )
            )
            stored.update(f"{table}\n{len(texts)}\n".encode())
            held = store.query(  # rows in the engine's parts (not only what a query sees)
                "SELECT sum(rows) AS n FROM system.parts WHERE active AND database = "
                f"'{store.database}' AND table = '{table}'"
            )
            stored.update(f"{held[0]['n'] if held else 0}\n".encode())
            for text in texts:
                stored.update(text.encode())
    return {
        "kafka_cpu": kafka_cpu,
        "store_cpu": store_cpu,
        "rows": rows,
        "sent": sent,
        "messages": sum(len(k) for _, k, _ in published),
        "total_cpu": total,
        "kafka_digest": digest.hexdigest(),
        "store_digest": stored.hexdigest(),
    }


def run_child(tree: Path, events: Path, work: Path) -> dict[str, Any]:
    store_dir = Path(tempfile.mkdtemp(prefix="ch-", dir=work))
    try:
        command = [sys.executable, str(BENCH / "bench_store_rows.py"), "--child", str(events)]
        out = subprocess.run(
            [*command, "--store", str(store_dir)],
            capture_output=True,
            text=True,
            check=False,
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree)},
            timeout=3600,
        )
    finally:
        shutil.rmtree(store_dir, ignore_errors=True)
    if out.returncode != 0:
        raise SystemExit(f"the bench in {tree} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def best_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    best = dict(runs[0])
    for key in ("kafka_cpu", "store_cpu"):
        best[key] = {t: min(r[key][t] for r in runs) for t in runs[0][key]}
    best["total_cpu"] = min(r["total_cpu"] for r in runs)
    return best


def report(mine: dict[str, Any], base: dict[str, Any] | None, label: str) -> None:
    def row(name: str, n: int, t: float, b: float | None) -> str:
        ratio = f"{b / t:7.2f}x" if b else ""
        was = f"{b:8.3f} {1e6 * b / max(n, 1):8.2f}" if b is not None else ""
        return f"  {name:22} {n:8,} {t:8.3f} {1e6 * t / max(n, 1):8.2f}   {was:17} {ratio}"

    head = f"  {'':22} {'rows':>8} {'cpu s':>8} {'µs/row':>8}"
    print(head + (f"   {label + ' s':>8} {'µs/row':>8}  speed-up" if base else ""))
    for key, what, counts in (
        ("kafka_cpu", "kafka", mine["sent"]),
        ("store_cpu", "store", mine["rows"]),
    ):
        for table, t in sorted(mine[key].items(), key=lambda kv: -kv[1]):
            b = base[key].get(table) if base else None
            print(row(f"{what} {table}", counts.get(table, 0), t, b))
    n = sum(mine["rows"].values())
    print(row("total (flow's order)", n, mine["total_cpu"], base["total_cpu"] if base else None))
    bars = mine["store_cpu"].get("bars", 0.0)
    base_bars = base["store_cpu"].get("bars", 0.0) if base else 0.0
    print(
        row(
            "total but bars",
            n - mine["rows"].get("bars", 0),
            mine["total_cpu"] - bars,
            base["total_cpu"] - base_bars if base else None,
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline", default=BASELINE)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--events", type=Path, help="a capture kept by --save-events")
    ap.add_argument("--save-events", type=Path)
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child, args.store)))
        return
    sys.path.insert(0, str(ROOT))
    from bench.bench_backtest_flow import extract_tree

    work = Path(tempfile.mkdtemp(prefix="bench-rows-"))
    try:
        events = work / "events.pkl"
        if args.events is not None:
            shutil.copyfile(args.events, events)
        else:
            print(f"capturing the rows of a {args.bars:,}-bar backtest (this tree)", flush=True)
            events.write_bytes(pickle.dumps(capture(args.bars, work), pickle.HIGHEST_PROTOCOL))
            if args.save_events is not None:
                shutil.copyfile(events, args.save_events)
        trees: list[tuple[str, Path]] = [("this tree", ROOT)]
        if not args.no_baseline:
            tree, note = extract_tree(args.baseline, work)
            if tree is None:
                print(f"baseline: skipped, {note}")
            else:
                trees.append((f"baseline {note}", tree))
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in trees}
        for k in range(args.repeat):
            load = os.getloadavg()[0]
            for label, tree in trees if k % 2 == 0 else trees[::-1]:
                runs[label].append(run_child(tree, events, work))
            print(f"round {k + 1}/{args.repeat} done (load {load:.2f})", flush=True)
        mine = best_of(runs["this tree"])
        base = best_of(runs[trees[1][0]]) if len(trees) > 1 else None
        print(f"\nCPU time, best of {args.repeat}; {mine['messages']:,} Kafka messages")
        report(mine, base, "baseline")
        if base is not None:
            if base["kafka_digest"] != mine["kafka_digest"]:
                raise SystemExit("the trees publish other Kafka messages")
            if base["store_digest"] != mine["store_digest"]:
                raise SystemExit("the trees store other rows")
            print("both trees published the same Kafka messages and stored the same rows")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
