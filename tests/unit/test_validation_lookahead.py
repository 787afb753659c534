"""The look-ahead check: honest features pass on any bars; a feature a user registers that
peeks one bar ahead (a shifted close) is caught on the path it peeks on."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.config.settings import FeaturesConfig
from models.core.messages import Bar
from models.signals.kernels import FloatBars, Floats
from models.signals.registry import REGISTRY, FeatureKind
from models.strategy.spec import StrategySpec
from models.validation.lookahead import ENTER, cut_points, lookahead_check
from models.validation.verdicts import Outcome
from models.vectorized import features as vf
from models.vectorized.bars import BarArrays, FloatArray
from tests.support.checks import shipped, strategy, walk

CFG = FeaturesConfig()


class PeekFeature:
    """The next bar's close: honest bar by bar (it can only return this close), but its block
    method reads the block's next row, as a shifted column does."""

    def __init__(self, period: int) -> None:
        self.period = period

    def update(self, bar: Bar) -> float | None:
        return float(bar.close)

    def update_many(self, bars: FloatBars) -> Floats:
        close = bars.close
        return np.concatenate([close[1:], close[-1:]])

    def buffer_len(self) -> int:
        return 0


class EchoFeature(PeekFeature):
    """The same kind written honestly: this bar's close, bar by bar and in blocks."""

    def update_many(self, bars: FloatBars) -> Floats:
        return bars.close.copy()


def _shifted(bars: BarArrays, period: int) -> FloatArray:
    close = bars.close
    return np.concatenate([close[1:], close[-1:]])


@pytest.fixture
def peek(monkeypatch: pytest.MonkeyPatch) -> None:
    """`peek_1` registered by a user for the desk's stream only (no batch function)."""
    monkeypatch.setitem(REGISTRY, "peek", FeatureKind("peek", PeekFeature, "next close", 1))


def _peeking() -> StrategySpec:
    return strategy(
        entry={"left": "peek_1", "op": ">", "right": "close"},
        exit={"left": "peek_1", "op": "<", "right": "close"},
    )


@given(st.integers(2, 3000), st.integers(1, 20))
def test_cuts_are_bounded_spread_and_include_both_ends(n: int, count: int) -> None:
    cuts = cut_points(n, count)
    assert cuts[0] == 1 and cuts[-1] == n - 1
    assert list(cuts) == sorted(set(cuts)) and len(cuts) <= count + 4


@pytest.mark.slow  # ~0.5 s on 8 examples: the full suite runs it
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(40, 400), drift=st.floats(-0.003, 0.003))
def test_the_shipped_strategies_have_no_look_ahead_on_any_bars(
    seed: int, n: int, drift: float
) -> None:
    bars = walk(n, seed, drift)
    for spec in shipped():
        report = lookahead_check(spec, bars, CFG, cuts=6)
        assert report.result.outcome is Outcome.PASS, report.result.summary
        assert report.differences == () and report.skipped == ()


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(40, 300))
def test_every_default_feature_is_honest(seed: int, n: int) -> None:
    names = [f"{kind}_{p}" for kind, p in (("ema", 9), ("volatility", 7), ("vwap", 5))]
    names += ["sma_fast", "rsi", "volume_z", "channel_high", "drawdown", "peak_close", "atr_5"]
    spec = strategy(
        entry={
            "match": "all",
            "conditions": [{"left": x, "op": ">", "right": 0} for x in names[:5]],
        },
        exit={
            "match": "any",
            "conditions": [{"left": x, "op": "<", "right": 1} for x in names[5:]],
        },
    )
    report = lookahead_check(spec, walk(n, seed), CFG, cuts=5)
    assert report.result.outcome is Outcome.PASS, report.result.summary


# The registration is the same for every example: set once by the fixture.
@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 10_000), n=st.integers(40, 400))
def test_a_feature_that_peeks_one_bar_ahead_in_the_stream_is_caught(
    seed: int, n: int, peek: None
) -> None:
    bars = walk(n, seed)
    report = lookahead_check(_peeking(), bars, CFG, cuts=4)
    assert report.result.outcome is Outcome.FAIL
    assert report.skipped == ("peek_1",)  # no batch function: the stream path only
    first = report.differences[0]
    assert (first.path, first.name) == ("stream", "peek_1")
    # at the last bar of the cut, the value is that bar's close, the full run's the next one
    assert first.truncated == bars.close[first.bar] and first.full == bars.close[first.bar + 1]
    assert first.bar == first.cut - 1
    failed = report.result.failures[0]
    assert failed.name == "differing" and failed.value == len(report.differences)
    assert "peek_1" in report.result.summary


def test_the_honest_version_of_the_same_kind_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REGISTRY, "peek", FeatureKind("peek", EchoFeature, "this close", 1))
    report = lookahead_check(_peeking(), walk(200, 3), CFG)
    assert report.result.outcome is Outcome.PASS, report.result.summary


def test_a_shifted_batch_function_is_caught_on_the_vectorised_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The desk's classes are honest here; the vectorised function of the kind shifts."""
    monkeypatch.setitem(REGISTRY, "peek", FeatureKind("peek", EchoFeature, "this close", 1))
    batch: dict[str, Any] = dict(vf.BATCH)
    batch["peek"] = _shifted
    monkeypatch.setattr(vf, "BATCH", batch)
    monkeypatch.setattr("models.validation.lookahead.BATCH", batch)
    report = lookahead_check(_peeking(), walk(300, 5), CFG)
    assert report.result.outcome is Outcome.FAIL
    assert {d.path for d in report.differences} == {"vector"}
    names = {d.name for d in report.differences}
    assert "peek_1" in names and ENTER in names  # the signal built on it peeks too


def test_too_few_bars_is_a_warning_not_a_pass() -> None:
    (spec, *_) = shipped()
    report = lookahead_check(spec, walk(1, 0), CFG)
    assert report.result.outcome is Outcome.WARN


_KINDS = sorted(k for k in vf.BATCH if REGISTRY[k].min_period is not None)


@st.composite
def generated(draw: st.DrawFn) -> StrategySpec:
    """A strategy reading two built-in features of drawn kinds and periods."""

    def name() -> str:
        kind = draw(st.sampled_from(_KINDS))
        low = REGISTRY[kind].min_period or 1
        return f"{kind}_{draw(st.integers(low, low + 30))}"

    ops = st.sampled_from([">", "<", "crosses_above", "crosses_below"])
    first, second = name(), name()
    return strategy(
        entry={"left": first, "op": draw(ops), "right": draw(st.floats(-1, 150))},
        exit={
            "match": "any",
            "conditions": [
                {"left": second, "op": draw(ops), "right": draw(st.floats(-1, 150))},
                {"left": "close", "op": draw(ops), "right": first},
            ],
        },
    )


@settings(max_examples=25, deadline=None)
@given(spec=generated(), seed=st.integers(0, 10_000), n=st.integers(40, 300))
def test_generated_strategies_of_built_in_features_have_no_look_ahead(
    spec: StrategySpec, seed: int, n: int
) -> None:
    report = lookahead_check(spec, walk(n, seed), CFG, cuts=4)
    assert report.result.outcome is Outcome.PASS, report.result.summary
