"""The recursive check: a window feature (SMA, channel) does not depend on the warm-up; a
seeded recurrence (EMA, RSI) does, so a strategy trading it as soon as it has a value is
caught, and passes with the warm-up the check says it needs."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.config.settings import FeaturesConfig
from models.signals.indicators import EmaFeature
from models.signals.registry import REGISTRY, FeatureKind
from models.strategy.spec import StrategySpec
from models.validation.recursive import MIN_HISTORY, ladder, recursive_check, strategy_warmup
from models.validation.verdicts import Outcome
from tests.support.checks import strategy, walk

CFG = FeaturesConfig()


def _reading(name: str) -> StrategySpec:
    return strategy(
        entry={"left": "close", "op": "crosses_above", "right": name},
        exit={"left": "close", "op": "crosses_below", "right": name},
    )


@given(st.integers(1, 500), st.integers(1, 5000))
def test_the_ladder_doubles_up_to_the_reference(first: int, longest: int) -> None:
    steps = ladder(first, longest)
    assert steps[-1] == longest and steps[0] == min(first, longest)
    assert all(b == 2 * a for a, b in pairwise(steps[:-1]))


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    kind=st.sampled_from(["sma", "channel_high", "channel_low", "vwap", "return"]),
    period=st.integers(2, 60),
    extra=st.integers(0, 400),
)
def test_window_features_do_not_depend_on_the_warm_up(
    seed: int, kind: str, period: int, extra: int
) -> None:
    spec = _reading(f"{kind}_{period}")
    # enough history to measure (MIN_HISTORY warm-ups), whatever the period
    report = recursive_check(spec, walk(MIN_HISTORY * period + 50 + extra, seed), CFG)
    assert report.result.outcome is Outcome.PASS, report.result.summary
    (dep,) = report.features
    assert dep.needed == report.warmup == strategy_warmup(spec, CFG)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    kind=st.sampled_from(["ema", "rsi"]),
    period=st.integers(5, 50),
    extra=st.integers(0, 300),
)
def test_an_ema_or_rsi_traded_from_its_first_value_is_caught(
    seed: int, kind: str, period: int, extra: int
) -> None:
    name = f"{kind}_{period}"
    spec = _reading(name) if kind == "ema" else _rsi(name)
    bars = walk(40 * period + extra, seed)
    report = recursive_check(spec, bars, CFG)
    assert report.result.outcome is Outcome.FAIL
    (dep,) = report.features
    judged = next(f for f in report.result.failures if f.name == f"{name}:difference")
    assert judged.value is not None and judged.value > report.tolerance
    assert dep.needed is not None and dep.needed > report.warmup
    # with the warm-up it says it needs, the same strategy passes
    again = recursive_check(spec, bars, CFG, warmup=dep.needed)
    assert again.result.outcome is Outcome.PASS, again.result.summary


def _rsi(name: str) -> StrategySpec:
    return strategy(
        entry={"left": name, "op": "crosses_below", "right": 30},
        exit={"left": name, "op": "crosses_above", "right": 55},
    )


def test_a_warm_up_beyond_the_history_is_a_warning() -> None:
    report = recursive_check(_reading("ema_50"), walk(120, 1), CFG)
    assert report.result.outcome is Outcome.WARN
    assert "too few" in report.result.summary


def test_the_highest_close_since_the_start_never_converges() -> None:
    spec = strategy(
        entry={"left": "drawdown", "op": ">", "right": 0.1},
        exit={"left": "drawdown", "op": "<", "right": 0.01},
    )
    report = recursive_check(spec, walk(2000, 4, drift=-0.0005), CFG)
    assert report.result.outcome is Outcome.FAIL


def test_a_kind_a_user_registers_is_measured_on_the_desks_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The built-in EMA class under a name without a batch function: measured through the
    stream, it gives the vectorised path's differences for `ema_20`."""
    monkeypatch.setitem(REGISTRY, "myema", FeatureKind("myema", EmaFeature, "an EMA", 2))
    bars = walk(700, 9)
    mine = recursive_check(_reading("myema_20"), bars, CFG)
    built_in = recursive_check(_reading("ema_20"), bars, CFG)
    assert mine.result.outcome is Outcome.FAIL
    (a,), (b,) = mine.features, built_in.features
    assert a.warmups == b.warmups and a.needed == b.needed
    assert a.differences == pytest.approx(b.differences, rel=1e-9, abs=1e-15)
