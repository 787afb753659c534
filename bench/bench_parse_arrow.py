"""A design probe for issue 11's next step: parsing a Kafka batch of replayed bars as Arrow
columns instead of one message at a time.

    PYTHONPATH=$PWD python bench/bench_parse_arrow.py [--bars 200000] [--batch 5000] [--repeat 3]

Both sides read the same records (replay's layout, `connectors.files.wire.bar_json`, the random
walk of bench/bench_features.py), cut into the flow's batches:
- baseline: `models.market.fast_bar.bar_fields` per message, today's block path (the Decimals,
  the floats the kernels read, the checks);
- arrow: one `pyarrow.json.read_json` per batch with the layout as an explicit schema (an
  unexpected field fails the batch), the layout checked per column with RE2
  (`pyarrow.compute.match_substring_regex`: a number is digits with an optional fraction, as
  replay writes it), prices and volume cast to the store's decimal128(38, 12) and to float64,
  the time parsed to milliseconds, and the bar checks (low <= open, close <= high, positive
  prices) as column comparisons.

Prints µs a bar of CPU time (best of `--repeat`), the ratio to the baseline measured in the same
run, and the bars each side accepted, so a fast wrong answer shows. What the probe leaves out,
and a real path must keep: every guard of `PartitionIngest` (time order, the partition's home
symbols, duplicates, lateness), and the per-message path for any batch the layout check refuses.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ingest import records

from models.market.fast_bar import bar_fields

DECIMAL = pa.decimal128(38, 12)
NUMBER = r"^[0-9]{1,24}(\.[0-9]{1,12})?$"
PRICES = ("open", "high", "low", "close", "volume")


def baseline(batch: list[bytes]) -> int:
    symbols = {"BENCH"}
    return sum(1 for v in batch if bar_fields(v, symbols, None, 60_000, 0, 2**62) is not None)


def _schema(sample: bytes) -> tuple[pa.Schema, pj.ParseOptions]:
    """The layout of replay's bar messages as an explicit schema (read from one record's keys:
    every value a string but the integers)."""
    import json

    doc = json.loads(sample)
    fields = [(k, pa.int64() if isinstance(v, int) else pa.string()) for k, v in doc.items()]
    schema = pa.schema(fields)
    return schema, pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")


def arrow(parse: pj.ParseOptions) -> Callable[[list[bytes]], int]:
    read = pj.ReadOptions(use_threads=False, block_size=1 << 24)

    def run(batch: list[bytes]) -> int:
        table = pj.read_json(io.BytesIO(b"\n".join(batch)), read_options=read, parse_options=parse)
        ok = pc.equal(table["type"], "bar")
        cols = {}
        for name in PRICES:
            text = table[name]
            ok = pc.and_(ok, pc.match_substring_regex(text, NUMBER))
            cols[name] = (pc.cast(text, DECIMAL), pc.cast(text, pa.float64()))
        ok = pc.and_(ok, pc.less_equal(cols["low"][0], cols["open"][0]))
        ok = pc.and_(ok, pc.less_equal(cols["open"][0], cols["high"][0]))
        ok = pc.and_(ok, pc.less_equal(cols["low"][0], cols["close"][0]))
        ok = pc.and_(ok, pc.less_equal(cols["close"][0], cols["high"][0]))
        ok = pc.and_(ok, pc.greater(cols["low"][1], 0.0))
        stamp = next(n for n in ("ts", "time", "end") if n in table.column_names)
        pc.strptime(table[stamp], format="%Y-%m-%dT%H:%M:%SZ", unit="ms", error_is_null=True)
        return int(pc.sum(ok).as_py() or 0)

    return run


def timed(
    fn: Callable[[list[bytes]], int], batches: list[list[bytes]], repeat: int
) -> tuple[float, int]:
    best, kept = float("inf"), 0
    for _ in range(repeat):
        t0 = time.process_time()
        kept = sum(fn(b) for b in batches)
        best = min(best, time.process_time() - t0)
    return best, kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bars", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    values = records(args.bars)
    batches = [values[i : i + args.batch] for i in range(0, len(values), args.batch)]
    _, parse = _schema(values[0])
    base_s, base_n = timed(baseline, batches, args.repeat)
    arrow_s, arrow_n = timed(arrow(parse), batches, args.repeat)
    n = len(values)
    print(f"{n:,} bars in batches of {args.batch:,} (CPU time, best of {args.repeat})")
    rows = (("baseline bar_fields", base_s, base_n), ("arrow columns", arrow_s, arrow_n))
    for name, seconds, kept in rows:
        per_bar = 1e6 * seconds / n
        print(f"{name:21} {per_bar:6.2f} µs/bar  {seconds / base_s:.2f}x  {kept:,} bars accepted")


if __name__ == "__main__":
    main()
