"""Bar intervals: fixed lengths on the UTC epoch grid, or calendar weeks and months.

Why a type and not a number of milliseconds: a calendar month is 28 to 31 days, so "the window
of an instant" is not `ts - ts % length`. Every place that computes a window (the bar builder,
an input bar's end, lateness, the jump guard's threshold, the file loader's inference) asks a
`BarInterval` instead, and a fixed interval answers exactly as the arithmetic it replaces.

Spellings (`bars.interval`, `symbols.X.bar_interval`, `stratflow replay --interval`, an input
bar's `calendar`):
- a duration, as elsewhere in the config: `500ms`, `30s`, `1m` (a minute), `1h`, `1d`, `7d`, a
  bare number of seconds. Fixed windows `[k * length, (k + 1) * length)` counted from
  1970-01-01T00:00Z, so `7d` windows start on Thursdays (1970-01-01 was one).
- `1w` (`Nw`): ISO weeks, Monday 00:00 UTC to the next Monday; N-week windows count from
  Monday 1970-01-05.
- `1mo` (`Nmo`, N dividing a year: 1, 2, 3, 4, 6, 12): calendar months in UTC (28 to 31 days);
  N-month windows start in months 1, 1 + N, ... of the year, so `3mo` are the quarters from
  January, April, July and October and `12mo` are years.
- `1M` is refused: it is a month at some exchanges and differs from our minute `1m` by case
  only. The error says to write `1mo` or `1m`.
Times before 1970 work too (floor division throughout): events may be as old as 1900
(models/market/parsing.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

DAY_MS: Final = 86_400_000
WEEK_MS: Final = 7 * DAY_MS
MONDAY_MS: Final = 4 * DAY_MS
"""1970-01-05T00:00Z, the first Monday of the epoch: where week windows are counted from."""
MONTH_COUNTS: Final = (1, 2, 3, 4, 6, 12)
"""Months per calendar window: the divisors of a year, so windows never straddle one."""

_CALENDAR = re.compile(r"^\s*(\d+)\s*(w|mo|M)\s*$")


def span_text(ms: int) -> str:
    """A length in the largest whole unit: `1d`, `90m`, `1500ms` (how durations are shown)."""
    for unit, size in (("d", DAY_MS), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def civil_month(days: int) -> tuple[int, int]:
    """(year, month) of the day `days` after 1970-01-01 (the inverse of `days_from_civil`)."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month


def _month_start_ms(index: int) -> int:
    """Epoch ms of the first instant of month `index` (year * 12 + month - 1)."""
    return days_from_civil(index // 12, index % 12 + 1, 1) * DAY_MS


def _month_index(ms: int) -> int:
    year, month = civil_month(ms // DAY_MS)
    return year * 12 + month - 1


@dataclass(frozen=True, slots=True)
class BarInterval:
    """One bar interval; build it with `fixed`, `weeks`, `months` or `parse_calendar`.

    `fixed_ms` is the length of an interval on the epoch grid, None for a calendar interval
    (weeks, months): code that only knows `ts - ts % length` must not run for those. It is a
    field, not a property, because the bar builder reads it on every tick."""

    text: str
    fixed_ms: int | None
    step_ms: int  # the length of every window (fixed, weeks); 0 for months
    months: int = 0
    anchor_ms: int = 0  # fixed grids count from here: 0, or a Monday for weeks

    @classmethod
    def fixed(cls, ms: int) -> BarInterval:
        if ms <= 0:
            raise ValueError("a bar interval must be > 0")
        return cls(span_text(ms), ms, ms)

    @classmethod
    def weeks(cls, n: int = 1) -> BarInterval:
        if n <= 0:
            raise ValueError("a bar interval must be > 0")
        return cls(f"{n}w", None, n * WEEK_MS, 0, MONDAY_MS)

    @classmethod
    def months_of(cls, n: int = 1) -> BarInterval:
        if n not in MONTH_COUNTS:
            raise ValueError(f"{n} months do not divide a year: use 1, 2, 3, 4, 6 or 12mo")
        return cls(f"{n}mo", None, 0, n)

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled (in recovery snapshots) by what it is, not by its fields' order, so fields
        added later cannot shift an old snapshot's values."""
        return (_unpickle, (self.text, self.fixed_ms))

    def __str__(self) -> str:
        return self.text

    @property
    def is_calendar(self) -> bool:
        return self.fixed_ms is None

    def window_start(self, ms: int) -> int:
        """Start of the window holding the instant `ms` (epoch ms)."""
        if self.months:
            index = _month_index(ms)
            return _month_start_ms(index - index % self.months)
        return ms - (ms - self.anchor_ms) % self.step_ms

    def window_end(self, ms: int) -> int:
        """End (exclusive) of the window holding `ms`: the next window's start, > `ms`."""
        if self.months:
            index = _month_index(ms)
            return _month_start_ms(index - index % self.months + self.months)
        return self.window_start(ms) + self.step_ms

    @property
    def longest_ms(self) -> int:
        """The longest window: the length itself, or 31 days for `1mo`, 92 for `3mo`."""
        return self.step_ms or _month_lengths(self.months)[1]

    @property
    def shortest_ms(self) -> int:
        """The shortest window: the length itself, or 28 days for `1mo`, 90 for `3mo`."""
        return self.step_ms or _month_lengths(self.months)[0]

    def holds(self, inner: BarInterval) -> bool:
        """Whether every bar of `inner` fits in one window of this interval once realigned
        (models/market/bars.py): months in whole months, anything else by length."""
        if inner.months and self.months:
            return self.months % inner.months == 0
        return inner.longest_ms <= self.shortest_ms


@lru_cache(maxsize=64)
def _month_lengths(n: int) -> tuple[int, int]:
    """(shortest, longest) n-month window over 2001..2004 (a leap year and three others; the
    century rule only makes a February shorter, never a window longer than these)."""
    first = 2001 * 12
    lengths = [
        _month_start_ms(i + n) - _month_start_ms(i) for i in range(first, first + 48) if i % n == 0
    ]
    return min(lengths), max(lengths)


def parse_calendar(text: str) -> BarInterval | None:
    """The calendar interval `text` spells (`1w`, `1mo`, `3mo`), None when it spells none
    (a duration, or nothing); ValueError for a calendar spelling that is wrong (`0w`, `5mo`,
    and `1M`, which is ambiguous)."""
    m = _CALENDAR.match(text)
    if m is None:
        return None
    n, unit = int(m.group(1)), m.group(2)
    if unit == "M":
        raise ValueError(
            f"{text.strip()!r} is ambiguous: write {n}mo for calendar months or {n}m for minutes"
        )
    return BarInterval.weeks(n) if unit == "w" else BarInterval.months_of(n)


@lru_cache(maxsize=64)
def calendar_interval(text: str) -> BarInterval:
    """The calendar interval an input bar names in its `calendar` field (cached: bars name it
    on every message); ValueError when `text` is not a calendar spelling."""
    found = parse_calendar(text)
    if found is None:
        raise ValueError(f"{text!r} is not a calendar interval, e.g. 1w, 1mo, 3mo")
    return found


def _unpickle(text: str, fixed_ms: int | None) -> BarInterval:
    return BarInterval.fixed(fixed_ms) if fixed_ms is not None else calendar_interval(text)


_SERIES_GUESSES: Final = (
    BarInterval.weeks(1),
    BarInterval.months_of(1),
    BarInterval.months_of(3),
    BarInterval.months_of(12),
)


class CalendarFit:
    """Which calendar interval a symbol's bar stamps follow, streamed in time order (the file
    loader's inference, connectors/files/market_file.py).

    A series is a calendar one when every stamp is 00:00 UTC of the first day of its period (a
    week's Monday, a month's 1st) or every stamp is 00:00 of the period's last day (the labels
    of pandas' `W` and `M` resampling: Sunday, the 28th-31st; backtesting.py's BTCUSD is
    such), and no two stamps fall in one period. The first stamp that breaks a guess ends it,
    so a file of minute or daily bars costs a few checks, not one per row."""

    def __init__(self) -> None:
        # [interval, stamped on the period's last day, window start of the previous stamp]
        self._alive: list[tuple[BarInterval, bool, int | None]] = [
            (iv, at_end, None) for iv in _SERIES_GUESSES for at_end in (False, True)
        ]

    def add(self, ms: int) -> None:
        if not self._alive:
            return
        if ms % DAY_MS:
            self._alive = []
            return
        kept: list[tuple[BarInterval, bool, int | None]] = []
        for iv, at_end, previous in self._alive:
            start = iv.window_start(ms)
            label = iv.window_end(ms) - DAY_MS if at_end else start
            if label == ms and start != previous:
                kept.append((iv, at_end, start))
        self._alive = kept

    def interval(self, median_gap_ms: float) -> BarInterval | None:
        """The calendar interval the stamps fit whose window lengths hold the median gap
        between them (a missing bar now and then does not move a median), or None."""
        for iv, _at_end, _previous in self._alive:
            if iv.shortest_ms <= median_gap_ms <= iv.longest_ms:
                return iv
        return None
