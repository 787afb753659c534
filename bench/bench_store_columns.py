"""µs per row of writing the per-bar tables: JSONEachRow rows vs Arrow columns, on chdb.

    python bench/bench_store_columns.py [--rows 200000] [--batch 50000] [--repeat 3]
                                        [--formats] [--format-rows 200000 1000000]

The same data is written, in batches of `--batch` rows per table (the flow's sink writes up to
50,000), into a fresh chdb directory under a run id per path:

- `rows`: what the sink did before: `expand_rows` (a `Bar` / `PositionSnapshot` per bar) and
  `Store.insert_models` (JSONEachRow text by `direct_lines`, parsed by the engine);
- `rows (models given)`: the same without the expansion (what a per-bar flow pays: it already
  has the models);
- `columns`: `Store.insert_models` of the `BarColumns` / `PositionColumns` (Arrow arrays,
  `ArrowStream` bytes through chdb's streaming insert), split into building the Arrow tables
  and the rest (IPC bytes and the engine's insert).

Two data sets: `exact` (prices with 2 places, positions whose P&L is exact at 12 places: Arrow
converts each decimal column at once) and `rounding` (an average cost of many digits, so the
unrealised P&L and equity need rounding: those columns go value by value through the row
path's text). Then the report's read-back of the bars (`api.backtest.read_run`, as columns)
against dict rows. `--formats` also compares ways into chdb for one prepared Arrow table of bars
(`ArrowStream`, `Arrow` file, `Parquet` bytes through `send_insert`, and the `Python()` table
function), at each of `--format-rows`. Each figure is the best of `--repeat`, in CPU time
(`--clock wall`: wall time); row counts are printed beside the times, and every path's rows are
read back and compared (the bench fails if a path stored other values).
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.store.clickhouse import Store
from connectors.store.columns import arrow_stream, bars_table, positions_table
from models.config.settings import ClickHouseConfig
from models.core.blocks import BarColumns, PositionColumns, expand_rows

CENT = Decimal("0.01")


def make_data(rows: int, block: int, rounding: bool, seed: int = 7) -> list[list[Any]]:
    """Batches of column sets: a bars set and a positions set per block of `block` bars."""
    rnd = random.Random(seed)
    price = Decimal(100)
    out: list[Any] = []
    qty = Decimal(3)
    avg = Decimal("100.3333333333333333333333333") if rounding else Decimal("100.25")
    cash = Decimal("99699.25")
    for lo in range(0, rows, block):
        n = min(block, rows - lo)
        starts = [60_000 * (lo + i) for i in range(n)]
        o, h, lw, c, v, w = [], [], [], [], [], []
        for _ in range(n):
            op = price
            price = max(CENT, price + Decimal(rnd.randint(-50, 50)) * CENT)
            o.append(op)
            c.append(price)
            h.append(max(op, price) + CENT)
            lw.append(min(op, price) - CENT)
            v.append(Decimal(rnd.randint(1, 10_000)))
            w.append(((op + price) / 2).quantize(CENT))
        out.append(
            BarColumns(
                "AAPL",
                starts,
                [s + 60_000 for s in starts],
                o,
                h,
                lw,
                c,
                v,
                [rnd.randint(1, 500) for _ in range(n)],
                w,
            )
        )
        unreal = [qty * (m - avg) for m in c]
        out.append(
            PositionColumns(
                "AAPL",
                qty,
                avg,
                Decimal(0),
                cash,
                [s + 60_000 for s in starts],
                c,
                unreal,
                [cash + qty * m for m in c],
            )
        )
    return out


def batches(items: list[Any], batch: int) -> list[list[Any]]:
    """Groups of items of about `batch` rows per table (a bars set and its positions set)."""
    out: list[list[Any]] = [[]]
    count = 0
    for item in items:
        if count >= batch * 2:
            out.append([])
            count = 0
        out[-1].append(item)
        count += len(item)
    return out


CLOCK: Callable[[], float] = time.process_time
"""CPU time of the process (the engine's threads included) by default: the machine is shared,
and wall time is not this code's; `--clock wall` for wall time."""


def best(repeat: int, fn: Callable[[], None]) -> float:
    times = []
    for _ in range(repeat):
        t0 = CLOCK()
        fn()
        times.append(CLOCK() - t0)
    return min(times)


def read_back(store: Store, run_id: str) -> list[list[dict[str, Any]]]:
    out = []
    for table, key in (("bars", "start_ms"), ("positions", "ts_ms")):
        rows = store.query(
            f"SELECT * EXCEPT run_id FROM {table} FINAL WHERE run_id = {{r:String}} ORDER BY {key}",
            {"r": run_id},
        )
        out.append(rows)
    return out


def bench_paths(store: Store, args: argparse.Namespace, rounding: bool) -> None:
    data = make_data(args.rows, args.block, rounding)
    groups = batches(data, args.batch)
    total = sum(len(i) for i in data)  # bars rows + positions rows
    label = "rounding" if rounding else "exact"
    models = [list(expand_rows(g)) for g in groups]

    def rows_path() -> None:
        for g in groups:
            store.insert_models(list(expand_rows(g)))

    def models_path() -> None:
        for m in models:
            store.insert_models(m)

    def columns_path() -> None:
        for g in groups:
            store.insert_models(g)

    def build() -> None:
        for g in groups:
            bars_table([i for i in g if type(i) is BarColumns], "x")
            positions_table([i for i in g if type(i) is PositionColumns], "x")

    # Rounds of every path in turn (the machine is shared: no path always runs first).
    paths = {
        "rows": (f"rows-{label}", rows_path),
        "models": (f"rows-{label}", models_path),
        "columns": (f"cols-{label}", columns_path),
        "build": ("", build),
    }
    times: dict[str, float] = {}
    for round_ in range(args.repeat):
        names = list(paths)
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            run_id, fn = paths[name]
            store.run_id = run_id
            times[name] = min(times.get(name, float("inf")), best(1, fn))
    t_rows, t_models, t_cols, t_build = (times[k] for k in ("rows", "models", "columns", "build"))
    if read_back(store, f"rows-{label}") != read_back(store, f"cols-{label}"):
        raise SystemExit(f"{label}: the columnar path stored other values than the row path")
    us = 1e6 / total
    print(
        f"\n{label}: {total:,} rows ({total // 2:,} bars + {total // 2:,} positions), "
        f"{len(groups)} batches of <= {args.batch:,} rows per table, best of {args.repeat}"
    )
    print(f"  rows (expand + JSONEachRow + insert) {t_rows * us:7.2f} µs/row  {t_rows:6.2f} s")
    print(f"  rows (models given)                  {t_models * us:7.2f} µs/row  {t_models:6.2f} s")
    print(f"  columns (Arrow + ArrowStream insert) {t_cols * us:7.2f} µs/row  {t_cols:6.2f} s")
    print(f"    of which building the Arrow tables {t_build * us:7.2f} µs/row")
    print(f"  speed-up vs rows: {t_rows / t_cols:.1f}x  (vs models given {t_models / t_cols:.1f}x)")


def bench_read(store: Store, run_id: str, repeat: int) -> None:
    """A run's bars read back for the report: dict rows (before) vs columns (`read_run`)."""
    from api.backtest import read_run

    sql = (
        "SELECT symbol, start_ms, end_ms, open, high, low, close FROM bars FINAL "
        "WHERE run_id = {run:String} ORDER BY symbol, start_ms"
    )
    got: dict[str, Any] = {}

    def rows() -> None:
        bars: dict[str, list[tuple[Any, ...]]] = {}
        for r in store.query(sql, {"run": run_id}):
            bars.setdefault(str(r["symbol"]), []).append(
                (
                    int(r["start_ms"]),
                    int(r["end_ms"]),
                    Decimal(str(r["open"])),
                    Decimal(str(r["high"])),
                    Decimal(str(r["low"])),
                    Decimal(str(r["close"])),
                )
            )
        got["rows"] = bars

    def columns() -> None:
        got["columns"] = read_run(store, run_id).bars

    t_rows, t_cols = best(repeat, rows), best(repeat, columns)
    if got["rows"] != got["columns"]:
        raise SystemExit("read_run's bars differ from the dict rows' bars")
    n = sum(len(v) for v in got["rows"].values())
    print(f"\nreading {n:,} bars back (best of {repeat}):")
    print(f"  dict rows (before)                   {t_rows * 1e6 / n:7.2f} µs/bar  {t_rows:6.2f} s")
    print(f"  read_run, bars as columns            {t_cols * 1e6 / n:7.2f} µs/bar  {t_cols:6.2f} s")


def bench_formats(store: Store, n: int, repeat: int) -> None:
    """One Arrow table of `n` bars into chdb four ways."""
    data = make_data(n, n, False)
    table = bars_table([data[0]], "fmt")
    backend: Any = store._backend  # the bench looks inside: the chdb session itself
    session = backend._shared.session
    name = store.table("bars")
    cols = ", ".join(table.column_names)

    def send(fmt: str, body: Callable[[], bytes]) -> Callable[[], None]:
        def go() -> None:
            ins = session.send_insert(f"INSERT INTO {name} ({cols})", fmt)
            ins.append(body())
            ins.finish()

        return go

    def arrow_file() -> bytes:
        sink = io.BytesIO()
        with pa.ipc.new_file(sink, table.schema) as w:
            w.write_table(table)
        return sink.getvalue()

    def parquet() -> bytes:
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="none")
        return sink.getvalue()

    def python_fn() -> None:
        session.query(f"INSERT INTO {name} SELECT * FROM Python(table)")

    ways = {
        "ArrowStream (send_insert)": send("ArrowStream", lambda: arrow_stream(table)),
        "Arrow file (send_insert)": send("Arrow", arrow_file),
        "Parquet (send_insert)": send("Parquet", parquet),
        "Python() table function": python_fn,
    }
    print(f"\ninto chdb, one prepared Arrow table of {n:,} bars rows, best of {repeat}:")
    for way, fn in ways.items():
        t = best(repeat, fn)
        print(f"  {way:28s} {t * 1e6 / n:6.2f} µs/row  {t:6.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000, help="bars (and as many positions)")
    ap.add_argument("--batch", type=int, default=50_000, help="rows per table per insert")
    ap.add_argument("--block", type=int, default=500, help="bars per column set")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--formats", action="store_true")
    ap.add_argument("--format-rows", type=int, nargs="*", default=[200_000, 1_000_000])
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    print(f"times are {'CPU' if args.clock == 'cpu' else 'wall'} seconds, best of {args.repeat}")
    directory = tempfile.mkdtemp(prefix="bench-store-")
    try:
        with Store.open(ClickHouseConfig(path=directory)) as store:
            store.apply_schema()
            for rounding in (False, True):
                bench_paths(store, args, rounding)
            bench_read(store, "cols-exact", args.repeat)
            if args.formats:
                for n in args.format_rows:
                    bench_formats(store, n, args.repeat)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
