"""The desk's block path against its per-bar path: N one-minute bars of one symbol under the
SMA(10/20) crossover strategy file, with the counts beside the times (a fast wrong answer
shows).

    PYTHONPATH=$PWD python bench/bench_desk_block.py [--bars 200000] [--block 1000]
                                                     [--fee-bps 0] [--slippage-bps 0] [--repeat 1]
                                                     [--quiet-only]

The bars (a seeded random walk) go through features, triggers and the router as ingest computes
them, once, before any timing. Then one desk behind its driver (a backtest: inline) takes the
events one by one (`TradingDesk.on_bar_event`), and another the same bars as `BarBlock`s of
`--block` bars (`TradingDesk.on_bar_block`); each is timed (CPU time of the process) around
`DeskDriver.run` alone, the best of `--repeat` alternating runs. The
rows of both (blocks expanded) must be equal, else the benchmark fails.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dataflows.driver import DeskDriver  # noqa: E402
from models.config.settings import Settings  # noqa: E402
from models.core.blocks import BarBlock, PositionColumns, expand_rows  # noqa: E402
from models.core.events import BarEvent  # noqa: E402
from models.core.messages import Bar, DecisionRecord, Fill, PositionSnapshot  # noqa: E402
from models.desk.desk import DeskRow, TradingDesk  # noqa: E402
from models.signals.features import FeatureState  # noqa: E402
from models.signals.router import route  # noqa: E402
from models.signals.triggers import TriggerState  # noqa: E402

MIN = 60_000
START_MS = 1_577_836_800_000  # 2020-01-01
SYMBOL = "SIMA"


NEVER = {"left": "sma_10", "op": "crosses_above", "right": 1e9}  # --quiet-only: never trades


def settings(fee_bps: str, slippage_bps: str, quiet_only: bool = False) -> Settings:
    entry = NEVER if quiet_only else {"left": "sma_10", "op": "crosses_above", "right": "sma_20"}
    return Settings.model_validate(
        {
            "symbols": {SYMBOL: {}},
            "strategies": [
                {
                    "name": "cross",
                    "universe": [SYMBOL],
                    "entry": entry,
                    "exit": {"left": "sma_10", "op": "crosses_below", "right": "sma_20"},
                    "position_fraction": 1.0,
                }
            ],
            "execution": {"fee_bps": fee_bps, "slippage_bps": slippage_bps},
        }
    )


def events(cfg: Settings, n: int) -> list[BarEvent]:
    rng = random.Random(11)
    features = FeatureState(cfg.features, cfg.extra_features(SYMBOL))
    triggers = TriggerState(cfg.triggers)
    price = 100.0
    out: list[BarEvent] = []
    for k in range(n):
        opened = Decimal(repr(price))
        price = max(1.0, round(price * math.exp(rng.gauss(0.0, 0.002)), 2))
        close = Decimal(repr(price))
        bar = Bar(
            symbol=SYMBOL,
            start_ms=START_MS + k * MIN,
            end_ms=START_MS + (k + 1) * MIN,
            open=opened,
            high=max(opened, close),
            low=min(opened, close),
            close=close,
            volume=Decimal(10),
            trades=3,
            vwap=close,
        )
        fv = features.update(bar)
        signals = triggers.evaluate(fv)
        out.append(BarEvent(bar, fv, signals, route(signals, cfg.router), "m#0", bar.end_ms, k + 1))
    return out


def timed(cfg: Settings, items: list[BarEvent] | list[BarBlock]) -> tuple[float, list[DeskRow]]:
    """The run's CPU time (the machine is shared: CPU time varies less than wall time)."""
    driver = DeskDriver(TradingDesk.create(cfg))
    out: list[DeskRow] = []
    started = time.process_time()
    driver.run(items, out)
    return time.process_time() - started, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=200_000)
    parser.add_argument("--block", type=int, default=1000)
    parser.add_argument("--fee-bps", default="0")
    parser.add_argument("--slippage-bps", default="0")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the best counts")
    parser.add_argument(
        "--quiet-only", action="store_true", help="an entry that never holds: every bar quiet"
    )
    args = parser.parse_args()
    cfg = settings(args.fee_bps, args.slippage_bps, args.quiet_only)
    evs = events(cfg, args.bars)
    names = tuple(evs[0].features.values)
    blocks = [
        BarBlock.of_events(names, evs[i : i + args.block]) for i in range(0, len(evs), args.block)
    ]
    per_bar_s, per_bar = timed(cfg, evs)
    block_s, at_once = timed(cfg, blocks)
    for _ in range(args.repeat - 1):  # the best of each, alternating
        per_bar_s = min(per_bar_s, timed(cfg, evs)[0])
        block_s = min(block_s, timed(cfg, blocks)[0])
    expanded = list(expand_rows(at_once))
    if expanded != per_bar:
        raise SystemExit("the block path's rows differ from the per-bar path's")
    quiet = sum(len(r) for r in at_once if isinstance(r, PositionColumns))
    n = args.bars
    for name, seconds, rows in (("per bar", per_bar_s, per_bar), ("blocks", block_s, at_once)):
        fills = sum(isinstance(r, Fill) for r in rows)
        decisions = sum(isinstance(r, DecisionRecord) for r in rows)
        print(
            f"{name:8} {seconds * 1e6 / n:6.2f} µs/bar  {n / seconds:9,.0f} bars/s  "
            f"fills {fills}  decision rows {decisions}  "
            f"snapshots {sum(isinstance(r, PositionSnapshot) for r in expand_rows(rows))}"
        )
    print(
        f"quiet bars {quiet} of {n} ({quiet / n:.1%}); speed-up x{per_bar_s / block_s:.1f}; "
        f"final equity {per_bar[-1].equity if isinstance(per_bar[-1], PositionSnapshot) else '?'}"
    )


if __name__ == "__main__":
    main()
