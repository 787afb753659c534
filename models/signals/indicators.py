"""Registered feature classes: every value a trigger or a strategy can read, one class per kind.

Names and registration (`sma_50`, `@register`) are `models.signals.registry`'s; the configured
default set (`sma_fast`, `rsi`, ...) is these classes under fixed names. Each instance is one
symbol's incremental state: `update` once per closed bar, in bar order, returning the value at
that bar's close or None while it warms up. Instances are small, bounded in memory on an endless
stream and picklable (Bytewax recovery snapshots them). `update_many` runs a block of bars at
once with the same operations in the same order (`models.signals.kernels`), leaving the state
`update` would; a kind without one is looped bar by bar.
Standard indicators follow talipp so the maths matches a well-known library: SMA, EMA, RSI
and the stdev are talipp's formulas re-implemented operation for operation (bit-for-bit equal,
and several times faster than talipp's generic per-value machinery, which was a quarter of a
backtest's flow); ATR is talipp itself, which keeps every input in growing lists, so it is
trimmed with its own `purge_oldest` once it holds a little more than its period needs. Window
sums are recomputed per bar over `deque(maxlen=N)` rather than kept as running totals: for
windows of tens of bars that costs well under a microsecond and avoids the cancellation drift
running totals accumulate over an endless stream.

Conventions (so a reader can reproduce any value with pandas):
- sma / ema / rsi: talipp SMA, EMA (seeded with the SMA of the first N closes), RSI (Wilder
  smoothing, seeded with the mean gain/loss of the first N changes); an RSI over a window where
  nothing moved is None (talipp says 100), as an idle market is not overbought.
- volatility: population stdev (ddof=0, talipp StdDev) of the last N log returns of the close;
  it keeps its last value over a bar whose return is undefined (a non-positive close).
- vwap: sum(bar.vwap * volume) / sum(volume) over the last N bars including this one; with no
  volume there is no traded price to weight, so it is the close.
- volume_z: (volume - mean) / population stdev of the previous N bars' volumes (this bar excluded,
  so a spike does not dilute its own yardstick); None when those volumes are constant.
- channel_high / channel_low: max high / min low of the previous N bars (this bar excluded, so a
  close can break out of the channel at all).
- atr: talipp ATR (Wilder's average true range over N bars).
- return: close / close N bars ago - 1 (None when either is not positive).
- peak_close: running max close since the first bar; drawdown = 1 - close / peak_close.
"""

from __future__ import annotations

import math
from collections import deque
from itertools import accumulate
from operator import sub, truediv
from typing import Any, ClassVar, Final

import numpy as np
from talipp.indicators import ATR
from talipp.ohlcv import OHLCV

from models.core.messages import Bar
from models.signals.kernels import (
    NAN,
    FloatBars,
    Floats,
    deviation_sums,
    extend,
    finite,
    finite_scalar,
    nans,
    window_sums,
    windows,
)
from models.signals.registry import (
    MAX_PERIOD,
    MIN_PERIOD,
    REGISTRY,
    BlockMethod,
    FeatureKey,
    FeatureKind,
    Indicator,
    block_method,
    build,
    parse_feature,
    register,
    warmup_bars,
)

__all__ = [
    "MAX_PERIOD",
    "MIN_PERIOD",
    "REGISTRY",
    "BlockMethod",
    "FeatureKey",
    "FeatureKind",
    "Indicator",
    "block_method",
    "build",
    "parse_feature",
    "register",
    "warmup_bars",
]

# How many extra values a talipp indicator may accumulate before it is trimmed. Trimming copies
# the kept tail, so doing it in batches keeps the amortised cost per bar negligible.
_PURGE_SLACK: Final = 64

# A window stdev this small relative to its mean is rounding noise of a constant series; dividing
# by it would turn "no change" into an astronomically large z-score.
_REL_EPS: Final = 1e-12


def _keep_for(period: int) -> int:
    """Inputs a talipp indicator must retain after a purge to continue exactly as if never purged.

    talipp decides "first value, seed it" vs "recurse from the previous output" by comparing the
    input list length with the period (exact-length checks at `period` (EMA) and `period + 1`
    (RSI)), so after the next add the list must be longer than `period + 1`: keeping
    `period + 1` is the minimum (tests show `period` re-seeds RSI); one more is a margin.
    """
    return period + 2


def _add(indicator: Any, value: Any, keep: int) -> float | None:
    """Feed talipp and trim its history, so its lists stay bounded on an endless stream."""
    indicator.add(value)
    inputs = indicator.input_values
    if len(inputs) > keep + _PURGE_SLACK:
        indicator.purge_oldest(len(inputs) - keep)
    out = indicator.output_values[-1]
    return None if out is None else float(out)


class _Talipp:
    """A talipp indicator over the close (kinds without a kernel of their own)."""

    __slots__ = ("_ind", "_keep")

    def __init__(self, indicator: Any, period: int) -> None:
        self._ind = indicator
        self._keep = _keep_for(period)

    def update(self, bar: Bar) -> float | None:
        return _add(self._ind, float(bar.close), self._keep)

    def buffer_len(self) -> int:
        return max(len(self._ind.input_values), len(self._ind.output_values))


# The kernels below are talipp's formulas, operation for operation (the same sums in the same
# order, the same recursions), so every value is bit-for-bit what talipp gives
# (tests/unit/test_indicators.py compares them on random series); without talipp's generic
# machinery (input lists, sampling, listeners, purging) each costs a fraction of the time.


@register("sma", "simple moving average of the close over N bars")
class SmaFeature:
    """talipp SMA: the mean of the first N closes, then `prev - (dropped - new) / N`."""

    __slots__ = ("_last", "_period", "_window")

    def __init__(self, period: int) -> None:
        self._period = period
        self._window: deque[float] = deque(maxlen=period)
        self._last: float | None = None

    def update(self, bar: Bar) -> float | None:
        close = float(bar.close)
        window, last = self._window, self._last
        if last is not None:
            self._last = last - (window[0] - close) / float(self._period)
            window.append(close)
        else:
            window.append(close)
            if len(window) == self._period:
                self._last = float(sum(window)) / self._period
        return self._last

    def update_many(self, bars: FloatBars) -> Floats | None:
        close, n, p = bars.close, bars.n, self._period
        window, last = self._window, self._last
        held = len(window)
        ext = extend(window, close)
        if not finite(ext) or not finite_scalar(last):
            return None
        out = nans(n)
        start = 0
        if last is None:
            start = p - held  # the bar that fills the window
            if n < start:
                window.extend(close.tolist())
                return out
            last = float(sum(ext[:p].tolist())) / p
            out[start - 1] = last
        if start < n:
            # last - (window[0] - close) / p, with window[0] the close p bars back
            steps = (ext[held + start - p : held + n - p] - ext[held + start : held + n]) / float(p)
            values = list(accumulate(steps.tolist(), sub, initial=last))
            out[start:] = values[1:]
            last = values[-1]
        window.extend(close[-p:].tolist())
        self._last = last
        return out

    def buffer_len(self) -> int:
        return len(self._window)


@register("ema", "exponential moving average of the close over N bars")
class EmaFeature:
    """talipp EMA: seeded with the SMA of the first N closes, then `m * x + (1 - m) * prev`."""

    __slots__ = ("_last", "_mult", "_period", "_warmup")

    def __init__(self, period: int) -> None:
        self._period = period
        self._mult = 2.0 / (period + 1.0)
        self._warmup: list[float] = []
        self._last: float | None = None

    def update(self, bar: Bar) -> float | None:
        close = float(bar.close)
        last = self._last
        if last is not None:
            mult = self._mult
            self._last = float(mult * close + (1.0 - mult) * last)
        else:
            warmup = self._warmup
            warmup.append(close)
            if len(warmup) == self._period:
                self._last = sum(warmup) / self._period
                self._warmup = []
        return self._last

    def update_many(self, bars: FloatBars) -> Floats | None:
        close, n, p = bars.close, bars.n, self._period
        last = self._last
        if not finite(close) or not finite_scalar(last):
            return None
        out = nans(n)
        start = 0
        if last is None:
            start = p - len(self._warmup)
            if n < start:
                self._warmup.extend(close.tolist())
                return out
            last = sum(self._warmup + close[:start].tolist()) / p
            out[start - 1] = last
        if start < n:
            keep = 1.0 - self._mult
            terms = (self._mult * close[start:]).tolist()  # m * x, then + (1 - m) * prev
            values = list(accumulate(terms, lambda prev, mx: mx + keep * prev, initial=last))
            out[start:] = values[1:]
            last = values[-1]
        self._warmup = []
        self._last = last
        return out

    def buffer_len(self) -> int:
        return len(self._warmup)


@register("rsi", "Wilder's relative strength index over N closes (0..100)")
class RsiFeature:
    """talipp RSI: average gain/loss seeded from the first N - 1 changes, then Wilder's
    smoothing `(prev * (N - 1) + x) / N` (the first smoothed step already at the N-th change)."""

    __slots__ = ("_gain", "_loss", "_period", "_prev", "_warmup")

    def __init__(self, period: int) -> None:
        self._period = period
        self._warmup: list[float] = []
        self._prev: float | None = None
        self._gain: float | None = None
        self._loss: float | None = None

    def update(self, bar: Bar) -> float | None:
        close = float(bar.close)
        p = self._period
        gain, loss = self._gain, self._loss
        if gain is None or loss is None:
            warmup = self._warmup
            warmup.append(close)
            if len(warmup) < p + 1:
                return None
            changes = [warmup[i] - warmup[i - 1] for i in range(1, p)]
            gain = float(sum(c for c in changes if c > 0)) / (p - 1)
            loss = float(sum(-1 * c for c in changes if c < 0)) / (p - 1)
            prev = warmup[-2]
            self._warmup = []
        else:
            prev = self._prev if self._prev is not None else close
        change = close - prev
        up = change if change > 0 else 0.0
        down = -1 * change if change < 0 else 0.0
        gain = float(gain * (p - 1) + up) / p
        loss = float(loss * (p - 1) + down) / p
        self._gain, self._loss, self._prev = gain, loss, close
        if loss == 0:
            # talipp says 100; nothing moved at all: the ratio is undefined, not "overbought"
            return None if gain == 0 else 100.0
        return 100.0 - (100.0 / (1.0 + gain / loss))

    def update_many(self, bars: FloatBars) -> Floats | None:
        close, n, p = bars.close, bars.n, self._period
        gain, loss, prev = self._gain, self._loss, self._prev
        if not finite(close) or not all(map(finite_scalar, (gain, loss, prev))):
            return None
        out = nans(n)
        start = 0
        if gain is None or loss is None:
            start = p + 1 - len(self._warmup) - 1  # the bar that seeds and takes a first step
            if n <= start:
                self._warmup.extend(close.tolist())
                return out
            warmup = self._warmup + close[: start + 1].tolist()
            changes = [warmup[i] - warmup[i - 1] for i in range(1, p)]
            gain = float(sum(c for c in changes if c > 0)) / (p - 1)
            loss = float(sum(-1 * c for c in changes if c < 0)) / (p - 1)
            prev = warmup[-2]
        elif prev is None:
            prev = float(close[0])
        change = np.diff(np.concatenate(([prev], close[start:])))
        up = np.where(change > 0, change, 0.0).tolist()
        down = np.where(change < 0, -change, 0.0).tolist()
        lag, pf = float(p - 1), float(p)
        gains = np.array(list(accumulate(up, lambda g, x: (g * lag + x) / pf, initial=gain))[1:])
        losses = np.array(list(accumulate(down, lambda g, x: (g * lag + x) / pf, initial=loss))[1:])
        with np.errstate(divide="ignore", invalid="ignore"):
            rsi = 100.0 - (100.0 / (1.0 + gains / losses))
        out[start:] = np.where(losses == 0, np.where(gains == 0, NAN, 100.0), rsi)
        self._warmup = []
        self._gain, self._loss = float(gains[-1]), float(losses[-1])
        self._prev = float(close[-1])
        return out

    def buffer_len(self) -> int:
        return len(self._warmup)


@register("volatility", "population stdev of the last N log returns of the close")
class VolatilityFeature:
    """talipp StdDev of the log returns: `sqrt(sum((x - mean) ** 2) / N)` over the window."""

    __slots__ = ("_last", "_period", "_prev_close", "_window")

    def __init__(self, period: int) -> None:
        self._period = period
        self._window: deque[float] = deque(maxlen=period)
        self._prev_close: float | None = None
        self._last: float | None = None

    def update(self, bar: Bar) -> float | None:
        close, prev = float(bar.close), self._prev_close
        if prev is not None and prev > 0 and close > 0:
            window = self._window
            window.append(math.log(close / prev))
            n = self._period
            if len(window) == n:
                mean = sum(window) / n
                self._last = math.sqrt(sum([(x - mean) ** 2 for x in window]) / n)
        self._prev_close = close
        return self._last

    def update_many(self, bars: FloatBars) -> Floats | None:
        close, n, p = bars.close, bars.n, self._period
        window, prev, last = self._window, self._prev_close, self._last
        if not (finite(close) and bool(np.all(close > 0)) and finite_scalar(prev)):
            return None
        closes = close.tolist()
        returns = list(map(math.log, map(truediv, closes[1:], closes[:-1])))
        first_bar = 1  # the bar of returns[0]
        if prev is not None and prev > 0:
            returns.insert(0, math.log(closes[0] / prev))
            first_bar = 0
        held = len(window)
        ext = extend(window, np.array(returns))
        if not finite(ext):
            return None
        skip = max(0, p - 1 - held)  # returns before the window is first full
        count = len(returns) - skip
        out = np.full(n, NAN if last is None else last)
        if count > 0:
            lo = held + skip - p + 1
            mean = window_sums(ext, p, lo, count) / p
            values = np.sqrt(deviation_sums(ext, p, lo, count, mean, pow2=True) / p)
            out[first_bar + skip :] = values
            last = float(values[-1])
        window.extend(returns[-p:])
        self._prev_close, self._last = closes[-1], last
        return out

    def buffer_len(self) -> int:
        return len(self._window)


@register("vwap", "volume-weighted average price of the last N bars", min_period=1)
class VwapFeature:
    __slots__ = ("_price_volume", "_volume")

    def __init__(self, period: int) -> None:
        self._price_volume: deque[float] = deque(maxlen=period)
        self._volume: deque[float] = deque(maxlen=period)

    def update(self, bar: Bar) -> float | None:
        volume = float(bar.volume)
        self._price_volume.append(float(bar.vwap) * volume)
        self._volume.append(volume)
        if len(self._volume) < (self._volume.maxlen or 0):
            return None
        total = sum(self._volume)
        return sum(self._price_volume) / total if total > 0 else float(bar.close)

    def update_many(self, bars: FloatBars) -> Floats | None:
        volume, n, p = bars.volume, bars.n, self._volume.maxlen or 0
        price_volume = bars.vwap * volume
        held = len(self._volume)
        volumes = extend(self._volume, volume)
        weighted = extend(self._price_volume, price_volume)
        if not (finite(volumes, weighted, bars.close)):
            return None
        out = nans(n)
        skip = max(0, p - 1 - held)  # bars before the window is first full
        if skip < n:
            lo, count = held + skip - p + 1, n - skip
            total = window_sums(volumes, p, lo, count)
            with np.errstate(divide="ignore", invalid="ignore"):
                vwap = window_sums(weighted, p, lo, count) / total
            out[skip:] = np.where(total > 0, vwap, bars.close[skip:])
        self._volume.extend(volume[-p:].tolist())
        self._price_volume.extend(price_volume[-p:].tolist())
        return out

    def buffer_len(self) -> int:
        return len(self._volume)


@register("volume_z", "z-score of the volume against the previous N bars", min_period=3)
class VolumeZFeature:
    __slots__ = ("_prev",)

    def __init__(self, period: int) -> None:
        self._prev: deque[float] = deque(maxlen=period)

    def update(self, bar: Bar) -> float | None:
        volume = float(bar.volume)
        prev = self._prev
        out: float | None = None
        n = len(prev)
        if n == prev.maxlen:
            mean = sum(prev) / n
            std = math.sqrt(sum((v - mean) * (v - mean) for v in prev) / n)
            if std > 0 and std > _REL_EPS * abs(mean):
                out = (volume - mean) / std
        prev.append(volume)
        return out

    def update_many(self, bars: FloatBars) -> Floats | None:
        volume, n, prev = bars.volume, bars.n, self._prev
        p, held = prev.maxlen or 0, len(prev)
        ext = extend(prev, volume)
        if not finite(ext):
            return None
        out = nans(n)
        skip = max(0, p - held)  # bars before p previous volumes are known
        if skip < n:
            lo, count = held + skip - p, n - skip
            mean = window_sums(ext, p, lo, count) / p
            std = np.sqrt(deviation_sums(ext, p, lo, count, mean, pow2=False) / p)
            with np.errstate(divide="ignore", invalid="ignore"):
                z = (volume[skip:] - mean) / std
            out[skip:] = np.where((std > 0) & (std > _REL_EPS * np.abs(mean)), z, NAN)
        prev.extend(volume[-p:].tolist())
        return out

    def buffer_len(self) -> int:
        return len(self._prev)


class _Channel:
    """The extreme of the previous N bars' highs (or lows)."""

    __slots__ = ("_prev",)
    _highs: ClassVar[bool] = True

    def __init__(self, period: int) -> None:
        self._prev: deque[float] = deque(maxlen=period)

    def update(self, bar: Bar) -> float | None:
        prev = self._prev
        out: float | None = None
        if len(prev) == prev.maxlen:
            out = max(prev) if self._highs else min(prev)
        prev.append(float(bar.high) if self._highs else float(bar.low))
        return out

    def update_many(self, bars: FloatBars) -> Floats | None:
        values, n, prev = bars.high if self._highs else bars.low, bars.n, self._prev
        p, held = prev.maxlen or 0, len(prev)
        ext = extend(prev, values)
        # max() keeps the first of equal values; only 0.0 and -0.0 are equal with other bits
        if not finite(ext) or not bool(np.all(ext != 0)):
            return None
        out = nans(n)
        skip = max(0, p - held)
        if skip < n:
            lo, count = held + skip - p, n - skip
            rows = windows(ext, p, lo, count)
            out[skip:] = rows.max(axis=1) if self._highs else rows.min(axis=1)
        prev.extend(values[-p:].tolist())
        return out

    def buffer_len(self) -> int:
        return len(self._prev)


@register("channel_high", "highest high of the previous N bars (this bar excluded)", min_period=1)
class ChannelHighFeature(_Channel):
    __slots__ = ()
    _highs = True


@register("channel_low", "lowest low of the previous N bars (this bar excluded)", min_period=1)
class ChannelLowFeature(_Channel):
    __slots__ = ()
    _highs = False


@register("atr", "Wilder's average true range over N bars")
class AtrFeature:
    __slots__ = ("_ind", "_keep")

    def __init__(self, period: int) -> None:
        self._ind = ATR(period)
        self._keep = _keep_for(period)

    def update(self, bar: Bar) -> float | None:
        ohlcv = OHLCV(
            float(bar.open), float(bar.high), float(bar.low), float(bar.close), float(bar.volume)
        )
        return _add(self._ind, ohlcv, self._keep)

    def buffer_len(self) -> int:
        return max(len(self._ind.input_values), len(self._ind.output_values))


@register("return", "close / close N bars ago - 1", min_period=1)
class ReturnFeature:
    __slots__ = ("_closes",)

    def __init__(self, period: int) -> None:
        self._closes: deque[float] = deque(maxlen=period + 1)

    def update(self, bar: Bar) -> float | None:
        closes = self._closes
        closes.append(float(bar.close))
        if len(closes) < (closes.maxlen or 0):
            return None
        then, now = closes[0], closes[-1]
        return now / then - 1.0 if then > 0 and now > 0 else None

    def update_many(self, bars: FloatBars) -> Floats | None:
        close, n, closes = bars.close, bars.n, self._closes
        p, held = closes.maxlen or 0, len(closes)  # p: this bar and `period` before it
        ext = extend(closes, close)
        if not finite(ext):
            return None
        out = nans(n)
        skip = max(0, p - 1 - held)
        if skip < n:
            then, now = ext[held + skip - p + 1 : held + n - p + 1], ext[held + skip : held + n]
            with np.errstate(divide="ignore", invalid="ignore"):
                ret = now / then - 1.0
            out[skip:] = np.where((then > 0) & (now > 0), ret, NAN)
        closes.extend(close[-p:].tolist())
        return out

    def buffer_len(self) -> int:
        return len(self._closes)


@register("peak_close", "highest close since the first bar", min_period=None)
class PeakCloseFeature:
    __slots__ = ("peak",)

    def __init__(self, period: int = 0) -> None:
        self.peak: float | None = None

    def update(self, bar: Bar) -> float | None:
        close = float(bar.close)
        if self.peak is None or close > self.peak:
            self.peak = close
        return self.peak

    def _peaks(self, bars: FloatBars) -> Floats | None:
        """The peak after each bar (state updated), or None when a zero close or an odd value
        could make numpy's running max pick other bits than `close > peak` does."""
        close = bars.close
        if not finite(close) or not bool(np.all(close != 0)) or not finite_scalar(self.peak):
            return None
        if self.peak == 0:
            return None
        start = close if self.peak is None else np.concatenate(([self.peak], close))
        peaks = np.maximum.accumulate(start)[len(start) - bars.n :]
        self.peak = float(peaks[-1])
        return peaks

    def update_many(self, bars: FloatBars) -> Floats | None:
        return self._peaks(bars)

    def buffer_len(self) -> int:
        return 1


@register("drawdown", "1 - close / highest close since the first bar", min_period=None)
class DrawdownFeature(PeakCloseFeature):
    __slots__ = ()

    def update(self, bar: Bar) -> float | None:
        peak = super().update(bar)
        return 1.0 - float(bar.close) / peak if peak is not None and peak > 0 else None

    def update_many(self, bars: FloatBars) -> Floats | None:
        peaks = self._peaks(bars)
        if peaks is None:
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            drawdown = 1.0 - bars.close / peaks
        return np.where(peaks > 0, drawdown, NAN)
