"""Ingest's block path on replayed bars: `PartitionIngest.process_batch` per bar, with a profile.

    python bench/bench_ingest.py [--bars 200000] [--batch 5000] [--repeat 3] [--profile]

The records are the flow bench's random walk (bench/bench_features.py `make_bars`) written in
replay's layout (`connectors.files.wire.bar_json`), one symbol, cut into batches of `--batch`
records (the flow's Kafka batch size), fed to a fresh block-path `PartitionIngest` with the
default features plus `sma_10`/`sma_20` (the SMA crossover strategy's extras). Prints the
per-bar µs of CPU time (best of `--repeat`: the machine is shared) and a digest of the
expanded outputs, so two versions of the code can be compared for speed and for sameness in
one line each (run a copy of this file with PYTHONPATH at the other checkout); `--profile`
adds cProfile's top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import math
import pstats
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_features import EXTRA, make_bars

from connectors.files.wire import bar_json
from models.config.settings import Settings
from models.core.blocks import BarBlock, expand_rows
from models.market.ingest import PartitionIngest, RawBatch
from models.signals.features import FeatureState

TOPIC = "market.ticks"
T0_US = 1_700_000_040_000_000  # on the minute grid


def records(n: int) -> list[bytes]:
    cols = make_bars(n)
    return [
        bar_json(
            "BENCH",
            T0_US + 60_000_000 * i,
            (
                str(cols.open[i]),
                str(cols.high[i]),
                str(cols.low[i]),
                str(cols.close[i]),
                str(cols.volume[i]),
            ),
            (60_000, "1m"),
            None,
        )
        for i in range(n)
    ]


def fresh(cfg: Settings) -> PartitionIngest:
    ingest = PartitionIngest(cfg, blocks=True)
    st = ingest._state("BENCH")
    st.features = FeatureState(cfg.features, EXTRA)
    return ingest


def run(cfg: Settings, values: list[bytes], batch: int) -> tuple[float, str]:
    """Timed per batch; each batch's output is folded into the digest (untimed) and let go,
    as the flow lets go of what it has passed on."""
    ingest = fresh(cfg)
    h = hashlib.sha256()
    elapsed = 0.0
    for lo in range(0, len(values), batch):
        part = values[lo : lo + batch]
        b = RawBatch(TOPIC, 0, [(lo + i, 0, v, None) for i, v in enumerate(part)])
        out: list[Any] = []
        t0 = time.process_time()
        ingest.process_batch(b, out)
        elapsed += time.process_time() - t0
        digest(out, h)
    return elapsed, h.hexdigest()[:16]


def digest(out: list[Any], h: Any) -> None:
    for item in out:
        if type(item) is BarBlock:
            for e in item.events():
                h.update(repr(e).encode())
        else:
            for row in expand_rows([item]):
                h.update(repr(row).encode())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    cfg = Settings.model_validate(
        {"symbols": {"BENCH": {}}, "kafka": {"topics": {"market": TOPIC}}}
    )
    values = records(args.bars)
    best, sha = math.inf, ""
    for _ in range(args.repeat):
        elapsed, sha = run(cfg, values, args.batch)
        best = min(best, elapsed)
    print(f"ingest block path: {best / args.bars * 1e6:.2f} µs/bar (CPU time)  digest {sha}")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        run(cfg, values, args.batch)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(18)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
