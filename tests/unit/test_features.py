"""FeatureState against independent pandas/numpy computations of the same series."""

from __future__ import annotations

import math
import pickle
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from models.config.settings import FeaturesConfig
from models.core.messages import Bar, FeatureVector
from models.signals.features import FEATURE_NAMES, FeatureState

INTERVAL_MS = 60_000


def _dec(x: float) -> Decimal:
    return Decimal(f"{x:.4f}")


def make_frame(n: int, seed: int = 7, zero_volume_every: int = 0) -> pd.DataFrame:
    """A random-walk OHLCV series, already rounded to the Decimal precision the bars carry."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, n)))
    open_ = np.concatenate(([100.0], close[:-1]))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.005, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.005, n))
    volume = rng.uniform(10, 1000, n)
    if zero_volume_every:
        volume[::zero_volume_every] = 0.0
    vwap = low + (high - low) * rng.uniform(0, 1, n)
    df = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume, "vwap": vwap}
    )
    return df.map(lambda x: float(_dec(x)))


def to_bars(df: pd.DataFrame, symbol: str = "ABC") -> list[Bar]:
    bars = []
    rows: list[list[float]] = (
        df[["open", "high", "low", "close", "volume", "vwap"]].to_numpy().tolist()
    )
    for i, (open_, high, low, close, volume, vwap) in enumerate(rows):
        bars.append(
            Bar(
                symbol=symbol,
                start_ms=i * INTERVAL_MS,
                end_ms=(i + 1) * INTERVAL_MS,
                open=_dec(open_),
                high=_dec(high),
                low=_dec(low),
                close=_dec(close),
                volume=_dec(volume),
                trades=0 if volume == 0 else 5,
                vwap=_dec(vwap),
            )
        )
    return bars


def run(cfg: FeaturesConfig, bars: list[Bar]) -> list[FeatureVector]:
    state = FeatureState(cfg)
    return [state.update(b) for b in bars]


def _ema(close: pd.Series, n: int) -> pd.Series:
    out = [math.nan] * len(close)
    alpha = 2.0 / (n + 1)
    values = close.to_numpy()
    prev = float(np.mean(values[:n]))
    out[n - 1] = prev
    for i in range(n, len(values)):
        prev = alpha * values[i] + (1 - alpha) * prev
        out[i] = prev
    return pd.Series(out)


def _wilder_rsi(close: pd.Series, n: int) -> pd.Series:
    change = close.diff().to_numpy()
    gain = np.where(change > 0, change, 0.0)
    loss = np.where(change < 0, -change, 0.0)
    out = [math.nan] * len(close)
    avg_gain = float(np.mean(gain[1 : n + 1]))
    avg_loss = float(np.mean(loss[1 : n + 1]))
    for i in range(n, len(close)):
        if i > n:
            avg_gain = (avg_gain * (n - 1) + gain[i]) / n
            avg_loss = (avg_loss * (n - 1) + loss[i]) / n
        out[i] = 100.0 - 100.0 / (1 + avg_gain / avg_loss) if avg_loss else 100.0
    return pd.Series(out)


def expected_frame(df: pd.DataFrame, cfg: FeaturesConfig) -> pd.DataFrame:
    close, vol = df["close"], df["volume"]
    prev_vol = vol.shift(1)
    z_mean = prev_vol.rolling(cfg.volume_z).mean()
    z_std = prev_vol.rolling(cfg.volume_z).std(ddof=0)
    pv_sum = (df["vwap"] * vol).rolling(cfg.vwap).sum()
    v_sum = vol.rolling(cfg.vwap).sum()
    vwap = (pv_sum / v_sum).where(v_sum > 0, close).where(v_sum.notna())
    peak = close.cummax()
    return pd.DataFrame(
        {
            "sma_fast": close.rolling(cfg.sma_fast).mean(),
            "sma_slow": close.rolling(cfg.sma_slow).mean(),
            "ema": _ema(close, cfg.ema),
            "rsi": _wilder_rsi(close, cfg.rsi),
            "volatility": np.log(close).diff().rolling(cfg.volatility).std(ddof=0),
            "vwap": vwap,
            "volume_z": ((vol - z_mean) / z_std).where(z_std > 1e-9),
            "channel_high": df["high"].shift(1).rolling(cfg.breakout).max(),
            "channel_low": df["low"].shift(1).rolling(cfg.breakout).min(),
            "peak_close": peak,
            "drawdown": 1 - close / peak,
            "return_1": close.pct_change(),
        }
    )


def assert_matches(got: list[FeatureVector], want: pd.DataFrame) -> None:
    assert len(got) == len(want)
    for i, fv in enumerate(got):
        assert set(fv.values) == set(FEATURE_NAMES)
        for name in FEATURE_NAMES:
            expected = want[name].iloc[i]
            actual = fv.values[name]
            if pd.isna(expected):
                assert actual is None, f"bar {i} {name}: expected None, got {actual}"
            else:
                assert actual == pytest.approx(expected, rel=1e-9, abs=1e-9), f"bar {i} {name}"


@pytest.mark.slow  # against pandas, per configuration
@pytest.mark.parametrize(
    "cfg",
    [
        FeaturesConfig(),
        FeaturesConfig(
            sma_fast=2, sma_slow=3, ema=2, rsi=2, volatility=2, vwap=1, volume_z=3, breakout=2
        ),
        FeaturesConfig(
            sma_fast=5, sma_slow=50, ema=9, rsi=7, volatility=30, vwap=5, volume_z=10, breakout=55
        ),
    ],
)
def test_matches_pandas_reference(cfg: FeaturesConfig) -> None:
    # 400 bars crosses several talipp purges, so trimming must not change any value.
    df = make_frame(400)
    got = run(cfg, to_bars(df))
    assert_matches(got, expected_frame(df, cfg))


def test_vector_identity_fields() -> None:
    df = make_frame(3)
    got = run(FeaturesConfig(), to_bars(df, symbol="BTC/USD"))
    assert [fv.symbol for fv in got] == ["BTC/USD"] * 3
    assert [fv.ts_ms for fv in got] == [INTERVAL_MS, 2 * INTERVAL_MS, 3 * INTERVAL_MS]
    assert [fv.close for fv in got] == list(df["close"])
    assert tuple(got[0].values) == FEATURE_NAMES


def test_warm_up_boundaries() -> None:
    cfg = FeaturesConfig()  # sma_fast 10, sma_slow 30, ema 20, rsi 14, others 20
    got = run(cfg, to_bars(make_frame(40)))
    first_value = {
        name: next(i for i, fv in enumerate(got) if fv.values[name] is not None)
        for name in FEATURE_NAMES
    }
    assert first_value == {
        "sma_fast": 9,
        "sma_slow": 29,
        "ema": 19,
        "rsi": 14,
        "volatility": 20,
        "vwap": 19,
        "volume_z": 20,
        "channel_high": 20,
        "channel_low": 20,
        "peak_close": 0,
        "drawdown": 0,
        "return_1": 1,
    }
    # Once warm, a value stays available on a normal series.
    for name, start in first_value.items():
        assert all(fv.values[name] is not None for fv in got[start:]), name


def test_zero_volume_bars() -> None:
    cfg = FeaturesConfig(vwap=3, volume_z=3)
    df = make_frame(60, zero_volume_every=4)
    df.loc[10:20, "volume"] = 0.0  # long enough for whole windows of nothing traded
    got = run(cfg, to_bars(df))
    assert_matches(got, expected_frame(df, cfg))
    # An all-zero window falls back to the close; constant previous volumes give no z-score.
    for i in range(12, 21):
        assert got[i].values["vwap"] == pytest.approx(df["close"].iloc[i])
    for i in range(13, 22):  # the previous three volumes are all zero
        assert got[i].values["volume_z"] is None
    assert got[24].values["volume_z"] is not None


def test_flat_prices_give_finite_values() -> None:
    cfg = FeaturesConfig(sma_fast=2, sma_slow=3, ema=2, rsi=3, volatility=3, volume_z=3)
    bar = to_bars(make_frame(1))[0]
    state = FeatureState(cfg)
    for i in range(30):
        fv = state.update(bar.model_copy(update={"end_ms": (i + 1) * INTERVAL_MS}))
    assert fv.values["volatility"] == 0.0
    assert fv.values["rsi"] is None  # nothing moved: neither overbought nor oversold
    assert fv.values["volume_z"] is None
    assert fv.values["drawdown"] == 0.0
    assert fv.values["return_1"] == 0.0
    for v in fv.values.values():
        assert v is None or math.isfinite(v)


def test_pickle_roundtrip_mid_stream() -> None:
    cfg = FeaturesConfig()
    bars = to_bars(make_frame(1200, seed=11))
    state = FeatureState(cfg)
    for b in bars[:537]:  # past several purges, mid-window
        state.update(b)
    restored = pickle.loads(pickle.dumps(state))
    assert isinstance(restored, FeatureState)
    for b in bars[537:]:
        assert restored.update(b) == state.update(b)
    assert restored.bars_seen == state.bars_seen == len(bars)


def test_pickle_roundtrip_during_warm_up() -> None:
    bars = to_bars(make_frame(80, seed=3))
    state = FeatureState(FeaturesConfig())
    for b in bars[:12]:
        state.update(b)
    restored = pickle.loads(pickle.dumps(state))
    for b in bars[12:]:
        assert restored.update(b) == state.update(b)


@pytest.mark.slow  # 100,000 bars
def test_memory_bounded_over_100k_bars() -> None:
    cfg = FeaturesConfig()
    template = to_bars(make_frame(1000, seed=5))
    state = FeatureState(cfg)
    bound = max(cfg.sma_slow, cfg.ema, cfg.rsi, cfg.volatility) + 2 + 64 + 1
    sizes = []
    for i in range(100_000):
        state.update(template[i % len(template)])
        if i % 10_000 == 0:
            sizes.append(state.max_buffer_len())
    sizes.append(state.max_buffer_len())
    assert max(sizes) <= bound
    assert len(pickle.dumps(state)) < 50_000
