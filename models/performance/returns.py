"""Return and risk figures of an equity curve, as backtesting.py 0.6's `compute_stats` defines
them (its source is the reference; each function names the line it follows).

The curve is resampled to one value per calendar period (the last of each UTC day; of each
Monday-to-Sunday week, month or year for weekly, monthly or yearly bars), the period returns are
compounded (geometric mean) and annualised with the number of such periods in a year: 252 for
daily bars on weekdays only, 365 when weekends trade (crypto), 52, 12 or 1 for weekly, monthly,
yearly bars; intraday bars are resampled to daily returns first. Everything here is float
statistics of money values; a figure that is undefined (no returns, zero variance, an equity
<= 0) is None, never NaN or infinity.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from statistics import median

DAY_MS = 86_400_000
_UNITS_MS = (DAY_MS, 3_600_000, 60_000, 1_000, 1)
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


ZERO_VARIANCE = 1e-24
"""Period returns whose variance is below this (a standard deviation under 1e-12: the float
noise of a constant return) have no volatility, so no Sharpe ratio."""


def finite(x: float) -> float | None:
    """None for NaN and infinities: how an undefined statistic is reported."""
    return x if math.isfinite(x) else None


def power(base: float, exponent: float) -> float:
    """`base ** exponent`, inf where float `**` raises OverflowError (a short, very profitable
    run annualised: 1.5 ** 5000), so `finite` reports it as undefined instead of a crash."""
    try:
        return float(base**exponent)
    except OverflowError:
        return math.inf


def bar_period_ms(times: Sequence[int]) -> float:
    """The bar interval: the median difference of the last 100 timestamps (`_data_period`)."""
    tail = times[-100:]
    diffs = [b - a for a, b in itertools.pairwise(tail)]
    return float(median(diffs)) if diffs else 0.0


def resolution_ms(period_ms: float) -> int:
    """The unit durations are rounded up to: the finest non-zero component of the bar period
    (day, hour, minute, second, millisecond), as pandas' `Timedelta.resolution_string`; a zero
    period reads as days, as in pandas."""
    if period_ms != int(period_ms):
        return 1
    ms = int(period_ms)
    if ms == 0:
        return DAY_MS
    return next(unit for unit in _UNITS_MS if ms % unit == 0)


def ceil_duration(ms: float, unit_ms: int) -> int:
    """`ms` rounded up to a whole `unit_ms` (`_round_timedelta`)."""
    return math.ceil(ms / unit_ms) * unit_ms


@dataclass(frozen=True, slots=True)
class Calendar:
    """How the curve is sampled for annualisation: the period a return covers and how many of
    them make a year."""

    period: str  # "day", "week", "month", "year"
    per_year: int


def calendar_of(times: Sequence[int]) -> Calendar:
    """backtesting.py's rule: bars of 7, 31 or 365 whole days are weekly, monthly or yearly;
    anything else is sampled daily, with 365 days a year when more than 60% of the weekend's
    share (2/7) of the bars fall on a Saturday or Sunday, else 252."""
    days = int(bar_period_ms(times) // DAY_MS)
    if days == 7:
        return Calendar("week", 52)
    if days == 31:
        return Calendar("month", 12)
    if days == 365:
        return Calendar("year", 1)
    weekend = sum(1 for t in times if _weekday(t) >= 5)
    have_weekends = bool(times) and weekend / len(times) > 2 / 7 * 0.6
    return Calendar("day", 365 if have_weekends else 252)


def _weekday(ts_ms: int) -> int:
    return (ts_ms // DAY_MS + _EPOCH_WEEKDAY) % 7


def _period_key(ts_ms: int, period: str) -> tuple[int, int]:
    if period == "day":
        return (ts_ms // DAY_MS, 0)
    if period == "week":  # pandas 'W' (W-SUN): Monday 00:00 to Sunday 24:00
        day = ts_ms // DAY_MS
        return (day - _weekday(ts_ms), 0)
    d = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return (d.year, d.month if period == "month" else 0)


def period_returns(curve: Sequence[tuple[int, float]], period: str) -> list[float]:
    """Simple returns between the last values of consecutive non-empty calendar periods
    (`Equity.resample(freq).last().dropna().pct_change().dropna()`)."""
    lasts: list[float] = []
    key: tuple[int, int] | None = None
    for ts, value in curve:
        k = _period_key(ts, period)
        if k == key:
            lasts[-1] = value
        else:
            lasts.append(value)
            key = k
    out: list[float] = []
    for a, b in itertools.pairwise(lasts):
        out.append(b / a - 1 if a else math.nan)
    return out


def geometric_mean(returns: Sequence[float]) -> float:
    """`geometric_mean`: NaN returns count as 0, a return <= -100% makes it 0, none makes it NaN."""
    growth = [1 + (0.0 if math.isnan(r) else r) for r in returns]
    if any(g <= 0 for g in growth):
        return 0.0
    if not growth:
        return math.nan
    return math.exp(math.fsum(math.log(g) for g in growth) / len(growth)) - 1


def variance(xs: Sequence[float], ddof: int = 1) -> float:
    n = len(xs)
    if n - ddof <= 0:
        return math.nan
    mean = math.fsum(xs) / n
    return math.fsum((x - mean) ** 2 for x in xs) / (n - ddof)


@dataclass(frozen=True, slots=True)
class RiskReturn:
    """Annualised figures (fractions, or plain ratios for the three ratios)."""

    return_ann: float | None
    volatility_ann: float | None
    sharpe: float | None
    sortino: float | None
    calmar: float | None


def risk_return(
    returns: Sequence[float], per_year: int, max_drawdown: float, risk_free_rate: float = 0.0
) -> RiskReturn:
    """Annualised return `(1 + g)^N - 1` from the geometric mean g of the period returns; the
    volatility of that compounded return, `sqrt((var + (1 + g)^2)^N - (1 + g)^(2N))` (var with
    ddof=1); Sharpe = (return - rf) / volatility; Sortino = (return - rf) / (sqrt(mean(min(r,
    0)^2)) * sqrt(N)); Calmar = return / max drawdown (a positive fraction). A zero variance
    (below `ZERO_VARIANCE`) gives a volatility of exactly 0 and no Sharpe, where the formula
    would leave a rounding residue and backtesting.py a meaningless huge ratio."""
    g = geometric_mean(returns)
    ann = power(1 + g, per_year) - 1
    var = variance(returns)
    if var < ZERO_VARIANCE:
        vol = 0.0
    else:
        inner = power(var + (1 + g) ** 2, per_year) - power(1 + g, 2 * per_year)
        vol = math.sqrt(inner) if inner >= 0 else math.nan
    sharpe = (ann - risk_free_rate) / vol if vol and math.isfinite(vol) else math.nan
    downside = (
        math.sqrt(math.fsum(min(r, 0.0) ** 2 for r in returns) / len(returns))
        if (returns)
        else math.nan
    )
    denominator = downside * math.sqrt(per_year)
    sortino = (ann - risk_free_rate) / denominator if denominator else math.nan
    calmar = ann / max_drawdown if max_drawdown else math.nan
    return RiskReturn(
        return_ann=finite(ann),
        volatility_ann=finite(vol),
        sharpe=finite(sharpe),
        sortino=finite(sortino),
        calmar=finite(calmar),
    )


def cagr(first: float, last: float, duration_ms: int) -> float | None:
    """`(last / first)^(1 / years) - 1`, years = (whole days + whole seconds / 86400) / 365.25
    (backtesting.py's `CAGR [%]`); None for a run shorter than a day (compounding half an
    hour's return into a year gives numbers of 40 digits that mean nothing; the annualised
    return is None there too) or a first equity <= 0."""
    days, rest = divmod(duration_ms, DAY_MS)
    years = (days + (rest // 1000) / 86_400) / 365.25
    if days < 1 or first <= 0 or last / first < 0:
        return None
    return finite(power(last / first, 1 / years) - 1)


def beta(equity: Sequence[float], market: Sequence[float]) -> float | None:
    """Cov(equity log returns, market log returns) / Var(market log returns), per bar, ddof=1
    (backtesting.py's `Beta`); both series of the same bars. None with fewer than three bars,
    a value <= 0 or a market without variance."""
    if len(equity) != len(market) or len(equity) < 3:
        return None
    if any(v <= 0 for v in equity) or any(v <= 0 for v in market):
        return None
    x = [math.log(b / a) for a, b in itertools.pairwise(equity)]
    y = [math.log(b / a) for a, b in itertools.pairwise(market)]
    mx, my = math.fsum(x) / len(x), math.fsum(y) / len(y)
    cov = math.fsum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    var = math.fsum((b - my) ** 2 for b in y)
    return finite(cov / var) if var else None
