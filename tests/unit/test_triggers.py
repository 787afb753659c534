"""Trigger rules fire exactly on the bar a condition becomes true, and re-arm only when false."""

from __future__ import annotations

import math
import pickle
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest

from models.config.settings import (
    BreakoutTrigger,
    CrossoverTrigger,
    DrawdownTrigger,
    FeaturesConfig,
    ThresholdTrigger,
    TriggerSpec,
    VolumeSpikeTrigger,
    default_triggers,
)
from models.core.messages import Bar, Direction, FeatureVector, Signal
from models.signals.features import FEATURE_NAMES, FeatureState
from models.signals.triggers import TriggerState


def fv(i: int, close: float = 100.0, **values: float | None) -> FeatureVector:
    full: dict[str, float | None] = dict.fromkeys(FEATURE_NAMES)
    full.update(values)
    return FeatureVector(symbol="ABC", ts_ms=i * 1000, close=close, values=full)


def run(specs: list[TriggerSpec], rows: list[dict[str, Any]]) -> list[list[Signal]]:
    """Evaluate one feature vector per row; `close` in a row is the bar close."""
    state = TriggerState(specs)
    out = []
    for i, row in enumerate(rows):
        row = dict(row)
        close = row.pop("close", 100.0)
        out.append(state.evaluate(fv(i, close, **row)))
    return out


def fired_at(result: list[list[Signal]]) -> list[int]:
    return [i for i, signals in enumerate(result) for _ in signals]


def random_walk_bars(n: int, seed: int) -> tuple[pd.Series, list[Bar]]:
    rng = np.random.default_rng(seed)
    close = pd.Series(np.round(100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n))), 4))
    volume = np.round(rng.lognormal(5.0, 1.0, n), 2)
    bars = []
    for i, (c, v) in enumerate(zip(close, volume, strict=True)):
        px = Decimal(f"{c:.4f}")
        bars.append(
            Bar(
                symbol="ABC",
                start_ms=i * 60_000,
                end_ms=(i + 1) * 60_000,
                open=px,
                high=px * Decimal("1.002"),
                low=px * Decimal("0.998"),
                close=px,
                volume=Decimal(f"{v:.2f}"),
                trades=3,
                vwap=px,
            )
        )
    return close, bars


# --- crossover ---------------------------------------------------------------------------------

CROSS = CrossoverTrigger(kind="crossover", name="cross")


def test_crossover_fires_on_each_cross_only() -> None:
    rows: list[dict[str, Any]] = [
        {"sma_fast": None, "sma_slow": None},  # 0 warming up
        {"sma_fast": 9.0, "sma_slow": 10.0},  # 1 first side seen: below
        {"sma_fast": 9.5, "sma_slow": 10.0},  # 2 still below
        {"sma_fast": 10.5, "sma_slow": 10.0},  # 3 crosses above -> LONG
        {"sma_fast": 11.0, "sma_slow": 10.0},  # 4 stays above
        {"sma_fast": 10.0, "sma_slow": 10.0},  # 5 touches: no cross
        {"sma_fast": 10.2, "sma_slow": 10.0},  # 6 above again: not a new cross
        {"sma_fast": None, "sma_slow": 10.0},  # 7 gap keeps the side
        {"sma_fast": 9.0, "sma_slow": 10.0},  # 8 crosses below -> FLAT
        {"sma_fast": 10.0, "sma_slow": 10.0},  # 9 touches
        {"sma_fast": 12.0, "sma_slow": 10.0},  # 10 below -> equal -> above is a cross -> LONG
    ]
    result = run([CROSS], rows)
    assert fired_at(result) == [3, 8, 10]
    assert [result[i][0].direction for i in (3, 8, 10)] == [
        Direction.LONG,
        Direction.FLAT,
        Direction.LONG,
    ]
    s = result[3][0]
    assert s.strength == pytest.approx(0.05)
    assert s.detail == {"sma_fast": 10.5, "sma_slow": 10.0}
    assert (s.trigger, s.kind, s.strategic, s.symbol, s.ts_ms) == (
        "cross",
        "crossover",
        False,
        "ABC",
        3000,
    )
    assert result[10][0].strength == pytest.approx(0.2)


def test_crossover_never_fires_on_first_observation() -> None:
    assert fired_at(run([CROSS], [{"sma_fast": 11.0, "sma_slow": 10.0}] * 3)) == []


def test_crossover_of_close_and_a_feature() -> None:
    spec = CrossoverTrigger(kind="crossover", name="px", fast="close", slow="ema", strategic=True)
    rows = [{"close": 99.0, "ema": 100.0}, {"close": 101.0, "ema": 100.0}]
    result = run([spec], rows)
    assert fired_at(result) == [1]
    assert result[1][0].strategic is True
    assert result[1][0].detail == {"close": 101.0, "ema": 100.0}


# --- breakout ----------------------------------------------------------------------------------

BREAK = BreakoutTrigger(kind="breakout", name="brk")
CHANNEL = {"channel_high": 100.0, "channel_low": 90.0, "volatility": 0.01}


def test_breakout_edges_both_ways() -> None:
    closes = [95, 101, 102, 99, 103, 89, 88, 91, 85, 85]
    rows = [{"close": float(c), **CHANNEL} for c in closes]
    rows.insert(0, {"close": 200.0})  # channel not warm yet: nothing to break
    result = run([BREAK], rows)
    assert fired_at(result) == [2, 5, 6, 9]
    assert [result[i][0].direction for i in (2, 5, 6, 9)] == [
        Direction.LONG,
        Direction.LONG,
        Direction.FLAT,
        Direction.FLAT,
    ]
    up = result[2][0]
    assert up.strength == pytest.approx(math.log(101 / 100) / 0.01)
    assert up.strategic is True
    assert up.detail == {"close": 101.0, **CHANNEL}
    assert result[6][0].strength == pytest.approx(math.log(90 / 89) / 0.01)


def test_breakout_strength_without_volatility_is_relative_distance() -> None:
    rows = [{"close": 110.0, "channel_high": 100.0, "channel_low": 90.0}]
    (signal,) = run([BREAK], rows)[0]
    assert signal.strength == pytest.approx(math.log(1.1))


def test_breakout_first_evaluable_bar_can_fire() -> None:
    assert fired_at(run([BREAK], [{"close": 101.0, **CHANNEL}])) == [0]


# --- volume spike ------------------------------------------------------------------------------

SPIKE = VolumeSpikeTrigger(kind="volume_spike", name="spike", z=3.0)


def test_volume_spike_direction_and_rearm() -> None:
    rows: list[dict[str, Any]] = [
        {"volume_z": 1.0, "return_1": 0.01},  # 0
        {"volume_z": 3.5, "return_1": -0.01},  # 1 fires FLAT (falling bar)
        {"volume_z": 4.0, "return_1": 0.02},  # 2 still spiking: no
        {"volume_z": 2.0, "return_1": 0.0},  # 3 re-arms
        {"volume_z": 3.0, "return_1": 0.0},  # 4 fires LONG (>= z, flat return counts as up)
        {"volume_z": None, "return_1": 0.0},  # 5 unknown: does not re-arm
        {"volume_z": 5.0, "return_1": 0.0},  # 6 no
        {"volume_z": -1.0, "return_1": 0.0},  # 7 re-arms
        {"volume_z": 6.0, "return_1": 0.03},  # 8 fires LONG
    ]
    result = run([SPIKE], rows)
    assert fired_at(result) == [1, 4, 8]
    assert [result[i][0].direction for i in (1, 4, 8)] == [
        Direction.FLAT,
        Direction.LONG,
        Direction.LONG,
    ]
    assert [result[i][0].strength for i in (1, 4, 8)] == [3.5, 3.0, 6.0]
    assert result[1][0].detail == {"volume_z": 3.5, "return_1": -0.01}


# --- drawdown ----------------------------------------------------------------------------------

DD = DrawdownTrigger(kind="drawdown", name="dd", pct=0.1)


def test_drawdown_fires_once_per_episode() -> None:
    dds = [0.0, 0.05, 0.1, 0.2, 0.15, 0.09, 0.15, 0.3]
    result = run([DD], [{"drawdown": d, "peak_close": 100.0} for d in dds])
    assert fired_at(result) == [2, 6]
    assert all(result[i][0].direction is Direction.FLAT for i in (2, 6))
    assert result[2][0].strength == pytest.approx(1.0)
    assert result[6][0].strength == pytest.approx(1.5)
    assert result[6][0].detail == {"drawdown": 0.15, "peak_close": 100.0, "close": 100.0}


# --- threshold ---------------------------------------------------------------------------------


def test_threshold_below() -> None:
    spec = ThresholdTrigger(kind="threshold", name="oversold", feature="rsi", below=25.0)
    rsi = [30.0, 24.0, 20.0, 25.0, 26.0, 10.0, None, 12.0]
    result = run([spec], [{"rsi": r} for r in rsi])
    assert fired_at(result) == [1, 5]
    assert result[1][0].direction is Direction.LONG
    assert result[1][0].strength == pytest.approx(1 / 25)
    assert result[5][0].strength == pytest.approx(15 / 25)
    assert result[1][0].detail == {"rsi": 24.0, "above": None, "below": 25.0}


def test_threshold_above_with_direction() -> None:
    spec = ThresholdTrigger(
        kind="threshold", name="hot", feature="rsi", above=80.0, direction="short", strategic=True
    )
    rsi = [80.0, 81.0, 90.0, 79.0, 85.0]
    result = run([spec], [{"rsi": r} for r in rsi])
    assert fired_at(result) == [1, 4]
    assert result[1][0].direction is Direction.SHORT
    assert result[1][0].strategic is True


def test_threshold_on_close_and_on_zero_bound() -> None:
    price = ThresholdTrigger(kind="threshold", name="px", feature="close", above=150.0)
    ret = ThresholdTrigger(
        kind="threshold", name="down", feature="return_1", below=0.0, direction="flat"
    )
    rows = [
        {"close": 140.0, "return_1": 0.01},
        {"close": 151.0, "return_1": -0.02},
    ]
    result = run([price, ret], rows)
    assert [s.trigger for s in result[1]] == ["px", "down"]  # configuration order
    assert result[1][1].strength == pytest.approx(0.02)  # zero bound: absolute distance


# --- building ----------------------------------------------------------------------------------


def test_unknown_threshold_feature_is_rejected_at_build() -> None:
    spec = ThresholdTrigger(kind="threshold", name="typo", feature="rsii", below=30.0)
    with pytest.raises(ValueError, match=r"'typo'.*'rsii'.*sma_fast, sma_slow, ema, rsi"):
        TriggerState([spec])


@pytest.mark.parametrize("field", ["fast", "slow"])
def test_unknown_crossover_feature_is_rejected_at_build(field: str) -> None:
    spec = CrossoverTrigger(kind="crossover", name="x", **{field: "macd"})
    with pytest.raises(ValueError, match=rf"'x'.*'macd'.*{field!r}.*valid features: .*return_1"):
        TriggerState([CROSS, spec])


def test_crossover_of_a_feature_with_itself_is_rejected() -> None:
    with pytest.raises(ValueError, match="both 'ema'"):
        TriggerState([CrossoverTrigger(kind="crossover", name="x", fast="ema", slow="ema")])


def test_default_triggers_build_and_keep_order() -> None:
    specs = default_triggers()
    assert TriggerState(specs).specs == specs
    assert TriggerState([]).evaluate(fv(0)) == []


# --- state -------------------------------------------------------------------------------------


def test_pickle_keeps_edge_memory() -> None:
    specs: list[TriggerSpec] = [CROSS, DD, SPIKE]
    state = TriggerState(specs)
    assert state.evaluate(fv(0, sma_fast=1.0, sma_slow=2.0, drawdown=0.2, volume_z=4.0))
    restored = pickle.loads(pickle.dumps(state))
    # Conditions still true after recovery: nothing re-fires; the cross is still detected.
    again = fv(1, sma_fast=3.0, sma_slow=2.0, drawdown=0.3, volume_z=5.0)
    assert [s.trigger for s in restored.evaluate(again)] == ["cross"]
    assert [s.trigger for s in state.evaluate(again)] == ["cross"]


def test_features_to_triggers_end_to_end() -> None:
    """The crossover bars match an independent pandas computation on a real feature stream."""
    cfg = FeaturesConfig(sma_fast=5, sma_slow=20)
    close, bars = random_walk_bars(2000, seed=21)
    features = FeatureState(cfg)
    triggers = TriggerState(default_triggers())
    restored: TriggerState | None = None
    fired: list[Signal] = []
    for i, bar in enumerate(bars):
        vector = features.update(bar)
        if i == 1000:  # a recovery in the middle must not change what fires afterwards
            restored = pickle.loads(pickle.dumps(triggers))
        signals = triggers.evaluate(vector)
        if restored is not None:
            assert restored.evaluate(vector) == signals
        fired.extend(signals)
    assert {s.kind for s in fired} >= {"crossover", "breakout"}
    for s in fired:
        assert math.isfinite(s.strength) and s.strength >= 0

    diff = close.rolling(5).mean() - close.rolling(20).mean()
    side = pd.Series(np.sign(diff.to_numpy())).replace(0.0, np.nan).ffill()
    crosses = side.ne(side.shift()) & side.notna() & side.shift().notna()
    expected = [int(i) + 1 for i in np.flatnonzero(crosses.to_numpy())]  # ts_ms = bar end
    got = [s.ts_ms // 60_000 for s in fired if s.kind == "crossover"]
    assert got == expected and len(got) > 10
