"""Every registered feature kind (`models.signals.indicators.REGISTRY`) over a whole column.

One function per kind, `(bars, period) -> float64 array`, NaN where the incremental class gives
None (warm-up, undefined). The values are the *same floats* the classes compute, not merely
close ones, because a strategy compares them with `>` and `crosses_above`: a last-bit
difference could flip a comparison that sits on an equality and give a different trade. So each
function repeats the class's arithmetic in the same order:
- Python's `sum` of floats (3.11) adds left to right from 0, so a window sum here is the same
  left-to-right loop over the window's offsets, vectorised across windows (never `np.sum`, which
  adds pairwise, nor a cumulative sum, which rounds differently).
- talipp's SMA is a running value (`prev - (x[t-p] - x[t]) / p` after a seed), which is a
  cumulative sum of those steps: `np.cumsum` adds strictly left to right, so it is exact here.
- EMA, RSI and ATR are recurrences: a plain loop over the bars (numba-compiled when numba is
  installed, `models.vectorized.jit`; the same operations either way).
- log returns use `math.log` (numpy's `log` differs in the last bit now and then).
The one exception is `volatility`: talipp squares with `**2` (libm `pow`), which differs from
`x * x` in the last bit for about one value in a thousand; its values agree to 1e-12 relative
(the equivalence tests hold it to that), not bit for bit.

A window sum costs O(bars x period) here (vectorised); fine for the periods strategies use.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Final

import numpy as np

from models.config.settings import FeaturesConfig
from models.signals.features import default_keys
from models.signals.indicators import REGISTRY, FeatureKey, parse_feature
from models.vectorized import jit
from models.vectorized.bars import BarArrays, FloatArray

__all__ = ["BATCH", "compute", "feature_arrays", "resolve"]

_REL_EPS: Final = 1e-12  # as models.signals.indicators
NAN: Final = float("nan")

Batch = Callable[[BarArrays, int], FloatArray]


def _nan(n: int) -> FloatArray:
    return np.full(n, NAN, dtype=np.float64)


def _window_sums(x: FloatArray, p: int) -> FloatArray:
    """sum(x[t-p+1 .. t]) added left to right (Python's `sum`), for t = p-1 .. n-1."""
    m = len(x) - p + 1
    acc = np.zeros(max(m, 0), dtype=np.float64)
    for k in range(p):
        acc += x[k : k + m]
    return acc


def sma(bars: BarArrays, p: int) -> FloatArray:
    x = bars.close
    n = len(x)
    out = _nan(n)
    if n < p:
        return out
    seed = float(sum(x[:p].tolist())) / p
    steps = np.empty(n - p + 1, dtype=np.float64)
    steps[0] = seed
    steps[1:] = -((x[: n - p] - x[p:]) / float(p))
    out[p - 1 :] = np.cumsum(steps)
    return out


def ema(bars: BarArrays, p: int) -> FloatArray:
    return jit.ema(bars.close, p)


def rsi(bars: BarArrays, p: int) -> FloatArray:
    return jit.rsi(bars.close, p)


def atr(bars: BarArrays, p: int) -> FloatArray:
    return jit.atr(bars.high, bars.low, bars.close, p)


def volatility(bars: BarArrays, p: int) -> FloatArray:
    close = bars.close
    n = len(close)
    out = _nan(n)
    if n < 2:
        return out
    prev, now = close[:-1], close[1:]
    valid = np.zeros(n, dtype=bool)
    valid[1:] = (prev > 0) & (now > 0)
    where = np.flatnonzero(valid)
    ratios = (close[where] / close[where - 1]).tolist()
    returns = np.array([math.log(r) for r in ratios], dtype=np.float64)
    k = len(returns)
    at_valid = _nan(k)
    if k >= p:
        mean = _window_sums(returns, p) / p
        m = k - p + 1
        sq = np.zeros(m, dtype=np.float64)
        for j in range(p):
            d = returns[j : j + m] - mean
            sq += d * d
        at_valid[p - 1 :] = np.sqrt(sq / p)
    # A bar without a return keeps the last value (None before the first full window).
    full = _nan(n)
    full[where] = at_valid
    last = np.where(valid, np.arange(n), -1)
    np.maximum.accumulate(last, out=last)
    out = np.where(last >= 0, full[np.maximum(last, 0)], NAN)
    return out


def vwap(bars: BarArrays, p: int) -> FloatArray:
    n = len(bars.close)
    out = _nan(n)
    if n < p:
        return out
    volume = _window_sums(bars.volume, p)
    price_volume = _window_sums(bars.vwap * bars.volume, p)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = price_volume / volume
    out[p - 1 :] = np.where(volume > 0, ratio, bars.close[p - 1 :])
    return out


def volume_z(bars: BarArrays, p: int) -> FloatArray:
    v = bars.volume
    n = len(v)
    out = _nan(n)
    if n <= p:
        return out
    m = n - p  # windows of the previous p volumes, for t = p .. n-1
    mean = _window_sums(v[:-1], p) / p
    sq = np.zeros(m, dtype=np.float64)
    for k in range(p):
        d = v[k : k + m] - mean
        sq += d * d
    std = np.sqrt(sq / p)
    ok = (std > 0) & (std > _REL_EPS * np.abs(mean))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (v[p:] - mean) / std
    out[p:] = np.where(ok, z, NAN)
    return out


def _channel(x: FloatArray, p: int, highs: bool) -> FloatArray:
    n = len(x)
    out = _nan(n)
    if n <= p:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(x[:-1], p)
    out[p:] = windows.max(axis=1) if highs else windows.min(axis=1)
    return out


def channel_high(bars: BarArrays, p: int) -> FloatArray:
    return _channel(bars.high, p, True)


def channel_low(bars: BarArrays, p: int) -> FloatArray:
    return _channel(bars.low, p, False)


def return_(bars: BarArrays, p: int) -> FloatArray:
    x = bars.close
    n = len(x)
    out = _nan(n)
    if n <= p:
        return out
    then, now = x[:-p], x[p:]
    with np.errstate(divide="ignore", invalid="ignore"):
        change = now / then - 1.0
    out[p:] = np.where((then > 0) & (now > 0), change, NAN)
    return out


def peak_close(bars: BarArrays, p: int = 0) -> FloatArray:
    return np.maximum.accumulate(bars.close) if len(bars.close) else _nan(0)


def drawdown(bars: BarArrays, p: int = 0) -> FloatArray:
    peak = peak_close(bars)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = 1.0 - bars.close / peak
    return np.where(peak > 0, dd, NAN)


BATCH: Final[Mapping[str, Batch]] = {
    "sma": sma,
    "ema": ema,
    "rsi": rsi,
    "volatility": volatility,
    "vwap": vwap,
    "volume_z": volume_z,
    "channel_high": channel_high,
    "channel_low": channel_low,
    "atr": atr,
    "return": return_,
    "peak_close": peak_close,
    "drawdown": drawdown,
}
"""kind -> batch function; a test checks it covers `REGISTRY` exactly."""


def compute(key: FeatureKey, bars: BarArrays) -> FloatArray:
    if key.kind not in BATCH or key.kind not in REGISTRY:
        raise ValueError(f"no batch function for feature kind {key.kind!r}")
    return BATCH[key.kind](bars, key.period)


def resolve(name: str, cfg: FeaturesConfig) -> FeatureKey:
    """What a feature name computes: a configured default (`sma_fast`) or `kind_period`."""
    defaults = default_keys(cfg)
    if name in defaults:
        return defaults[name]
    key = parse_feature(name)
    if isinstance(key, str):
        raise ValueError(key)
    return key


def feature_arrays(
    names: Iterable[str],
    bars: BarArrays,
    cfg: FeaturesConfig,
    cache: dict[FeatureKey, FloatArray] | None = None,
) -> dict[str, FloatArray]:
    """The named features over `bars` (`close` is the close column). `cache` (per bar set)
    shares one computation between names and between the strategies of a sweep."""
    memo: dict[FeatureKey, FloatArray] = {} if cache is None else cache
    out: dict[str, FloatArray] = {}
    for name in names:
        if name == "close":
            out[name] = bars.close
            continue
        key = resolve(name, cfg)
        if key not in memo:
            memo[key] = compute(key, bars)
        out[name] = memo[key]
    return out
