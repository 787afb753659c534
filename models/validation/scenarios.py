"""Stress scenarios built from a symbol's own recent bars: what a new strategy is run through
before it may trade.

A strategy that looks fine on the last few days may still be one bad hour from ruin. Each
scenario is the history window itself, bent in one way, so the strategy meets the same market it
was written for, warmed up on the same bars, plus one kind of trouble:

- `flash_crash`: at `shocks` evenly spaced places, a fall of `flash_crash_pct` over
  `flash_crash_bars` bars (opens follow the closes: a stop loss can act, a bar late), then
  `recovery_pct` of the fall regained over `recovery_bars`;
- `gap`: at `shocks` places (between the crashes'), a bar opening `gap_pct` below the previous
  close: nothing held into it can get out before;
- `regime_switch`: over the last `stressed_fraction` of the window the drift is reversed (an
  uptrend becomes the same downtrend), falling by at least `regime_fall_pct` over that part;
- `volatility_burst`: over the same part, every bar's return around the window's mean drift
  scaled by `volatility_scale`;
- `thin_liquidity`: the bars unchanged, slippage and fees multiplied (`slippage_mult`,
  `fee_mult`): an edge that lives on costs disappears.

Shocks are spread over the window rather than put at one place because the scenarios do not
know the strategy: a strategy long at any of those moments is long through one of them, and the
worst one counts. Crashes and gaps shift the level of the rest of the window (a crash regained
by half leaves the price lower), as a real one would.

Every bar is moved as a whole: its open by the level factor before the bar's shock, its close by
the factor after it (a gap applies before the open), its high and low by the larger and the
smaller of the two (so a bar stays a bar: low <= open, close <= high), its vwap by their mean.
Times and volumes are kept. Pure numpy, no randomness: the same bars and the same configuration
give the same scenarios, in a backtest and live.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np

from models.config.gates import ScenarioConfig
from models.vectorized.bars import BarArrays, FloatArray

__all__ = ["SCENARIO_NAMES", "StressScenario", "build_scenarios", "shock_starts"]

SCENARIO_NAMES: Final = (
    "flash_crash",
    "gap",
    "regime_switch",
    "volatility_burst",
    "thin_liquidity",
)


@dataclass(frozen=True, slots=True, eq=False)
class StressScenario:
    """One stressed path: its bars, the bar ranges `[lo, hi)` under stress (the loss is
    measured there), the cost multipliers, and one line saying what was done."""

    name: str
    bars: BarArrays
    spans: tuple[tuple[int, int], ...]
    slippage_mult: float = 1.0
    fee_mult: float = 1.0
    description: str = ""


def shock_starts(n: int, shocks: int, offset: float = 0.0) -> list[int]:
    """Where `shocks` shocks start in a window of `n` bars: evenly spaced at fractions
    (k + offset) / (shocks + 1), k = 1..shocks, each at bar 1 or later (bar 0 has no previous
    close), distinct, in order."""
    starts: list[int] = []
    for k in range(1, shocks + 1):
        i = max(1, min(n - 1, math.floor(n * (k + offset) / (shocks + 1))))
        if not starts or i > starts[-1]:
            starts.append(i)
    return starts


def _moved(bars: BarArrays, open_factor: FloatArray, close_factor: FloatArray) -> BarArrays:
    """`bars` with each bar's open moved by `open_factor`, its close by `close_factor` (see
    the module docstring for high, low, vwap)."""
    opens = bars.open * open_factor
    closes = bars.close * close_factor
    # The factor products alone could round a last bit past the open or close.
    top = np.maximum(opens, closes)
    bottom = np.minimum(opens, closes)
    return BarArrays(
        symbol=bars.symbol,
        start_ms=bars.start_ms,
        end_ms=bars.end_ms,
        open=opens,
        high=np.maximum(bars.high * np.maximum(open_factor, close_factor), top),
        low=np.minimum(bars.low * np.minimum(open_factor, close_factor), bottom),
        close=closes,
        volume=bars.volume,
        vwap=bars.vwap * (0.5 * (open_factor + close_factor)),
    )


def _levels(n: int, step: FloatArray, gap: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Open and close factors from each bar's extra log return within the bar (`step`) and at
    its open (`gap`): close factor = exp(cumulative sum of both), open factor = the previous
    close factor times the bar's gap."""
    close_log = np.cumsum(step + gap)
    prev = np.concatenate(([0.0], close_log[:-1])) if n else close_log
    return np.exp(prev + gap), np.exp(close_log)


def _flash_crash(bars: BarArrays, cfg: ScenarioConfig) -> StressScenario:
    n = len(bars)
    step = np.zeros(n)
    spans: list[tuple[int, int]] = []
    fall = math.log1p(-cfg.flash_crash_pct)
    # Regaining `recovery_pct` of the fall: from (1 - pct) back to 1 - pct * (1 - recovery).
    regain = math.log1p(-cfg.flash_crash_pct * (1.0 - cfg.recovery_pct)) - fall
    for s in shock_starts(n, cfg.shocks):
        down = slice(s, min(n, s + cfg.flash_crash_bars))
        step[down] += fall / cfg.flash_crash_bars
        up_lo = s + cfg.flash_crash_bars
        up = slice(min(n, up_lo), min(n, up_lo + cfg.recovery_bars))
        step[up] += regain / cfg.recovery_bars
        spans.append((s, min(n, up_lo + cfg.recovery_bars)))
    opens, closes = _levels(n, step, np.zeros(n))
    pct = f"{cfg.flash_crash_pct:.0%}"
    return StressScenario(
        "flash_crash",
        _moved(bars, opens, closes),
        tuple(spans),
        description=f"{len(spans)}x {pct} in {cfg.flash_crash_bars} bars",
    )


def _gap(bars: BarArrays, cfg: ScenarioConfig) -> StressScenario:
    n = len(bars)
    gap = np.zeros(n)
    starts = shock_starts(n, cfg.shocks, offset=0.5)
    for s in starts:
        gap[s] += math.log1p(-cfg.gap_pct)
    opens, closes = _levels(n, np.zeros(n), gap)
    # The loss of a gap shows at its bar's open (the bar before holds the last good mark) and
    # a stop loss sells at the next open: the span covers both.
    spans = tuple((s, min(n, s + 2)) for s in starts)
    return StressScenario(
        "gap",
        _moved(bars, opens, closes),
        spans,
        description=f"{len(spans)}x {cfg.gap_pct:.0%} down at the open",
    )


def _stressed_start(n: int, cfg: ScenarioConfig) -> int:
    return max(1, min(n - 1, n - math.ceil(n * cfg.stressed_fraction)))


def _returns(bars: BarArrays) -> FloatArray:
    """Close-to-close log returns (0 for the first bar)."""
    c = bars.close
    out = np.zeros(len(c))
    if len(c) > 1:
        with np.errstate(divide="ignore", invalid="ignore"):
            out[1:] = np.log(c[1:] / c[:-1])
        out[~np.isfinite(out)] = 0.0
    return out


def _regime_switch(bars: BarArrays, cfg: ScenarioConfig) -> StressScenario:
    n = len(bars)
    s = _stressed_start(n, cfg)
    r = _returns(bars)
    k = n - s
    drift = float(np.mean(r[s:]))
    # Reversed, and at least the configured fall over the stressed part (never upward).
    target = min(-abs(drift), math.log1p(-cfg.regime_fall_pct) / k if k else 0.0)
    step = np.zeros(n)
    step[s:] = target - drift
    opens, closes = _levels(n, step, np.zeros(n))
    total = math.expm1(float(np.sum(r[s:] + step[s:])))
    return StressScenario(
        "regime_switch",
        _moved(bars, opens, closes),
        ((s, n),),
        description=f"{total:+.1%} over the last {k} bars",
    )


def _volatility_burst(bars: BarArrays, cfg: ScenarioConfig) -> StressScenario:
    n = len(bars)
    s = _stressed_start(n, cfg)
    r = _returns(bars)
    drift = float(np.mean(r[s:])) if n > s else 0.0
    step = np.zeros(n)
    step[s:] = (cfg.volatility_scale - 1.0) * (r[s:] - drift)
    opens, closes = _levels(n, step, np.zeros(n))
    return StressScenario(
        "volatility_burst",
        _moved(bars, opens, closes),
        ((s, n),),
        description=f"returns x{cfg.volatility_scale:g} over the last {n - s} bars",
    )


def _thin_liquidity(bars: BarArrays, cfg: ScenarioConfig) -> StressScenario:
    return StressScenario(
        "thin_liquidity",
        bars,
        ((0, len(bars)),),
        slippage_mult=cfg.slippage_mult,
        fee_mult=cfg.fee_mult,
        description=f"slippage x{cfg.slippage_mult:g}, fees x{cfg.fee_mult:g}",
    )


def build_scenarios(bars: BarArrays, cfg: ScenarioConfig) -> tuple[StressScenario, ...]:
    """Every scenario of `bars` (in `SCENARIO_NAMES` order); none for fewer than two bars."""
    if len(bars) < 2:
        return ()
    return (
        _flash_crash(bars, cfg),
        _gap(bars, cfg),
        _regime_switch(bars, cfg),
        _volatility_burst(bars, cfg),
        _thin_liquidity(bars, cfg),
    )
