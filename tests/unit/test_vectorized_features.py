"""Batch features equal the incremental feature classes bar by bar; conditions over columns
equal the compiler's; the compiled loops equal their Python originals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.config.settings import FeaturesConfig
from models.signals import crossing
from models.signals.indicators import REGISTRY, FeatureKey, build
from models.vectorized import jit
from models.vectorized.bars import BarArrays
from models.vectorized.conditions import crosses
from models.vectorized.features import BATCH, compute, feature_arrays

MIN = 60_000
# volatility squares with `**2` in talipp (libm pow), numpy with x * x: the last bit differs
# now and then (models/vectorized/features.py); every other kind is bit for bit.
REL = {"volatility": 1e-12}


@st.composite
def bar_columns(draw: st.DrawFn) -> BarArrays:
    n = draw(st.integers(0, 160))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    steps = rng.choice([-1.0, 0.0, 0.0, 1.0], size=n) * np.round(rng.random(n) * 3, 2)
    close = np.round(np.abs(50 + np.cumsum(steps)) + draw(st.sampled_from([0.0, 0.01])), 2)
    open_ = np.round(np.concatenate((close[:1], close[:-1])) + rng.standard_normal(n) * 0.2, 2)
    high = np.maximum(open_, close) + np.round(rng.random(n), 2)
    low = np.minimum(open_, close) - np.round(rng.random(n), 2)
    # Runs of equal volumes (constant windows) and zero volume both occur.
    volume = rng.choice([0.0, 3.0, 3.0, 7.0, 12.5], size=n)
    return BarArrays.from_columns(
        "AAA", np.arange(n) * MIN, MIN, open_, high, low, close, volume, (high + low) / 2
    )


def incremental(key: FeatureKey, bars: BarArrays) -> np.ndarray:
    ind = build(key)
    return np.array(
        [np.nan if (v := ind.update(b)) is None else v for b in bars.to_bars()], dtype=np.float64
    )


def test_every_registered_kind_has_a_batch_function() -> None:
    assert set(BATCH) == set(REGISTRY)


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(bars=bar_columns(), period=st.integers(1, 30))
def test_batch_features_equal_the_classes_bar_by_bar(bars: BarArrays, period: int) -> None:
    for kind, spec in REGISTRY.items():
        if spec.min_period is None:
            p = 0
        elif period < spec.min_period:
            continue
        else:
            p = period
        key = FeatureKey(kind, p)
        want, got = incremental(key, bars), compute(key, bars)
        assert np.array_equal(np.isnan(want), np.isnan(got)), kind
        if kind in REL:
            np.testing.assert_allclose(got, want, rtol=REL[kind], equal_nan=True)
        else:
            assert np.array_equal(want, got, equal_nan=True), (kind, p)


def test_default_names_resolve_through_the_configuration() -> None:
    rng = np.random.default_rng(1)
    close = 100 + np.cumsum(rng.standard_normal(80))
    bars = BarArrays.from_columns(
        "AAA", np.arange(80) * MIN, MIN, close, close + 1, close - 1, close, np.ones(80)
    )
    cfg = FeaturesConfig(sma_fast=4, sma_slow=9)
    cols = feature_arrays(["sma_fast", "sma_4", "close", "channel_high"], bars, cfg)
    assert cols["sma_fast"] is cols["sma_4"]
    assert cols["close"] is bars.close
    assert np.array_equal(
        cols["channel_high"],
        compute(FeatureKey("channel_high", cfg.breakout), bars),
        equal_nan=True,
    )
    with pytest.raises(ValueError, match="unknown feature kind"):
        feature_arrays(["smaa_3"], bars, cfg)


values = st.one_of(st.none(), st.sampled_from([1.0, 2.0, 2.0, 3.0]))


@pytest.mark.slow
@given(left=st.lists(values, max_size=40), right=st.lists(values, max_size=40))
def test_crosses_follow_the_one_definition(
    left: list[float | None], right: list[float | None]
) -> None:
    n = min(len(left), len(right))
    last = crossing.UNKNOWN
    want_above, want_below = [], []
    for lv, rv in zip(left[:n], right[:n], strict=True):
        cross, last = crossing.step(last, lv, rv)
        want_above.append(cross == crossing.ABOVE)
        want_below.append(cross == crossing.BELOW)
    la = np.array([np.nan if v is None else v for v in left[:n]], dtype=np.float64)
    ra = np.array([np.nan if v is None else v for v in right[:n]], dtype=np.float64)
    assert crosses(la, ra, True).tolist() == want_above
    assert crosses(la, ra, False).tolist() == want_below


@pytest.mark.skipif(not jit.JIT, reason="numba is not installed: only the Python loops exist")
@settings(max_examples=25, deadline=None)
@given(bars=bar_columns(), period=st.integers(2, 20), seed=st.integers(0, 1000))
def test_compiled_loops_equal_their_python_originals(
    bars: BarArrays, period: int, seed: int
) -> None:
    for fn in (jit.ema, jit.rsi):
        assert np.array_equal(
            fn(bars.close, period), fn(bars.close, period, use_jit=False), equal_nan=True
        )
    assert np.array_equal(
        jit.atr(bars.high, bars.low, bars.close, period),
        jit.atr(bars.high, bars.low, bars.close, period, use_jit=False),
        equal_nan=True,
    )
    rng = np.random.default_rng(seed)
    enter = rng.random(len(bars)) < 0.2
    leave = rng.random(len(bars)) < 0.2
    runs = [
        jit.trade_loop(
            bars.open,
            bars.close,
            enter,
            leave,
            fraction=0.9,
            stop_loss=0.02,
            take_profit=None,
            fee_rate=0.001,
            slip=0.0005,
            lot=1.0,
            cash=10_000.0,
            min_cash=0.0,
            use_jit=use_jit,
        )
        for use_jit in (True, False)
    ]
    for a, b in zip(*runs, strict=True):
        assert np.array_equal(a, b)
