"""Statistics of a run (models.performance.stats and its helpers): hand-worked drawdowns,
exposure, streaks and breakdowns; the undefined cases (no trades, a flat curve, one bar, no
losing trade, zero variance) are None, never 0 or NaN; the calendar sampling equals pandas'
resampling, which backtesting.py uses."""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.performance.drawdown import drawdowns
from models.performance.returns import (
    DAY_MS,
    calendar_of,
    geometric_mean,
    period_returns,
    resolution_ms,
)
from models.performance.stats import (
    compute_statistics,
    exposure,
    format_value,
    render_breakdown,
    render_table,
)
from models.performance.trade_stats import streaks
from models.performance.trades import OpenTrade
from models.performance.types import Performance, RoundTrip, Statistic

D = Decimal
MONDAY = 1_704_067_200_000  # 2024-01-01 00:00 UTC, a Monday
CASH = D(1000)


def daily(
    values: Sequence[float | str], start: int = MONDAY, step: int = DAY_MS
) -> list[tuple[int, Decimal]]:
    return [(start + i * step, D(str(v))) for i, v in enumerate(values)]


def trip(
    pnl: str,
    entry_ms: int = MONDAY,
    exit_ms: int = MONDAY + DAY_MS,
    symbol: str = "AAA",
    controller: str = "strategy",
    strategy: str = "s1",
    reason: str = "s1 exit: x",
) -> RoundTrip:
    return RoundTrip(
        symbol=symbol,
        strategy=strategy,
        controller=controller,
        direction="long",
        entry_ms=entry_ms,
        exit_ms=exit_ms,
        entry_price=D(100),
        exit_price=D(100) + D(pnl),
        quantity=D(1),
        fees=D(0),
        pnl=D(pnl),
        exit_reason=reason,
    )


def stats(
    equity: list[tuple[int, Decimal]],
    trades: Sequence[RoundTrip] = (),
    closes: dict[str, list[tuple[int, Decimal]]] | None = None,
) -> Performance:
    closes = closes if closes is not None else {"AAA": equity}
    return compute_statistics(equity, trades, closes, D(0), CASH)


def value(p: Performance, key: str) -> object:
    return p.get(key).value


# ------------------------------------------------------------------ undefined is None


def test_without_trades_the_trade_figures_are_none_not_zero() -> None:
    p = stats(daily([1000, 1010, 1005, 1020]))
    assert value(p, "trades") == 0
    for key in (
        "win_rate",
        "best_trade",
        "worst_trade",
        "avg_trade",
        "max_trade_duration",
        "avg_trade_duration",
        "profit_factor",
        "expectancy",
        "sqn",
        "kelly_criterion",
    ):
        assert value(p, key) is None, key
    assert value(p, "exposure_time") == 0.0
    assert (value(p, "max_consecutive_wins"), value(p, "max_consecutive_losses")) == (0, 0)
    assert p.by_symbol == p.by_controller == ()


def test_a_flat_curve_has_no_volatility_no_ratios_and_no_drawdown() -> None:
    p = stats(daily([1000] * 6))
    assert value(p, "return") == 0.0
    assert value(p, "return_ann") == 0.0
    assert value(p, "volatility_ann") == 0.0
    for key in ("sharpe_ratio", "sortino_ratio", "calmar_ratio", "avg_drawdown"):
        assert value(p, key) is None, key
    assert value(p, "max_drawdown") == 0
    assert value(p, "max_drawdown_duration") is None
    assert value(p, "avg_drawdown_duration") is None


def test_one_bar_gives_no_annualised_figure() -> None:
    p = stats(daily([1000]))
    assert (value(p, "start"), value(p, "end"), value(p, "duration")) == (MONDAY, MONDAY, 0)
    for key in ("return_ann", "volatility_ann", "cagr", "sharpe_ratio", "sortino_ratio", "beta"):
        assert value(p, key) is None, key
    assert value(p, "equity_final") == value(p, "equity_peak") == D(1000)


def test_a_constant_growth_rate_has_zero_variance_so_no_sharpe() -> None:
    curve = [(MONDAY + i * DAY_MS, D(1000) * D("1.01") ** i) for i in range(30)]
    p = stats(curve)
    assert value(p, "volatility_ann") == 0.0
    assert value(p, "sharpe_ratio") is None
    assert value(p, "sortino_ratio") is None  # no losing day either
    assert value(p, "return_ann") == pytest.approx(1.01**365 - 1, rel=1e-9)  # weekends: 365


def test_all_losing_trades_have_a_profit_factor_of_zero() -> None:
    p = stats(daily([1000, 990, 980]), [trip("-1"), trip("-2"), trip("-0.5")])
    assert value(p, "profit_factor") == 0.0
    assert value(p, "win_rate") == 0.0
    assert value(p, "kelly_criterion") is None  # no win to weigh against the losses
    assert value(p, "max_consecutive_losses") == 3


def test_without_a_losing_trade_the_profit_factor_is_none_not_infinite() -> None:
    p = stats(daily([1000, 1010, 1020]), [trip("1"), trip("2")])
    assert value(p, "profit_factor") is None
    assert value(p, "kelly_criterion") is None
    assert value(p, "win_rate") == 1.0


def test_one_trade_has_no_sqn() -> None:
    assert value(stats(daily([1000, 1010]), [trip("3")]), "sqn") is None


# ------------------------------------------------------------------ hand-worked figures


def test_trade_figures_by_hand() -> None:
    trades = [trip("10"), trip("-5"), trip("20"), trip("0")]
    p = stats(daily([1000, 1025]), trades)
    assert value(p, "win_rate") == 0.5
    assert value(p, "profit_factor") == pytest.approx(30 / 5)
    assert value(p, "expectancy") == pytest.approx((0.1 - 0.05 + 0.2) / 4)
    assert value(p, "avg_trade") == pytest.approx((1.1 * 0.95 * 1.2) ** 0.25 - 1)
    assert (value(p, "best_trade"), value(p, "worst_trade")) == (0.2, -0.05)
    pnl = [10, -5, 20, 0]
    mean, std = sum(pnl) / 4, pd.Series(pnl).std()
    assert value(p, "sqn") == pytest.approx(2 * mean / std)
    assert value(p, "kelly_criterion") == pytest.approx(0.5 - 0.5 / (15 / 5))
    assert value(p, "closed_pnl") == D(25)


def test_drawdowns_by_hand() -> None:
    # peak 100 on day 0, trough 90, back at 100 on day 3; then down to 80 and still under water
    curve = daily([100, 90, 95, 100, 80, 85])
    dd = drawdowns([t for t, _ in curve], [float(v) for _, v in curve])
    assert dd.max_drawdown == pytest.approx(0.2)
    assert dd.avg_drawdown == pytest.approx(0.15)
    assert (dd.max_duration_ms, dd.avg_duration_ms) == (3 * DAY_MS, 2.5 * DAY_MS)
    p = compute_statistics(curve, [], {}, D(0), D(100))
    assert value(p, "max_drawdown") == pytest.approx(-0.2)
    assert value(p, "avg_drawdown_duration") == 3 * DAY_MS  # 2.5 days rounded up to the bar


def test_a_drawdown_only_on_the_last_bar_is_no_period() -> None:
    curve = daily([100, 110, 120, 108])
    dd = drawdowns([t for t, _ in curve], [float(v) for _, v in curve])
    assert dd.max_drawdown == pytest.approx(0.1)
    assert dd.periods == ()
    assert dd.max_duration_ms is None
    assert dd.avg_drawdown == pytest.approx(0.1)


def test_exposure_counts_bars_from_entry_to_exit_inclusive() -> None:
    times = [MONDAY + i * DAY_MS for i in range(10)]
    trades = [
        trip("1", times[1], times[3]),
        trip("1", times[3], times[4]),  # shares bar 3
        trip("1", times[8], times[8] + 1),  # one bar, exit between bars
    ]
    assert exposure(times, trades) == pytest.approx(5 / 10)


def test_streaks_follow_the_closing_order_and_a_flat_trade_breaks_them() -> None:
    pnl = ["1", "1", "-1", "0", "1", "1", "1", "-1", "-1", "0", "-1"]
    trades = [trip(p, MONDAY, MONDAY + i) for i, p in enumerate(pnl)]
    assert streaks(list(reversed(trades))) == (3, 2)


def test_buy_and_hold_starts_after_warmup_and_market_change_is_the_mean_over_symbols() -> None:
    equity = daily([1000, 1000, 1000])
    closes = {"AAA": daily([100, 200, 150]), "BBB": daily([10, 10, 12])}
    p = compute_statistics(equity, [], closes, D(0), CASH, trading_start_ms=MONDAY + DAY_MS)
    assert value(p, "buy_and_hold_return") == pytest.approx(((150 / 200 - 1) + 0.2) / 2)
    assert value(p, "market_change") == pytest.approx((0.5 + 0.2) / 2)
    assert value(p, "alpha") is None and value(p, "beta") is None  # one market needed


def test_breakdowns_per_symbol_strategy_controller_and_exit_kind() -> None:
    trades = [
        trip("10", symbol="AAA", controller="gpt", strategy="g", reason="take profit now"),
        trip("-5", symbol="BBB", controller="local", strategy="local-routine", reason="risk"),
        trip("4", symbol="AAA", controller="strategy", reason="s1 take_profit: close >= t"),
        trip("-2", symbol="AAA", controller="strategy", reason="s1 stop_loss: close <= s"),
    ]
    closes = {"AAA": daily([100, 110]), "BBB": daily([50, 40])}
    p = stats(daily([1000, 1007]), trades, closes)
    assert [r.group for r in p.by_symbol] == ["AAA", "BBB"]
    assert [r.group for r in p.by_controller] == ["gpt", "local", "strategy"]
    assert [r.group for r in p.by_strategy] == ["g", "local-routine", "s1"]
    assert [r.group for r in p.by_exit_kind] == ["other", "stop_loss", "take_profit"]
    aaa = {s.key: s.value for s in p.by_symbol[0].statistics}
    assert (aaa["trades"], aaa["wins"], aaa["losses"], aaa["pnl"]) == (3, 2, 1, D(12))
    assert aaa["market_change"] == pytest.approx(0.1)
    assert aaa["profit_factor"] == pytest.approx(0.14 / 0.02)
    strategy = {s.key: s.value for s in p.by_controller[2].statistics}
    assert (strategy["trades"], strategy["win_rate"]) == (2, 0.5)
    keys = [[s.key for s in row.statistics] for row in p.by_controller]
    assert all(k == keys[0] for k in keys)


def test_open_trades_are_reported_apart_at_the_last_close() -> None:
    open_trade = OpenTrade(
        symbol="AAA",
        strategy="s1",
        controller="strategy",
        direction="long",
        entry_ms=MONDAY,
        last_ms=MONDAY,
        entry_quantity=D(2),
        entry_notional=D(200),
        exit_quantity=D(0),
        exit_notional=D(0),
        fees=D(1),
    )
    p = compute_statistics(
        daily([1000, 1020]), [], {"AAA": daily([100, 110])}, D(1), CASH, open_trades=[open_trade]
    )
    assert value(p, "open_trades") == 1
    assert value(p, "open_pnl") == D(19)
    assert value(p, "trades") == 0  # not counted as a trade, as backtesting.py by default


def test_the_keys_are_unique_and_snake_case() -> None:
    p = stats(daily([1000, 1010]), [trip("1")])
    keys = [s.key for s in p.statistics]
    assert len(keys) == len(set(keys))
    assert all(k.isidentifier() and k == k.lower() for k in keys)


@pytest.mark.parametrize(
    ("equity", "cash", "message"),
    [
        ([], CASH, "empty"),
        (daily([1, 2])[::-1], CASH, "increasing times"),
        (daily([1, 2]), D(0), "initial cash"),
    ],
)
def test_bad_inputs_are_one_line_errors(
    equity: list[tuple[int, Decimal]], cash: Decimal, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        compute_statistics(equity, [], {}, D(0), cash)


# ------------------------------------------------------------------ calendar and resampling


@pytest.mark.parametrize(
    ("step", "days", "period", "per_year"),
    [
        (DAY_MS, 7, "day", 365),  # crypto: every day trades
        (DAY_MS, 5, "day", 252),  # Monday to Friday only
        (3_600_000, 24 * 5, "day", 252),  # intraday on weekdays: sampled daily
        (7 * DAY_MS, 7, "week", 52),
    ],
)
def test_the_calendar_follows_backtesting_py(
    step: int, days: int, period: str, per_year: int
) -> None:
    n = 200
    times = [MONDAY + i * step for i in range(n)]
    if days == 5:  # skip weekends
        times = [t for t in (MONDAY + i * DAY_MS for i in range(n)) if (t // DAY_MS + 3) % 7 < 5]
    if step == 3_600_000 and days == 24 * 5:
        times = [t for t in times if (t // DAY_MS + 3) % 7 < 5]
    calendar = calendar_of(times)
    assert (calendar.period, calendar.per_year) == (period, per_year)


@pytest.mark.parametrize("delta", ["1D", "1h", "90min", "1D1h", "15s", "1500ms", "0s", "7D"])
def test_durations_round_to_pandas_resolution(delta: str) -> None:
    expected = pd.Timedelta("1" + pd.Timedelta(delta).resolution_string).value // 1_000_000
    assert resolution_ms(pd.Timedelta(delta).value // 1_000_000) == expected


_FREQ = {"day": "D", "week": "W", "month": "ME", "year": "YE"}


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.integers(min_value=1, max_value=40 * DAY_MS), min_size=1, max_size=60),
    values=st.lists(st.floats(min_value=1, max_value=1e6), min_size=60, max_size=60),
    period=st.sampled_from(sorted(_FREQ)),
)
def test_period_returns_equal_pandas_resampling(
    gaps: list[int], values: list[float], period: str
) -> None:
    times = [MONDAY - 3 * DAY_MS]
    for gap in gaps:
        times.append(times[-1] + gap)
    curve = list(zip(times, values, strict=False))
    series = pd.Series(
        [v for _, v in curve], index=pd.to_datetime([t for t, _ in curve], unit="ms")
    )
    expected = series.resample(_FREQ[period]).last().dropna().pct_change().dropna()
    assert period_returns(curve, period) == pytest.approx(list(expected), rel=1e-12)


def test_geometric_mean_edges() -> None:
    assert math.isnan(geometric_mean([]))
    assert geometric_mean([0.1, -1.0]) == 0.0  # a total loss
    assert geometric_mean([0.21, 0.0]) == pytest.approx(0.1)


# ------------------------------------------------------------------ text


def test_values_read_as_people_expect() -> None:
    assert format_value(Statistic("x", "X", D("12345.678"), "money")) == "12,345.68"
    assert format_value(Statistic("x", "X", 0.12345, "pct")) == "12.35%"
    assert format_value(Statistic("x", "X", 90061001, "duration")) == "1 days 01:01:01.001"
    assert format_value(Statistic("x", "X", MONDAY, "time")) == "2024-01-01 00:00:00"
    assert format_value(Statistic("x", "X", None, "ratio")) == "-"


def test_tables_render_as_aligned_text() -> None:
    p = stats(daily([1000, 1010]), [trip("1", symbol="AAA"), trip("-1", symbol="BBB")])
    table = render_table(p.statistics).splitlines()
    assert len(table) == len(p.statistics)
    assert table[0].startswith("Start") and table[0].endswith("2024-01-01 00:00:00")
    column = max(len(s.label) for s in p.statistics) + 2
    assert [line[column:] for line in table] == [format_value(s) for s in p.statistics]
    rows = render_breakdown("Symbol", p.by_symbol).splitlines()
    assert rows[0].startswith("Symbol") and "# Trades" in rows[0]
    assert [r.split()[0] for r in rows[1:]] == ["AAA", "BBB"]
    assert render_breakdown("Symbol", ()) == "Symbol"


def test_no_cagr_for_a_run_shorter_than_a_day() -> None:
    from models.performance.returns import cagr

    half_hour = 30 * 60_000
    assert cagr(100_000.0, 100_989.67, half_hour) is None
    one_year = 365 * 86_400_000 + 6 * 3_600_000
    got = cagr(100.0, 110.0, one_year)
    assert got is not None and abs(got - 0.10) < 1e-12
