"""Calendar bar intervals (issue 11, item 7): ISO weeks and calendar months as windows, their
spellings in the config, input bars that name them, and the loader that recognises them.

The calendar oracle here is `datetime` (proleptic Gregorian, UTC), independent of the integer
arithmetic in models/market/interval.py."""

from __future__ import annotations

import itertools
import pickle
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.files.replay import load_market_file
from models.config.base import parse_bar_interval
from models.config.settings import ConfigError, build_settings
from models.core.messages import Bar, BarIn, Tick
from models.market.bars import BarBuilder, Rejected, input_end_ms, off_grid_note
from models.market.interval import (
    DAY_MS,
    BarInterval,
    CalendarFit,
    calendar_interval,
    civil_month,
    days_from_civil,
)
from models.market.parsing import MAX_EVENT_MS, MIN_EVENT_MS

D = Decimal
MONTH = BarInterval.months_of(1)
WEEK = BarInterval.weeks(1)


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def month_length(year: int, month: int) -> int:
    """Days in a month, by `datetime` (the oracle)."""
    nxt = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return (nxt - datetime(year, month, 1, tzinfo=UTC)).days


# ------------------------------------------------------------------------ calendar arithmetic


@pytest.mark.parametrize(
    ("year", "month", "days"),
    [
        (2024, 1, 31),
        (2024, 2, 29),  # leap year
        (2023, 2, 28),
        (2000, 2, 29),  # divisible by 400: leap
        (2100, 2, 28),  # divisible by 100, not by 400: not leap
        (1900, 2, 28),
        (2024, 4, 30),
        (2024, 12, 31),
    ],
)
def test_a_month_window_is_the_calendar_month(year: int, month: int, days: int) -> None:
    start = ms(year, month, 1)
    mid = start + 13 * DAY_MS + 12_345
    assert MONTH.window_start(mid) == start
    assert MONTH.window_end(mid) - start == days * DAY_MS == month_length(year, month) * DAY_MS


def test_december_rolls_over_into_the_next_year() -> None:
    assert MONTH.window_end(ms(2024, 12, 31, 23, 59, 59)) == ms(2025, 1, 1)
    assert BarInterval.months_of(3).window_end(ms(2024, 11, 5)) == ms(2025, 1, 1)
    assert BarInterval.months_of(12).window_start(ms(2024, 12, 31)) == ms(2024, 1, 1)


def test_an_instant_on_a_boundary_opens_the_new_window() -> None:
    boundary = ms(2024, 3, 1)
    assert MONTH.window_start(boundary) == boundary
    assert MONTH.window_end(boundary) == ms(2024, 4, 1)
    assert MONTH.window_start(boundary - 1) == ms(2024, 2, 1)
    assert MONTH.window_end(boundary - 1) == boundary


def test_quarters_start_in_january_april_july_october() -> None:
    quarter = BarInterval.months_of(3)
    starts = {quarter.window_start(ms(2024, m, 15)) for m in range(1, 13)}
    assert sorted(starts) == [ms(2024, m, 1) for m in (1, 4, 7, 10)]
    assert (quarter.shortest_ms, quarter.longest_ms) == (90 * DAY_MS, 92 * DAY_MS)
    assert (MONTH.shortest_ms, MONTH.longest_ms) == (28 * DAY_MS, 31 * DAY_MS)


def test_weeks_are_iso_weeks_from_monday() -> None:
    assert datetime(2024, 1, 1, tzinfo=UTC).isoweekday() == 1  # a Monday
    assert WEEK.window_start(ms(2024, 1, 7, 23, 59, 59)) == ms(2024, 1, 1)  # Sunday night
    assert WEEK.window_start(ms(2024, 1, 8)) == ms(2024, 1, 8)  # Monday 00:00 opens a week
    assert WEEK.window_start(ms(2025, 1, 1, 12)) == ms(2024, 12, 30)  # across the new year
    assert WEEK.window_end(ms(1970, 1, 1)) == ms(1970, 1, 5)  # the epoch was a Thursday
    assert BarInterval.fixed(7 * DAY_MS).window_start(ms(2024, 1, 3)) == ms(2023, 12, 28)


def test_times_before_1970_work_too() -> None:
    """Not needed by the shipped data, but events may be as old as 1900 (parsing's bounds)."""
    assert MONTH.window_start(ms(1969, 12, 15)) == ms(1969, 12, 1)
    assert MONTH.window_end(ms(1969, 12, 15)) == ms(1970, 1, 1)
    assert MONTH.window_end(ms(1900, 2, 10)) == ms(1900, 3, 1)
    assert WEEK.window_start(ms(1969, 12, 31)) == ms(1969, 12, 29)


@given(st.integers(-719_162, 2_932_896))  # 0001-01-01 .. 9999-12-31, all datetime holds
def test_civil_dates_agree_with_datetime(days: int) -> None:
    day = datetime(1970, 1, 1) + timedelta(days=days)
    assert civil_month(days) == (day.year, day.month)
    assert days_from_civil(day.year, day.month, day.day) == days


INTERVALS = [
    BarInterval.fixed(1000),
    BarInterval.fixed(60_000),
    BarInterval.fixed(DAY_MS),
    BarInterval.fixed(31 * DAY_MS),
    WEEK,
    BarInterval.weeks(2),
    *(BarInterval.months_of(n) for n in (1, 2, 3, 4, 6, 12)),
]


@given(st.sampled_from(INTERVALS), st.integers(MIN_EVENT_MS, MAX_EVENT_MS - 1))
def test_windows_tile_the_time_line(interval: BarInterval, x: int) -> None:
    """Every instant is in exactly one window: its window holds it, the next window starts
    where it ends and the previous one ends where it starts (no gap, no overlap)."""
    start, end = interval.window_start(x), interval.window_end(x)
    assert start <= x < end
    assert interval.window_start(end) == end  # an end is the next window's start
    assert interval.window_end(start) == end and interval.window_start(end - 1) == start
    assert interval.window_end(start - 1) == start
    assert interval.shortest_ms <= end - start <= interval.longest_ms
    if interval.fixed_ms is not None:  # bit for bit the arithmetic it replaced
        assert start == x - x % interval.fixed_ms
    elif interval.months:
        day = datetime(1970, 1, 1) + timedelta(milliseconds=x)
        first = (day.month - 1) // interval.months * interval.months + 1
        assert start == ms(day.year, first, 1)
    else:
        assert datetime(1970, 1, 1) + timedelta(milliseconds=start) == datetime(
            1970, 1, 1
        ) + timedelta(milliseconds=start - start % DAY_MS)  # midnight
        assert (datetime(1970, 1, 1) + timedelta(milliseconds=start)).isoweekday() == 1


def test_intervals_pickle_by_what_they_are() -> None:
    for interval in INTERVALS:
        assert pickle.loads(pickle.dumps(interval)) == interval


# ---------------------------------------------------------------------------------- spellings


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("1w", "1w"), (" 2w ", "2w"), ("1mo", "1mo"), ("3mo", "3mo"), ("12mo", "12mo")],
)
def test_calendar_spellings(text: str, canonical: str) -> None:
    assert parse_bar_interval(text).text == canonical
    base = {"symbols": {"A": {"bar_interval": text}}, "bars": {"interval": text}}
    settings = build_settings(base, {})
    assert settings.bars.interval == canonical == settings.bar_interval("A").text


def test_durations_stay_fixed_intervals() -> None:
    assert parse_bar_interval("60s") == BarInterval.fixed(60_000) == parse_bar_interval(60)
    assert parse_bar_interval("7d").fixed_ms == 7 * DAY_MS  # epoch-grid weeks, not ISO ones
    assert parse_bar_interval("1m").text == "1m"  # a minute


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("1M", "'1M' is ambiguous: write 1mo for calendar months or 1m for minutes"),
        ("5mo", "5 months do not divide a year: use 1, 2, 3, 4, 6 or 12mo"),
        ("0w", "a bar interval must be > 0"),
        ("0s", "a bar interval must be > 0"),
        ("1y", "'1y' is not a bar interval, e.g. 15m, 1h, 1d, 1w (ISO weeks), 1mo (months)"),
    ],
)
def test_a_bad_bar_interval_is_one_clear_line(bad: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_settings({"symbols": {"A": {}}, "bars": {"interval": bad}}, {})
    assert str(err.value) == f"bars.interval: {says}"
    env = {"STRATFLOW__SYMBOLS__A__BAR_INTERVAL": bad}
    with pytest.raises(ConfigError) as err:
        build_settings({"symbols": {"A": {}}}, env)
    assert str(err.value).endswith(f"symbols.A.bar_interval: {says}")
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------- the bar builder


def tick(ts: int, price: str) -> Tick:
    return Tick(symbol="ABC", ts=datetime.fromtimestamp(ts / 1000, tz=UTC), price=D(price))


def bar_in(ts: int, close: str, **interval: Any) -> BarIn:
    return BarIn(
        symbol="ABC",
        ts=datetime.fromtimestamp(ts / 1000, tz=UTC),
        open=D(1),
        high=D(100),
        low=D(1),
        close=D(close),
        **interval,
    )


def test_ticks_make_calendar_month_bars() -> None:
    b = BarBuilder("ABC", MONTH)
    out: list[Bar] = []
    for day, price in ((ms(2024, 1, 31, 23), "1"), (ms(2024, 2, 1), "2"), (ms(2024, 2, 29), "3")):
        got = b.add(tick(day, price))
        assert not isinstance(got, Rejected)
        out += got
    assert [(x.start_ms, x.end_ms, x.close) for x in out] == [(ms(2024, 1, 1), ms(2024, 2, 1), 1)]
    (feb,) = b.flush()
    assert (feb.start_ms, feb.end_ms, feb.close, feb.trades) == (
        ms(2024, 2, 1),
        ms(2024, 3, 1),
        3,
        2,
    )
    assert isinstance(b.add(tick(ms(2024, 1, 15), "9")), Rejected)  # January closed: late


@pytest.mark.parametrize("stamp_day", ["first", "last"])
def test_a_monthly_input_bar_ends_at_the_next_month(stamp_day: str) -> None:
    """Stamped on the 1st or (pandas' `M`, backtesting.py's BTCUSD) on the last day, a monthly
    bar is its month and is complete at the next month's start, never before."""
    b = BarBuilder("ABC", MONTH)
    emitted: list[Bar] = []
    for i, month in enumerate((1, 2, 3)):
        start = ms(2024, month, 1)
        ts = start if stamp_day == "first" else MONTH.window_end(start) - DAY_MS
        msg = bar_in(ts, str(i + 1), calendar="1mo")
        assert input_end_ms(msg) == MONTH.window_end(start)
        assert off_grid_note(msg, MONTH) is None
        got = b.add(msg)
        assert not isinstance(got, Rejected)
        emitted += got  # closed at once: the bar's end reaches the window's end
    assert [(x.start_ms, x.end_ms, x.close) for x in emitted] == [
        (ms(2024, 1, 1), ms(2024, 2, 1), 1),
        (ms(2024, 2, 1), ms(2024, 3, 1), 2),
        (ms(2024, 3, 1), ms(2024, 4, 1), 3),
    ]


def test_months_fold_into_quarters_and_weeks_into_months() -> None:
    quarter = BarBuilder("ABC", BarInterval.months_of(3))
    out: list[Bar] = []
    for month in (1, 2, 3):
        got = quarter.add(bar_in(ms(2024, month, 1), "1", calendar="1mo"))
        assert not isinstance(got, Rejected)
        out += got
    assert [(x.start_ms, x.end_ms, x.trades) for x in out] == [(ms(2024, 1, 1), ms(2024, 4, 1), 3)]
    monthly = BarBuilder("ABC", MONTH)
    week = bar_in(ms(2024, 1, 29), "5", calendar="1w")  # Mon 29 Jan .. Mon 5 Feb
    note = off_grid_note(week, MONTH)
    assert note is not None and "counted in the window it ends in" in note
    assert not isinstance(monthly.add(week), Rejected)
    assert [x.start_ms for x in monthly.flush()] == [ms(2024, 2, 1)]  # where it ends


def test_a_coarser_input_bar_is_refused() -> None:
    jan = ms(2024, 1, 1)
    for window, msg, reason in (
        (BarInterval.fixed(DAY_MS), bar_in(jan, "1", calendar="1mo"), "1mo is coarser than the 1d"),
        (WEEK, bar_in(jan, "1", calendar="1mo"), "1mo is coarser than the 1w window"),
        (MONTH, bar_in(jan, "1", interval_s=31 * 86400), "31d is coarser than the 1mo window"),
        (BarInterval.months_of(2), bar_in(jan, "1", calendar="3mo"), "3mo is coarser"),
    ):
        got = BarBuilder("ABC", window).add(msg)
        assert isinstance(got, Rejected) and reason in got.reason, (window, got)
    fits = BarBuilder("ABC", BarInterval.fixed(31 * DAY_MS)).add(bar_in(jan, "1", calendar="1mo"))
    assert not isinstance(fits, Rejected)  # a month is no longer than 31 days


def test_an_input_bar_names_exactly_one_interval() -> None:
    with pytest.raises(ValueError, match="exactly one of interval_s"):
        bar_in(ms(2024, 1, 1), "1")
    with pytest.raises(ValueError, match="exactly one of interval_s"):
        bar_in(ms(2024, 1, 1), "1", interval_s=60, calendar="1mo")
    with pytest.raises(ValueError, match="calendar"):
        bar_in(ms(2024, 1, 1), "1", calendar="1M")
    fixed = bar_in(ms(2024, 1, 1), "1", interval_s=60).model_dump_json()
    assert "calendar" not in fixed  # fixed bars are written exactly as before
    monthly = bar_in(ms(2024, 1, 1), "1", calendar="1mo")
    assert "interval_s" not in monthly.model_dump_json()
    assert BarIn.model_validate_json(monthly.model_dump_json()) == monthly
    assert calendar_interval("1mo") is calendar_interval("1mo")  # cached per spelling


def test_a_snapshot_from_before_calendar_intervals_restores() -> None:
    """Bytewax snapshots pickle the builder; one written when it held `interval_ms` restores
    as that fixed interval and carries on as if never interrupted."""
    live = BarBuilder("ABC", BarInterval.fixed(60_000))
    assert not isinstance(live.add(tick(ms(2024, 1, 1, 9, 30), "10")), Rejected)
    slots = {name: getattr(live, name) for name in BarBuilder.__slots__}  # type: ignore[attr-defined]
    slots["interval_ms"] = slots.pop("interval").fixed_ms

    class OldBuilder:  # pickles exactly as the old class did: (None, slot values)
        def __reduce_ex__(self, protocol: Any) -> Any:
            return (object.__new__, (BarBuilder,), (None, slots))

    restored = pickle.loads(pickle.dumps(OldBuilder()))
    assert isinstance(restored, BarBuilder) and restored.interval == BarInterval.fixed(60_000)
    later = tick(ms(2024, 1, 1, 9, 31), "11")
    assert restored.add(later) == live.add(later)
    assert pickle.loads(pickle.dumps(restored)) == restored


# ----------------------------------------------------------------------------- the inference


def series(stamps: list[int]) -> BarInterval | None:
    fit = CalendarFit()
    for s in stamps:
        fit.add(s)
    gaps = sorted(b - a for a, b in itertools.pairwise(stamps))
    return fit.interval(gaps[len(gaps) // 2])


def month_starts(n: int, year: int = 2023, step: int = 1) -> list[int]:
    return [ms(year + i * step // 12, i * step % 12 + 1, 1) for i in range(n)]


def test_calendar_series_are_recognised() -> None:
    starts = month_starts(30)
    ends = [MONTH.window_end(s) - DAY_MS for s in starts]
    assert series(starts) == series(ends) == MONTH
    assert series(starts[:5] + starts[6:]) == MONTH  # a missing month
    assert series(month_starts(12, step=3)) == BarInterval.months_of(3)
    assert series(month_starts(6, step=12)) == BarInterval.months_of(12)
    mondays = [ms(2024, 1, 1) + i * 7 * DAY_MS for i in range(20)]
    assert series(mondays) == WEEK
    assert series([m - DAY_MS for m in mondays]) == WEEK  # Sunday labels (pandas' W)
    assert series([m + 3 * DAY_MS for m in mondays]) is None  # Thursdays: 7d fixed bars
    assert series([ms(2024, 1, 1) + i * DAY_MS for i in range(60)]) is None  # daily
    assert series([*starts[:3], starts[3] + DAY_MS, *starts[4:]]) is None  # the 2nd: no
    assert series([s + 3_600_000 for s in starts]) is None  # not midnight


def write(path: Path, stamps: list[int]) -> Path:
    rows = ["date,Open,High,Low,Close"] + [
        f"{datetime.fromtimestamp(s / 1000, tz=UTC).date()},1,2,1,2" for s in stamps
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_the_loader_infers_calendar_intervals(tmp_path: Path) -> None:
    quarters = load_market_file(write(tmp_path / "q.csv", month_starts(8, step=3)))
    assert quarters.intervals == {"Q": BarInterval.months_of(3)}  # was: "more than 31 days"
    weeks = [ms(2024, 1, 7) + i * 7 * DAY_MS for i in range(10)]  # Sundays
    weekly = load_market_file(write(tmp_path / "w.csv", weeks))
    assert weekly.intervals == {"W": WEEK}
    assert [input_end_ms(m) for m in weekly.messages] == [w + DAY_MS for w in weeks]
    given = load_market_file(write(tmp_path / "g.csv", month_starts(3)), interval="1mo")
    assert [m.calendar for m in given.messages] == ["1mo"] * 3  # type: ignore[union-attr]
