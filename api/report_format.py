"""How the backtest report writes numbers and times for a reader.

Plain strings, not HTML: the page escapes every cell, so a formatter never has to think about
markup. Money is rounded half up to cents for reading only (the accounting keeps every digit);
amounts that are small by nature (a GPT call's cost) keep more places.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from api.report import visible_text
from models.performance.types import Statistic

NONE = "n/a"
"""What a reader sees for an undefined value (a win rate without trades)."""

MS_PER_MINUTE = 60_000
MS_PER_DAY = 86_400_000


def _decimal(value: Decimal | float | int) -> Decimal | None:
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def money(value: Decimal | float | int | None, places: int = 2) -> str:
    """`1234567.891` -> `1,234,567.89`; half up; never `-0.00`."""
    if value is None or (d := _decimal(value)) is None:
        return NONE
    q = d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    if q == 0:
        q = abs(q)
    return f"{q:,.{places}f}"


def pct(value: Decimal | float | int | None) -> str:
    """A fraction as a percentage: `0.1234` -> `12.34%`."""
    if value is None:
        return NONE
    f = float(value)
    if not math.isfinite(f):
        return "∞%" if f > 0 else ("-∞%" if f < 0 else NONE)
    text = f"{f * 100:,.2f}%"
    return "0.00%" if text == "-0.00%" else text


def ratio(value: Decimal | float | int | None) -> str:
    """A plain ratio (Sharpe, profit factor): two places; an unbounded one as ∞."""
    if value is None:
        return NONE
    f = float(value)
    if math.isnan(f):
        return NONE
    if math.isinf(f):
        return "∞" if f > 0 else "-∞"
    text = f"{f:,.2f}"
    return "0.00" if text == "-0.00" else text


def count(value: Decimal | float | int | None) -> str:
    return NONE if value is None else f"{int(value):,}"


def duration(ms: Decimal | float | int | None) -> str:
    """Milliseconds as `3 days 04:00` (days, then hours:minutes; seconds only when there are
    some: `0 days 00:00:30`)."""
    if ms is None:
        return NONE
    total = int(ms)
    sign = "-" if total < 0 else ""
    total = abs(total)
    days, rest = divmod(total, MS_PER_DAY)
    minutes, rest = divmod(rest, MS_PER_MINUTE)
    hours, minutes = divmod(minutes, 60)
    seconds = rest // 1000
    clock = f"{hours:02d}:{minutes:02d}" + (f":{seconds:02d}" if seconds else "")
    return f"{sign}{days} day{'' if days == 1 else 's'} {clock}"


def utc(ms: Decimal | float | int | None) -> str:
    """Epoch milliseconds as `2024-01-02 13:45:00` (UTC, as every time in the report)."""
    if ms is None:
        return NONE
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def price(value: Decimal | float | int) -> str:
    """A price with the places it needs (EURUSD `1.12345`, GOOG `612.30`), at least two and at
    most eight, with thousands separators."""
    d = _decimal(value)
    if d is None:
        return NONE
    places = min(8, max(2, -int(d.normalize().as_tuple().exponent)))
    return money(d, places)


def quantity(value: Decimal | float | int) -> str:
    """A size as given, without trailing zeros: `10`, `0.015`, `1,250`."""
    d = _decimal(value)
    if d is None:
        return NONE
    d = d.quantize(Decimal("1e-8"), rounding=ROUND_HALF_UP).normalize()
    places = max(0, -int(d.as_tuple().exponent))
    return f"{d:,.{places}f}"


def statistic(stat: Statistic) -> str:
    """A statistic's value as the table shows it, by its unit; text is made visible (hidden
    characters spelled out) but not escaped."""
    v = stat.value
    if v is None:
        return NONE
    if isinstance(v, str):
        return visible_text(v, 200)
    match stat.unit:
        case "money":
            return money(v)
        case "pct":
            return pct(v)
        case "ratio":
            return ratio(v)
        case "count":
            return count(v)
        case "duration":
            return duration(v)
        case "time":
            return utc(v)
        case _:
            return visible_text(str(v), 200)
