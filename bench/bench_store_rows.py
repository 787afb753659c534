"""µs per row of the decision-log tables (decisions, orders, fills, alerts) into the store and
onto Kafka: the row path (before) against the direct paths (after), on chdb.

    python bench/bench_store_rows.py [--bars 20000] [--repeat 5]

The rows are a real run's: a backtest of `--bars` one-minute bars with the SMA 10/20 crossover
(`bench_backtest_flow.py`'s data and strategy file) is run once, and every row the store is
handed is kept. Then, per table, best of `--repeat`, interleaved:

- before: Kafka values by `model_dump_json().encode()`, rows by `model_to_row` + one
  JSONEachRow line each (`_row_json`), inserted with the engine's default (parallel) parsing;
- after: `dataflows.lanes.kafka_messages` then `Store.insert` (decisions as Arrow columns from
  the parts the Kafka message was built from; the others as direct lines);

each split into building (Python) and the engine's insert. Both paths' rows are read back and
compared (the bench fails if they stored other values), and the Kafka values compared.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_backtest_flow import STRATEGY, write_bars
from connectors.store import rows as store_rows
from connectors.store.clickhouse import Store, _row_json
from connectors.store.rows import model_to_row
from dataflows.lanes import kafka_messages
from models.config.settings import ClickHouseConfig, TopicsConfig

TABLES = {"decisions": "decision_id", "orders": "client_order_id", "fills": "fill_id"}
TABLES["alerts"] = "alert_id"


def capture(bars: int, work: Path) -> dict[str, list[Any]]:
    """Every row a backtest hands the store, by table."""
    from api.backtest import run_backtest
    from api.backtest_cmd import open_data, with_run_settings
    from api.cli import settings_from
    from connectors.files.strategy_file import read_strategy_files

    got: dict[str, list[Any]] = {t: [] for t in TABLES}
    original = Store.insert

    def keep(self: Store, table: str, rows: Any) -> int:
        if table in got:
            got[table] += rows
        return original(self, table, rows)

    csv, strategy = work / "SIMA.csv", work / "cross.yaml"
    write_bars(csv, bars)
    strategy.write_text(STRATEGY, encoding="utf-8")
    settings = with_run_settings(
        settings_from(None), read_strategy_files([strategy]), None, 0.0, 0.0
    )
    import contextlib

    Store.insert = keep  # type: ignore[method-assign]
    try:
        with contextlib.ExitStack() as stack:
            data = open_data(settings, [str(csv)], "SIMA", None, stack)
            run_backtest(settings, data, work / "run", say=lambda _l: None, progress=False)
    finally:
        Store.insert = original  # type: ignore[method-assign]
    return got


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def paths(
    store: Store, backend: Any, topics: TopicsConfig, table: str, rows: list[Any], repeat: int
) -> dict[str, float]:
    """Best seconds of each step of both paths on `rows` of `table`."""
    best: dict[str, float] = {}
    lines: list[bytes] = []
    for _ in range(repeat):
        store_rows._JSON_OF.clear()
        lines.clear()

        def before_build() -> None:
            if table in TABLES:
                [r.model_dump_json().encode() for r in rows]
            for r in rows:
                _, row = model_to_row(r)
                row["run_id"] = "before"
                lines.append(_row_json(row))

        def before_engine() -> None:
            backend._run(
                f"INSERT INTO {store.table(table)} FORMAT JSONEachRow\n"
                + b"\n".join(lines).decode()
                + "\n",
                "CSV",
                None,
            )

        def after_kafka() -> None:
            kafka_messages(topics, (table, rows))

        def after_store() -> None:
            store.run_id = "after"
            store.insert(table, rows)

        for name, fn in (
            ("bb", before_build),
            ("be", before_engine),
            ("ak", after_kafka),
            ("as", after_store),
        ):
            best[name] = min(best.get(name, 1e9), timed(fn))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-rows-"))
    topics = TopicsConfig()
    try:
        captured = capture(args.bars, work)
        with Store.open(ClickHouseConfig(path=str(work / "ch"))) as store:
            store.apply_schema()
            backend: Any = store._backend
            print(f"rows of a {args.bars:,}-bar backtest; best of {args.repeat}, µs per row")
            print(
                f"{'table':10} {'rows':>6}  {'before: build':>13} {'engine':>7} {'total':>7}"
                f"  {'after: build':>12} {'engine':>7} {'total':>7}  speed-up"
            )
            for table, rows in captured.items():
                if not rows:
                    continue
                best = paths(store, backend, topics, table, rows, args.repeat)
                n = len(rows)
                us = 1e6 / n
                bt, at = best["bb"] + best["be"], best["ak"] + best["as"]
                print(
                    f"{table:10} {n:6}  {best['bb'] * us:13.2f} {best['be'] * us:7.2f}"
                    f" {bt * us:7.2f}  {best['ak'] * us:12.2f} {best['as'] * us:7.2f}"
                    f" {at * us:7.2f}  x{bt / at:.2f}"
                )
                key = TABLES[table]
                q = (
                    f"SELECT * EXCEPT run_id FROM {store.table(table)} FINAL WHERE run_id = "
                    f"{{r:String}} ORDER BY {key}, cityHash64(*)"
                )
                if store.query(q, {"r": "before"}) != store.query(q, {"r": "after"}):
                    raise SystemExit(f"{table}: the paths stored other values")
                values = [m.value for m in kafka_messages(topics, (table, rows))]
                if values != [r.model_dump_json().encode() for r in rows]:
                    raise SystemExit(f"{table}: other Kafka values")
            print("(after: build = the Kafka lane's messages; engine = `Store.insert`, its own")
            print(" building included: a decision's columns come from its Kafka message's parts)")
            print("both paths stored the same rows and the same Kafka values")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
