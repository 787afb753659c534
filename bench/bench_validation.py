"""The validation gate's cost: proposals validated per second, and the flow with the gate on
against off.

    PYTHONPATH=$PWD python bench/bench_validation.py [--bars 10000] [--proposals 40]
                                                     [--flow-bars 20000] [--repeat 3]

1. Proposals: `--proposals` distinct GPT-shaped strategies (SMA crossovers, RSI swings,
   breakouts; periods, fractions and stops varied) each validated on the same `--bars`
   one-minute bars (a seeded random walk) plus the five stress scenarios built from them, as
   the desk's `ValidationReviewer` does (`build_scenarios` + `validate_strategy`, scenarios
   rebuilt per proposal). CPU time of the process, one thread (numba's first compile is done
   before timing). Prints ms per proposal, proposals/s, the ratio to the issue's target (50 ms
   a proposal: below 1 is within it), and the trade counts on the history (a fast wrong answer
   shows).
2. Flow: `--flow-bars` bars of two symbols through ingest's features, triggers and router
   (once, untimed), then a GPT desk behind its driver (a backtest: inline answers, every
   strategic trigger asked and answered with a strategy that changes each time, so each answer
   is validated), fed as the flow feeds it (`BarBlock`s of 1000 bars), with
   `validation.enabled` true and false on the same events; CPU time around `DeskDriver.run`,
   the best of `--repeat` alternating runs. Prints events/s of both, the ratio (on / off, the
   baseline measured in the same run), the answers validated and refused, fills and decisions.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from dataflows.driver import DeskDriver  # noqa: E402
from models.config.settings import Settings  # noqa: E402
from models.core.blocks import BarBlock  # noqa: E402
from models.core.events import BarEvent  # noqa: E402
from models.core.messages import (  # noqa: E402
    Bar,
    DecisionRecord,
    Fill,
    GptCall,
    GptOutcome,
    GptRequest,
)
from models.desk.desk import DeskRow, TradingDesk  # noqa: E402
from models.gpt.decider import GptAnswer  # noqa: E402
from models.signals.features import FeatureState  # noqa: E402
from models.signals.router import route  # noqa: E402
from models.signals.triggers import TriggerState  # noqa: E402
from models.strategy.spec import GptDecision, StrategySpec  # noqa: E402
from models.validation.gate import validate_strategy  # noqa: E402
from models.validation.scenarios import build_scenarios  # noqa: E402
from models.vectorized.bars import BarArrays  # noqa: E402
from models.vectorized.evaluate import Costs  # noqa: E402

MIN = 60_000
START_MS = 1_577_836_800_000  # 2020-01-01
TARGET_MS = 50.0  # the bound for one proposal on 10,000 bars + scenarios
SYMBOLS = ("SIMA", "SIMB")


def spec_doc(k: int) -> dict[str, Any]:
    """The k-th strategy: one of three shapes, its numbers varied with k."""
    rng = random.Random(k)
    shape = k % 3  # the other numbers vary with k (fraction, stops), so each spec is new
    if shape == 0:  # GPT reads the configured names (sma_fast, ...), not `sma_10`
        entry: dict[str, Any] = {"left": "sma_fast", "op": "crosses_above", "right": "sma_slow"}
        exit_: dict[str, Any] = {"left": "sma_fast", "op": "crosses_below", "right": "sma_slow"}
    elif shape == 1:
        low = rng.choice([25.0, 30.0, 35.0])
        entry = {"left": "rsi", "op": "<", "right": low}
        exit_ = {"left": "rsi", "op": ">", "right": low + 35}
    else:
        entry = {"left": "close", "op": ">=", "right": "channel_high"}
        exit_ = {"left": "close", "op": "<", "right": "ema"}
    return {
        "name": f"bench-{k}",
        "version": 1,
        "universe": ["SIMA"],
        "entry": entry,
        "exit": exit_,
        "position_fraction": rng.choice([0.1, 0.15, 0.2]),
        "stop_loss_pct": rng.choice([None, 0.02, 0.05]),
        "take_profit_pct": rng.choice([None, 0.04]),
        "target_weights": [],
        "horizon_bars": 500,
        "rationale": "bench",
        "confidence": 0.5,
    }


def walk_bars(n: int, seed: int = 7) -> BarArrays:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.00002, 0.002, n)))
    opened = np.concatenate(([100.0], close[:-1]))
    wick = 1.0 + np.abs(rng.normal(0.0, 0.001, n))
    return BarArrays.from_columns(
        "SIMA",
        START_MS + np.arange(n, dtype=np.int64) * MIN,
        MIN,
        opened,
        np.maximum(opened, close) * wick,
        np.minimum(opened, close) / wick,
        close,
        10.0 + rng.random(n),
    )


def bench_proposals(bars: int, proposals: int) -> None:
    cfg = Settings.model_validate({"symbols": {"SIMA": {}}})
    history = walk_bars(bars)
    specs = [StrategySpec.model_validate(spec_doc(k)) for k in range(proposals)]
    costs = Costs.from_settings(cfg, "SIMA")
    v = cfg.validation

    def one(spec: StrategySpec) -> Any:
        scenarios = build_scenarios(history, v.scenarios)
        return validate_strategy(
            spec, history, scenarios, costs, cfg.features, v.thresholds, unmodelled=v.unmodelled
        )

    one(specs[0])  # numba compiles here, not in the timing
    started = time.process_time()
    results = [one(s) for s in specs]
    seconds = time.process_time() - started
    ms = seconds * 1000 / proposals
    trades = [next(f.value for f in r.figures if f.name == "trades") for r in results]
    outcomes = {o: sum(r.outcome.value == o for r in results) for o in ("pass", "warn", "fail")}
    print(
        f"proposals: {proposals} on {bars:,} bars + {len(build_scenarios(history, v.scenarios))} "
        f"scenarios: {ms:.2f} ms each, {proposals / seconds:,.0f}/s on one core; "
        f"ratio to the 50 ms target {ms / TARGET_MS:.3f}"
    )
    print(f"  trades on the history: min {min(trades)}, max {max(trades)}, total {sum(trades)}")
    print(f"  verdicts: {outcomes}")


# ------------------------------------------------------------------ the flow, gate on vs off


def flow_settings(enabled: bool) -> Settings:
    return Settings.model_validate(
        {
            "symbols": {s: {} for s in SYMBOLS},
            "features": {"sma_fast": 10, "sma_slow": 30, "breakout": 20},
            "execution": {"fee_bps": "10", "slippage_bps": "5"},
            "risk": {"daily_loss_limit": "100000"},
            "gpt": {
                "model": "bench",
                "cache_dir": "/nonexistent/answers",
                "cooldown": "30m",
                "daily_budget_usd": "100000",
            },
            "validation": {"enabled": enabled, "thresholds": {"min_trades": 0}},
        }
    )


def flow_events(cfg: Settings, n: int) -> list[BarEvent]:
    rng = random.Random(11)
    out: list[BarEvent] = []
    for s, sym in enumerate(SYMBOLS):
        features = FeatureState(cfg.features, cfg.extra_features(sym))
        triggers = TriggerState(cfg.triggers)
        price = 100.0
        for k in range(n // len(SYMBOLS)):
            opened = Decimal(repr(price))
            price = max(1.0, round(price * math.exp(rng.gauss(0.0, 0.003)), 2))
            close = Decimal(repr(price))
            bar = Bar(
                symbol=sym,
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
            branch = route(signals, cfg.router)
            out.append(BarEvent(bar, fv, signals, branch, f"m#{s}", bar.end_ms, k + 1))
    return out


class InlineGpt:
    """A backtest's GPT line: every question answered at once, each with a new strategy (so
    every answer starts one, and the gate judges each)."""

    in_flight = 0

    def __init__(self, hold: bool = False) -> None:
        self.answers = 0
        self.hold = hold  # answer `hold` (no strategy: nothing for the gate to judge)

    def answer(self, request: GptRequest) -> GptAnswer:
        self.answers += 1
        doc = spec_doc(self.answers)
        doc["universe"] = [request.symbol]
        decision = GptDecision.model_validate(
            {"action": "hold", "strategy": None, "rationale": "bench", "confidence": 0.5}
            if self.hold
            else {"action": "create", "strategy": doc, "rationale": "bench", "confidence": 0.5}
        )
        call = GptCall(
            call_id=request.request_id,
            ts_ms=request.ts_ms,
            decision_id=request.decision_id,
            round=request.round,
            symbol=request.symbol,
            model="bench",
            prompt_hash="-",
            outcome=GptOutcome.OK,
        )
        return GptAnswer(request.request_id, decision, None, "", call, billed=False)

    def submit(self, request: GptRequest) -> None:
        raise AssertionError("inline only")

    def ready(self) -> list[GptAnswer]:
        return []

    def wait(self, timeout_s: float | None = None) -> None:
        return None


def run_flow(
    enabled: bool, blocks: list[BarBlock], hold: bool = False
) -> tuple[float, list[DeskRow], int]:
    desk = TradingDesk.create(flow_settings(enabled), gpt=True)
    gpt = InlineGpt(hold)
    driver = DeskDriver(desk, gpt=gpt)
    out: list[DeskRow] = []
    started = time.process_time()
    driver.run(blocks, out)
    return time.process_time() - started, out, gpt.answers


def bench_flow(bars: int, repeat: int) -> None:
    evs = flow_events(flow_settings(True), bars)
    names = tuple(evs[0].features.values)
    blocks = []
    for sym in SYMBOLS:
        mine = [e for e in evs if e.bar.symbol == sym]
        blocks += [BarBlock.of_events(names, mine[i : i + 1000]) for i in range(0, len(mine), 1000)]
    blocks.sort(key=lambda b: b.bars.end_ms[0])
    best: dict[bool, tuple[float, list[DeskRow], int]] = {}
    for _ in range(repeat):
        for enabled in (False, True):
            got = run_flow(enabled, blocks)
            if enabled not in best or got[0] < best[enabled][0]:
                best[enabled] = got
    for enabled in (False, True):
        seconds, out, answers = best[enabled]
        records = [r for r in out if isinstance(r, DecisionRecord)]
        validated = sum(
            1
            for r in records
            for rd in r.rounds
            if rd.verdict is not None
            and any(c.name.startswith("validation:") for c in rd.verdict.checks)
        )
        refused = sum(
            1
            for r in records
            for rd in r.rounds
            if rd.verdict is not None
            and any(c.name.startswith("validation:") and not c.passed for c in rd.verdict.checks)
        )
        fills = sum(isinstance(r, Fill) for r in out)
        print(
            f"flow, gate {'on ' if enabled else 'off'}: {bars / seconds:9,.0f} events/s "
            f"({seconds:.2f} s CPU)  GPT answers {answers}  rounds validated {validated} "
            f"(refused {refused})  fills {fills}  decision rows {len(records)}"
        )
    on, off = best[True], best[False]
    print(f"ratio on/off (events/s): {off[0] / on[0]:.3f}")
    judged = sum(
        1
        for r in on[1]
        if isinstance(r, DecisionRecord)
        for rd in r.rounds
        if rd.verdict is not None
        and any(c.name.startswith("validation:") for c in rd.verdict.checks)
    )
    if judged:
        print(f"  CPU per validated round: {(on[0] - off[0]) * 1000 / judged:.2f} ms (on - off)")
    # The window's upkeep alone: answers that start no strategy, gate on against off.
    kept = {e: min(run_flow(e, blocks, hold=True)[0] for _ in range(repeat)) for e in (False, True)}
    print(
        f"upkeep (GPT answers hold, nothing judged): off {bars / kept[False]:,.0f}, "
        f"on {bars / kept[True]:,.0f} events/s, ratio {kept[False] / kept[True]:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=10_000)
    parser.add_argument("--proposals", type=int, default=40)
    parser.add_argument("--flow-bars", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="flow runs of each; best counts")
    args = parser.parse_args()
    bench_proposals(args.bars, args.proposals)
    bench_flow(args.flow_bars, args.repeat)


if __name__ == "__main__":
    main()
