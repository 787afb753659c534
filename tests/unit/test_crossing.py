"""One meaning of "crosses" (issue 9, item 8): models/signals/crossing.py, the crossover trigger
and a
GPT strategy's crosses_above / crosses_below all agree with an independent reference on
arbitrary sequences with ties and missing values, and a strategy warmed with earlier bars
crosses exactly where one that ran through them does."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.config.settings import CrossoverTrigger
from models.core.messages import Direction, FeatureVector
from models.signals import crossing
from models.signals.triggers import TriggerState
from models.strategy.compiler import CompiledStrategy, compile_strategy
from models.strategy.spec import StrategySpec

Obs = tuple[float | None, float | None]

# Few distinct values, so ties and returns to the same level are common.
values = st.one_of(st.none(), st.sampled_from([99.0, 100.0, 101.0]))
sequences = st.lists(st.tuples(values, values), max_size=40)


def reference(seq: list[Obs]) -> list[int]:
    """+1 where left crosses above right, -1 below, 0 none: this bar's values differ and the
    nearest earlier bar whose values differed had them the other way round."""
    out: list[int] = []
    for i, (left, right) in enumerate(seq):
        cross = 0
        if left is not None and right is not None and left != right:
            for earlier_left, earlier_right in reversed(seq[:i]):
                if earlier_left is None or earlier_right is None or earlier_left == earlier_right:
                    continue
                if (earlier_left < earlier_right) and left > right:
                    cross = 1
                elif (earlier_left > earlier_right) and left < right:
                    cross = -1
                break
        out.append(cross)
    return out


def fv(i: int, left: float | None, right: float | None) -> FeatureVector:
    return FeatureVector(
        symbol="ABC", ts_ms=1_000 * (i + 1), close=100.0, values={"ema": left, "vwap": right}
    )


def strategy(op: str) -> CompiledStrategy:
    """Buys when `ema <op> vwap`; never exits (rsi is never known here)."""
    spec = StrategySpec.model_validate(
        {
            "name": "x",
            "version": 1,
            "universe": ["ABC"],
            "entry": {"left": "ema", "op": op, "right": "vwap"},
            "exit": {"left": "rsi", "op": ">", "right": 1000.0},
            "position_fraction": 0.1,
            "stop_loss_pct": None,
            "take_profit_pct": None,
            "target_weights": [],
            "horizon_bars": 100,
            "rationale": "",
            "confidence": 0.5,
        }
    )
    compiled = compile_strategy(spec, ["ABC"])
    assert isinstance(compiled, CompiledStrategy)
    return compiled


def strategy_crosses(seq: list[Obs], start: int = 0) -> list[int]:
    """Crosses as GPT strategies see them, on bars from `start`; earlier bars only warm."""
    above, below = strategy("crosses_above"), strategy("crosses_below")
    history = [fv(i, left, right) for i, (left, right) in enumerate(seq)]
    for s in (above, below):
        s.warm("ABC", history[:start])
    out: list[int] = []
    for bar in history[start:]:
        up = above.on_bar("ABC", bar, Decimal(0), None)
        down = below.on_bar("ABC", bar, Decimal(0), None)
        out.append(1 if up else -1 if down else 0)
    return out


def trigger_crosses(seq: list[Obs]) -> list[int]:
    spec = CrossoverTrigger(kind="crossover", name="x", fast="ema", slow="vwap")
    state = TriggerState([spec])
    out: list[int] = []
    for i, (left, right) in enumerate(seq):
        signals = state.evaluate(fv(i, left, right))
        out.append(0 if not signals else 1 if signals[0].direction is Direction.LONG else -1)
    return out


def step_crosses(seq: list[Obs]) -> list[int]:
    last, out = crossing.UNKNOWN, []
    for left, right in seq:
        cross, last = crossing.step(last, left, right)
        out.append(cross)
    return out


@pytest.mark.slow  # 300 generated sequences
@settings(max_examples=300, deadline=None)
@given(sequences)
def test_every_crosses_agrees_with_the_reference(seq: list[Obs]) -> None:
    expected = reference(seq)
    assert step_crosses(seq) == expected
    assert trigger_crosses(seq) == expected
    assert strategy_crosses(seq) == expected


@settings(max_examples=200, deadline=None)
@given(sequences, st.integers(min_value=0, max_value=40))
def test_a_warmed_strategy_crosses_where_a_running_one_does(seq: list[Obs], start: int) -> None:
    start = min(start, len(seq))
    assert strategy_crosses(seq, start) == reference(seq)[start:]


@pytest.mark.parametrize(
    ("seq", "expected"),
    [
        ([(99.0, 100.0), (100.0, 100.0), (101.0, 100.0)], [0, 0, 1]),  # below, tie, above
        ([(101.0, 100.0), (100.0, 100.0), (101.0, 100.0)], [0, 0, 0]),  # above, tie, above
        ([(101.0, 100.0), (100.0, 100.0), (99.0, 100.0)], [0, 0, -1]),  # above, tie, below
        ([(99.0, 100.0), (100.0, 100.0), (99.0, 100.0)], [0, 0, 0]),  # below, tie, below
        ([(100.0, 100.0), (101.0, 100.0)], [0, 0]),  # no strict side before: no cross
        ([(99.0, 100.0), (None, 100.0), (101.0, 100.0)], [0, 0, 1]),  # unknown keeps the side
        ([(99.0, 100.0), (100.0, 100.0), (100.0, 100.0), (101.0, 100.0)], [0, 0, 0, 1]),
    ],
)
def test_ties_keep_the_last_strict_side(seq: list[Obs], expected: list[int]) -> None:
    assert reference(seq) == expected
    assert step_crosses(seq) == expected
    assert trigger_crosses(seq) == expected
    assert strategy_crosses(seq) == expected


def test_nan_is_not_a_side() -> None:
    nan = math.nan
    assert crossing.strict_side(nan, 1.0) == crossing.UNKNOWN
    assert crossing.step(crossing.BELOW, nan, 1.0) == (crossing.UNKNOWN, crossing.BELOW)
    assert crossing.step(crossing.BELOW, 2.0, 1.0) == (crossing.ABOVE, crossing.ABOVE)
