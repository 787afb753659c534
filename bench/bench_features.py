"""Features and triggers of one symbol, bar by bar against blocks, on the same one-minute bars.

    python bench/bench_features.py [--bars 200000] [--blocks 64,1000,200000] [--repeat 3]

The bars are the flow bench's random walk (bench/bench_backtest_flow.py: 0.1% a minute, prices
to 4 places, volumes 1..1000) as `BarColumns`, with the default features plus `sma_10`/`sma_20`
(the SMA crossover strategy's extras) and the default triggers. Rows:
- bar by bar: `FeatureState.update` then `TriggerState.evaluate` for every bar (the per-bar
  flow's ingest step without the bar builder);
- block N: `update_block` then `evaluate_block` over consecutive runs of N bars.
Only the calls are timed: each run's output is packed for the comparison (untimed) and let go,
as the flow lets go of what it has passed on. Each row prints its per-bar µs (best of
`--repeat`) with the count of defined feature values and of signals beside it, and says whether
the values and signals are those of bar by bar (a fast wrong answer shows).
"""

from __future__ import annotations

import argparse
import math
import random
import struct
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.config.settings import FeaturesConfig, default_triggers
from models.core.blocks import BarColumns
from models.core.messages import Signal
from models.signals.features import FeatureState
from models.signals.triggers import TriggerState

MIN = 60_000
EXTRA = ("sma_10", "sma_20")
_Q = Decimal("0.0001")


def make_bars(n: int, seed: int = 7) -> BarColumns:
    rnd = random.Random(seed)
    price = 100.0
    cols: dict[str, list[Decimal]] = {k: [] for k in ("open", "high", "low", "close", "vwap")}
    volume: list[Decimal] = []
    for _ in range(n):
        o = price
        price = max(1.0, price * math.exp(rnd.gauss(0, 0.001)))
        h = max(o, price) * (1 + abs(rnd.gauss(0, 0.0005)))
        lo = min(o, price) * (1 - abs(rnd.gauss(0, 0.0005)))
        for k, v in (("open", o), ("high", h), ("low", lo), ("close", price)):
            cols[k].append(Decimal(f"{v:.4f}"))
        cols["vwap"].append(
            ((cols["high"][-1] + cols["low"][-1] + cols["close"][-1]) / 3).quantize(_Q)
        )
        volume.append(Decimal(rnd.randint(1, 1000)))
    return BarColumns(
        "BENCH",
        [MIN * i for i in range(n)],
        [MIN * (i + 1) for i in range(n)],
        cols["open"],
        cols["high"],
        cols["low"],
        cols["close"],
        volume,
        [1] * n,
        cols["vwap"],
    )


Result = tuple[list[bytes], dict[int, list[Signal]]]


def _pack(row: tuple[float, ...]) -> bytes:
    return struct.pack(f"{len(row)}d", *row)


def bar_by_bar(bars: BarColumns, chunk: int = 1000) -> tuple[float, Result]:
    """Timed per run of `chunk` bars; each run's output is packed (untimed) and let go, as the
    flow lets go of what it has passed on."""
    features, triggers = FeatureState(FeaturesConfig(), EXTRA), TriggerState(default_triggers())
    names = features.names
    nan = math.nan
    elapsed = 0.0
    rows: list[bytes] = []
    fired: dict[int, list[Signal]] = {}
    for lo in range(0, len(bars), chunk):
        materialised = bars.slice(lo, lo + chunk).bars()
        t0 = time.perf_counter()
        vectors, signals = [], []
        for bar in materialised:
            fv = features.update(bar)
            signals.append(triggers.evaluate(fv))
            vectors.append(fv)
        elapsed += time.perf_counter() - t0
        fired.update({lo + i: s for i, s in enumerate(signals) if s})
        rows += [
            _pack(tuple(nan if (v := fv.values[n]) is None else v for n in names)) for fv in vectors
        ]
    return elapsed, (rows, fired)


def by_blocks(bars: BarColumns, size: int) -> tuple[float, Result]:
    features, triggers = FeatureState(FeaturesConfig(), EXTRA), TriggerState(default_triggers())
    elapsed = 0.0
    rows: list[bytes] = []
    fired: dict[int, list[Signal]] = {}
    for lo in range(0, len(bars), size):
        part = bars.slice(lo, lo + size)
        t0 = time.perf_counter()
        fcols = features.update_block(part)
        signals = triggers.evaluate_block(part, fcols)
        elapsed += time.perf_counter() - t0
        fired.update({lo + i: s for i, s in signals.items()})
        rows += [_pack(r) for r in fcols.rows]
    return elapsed, (rows, fired)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=200_000)
    ap.add_argument("--blocks", default="64,1000,200000", help="block sizes, comma-separated")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    bars = make_bars(args.bars)
    n = len(bars)
    print(f"{n} one-minute bars, default features + {', '.join(EXTRA)}, default triggers")
    reference: Result | None = None
    runs = [("bar by bar", 0)] + [(f"block {s}", int(s)) for s in args.blocks.split(",")]
    for label, size in runs:
        best = math.inf
        for _ in range(args.repeat):
            elapsed, result = bar_by_bar(bars) if size == 0 else by_blocks(bars, size)
            best = min(best, elapsed)
        rows, fired = result
        if reference is None:
            reference = result
        same = "same as bar by bar" if result == reference else "DIFFERS from bar by bar"
        defined = sum(1 for r in rows for v in struct.unpack(f"{len(r) // 8}d", r) if v == v)
        signals = sum(len(s) for s in fired.values())
        print(
            f"{label:>14}: {best / n * 1e6:7.2f} µs/bar  "
            f"({defined} feature values, {signals} signals; {same})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
