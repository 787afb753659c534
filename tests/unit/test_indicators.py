"""Registered feature classes: names, periods, and values against pandas for any period."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.config.settings import FeaturesConfig
from models.signals.features import FeatureState, default_keys
from models.signals.indicators import MAX_PERIOD, REGISTRY, FeatureKey, parse_feature
from tests.unit.test_features import _ema, _wilder_rsi, make_frame, to_bars


def test_a_parameterised_name_parses_to_its_kind_and_period() -> None:
    assert parse_feature("sma_50") == FeatureKey("sma", 50)
    assert parse_feature("channel_high_55") == FeatureKey("channel_high", 55)
    assert parse_feature("return_1") == FeatureKey("return", 1)
    assert parse_feature("drawdown") == FeatureKey("drawdown", 0)


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("smaa_10", "unknown feature kind 'smaa'"),
        ("sma", "needs a period"),
        ("drawdown_5", "takes no period"),
        ("sma_1", "outside 2.."),
        (f"sma_{MAX_PERIOD + 1}", f"outside 2..{MAX_PERIOD}"),
        ("SMA_10", "not a feature name"),
        ("sma_-3", "not a feature name"),
    ],
)
def test_a_bad_name_gives_the_reason(name: str, says: str) -> None:
    reason = parse_feature(name)
    assert isinstance(reason, str)
    assert says in reason


def test_every_registered_kind_has_a_description_and_builds() -> None:
    bars = to_bars(make_frame(30))
    for kind, spec in REGISTRY.items():
        assert spec.description
        period = 0 if spec.min_period is None else max(spec.min_period, 5)
        ind = spec.build(period)
        values = [ind.update(b) for b in bars]
        assert any(v is not None for v in values), kind
        assert pickle.loads(pickle.dumps(ind)).buffer_len() == ind.buffer_len()


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(
    fast=st.integers(2, 40),
    slow=st.integers(2, 80),
    rsi=st.integers(2, 30),
    span=st.integers(1, 30),
    seed=st.integers(0, 10_000),
)
def test_any_period_matches_pandas(fast: int, slow: int, rsi: int, span: int, seed: int) -> None:
    """The extras a strategy asks for equal the textbook computation at every bar."""
    df = make_frame(150, seed=seed)
    names = [f"sma_{fast}", f"ema_{slow}", f"rsi_{rsi}", f"return_{span}", f"channel_low_{span}"]
    state = FeatureState(FeaturesConfig(), names)
    got = pd.DataFrame([state.update(b).values for b in to_bars(df)])
    close = df["close"]
    want = {
        f"sma_{fast}": close.rolling(fast).mean(),
        f"ema_{slow}": _ema(close, slow),
        f"rsi_{rsi}": _wilder_rsi(close, rsi),
        f"return_{span}": close / close.shift(span) - 1,
        f"channel_low_{span}": df["low"].shift(1).rolling(span).min(),
    }
    for name, series in want.items():
        ours = got[name].astype(float).to_numpy()
        theirs = series.to_numpy(dtype=float)
        assert np.array_equal(np.isnan(ours), np.isnan(theirs)), name
        ok = ~np.isnan(theirs)
        np.testing.assert_allclose(ours[ok], theirs[ok], rtol=1e-9, atol=1e-9, err_msg=name)


def test_extras_come_after_the_defaults_and_share_instances() -> None:
    cfg = FeaturesConfig()
    state = FeatureState(cfg, [f"sma_{cfg.sma_fast}", "rsi_7", "atr_14"])
    assert state.names[: len(default_keys(cfg))] == tuple(default_keys(cfg))
    assert state.names[len(default_keys(cfg)) :] == ("atr_14", "rsi_7", f"sma_{cfg.sma_fast}")
    fv = None
    for b in to_bars(make_frame(40)):
        fv = state.update(b)
    assert fv is not None
    assert fv.values["sma_fast"] == fv.values[f"sma_{cfg.sma_fast}"]


def test_an_unknown_extra_is_refused_with_its_reason() -> None:
    with pytest.raises(ValueError, match="unknown feature kind 'bogus'"):
        FeatureState(FeaturesConfig(), ["bogus_3"])


@pytest.mark.parametrize("kind", sorted(REGISTRY))
def test_the_warm_up_is_where_the_first_value_comes_on_any_moving_series(kind: str) -> None:
    from models.signals.indicators import build, warmup_bars

    spec = REGISTRY[kind]
    for period in (0,) if spec.min_period is None else (spec.min_period, 7, 30):
        key = FeatureKey(kind, period)
        for seed in (1, 2):
            ind = build(key)
            values = [ind.update(b) for b in to_bars(make_frame(80, seed=seed))]
            first = next(i for i, v in enumerate(values) if v is not None)
            assert first == warmup_bars(key), (key, seed)


def _talipp_reference(kind: str, period: int, closes: list[float]) -> list[float | None]:
    """What the feature was before it had a kernel of its own: talipp itself, fed one close at
    a time (volatility: its StdDev over the log returns of positive closes)."""
    from talipp.indicators import EMA, RSI, SMA, StdDev

    if kind == "volatility":
        std = StdDev(period)
        out: list[float | None] = []
        last: float | None = None
        prev: float | None = None
        for close in closes:
            if prev is not None and prev > 0 and close > 0:
                std.add(math.log(close / prev))
                last = std.output_values[-1]
            prev = close
            out.append(last)
        return out
    ind = {"sma": SMA, "ema": EMA, "rsi": RSI}[kind](period)
    values: list[float | None] = []
    for close in closes:
        ind.add(close)
        value = ind.output_values[-1]
        if kind == "rsi" and value is not None and ind.avg_loss[-1] == ind.avg_gain[-1] == 0:
            value = None
        values.append(None if value is None else float(value))
    return values


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["sma", "ema", "rsi", "volatility"]),
    period=st.integers(2, 40),
    seed=st.integers(0, 10_000),
    flat_run=st.integers(0, 60),
)
def test_kernels_are_talipp_bit_for_bit(kind: str, period: int, seed: int, flat_run: int) -> None:
    """The own kernels give exactly talipp's floats at every bar (not merely close to them): a
    logged feature vector must not change with the implementation. A flat stretch of closes
    exercises RSI's idle market and a zero stdev."""
    df = make_frame(300, seed=seed)
    bars = to_bars(df)
    if flat_run:
        frozen = bars[100]
        bars[100 : 100 + flat_run] = [
            frozen.model_copy(update={"start_ms": b.start_ms, "end_ms": b.end_ms})
            for b in bars[100 : 100 + flat_run]
        ]
    feature = REGISTRY[kind].build(period)
    ours = [feature.update(b) for b in bars]
    theirs = _talipp_reference(kind, period, [float(b.close) for b in bars])
    assert ours == theirs
