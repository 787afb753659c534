"""The backtest report without a browser: how numbers read, what hostile text becomes, that the
page references nothing outside itself, and the series behind the charts (buy and hold,
drawdown, monthly returns, thinning)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api import report_format as fmt
from api.backtest_charts import (
    OhlcBar,
    buy_and_hold,
    drawdown,
    monthly_returns,
    thin_bars,
    thin_line,
)
from api.backtest_report import BacktestReport, render, write_backtest_report
from models.performance.types import RoundTrip, Statistic
from tests.support import backtests
from tests.support.backtests import HOSTILE

DAY = 86_400_000


# ---- numbers for reading ----


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("1234.565"), "1,234.57"),  # half up, not to even
        (Decimal("1234.575"), "1,234.58"),
        (Decimal("1234567.891"), "1,234,567.89"),
        (Decimal("-1234.5"), "-1,234.50"),
        (Decimal("-0.004"), "0.00"),  # never "-0.00"
        (Decimal("0E-12"), "0.00"),
        (12.5, "12.50"),
        (7, "7.00"),
        (None, "n/a"),
        (float("nan"), "n/a"),
    ],
)
def test_money_is_rounded_to_cents_with_thousands_separators(
    value: Decimal | float | None, text: str
) -> None:
    assert fmt.money(value) == text


def test_small_amounts_keep_the_places_asked_for() -> None:
    assert fmt.money(Decimal("0.02134"), 4) == "0.0213"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.1234, "12.34%"),
        (-0.05, "-5.00%"),
        (Decimal("0.5"), "50.00%"),
        (12.0, "1,200.00%"),
        (-0.00001, "0.00%"),
        (None, "n/a"),
        (float("inf"), "∞%"),
    ],
)
def test_pct_reads_a_fraction_as_a_percentage(value: Decimal | float | None, text: str) -> None:
    assert fmt.pct(value) == text


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (3 * DAY + 4 * 3_600_000, "3 days 04:00"),
        (DAY, "1 day 00:00"),
        (0, "0 days 00:00"),
        (5 * 60_000, "0 days 00:05"),
        (30_000, "0 days 00:00:30"),
        (400 * DAY + 23 * 3_600_000 + 59 * 60_000, "400 days 23:59"),
        (None, "n/a"),
    ],
)
def test_durations_read_as_days_and_clock(ms: int | None, text: str) -> None:
    assert fmt.duration(ms) == text


@given(st.integers(min_value=0, max_value=10**12))
def test_a_duration_reads_back_to_its_whole_seconds(ms: int) -> None:
    days, clock = fmt.duration(ms).split(" day")
    parts = [int(p) for p in clock.lstrip("s ").split(":")]
    seconds = parts[0] * 3600 + parts[1] * 60 + (parts[2] if len(parts) == 3 else 0)
    assert int(days) * 86_400 + seconds == ms // 1000


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("1.12345"), "1.12345"),
        (Decimal("612.3"), "612.30"),
        (Decimal("60000"), "60,000.00"),
        (Decimal("0.000012345"), "0.00001235"),
    ],
)
def test_prices_keep_the_places_they_need(value: Decimal, text: str) -> None:
    assert fmt.price(value) == text


def test_sizes_drop_trailing_zeros() -> None:
    assert [fmt.quantity(Decimal(q)) for q in ("10.000", "0.0150", "1250")] == [
        "10",
        "0.015",
        "1,250",
    ]


def test_statistics_read_by_unit() -> None:
    start = int(datetime(2024, 1, 2, 13, 45, tzinfo=UTC).timestamp() * 1000)
    stats = [
        Statistic("a", "A", Decimal("1234.5"), "money"),
        Statistic("b", "B", 0.25, "pct"),
        Statistic("c", "C", 1.2345, "ratio"),
        Statistic("d", "D", 12345, "count"),
        Statistic("e", "E", DAY + 60_000, "duration"),
        Statistic("f", "F", start, "time"),
        Statistic("g", "G", "a\u202etext", "text"),
        Statistic("h", "H", None, "pct"),
    ]
    assert [fmt.statistic(s) for s in stats] == [
        "1,234.50",
        "25.00%",
        "1.23",
        "12,345",
        "1 day 00:01",
        "2024-01-02 13:45:00",
        "a\\u202etext",  # a bidi override is spelled out, not obeyed
        "n/a",
    ]


# ---- the page ----


class _Refs(HTMLParser):
    """Every tag and every URL-bearing attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.urls: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "action", "srcset", "poster", "data") and value:
                self.urls.append((tag, value))


def _hostile_report() -> BacktestReport:
    base = backtests.report(5, bars_per_symbol=300, trades_per_symbol=4, strategy=HOSTILE)
    trips = [
        RoundTrip(
            **{**{f: getattr(t, f) for f in t.__slots__}, "exit_reason": "</script>" + HOSTILE}
        )
        for t in base.trades
    ]
    return BacktestReport(
        title=HOSTILE,
        run_id=HOSTILE,
        dataset="</script><script>alert(2)</script>",
        initial_cash=base.initial_cash,
        equity=base.equity,
        bars={HOSTILE: next(iter(base.bars.values()))},
        trades=[
            RoundTrip(**{**{f: getattr(t, f) for f in t.__slots__}, "symbol": HOSTILE})
            for t in trips
        ],
        statistics=[*base.statistics, Statistic("x", HOSTILE, HOSTILE, "text")],
        settings={"strategy": {"name": HOSTILE}, "gpt": {"api_key": "sk-live-abcdef"}},
        gpt_calls=base.gpt_calls,
    )


@pytest.fixture(scope="module")
def hostile_page() -> str:
    return render(
        [_hostile_report(), backtests.report(6, bars_per_symbol=200, trades_per_symbol=3)]
    )


def test_hostile_text_is_escaped_everywhere(hostile_page: str) -> None:
    assert HOSTILE not in hostile_page
    assert "<script>alert(2)" not in hostile_page
    assert hostile_page.count("</script>") == hostile_page.count("<script")  # none closed early
    assert "&lt;img src=x onerror=alert(1)&gt;" in hostile_page  # shown, as text
    parser = _Refs()
    parser.feed(hostile_page)
    assert "img" not in parser.tags


def test_credentials_in_the_settings_are_not_shown(hostile_page: str) -> None:
    assert "sk-live-abcdef" not in hostile_page
    assert "gpt.api_key" in hostile_page


def test_the_page_references_nothing_outside_itself(hostile_page: str) -> None:
    parser = _Refs()
    parser.feed(hostile_page)
    remote = [(t, u) for t, u in parser.urls if not u.startswith("#")]
    assert remote == []
    assert parser.tags.count("script") == 2  # plotly.js once, then the figures
    assert parser.tags.count("link") == 0


def test_the_file_is_written_where_asked(tmp_path: Path) -> None:
    report = backtests.report(7, bars_per_symbol=100, trades_per_symbol=2)
    path = write_backtest_report([report], tmp_path / "out" / "report.html")
    assert path.read_text(encoding="utf-8") == render([report])


def test_no_backtest_is_a_mistake() -> None:
    with pytest.raises(ValueError, match="at least one"):
        render([])


# ---- the series behind the charts ----


def _bar(ms: int, close: str) -> OhlcBar:
    c = Decimal(close)
    return OhlcBar(ms, c, c, c, c)


def test_buy_and_hold_splits_the_cash_evenly_and_holds() -> None:
    bars = {
        "A": [_bar(0, "10"), _bar(DAY, "20")],  # doubles
        "B": [_bar(DAY, "5"), _bar(2 * DAY, "4")],  # starts a day later, loses a fifth
    }
    curve = buy_and_hold(bars, Decimal(100_000), [0, DAY, 2 * DAY])
    half = Decimal(50_000)
    assert curve == [
        (0, half + half),  # B's half still cash
        (DAY, half * 2 + half),
        (2 * DAY, half * 2 + half * Decimal(4) / Decimal(5)),
    ]


curves = st.lists(
    st.decimals(min_value=1, max_value=10**6, places=2), min_size=1, max_size=200
).map(lambda vs: [(i * DAY * 3, v) for i, v in enumerate(vs)])


@given(curves)
def test_drawdown_is_zero_at_each_new_high_and_never_positive(
    curve: list[tuple[int, Decimal]],
) -> None:
    dd = drawdown(curve)
    peak = Decimal(0)
    for (_, v), (_, d) in zip(curve, dd, strict=True):
        assert d <= 0
        if v >= peak:
            assert d == 0
            peak = v


@given(curves, st.decimals(min_value=1, max_value=10**6, places=2))
def test_monthly_returns_compound_to_the_whole_return(
    curve: list[tuple[int, Decimal]], initial: Decimal
) -> None:
    months = monthly_returns(curve, initial)
    assert list(months) == sorted(months)
    assert math.isclose(
        math.prod(1 + r for r in months.values()),
        float(curve[-1][1] / initial),
        rel_tol=1e-9,
    )


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=3000), st.integers(30, 1000))
def test_thinning_a_line_keeps_its_ends_and_extremes(values: list[float], limit: int) -> None:
    points = [(i, v) for i, v in enumerate(values)]
    thin = thin_line(points, limit)
    assert len(thin) <= limit + 1
    assert thin[0] == points[0]
    assert thin[-1] == points[-1]
    assert min(v for _, v in thin) == min(values)
    assert max(v for _, v in thin) == max(values)
    assert [i for i, _ in thin] == sorted({i for i, _ in thin})


@pytest.mark.slow
@given(
    st.integers(50, 3000),
    st.integers(20, 400),
    st.lists(st.integers(0, 10**6), max_size=20),
)
def test_thinning_candles_keeps_trade_bars_and_the_range(
    n: int, limit: int, trade_offsets: list[int]
) -> None:
    bars = [
        OhlcBar(i * 60_000, Decimal(i), Decimal(i + 5), Decimal(i - 5 - i % 7), Decimal(i + 1))
        for i in range(n)
    ]
    trade_ms = [(o % n) * 60_000 + 1000 for o in trade_offsets]  # inside a bar
    thin = thin_bars(bars, trade_ms, limit)
    kept = {(ms // 60_000) for ms in trade_ms}
    assert len(thin) <= max(limit, len(kept) + limit // 2) + 2 * len(kept)
    for i in kept:  # each trade's bar as it was
        assert bars[i] in thin
    assert thin[0].open == bars[0].open
    assert thin[-1].close == bars[-1].close
    assert max(b.high for b in thin) == max(b.high for b in bars)
    assert min(b.low for b in thin) == min(b.low for b in bars)
    assert [b.ts_ms for b in thin] == sorted({b.ts_ms for b in thin})


def test_gpt_decisions_in_sample_for_the_model_are_a_warning_banner() -> None:
    """Issue 12, part 4: the run's label against the model's knowledge cutoff, from the one
    place that words it (`RunLabel.banner`), as a warning when some decision is in-sample."""
    from dataclasses import replace

    from models.validation.cutoff import label_decision, label_run

    base = backtests.report(7, bars_per_symbol=50, trades_per_symbol=1)
    old, new = 1_262_304_000_000, 1_800_000_000_000  # 2010 and 2027
    run = label_run(
        (label_decision("gpt-4o", ms, anonymised=False), ms) for ms in (old, old + 1, new)
    )
    flagged = render([replace(base, in_sample=run.banner(), in_sample_flagged=run.flagged > 0)])
    assert "class='banner insample' id='in-sample-0'" in flagged
    assert "IN-SAMPLE FOR THE MODEL: 2 of 3 GPT decisions (gpt-4o)" in flagged
    later = label_run([(label_decision("gpt-4o", new, anonymised=False), new)])
    calm = render([replace(base, in_sample=later.banner(), in_sample_flagged=False)])
    assert "class='banner' id='in-sample-0'" in calm and "insample'" not in calm
    assert "id='in-sample-0'" not in render([base])  # no GPT decision: no banner
