"""Incremental per-symbol indicators, fed one closed bar at a time.

One `FeatureState` lives per symbol inside a Bytewax stateful step, so it must be cheap per bar
(it runs for every closed bar of every symbol), bounded in memory (the stream never ends) and
picklable (Bytewax recovery snapshots it with pickle and resumes from the copy). Standard
indicators come from talipp so the maths matches a well-known library; talipp keeps every input
and output in growing lists, so each indicator is trimmed with its own `purge_oldest` once it
holds a little more than its period needs. Everything else lives in `deque(maxlen=...)` windows
whose sums are recomputed per bar rather than kept as running totals: for windows of tens of
bars that costs well under a microsecond and avoids the cancellation drift (e.g. a "zero" volume
total that is really 1e-9) that running totals accumulate over an endless stream.

Conventions (so a reader can reproduce any value with pandas):
- sma_fast / sma_slow / ema / rsi: talipp SMA, EMA (seeded with the SMA of the first N closes),
  RSI (Wilder smoothing, seeded with the mean gain/loss of the first N changes).
- volatility: population stdev (ddof=0, talipp StdDev) of the last N log returns of the close.
- vwap: sum(bar.vwap * volume) / sum(volume) over the last N bars including this one; when that
  volume total is zero there is no traded price to weight, so it is the close.
- volume_z: (volume - mean) / population stdev of the previous N bars' volumes (this bar
  excluded, so a spike does not dilute its own yardstick); None when those volumes are constant.
- channel_high / channel_low: max high / min low of the previous N bars (this bar excluded, so
  a close can break out of the channel at all).
- peak_close: running max close since the first bar; drawdown = 1 - close / peak_close.
- return_1: close / previous close - 1.
Every value is None until its window is full, and never NaN or inf.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Final

from talipp.indicators import EMA, RSI, SMA, StdDev

from models.config.settings import FeaturesConfig
from models.core.messages import Bar, FeatureVector

FEATURE_NAMES: Final[tuple[str, ...]] = (
    "sma_fast",
    "sma_slow",
    "ema",
    "rsi",
    "volatility",
    "vwap",
    "volume_z",
    "channel_high",
    "channel_low",
    "peak_close",
    "drawdown",
    "return_1",
)

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


def _add(indicator: Any, value: float, keep: int) -> float | None:
    """Feed talipp and trim its history, so its lists stay bounded on an endless stream."""
    indicator.add(value)
    inputs = indicator.input_values
    if len(inputs) > keep + _PURGE_SLACK:
        indicator.purge_oldest(len(inputs) - keep)
    out = indicator.output_values[-1]
    return None if out is None else float(out)


class FeatureState:
    """Indicator state of one symbol; `update` once per closed bar, in bar order."""

    def __init__(self, cfg: FeaturesConfig) -> None:
        self.cfg = cfg
        self.bars_seen = 0
        self._sma_fast = SMA(cfg.sma_fast)
        self._sma_slow = SMA(cfg.sma_slow)
        self._ema = EMA(cfg.ema)
        self._rsi = RSI(cfg.rsi)
        self._volatility = StdDev(cfg.volatility)
        self._keep_sma_fast = _keep_for(cfg.sma_fast)
        self._keep_sma_slow = _keep_for(cfg.sma_slow)
        self._keep_ema = _keep_for(cfg.ema)
        self._keep_rsi = _keep_for(cfg.rsi)
        self._keep_volatility = _keep_for(cfg.volatility)
        self._price_volume: deque[float] = deque(maxlen=cfg.vwap)
        self._volume: deque[float] = deque(maxlen=cfg.vwap)
        self._prev_volumes: deque[float] = deque(maxlen=cfg.volume_z)
        self._prev_highs: deque[float] = deque(maxlen=cfg.breakout)
        self._prev_lows: deque[float] = deque(maxlen=cfg.breakout)
        self._prev_close: float | None = None
        self._peak_close: float | None = None
        self._last_volatility: float | None = None

    def update(self, bar: Bar) -> FeatureVector:
        """Advance every indicator by one closed bar and return their values at its close."""
        close = float(bar.close)
        volume = float(bar.volume)
        prev_close = self._prev_close

        sma_fast = _add(self._sma_fast, close, self._keep_sma_fast)
        sma_slow = _add(self._sma_slow, close, self._keep_sma_slow)
        ema = _add(self._ema, close, self._keep_ema)
        rsi = _add(self._rsi, close, self._keep_rsi)
        if rsi is not None and self._rsi.avg_loss[-1] == 0 and self._rsi.avg_gain[-1] == 0:
            # talipp says 100 when the average loss is zero, even if nothing moved at all; an
            # idle market is not overbought, the ratio is simply undefined.
            rsi = None

        return_1: float | None = None
        if prev_close is not None and prev_close > 0 and close > 0:
            return_1 = close / prev_close - 1.0
            self._last_volatility = _add(
                self._volatility, math.log(close / prev_close), self._keep_volatility
            )
        volatility = self._last_volatility

        self._price_volume.append(float(bar.vwap) * volume)
        self._volume.append(volume)
        vwap: float | None = None
        if len(self._volume) == self._volume.maxlen:
            total_volume = sum(self._volume)
            vwap = sum(self._price_volume) / total_volume if total_volume > 0 else close

        volume_z: float | None = None
        prev_volumes = self._prev_volumes
        n = len(prev_volumes)
        if n == prev_volumes.maxlen:
            mean = sum(prev_volumes) / n
            std = math.sqrt(sum((v - mean) * (v - mean) for v in prev_volumes) / n)
            if std > 0 and std > _REL_EPS * abs(mean):
                volume_z = (volume - mean) / std
        prev_volumes.append(volume)

        channel_high: float | None = None
        channel_low: float | None = None
        if len(self._prev_highs) == self._prev_highs.maxlen:
            channel_high = max(self._prev_highs)
            channel_low = min(self._prev_lows)
        self._prev_highs.append(float(bar.high))
        self._prev_lows.append(float(bar.low))

        peak = self._peak_close
        if peak is None or close > peak:
            peak = self._peak_close = close
        drawdown = 1.0 - close / peak if peak > 0 else None

        self._prev_close = close
        self.bars_seen += 1
        return FeatureVector(
            symbol=bar.symbol,
            ts_ms=bar.end_ms,
            close=close,
            values={
                "sma_fast": sma_fast,
                "sma_slow": sma_slow,
                "ema": ema,
                "rsi": rsi,
                "volatility": volatility,
                "vwap": vwap,
                "volume_z": volume_z,
                "channel_high": channel_high,
                "channel_low": channel_low,
                "peak_close": peak,
                "drawdown": drawdown,
                "return_1": return_1,
            },
        )

    def max_buffer_len(self) -> int:
        """Longest internal history, so tests and monitoring can check memory stays bounded."""
        lengths = [
            len(self._price_volume),
            len(self._volume),
            len(self._prev_volumes),
            len(self._prev_highs),
            len(self._prev_lows),
        ]
        for ind in (self._sma_fast, self._sma_slow, self._ema, self._rsi, self._volatility):
            lengths.extend((len(ind.input_values), len(ind.output_values)))
        lengths.extend((len(self._rsi.avg_gain), len(self._rsi.avg_loss)))
        return max(lengths)
