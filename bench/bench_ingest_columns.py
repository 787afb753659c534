"""Ingest's two block paths and what follows them, per bar, in one run: a Kafka batch read as
columns (`parse_bars`, `PackedBars`) against record by record (`bar_fields`, lists of Decimals).

    PYTHONPATH=$PWD python bench/bench_ingest_columns.py [--bars 200000] [--batch 5000]
                                                         [--repeat 5]

The records are bench/bench_ingest.py's (replay's layout, one symbol, the default features
plus `sma_10`/`sma_20`), cut into batches of `--batch`. For each path, CPU time (best of
`--repeat`, the two paths taken in turns: the machine is shared) of:
- `process_batch` (the whole of ingest: parse, guards, runs, features, triggers, blocks);
- the bars table's Arrow table of the run's `BarColumns` (`bars_table`: Decimal conversion for
  the lists, the decimal128 columns as they are for the packed form);
- the desk's first reads of a block: the closes as Decimals and one acting bar in nine
  (`BarColumns.close`, `BarBlock.event`), which the packed form makes only then;
- pickling the blocks (`BarBlock` and its `BarColumns`) both ways, as a second process would.
Counts beside times: bars, blocks, the ratio to the record-by-record path, and a digest of
every output expanded (`BarBlock.events()`, `BarColumns.bars()`), equal for both paths or the
bench fails.

Measured 2026-12-07 (200,000 bars, best of 5, 2 shared cores at load 7-8; both paths use the
same feature kernels, so "records" is already faster than before this bench: 12.6 µs a bar
for bench_ingest.py at f34cd7d), µs a bar, records -> columns: ingest 11.33 -> 5.39 (0.48x),
bars table 1.51 -> 0.09, the desk's first reads 0.76 -> 1.22 (the Decimals now made there),
pickling a block out 5.06 -> 0.56 and in 3.40 -> 1.37; ingest + table + desk 13.60 -> 6.70
(0.49x); digests equal.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ingest import TOPIC, fresh, records

from connectors.store.columns import bars_table
from models.config.settings import Settings
from models.core.blocks import BarBlock, BarColumns, expand_rows
from models.market.ingest import RawBatch

PATHS = {"records": 10**12, "columns": 1}  # block_path.MIN_RECORDS for each path


def ingest(cfg: Settings, batches: list[RawBatch], path: str) -> tuple[float, list[Any]]:
    """`process_batch` of every batch, CPU seconds, and the outputs."""
    state = fresh(cfg)
    out: list[Any] = []
    with mock.patch("models.market.block_path.MIN_RECORDS", PATHS[path]):
        t0 = time.process_time()
        for batch in batches:
            state.process_batch(batch, out)
        return time.process_time() - t0, out


def timed(fn: Callable[[], object]) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def desk_reads(blocks: list[BarBlock]) -> None:
    for block in blocks:
        block.bars.close  # noqa: B018 - the quiet path's marks
        for i in range(0, len(block), 9):
            block.event(i)


def digest(out: list[Any]) -> str:
    h = hashlib.sha256()
    for item in out:
        rows = item.events() if type(item) is BarBlock else list(expand_rows([item]))
        for row in rows:
            h.update(repr(row).encode())
    return h.hexdigest()[:16]


def fresh_copies(out: list[Any]) -> list[Any]:
    """The outputs as they leave ingest (nothing made yet): pickled and restored."""
    return pickle.loads(pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    cfg = Settings.model_validate(
        {"symbols": {"BENCH": {}}, "kafka": {"topics": {"market": TOPIC}}}
    )
    values = records(args.bars)
    batches = [
        RawBatch(
            TOPIC, 0, [(lo + i, 0, v, None) for i, v in enumerate(values[lo : lo + args.batch])]
        )
        for lo in range(0, len(values), args.batch)
    ]
    steps = ("ingest", "bars table", "desk reads", "pickle out", "pickle in")
    best = {(p, s): float("inf") for p in PATHS for s in steps}
    counts: dict[str, tuple[int, int]] = {}
    digests: dict[str, str] = {}
    for _ in range(args.repeat):
        for path in PATHS:
            seconds, out = ingest(cfg, batches, path)
            best[path, "ingest"] = min(best[path, "ingest"], seconds)
            cols = [x for x in out if type(x) is BarColumns]
            blocks = [x for x in out if type(x) is BarBlock]
            counts[path] = (sum(len(c) for c in cols), len(blocks))
            # Each step on outputs as ingest hands them on (nothing made yet).
            table = fresh_copies(cols) if path == "columns" else cols
            best[path, "bars table"] = min(
                best[path, "bars table"], timed(lambda t=table: bars_table(t, "run"))
            )
            read = fresh_copies(blocks) if path == "columns" else blocks
            best[path, "desk reads"] = min(
                best[path, "desk reads"], timed(lambda r=read: desk_reads(r))
            )
            data: list[bytes] = []
            out_s = timed(lambda d=data, b=blocks: d.extend(pickle.dumps(x, protocol=5) for x in b))
            in_s = timed(lambda d=data: [pickle.loads(x) for x in d])
            best[path, "pickle out"] = min(best[path, "pickle out"], out_s)
            best[path, "pickle in"] = min(best[path, "pickle in"], in_s)
            digests[path] = digest(out)
    n = len(values)
    print(f"{n:,} bars in batches of {args.batch:,} (CPU time, best of {args.repeat})")
    for path in PATHS:
        bars, blocks = counts[path]
        print(f"{path}: {bars:,} bars in {blocks} blocks, digest {digests[path]}")
    print(f"{'step':12} {'records':>14} {'columns':>14} {'ratio':>7}")
    for step in steps:
        a, b = best["records", step], best["columns", step]
        print(f"{step:12} {1e6 * a / n:9.2f} µs/bar {1e6 * b / n:9.2f} µs/bar {b / a:7.2f}")
    total_a = sum(best["records", s] for s in steps[:3])
    total_b = sum(best["columns", s] for s in steps[:3])
    print(
        f"{'ingest+table+desk':12} {1e6 * total_a / n:6.2f} µs/bar {1e6 * total_b / n:6.2f} µs/bar "
        f"{total_b / total_a:7.2f}"
    )
    if len(set(digests.values())) != 1:
        print("the two paths' outputs differ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
