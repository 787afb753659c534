"""A GPT strategy trades exactly as the same strategy run by the local engine (issue 9, item 7).

The SMA(10/20) crossover is written twice: as the local engine's rules (the crossover trigger:
long on a cross up, flat on a cross down) and as a GPT answer (`sma_fast crosses_above
sma_slow` / `crosses_below`). Both desks see the same generated bars (features, triggers and
routing computed as the ingest stage does), the GPT desk gets its answers the moment it asks (a
backtest), and every fill must be the same: bar, symbol, side, quantity and price.

Two ways GPT gets asked: the crossover itself is the strategic trigger (the local run sizes it
with `strategic_fraction`), or a breakout is (the crossover stays routine, so the local engine
trades it until GPT's strategy takes over, at `target_fraction`). Prices have flat stretches so
the averages tie (the crossing rule on ties matters), a short horizon makes strategies expire
and GPT be asked again, and a cooldown of zero asks GPT on every strategic trigger.
"""

from __future__ import annotations

import math
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from models.config.settings import Settings
from models.core.commands import AskGpt
from models.core.events import BarEvent
from models.core.messages import (
    DecisionRecord,
    Fill,
)
from models.desk.desk import TradingDesk
from models.signals.features import FeatureState
from models.signals.router import route
from models.signals.triggers import TriggerState
from models.strategy.spec import GptDecision
from tests.support.builders import bar as make_bar
from tests.support.gpt import answer

D = Decimal
MIN = 60_000
T0 = 1_700_000_000_000 // MIN * MIN
SYMBOLS = ("ABC", "XYZ")
CROSS = {"kind": "crossover", "name": "sma_cross", "fast": "sma_fast", "slow": "sma_slow"}
MODEL = "stratflow-local"
BREAKOUT = {"kind": "breakout", "name": "breakout", "strategic": True}


def settings(tmp: Path, triggers: list[dict[str, Any]], controller: str, cooldown: str) -> Settings:
    return Settings.model_validate(
        {
            "symbols": {s: {} for s in SYMBOLS},
            "features": {"sma_fast": 10, "sma_slow": 20, "breakout": 15},
            "triggers": triggers,
            "execution": {"initial_cash": "100000", "fee_bps": "10", "slippage_bps": "5"},
            "strategy": {
                "controller": controller,
                "target_fraction": "0.1",
                "strategic_fraction": "0.2",
            },
            "risk": {"max_position_notional": "100000", "daily_loss_limit": "100000"},
            "gpt": {
                "model": MODEL,
                "cache_dir": str(tmp / "answers"),
                "cooldown": cooldown,
                "daily_budget_usd": "1000",
            },
            # The trading path's parity, not the gate (tests/unit/test_validation_desk.py).
            "validation": {"enabled": False},
        }
    )


def sma_cross_doc(fraction: float, horizon: int) -> dict[str, Any]:
    """The SMA(10/20) crossover as GPT writes it."""
    return {
        "action": "create",
        "strategy": {
            "name": "sma-cross",
            "version": 1,
            "universe": list(SYMBOLS),
            "entry": {"left": "sma_fast", "op": "crosses_above", "right": "sma_slow"},
            "exit": {"left": "sma_fast", "op": "crosses_below", "right": "sma_slow"},
            "position_fraction": fraction,
            "stop_loss_pct": None,
            "take_profit_pct": None,
            "target_weights": [],
            "horizon_bars": horizon,
            "rationale": "the SMA(10/20) crossover",
            "confidence": 0.6,
        },
        "rationale": "trend",
        "confidence": 0.6,
    }


def sma_cross(fraction: float, horizon: int) -> GptDecision:
    return GptDecision.model_validate(sma_cross_doc(fraction, horizon))


def closes(seed: int, n: int) -> list[float]:
    """A random walk on a cent grid with flat stretches (equal closes make equal averages)."""
    rng = random.Random(seed)
    price, out = 100.0, []
    while len(out) < n:
        if rng.random() < 0.08:
            out.extend([price] * rng.randint(5, 30))
        else:
            price = max(1.0, round(price * math.exp(rng.gauss(0.0, 0.01)), 2))
            out.append(price)
    return out[:n]


def bar_events(cfg: Settings, seed: int, n: int) -> list[BarEvent]:
    """The symbols' bars interleaved in time, through features, triggers and the router."""
    series = {s: closes(seed * 31 + i, n) for i, s in enumerate(SYMBOLS)}
    state = {s: (FeatureState(cfg.features), TriggerState(cfg.triggers)) for s in SYMBOLS}
    events: list[BarEvent] = []
    for k in range(n):
        for sym in SYMBOLS:
            close = D(repr(series[sym][k]))
            opened = D(repr(series[sym][k - 1])) if k else close
            bar = make_bar(sym, T0 + k * MIN, close, open=opened, volume=10, trades=3)
            features, triggers = state[sym]
            fv = features.update(bar)
            signals = triggers.evaluate(fv)
            events.append(BarEvent(bar, fv, signals, route(signals, cfg.router)))
    return events


def run(desk: TradingDesk, events: list[BarEvent], decision: GptDecision | None) -> list[object]:
    """Feed the bars; every question is answered at once with `decision` (a backtest)."""
    out: list[object] = []
    for event in events:
        got: list[object] = list(desk.on_bar_event(event))
        while requests := [c.request for c in got if isinstance(c, AskGpt)]:
            assert decision is not None
            out.extend(got)
            got = [x for r in requests for x in desk.on_gpt_answer(answer(r, decision))]
        out.extend(got)
    return out


def trades(out: list[object]) -> list[tuple[int, str, str, Decimal, Decimal]]:
    return [
        (f.ts_ms, f.symbol, f.side.value, f.quantity, f.price) for f in out if isinstance(f, Fill)
    ]


def controllers(out: list[object]) -> set[str]:
    return {
        r.rounds[-1].proposal.controller
        for r in out
        if isinstance(r, DecisionRecord) and r.rounds and r.orders
    }


@pytest.mark.slow  # 24 pairs of 400-bar backtests
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize(
    ("strategic", "horizon", "cooldown"),
    [
        ("crossover", 10_000, "0s"),
        ("crossover", 10_000, "10m"),
        ("crossover", 37, "0s"),
        ("breakout", 10_000, "0s"),
        ("breakout", 10_000, "10m"),
        ("breakout", 37, "10m"),
    ],
)
def test_a_gpt_sma_crossover_trades_as_the_local_engine_does(
    tmp_path: Path, seed: int, strategic: str, horizon: int, cooldown: str
) -> None:
    if strategic == "crossover":
        local_triggers = gpt_triggers = [{**CROSS, "strategic": True}]
        fraction = 0.2  # the local engine sizes a strategic decision so
    else:
        local_triggers = [{**CROSS, "strategic": False}]
        gpt_triggers = [*local_triggers, BREAKOUT]
        fraction = 0.1
    local_cfg = settings(tmp_path, local_triggers, "local", cooldown)
    gpt_cfg = settings(tmp_path, gpt_triggers, "gpt", cooldown)
    local = run(TradingDesk.create(local_cfg), bar_events(local_cfg, seed, 400), None)
    gpt_desk = TradingDesk.create(gpt_cfg, gpt=True)
    gpt = run(gpt_desk, bar_events(gpt_cfg, seed, 400), sma_cross(fraction, horizon))
    expected = trades(local)
    assert len(expected) >= 10  # the series do cross, many times
    assert trades(gpt) == expected
    # GPT was asked and its strategy placed orders itself (not only the local engine).
    assert any(isinstance(x, AskGpt) for x in gpt)
    assert "strategy" in controllers(gpt) or "gpt" in controllers(gpt)
