"""Drawdowns of an equity curve, per bar, as backtesting.py 0.6 measures them
(`compute_drawdown_duration_peaks`).

The drawdown of a bar is `1 - equity / running peak`. A drawdown period runs from a bar at its
peak (drawdown 0) to the next bar at a peak, or to the last bar while still under water; its
duration is the time between those two bars and its depth the largest drawdown inside. A period
must span at least one bar strictly between its ends, so a drawdown that starts on the very last
bar is not a period (backtesting.py's rule, kept).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Drawdowns:
    """`max_drawdown` and `avg_drawdown` are positive fractions (0.2 = 20% below the peak);
    durations are milliseconds, not yet rounded to the bar resolution."""

    max_drawdown: float
    avg_drawdown: float | None
    max_duration_ms: int | None
    avg_duration_ms: float | None
    periods: tuple[tuple[int, int, float], ...]  # (start ms, end ms, depth)


def drawdown_series(equity: Sequence[float]) -> list[float]:
    """`1 - equity / running peak` per bar (0 while the peak is not above zero)."""
    out: list[float] = []
    peak = -math.inf
    for value in equity:
        peak = max(peak, value)
        out.append(1 - value / peak if peak > 0 else 0.0)
    return out


def drawdowns(times: Sequence[int], equity: Sequence[float]) -> Drawdowns:
    """Depth and duration of every drawdown period of the curve.

    Without any period (a curve always at its peak, or under water only on its last bar)
    durations are None and the average depth is the mean of the non-zero drawdowns, if any
    (backtesting.py there reports the depth as a "duration", which we do not copy)."""
    dd = drawdown_series(equity)
    if not dd:
        return Drawdowns(0.0, None, None, None, ())
    at_peak = [i for i, d in enumerate(dd) if d == 0]
    if not at_peak or at_peak[-1] != len(dd) - 1:
        at_peak.append(len(dd) - 1)
    periods = tuple(
        (times[a], times[b], max(dd[a : b + 1]))
        for a, b in itertools.pairwise(at_peak)
        if b > a + 1
    )
    max_dd = max(dd)
    if not periods:
        under = [d for d in dd if d != 0]
        avg = math.fsum(under) / len(under) if under else None
        return Drawdowns(max_dd, avg, None, None, ())
    durations = [end - start for start, end, _ in periods]
    return Drawdowns(
        max_drawdown=max_dd,
        avg_drawdown=math.fsum(depth for _, _, depth in periods) / len(periods),
        max_duration_ms=max(durations),
        avg_duration_ms=sum(durations) / len(durations),
        periods=periods,
    )
