"""The statistics of a backtest (or any run): backtesting.py 0.6's `stats`, key by key, plus
Freqtrade's streaks, market change and per-symbol / per-strategy / per-controller breakdowns.

Pure: the caller brings the equity curve (one mark per bar), the closed round trips, the closes
of every symbol, the commissions and the initial cash; nothing is read or printed here.
`render_table` and `render_breakdown` return plain text for a terminal.

Where our inputs differ from backtesting.py's, the definition follows ours and says so:
returns and CAGR are measured from `initial_cash` (backtesting.py uses the first equity value,
which is the cash: it never trades on the first bar); Buy & Hold and market change are means
over the symbols of a run (backtesting.py has one symbol); Alpha and Beta need exactly one
symbol whose closes are marked at every bar of the curve (else None).
"""

from __future__ import annotations

import itertools
from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal

from models.performance.drawdown import drawdowns
from models.performance.returns import (
    bar_period_ms,
    beta,
    cagr,
    calendar_of,
    ceil_duration,
    period_returns,
    resolution_ms,
    risk_return,
)
from models.performance.trade_stats import (
    breakdown,
    by_controller,
    by_exit_kind,
    by_strategy,
    by_symbol,
    trade_statistics,
)
from models.performance.trades import OpenTrade
from models.performance.types import GroupStatistics, Performance, RoundTrip, Statistic

Curve = Sequence[tuple[int, Decimal]]


def _change(closes: Sequence[tuple[int, Decimal]], start_ms: int | None) -> float | None:
    values = [c for ts, c in closes if start_ms is None or ts >= start_ms]
    if not values or not values[0]:
        return None
    return float((values[-1] - values[0]) / values[0])


def _mean_change(
    closes: Mapping[str, Curve], start_ms: int | None
) -> tuple[float | None, dict[str, float | None]]:
    per_symbol = {symbol: _change(series, start_ms) for symbol, series in closes.items()}
    known = [c for c in per_symbol.values() if c is not None]
    return (sum(known) / len(known) if known else None), per_symbol


def exposure(times: Sequence[int], trades: Sequence[RoundTrip]) -> float:
    """The share of bars inside a trade (entry bar to exit bar, both included), counted in bars
    as backtesting.py does, not in time."""
    if not times:
        return 0.0
    marks = [0] * (len(times) + 1)
    for t in trades:
        first, last = bisect_left(times, t.entry_ms), bisect_right(times, t.exit_ms)
        if first < last:
            marks[first] += 1
            marks[last] -= 1
    inside, depth = 0, 0
    for m in marks[:-1]:
        depth += m
        inside += depth > 0
    return inside / len(times)


def _check(equity: Curve, initial_cash: Decimal) -> None:
    if not equity:
        raise ValueError("the equity curve is empty")
    if not initial_cash > 0:
        raise ValueError(f"the initial cash must be > 0, got {initial_cash}")
    for (a, _), (b, _) in itertools.pairwise(equity):
        if b <= a:
            raise ValueError(f"the equity curve must have increasing times ({b} after {a})")


def compute_statistics(
    equity: Curve,
    trades: Sequence[RoundTrip],
    closes: Mapping[str, Curve],
    commissions: Decimal,
    initial_cash: Decimal,
    *,
    open_trades: Sequence[OpenTrade] = (),
    trading_start_ms: int | None = None,
    risk_free_rate: float = 0.0,
) -> Performance:
    """The statistics of a run.

    `equity`: (ts_ms, equity) marked at every bar, in time order. `trades`: the closed round
    trips (add `close_open_trades`' to count open positions, as `finalize_trades=True`).
    `closes`: per symbol, (ts_ms, close) per bar. `trading_start_ms`: the first bar a strategy
    could trade (after its indicators warmed up): Buy & Hold is measured from there, market
    change from the first close. `open_trades` are reported (count, unrealised pnl at the last
    close) but do not enter the trade statistics. Raises `ValueError` (one line) for an empty
    curve, times not increasing or an initial cash <= 0."""
    _check(equity, initial_cash)
    times = [ts for ts, _ in equity]
    values = [float(e) for _, e in equity]
    final = equity[-1][1]
    unit_ms = resolution_ms(bar_period_ms(times))
    calendar = calendar_of(times)
    dd = drawdowns(times, values)
    rr = risk_return(
        period_returns(list(zip(times, values, strict=True)), calendar.period),
        calendar.per_year,
        dd.max_drawdown,
        risk_free_rate,
    )
    total_return = float((final - initial_cash) / initial_cash)
    buy_and_hold, _ = _mean_change(closes, trading_start_ms)
    market_change, _ = _mean_change(closes, None)
    b = _beta(times, values, closes)
    alpha = None
    if b is not None and buy_and_hold is not None:
        alpha = total_return - risk_free_rate - b * (buy_and_hold - risk_free_rate)
    last_close = {s: series[-1][1] for s, series in closes.items() if series}
    open_pnl = (
        sum((t.unrealized_pnl(last_close[t.symbol]) for t in open_trades), Decimal(0))
        if all(t.symbol in last_close for t in open_trades)
        else None
    )
    duration = times[-1] - times[0]
    table = [
        Statistic("start", "Start", times[0], "time"),
        Statistic("end", "End", times[-1], "time"),
        Statistic("duration", "Duration", duration, "duration"),
        Statistic("exposure_time", "Exposure Time", exposure(times, trades), "pct"),
        Statistic("equity_final", "Equity Final", final, "money"),
        Statistic("equity_peak", "Equity Peak", max(e for _, e in equity), "money"),
        Statistic("commissions", "Commissions", commissions, "money"),
        Statistic("return", "Return", total_return, "pct"),
        Statistic("buy_and_hold_return", "Buy & Hold Return", buy_and_hold, "pct"),
        Statistic("market_change", "Market Change", market_change, "pct"),
        Statistic("return_ann", "Return (Ann.)", rr.return_ann, "pct"),
        Statistic("volatility_ann", "Volatility (Ann.)", rr.volatility_ann, "pct"),
        Statistic("cagr", "CAGR", cagr(float(initial_cash), float(final), duration), "pct"),
        Statistic("sharpe_ratio", "Sharpe Ratio", rr.sharpe, "ratio"),
        Statistic("sortino_ratio", "Sortino Ratio", rr.sortino, "ratio"),
        Statistic("calmar_ratio", "Calmar Ratio", rr.calmar, "ratio"),
        Statistic("alpha", "Alpha", alpha, "pct"),
        Statistic("beta", "Beta", b, "ratio"),
        Statistic("max_drawdown", "Max. Drawdown", -dd.max_drawdown, "pct"),
        Statistic(
            "avg_drawdown",
            "Avg. Drawdown",
            None if dd.avg_drawdown is None else -dd.avg_drawdown,
            "pct",
        ),
        Statistic(
            "max_drawdown_duration",
            "Max. Drawdown Duration",
            None if dd.max_duration_ms is None else ceil_duration(dd.max_duration_ms, unit_ms),
            "duration",
        ),
        Statistic(
            "avg_drawdown_duration",
            "Avg. Drawdown Duration",
            None if dd.avg_duration_ms is None else ceil_duration(dd.avg_duration_ms, unit_ms),
            "duration",
        ),
        *trade_statistics(trades, unit_ms),
        Statistic(
            "closed_pnl", "Closed Trades PnL", sum((t.pnl for t in trades), Decimal(0)), "money"
        ),
        Statistic("open_trades", "# Open Trades", len(open_trades), "count"),
        Statistic("open_pnl", "Open Trades PnL", open_pnl, "money"),
    ]
    return Performance(
        statistics=tuple(table),
        by_symbol=_with_market_change(breakdown(trades, by_symbol, unit_ms), closes),
        by_strategy=breakdown(trades, by_strategy, unit_ms),
        by_controller=breakdown(trades, by_controller, unit_ms),
        by_exit_kind=breakdown(trades, by_exit_kind, unit_ms),
    )


def _beta(
    times: Sequence[int], values: Sequence[float], closes: Mapping[str, Curve]
) -> float | None:
    if len(closes) != 1:
        return None
    (series,) = closes.values()
    by_time = {ts: float(c) for ts, c in series}
    if any(ts not in by_time for ts in times):
        return None
    return beta(values, [by_time[ts] for ts in times])


def _with_market_change(
    rows: tuple[GroupStatistics, ...], closes: Mapping[str, Curve]
) -> tuple[GroupStatistics, ...]:
    _, per_symbol = _mean_change(closes, None)
    return tuple(
        GroupStatistics(
            row.group,
            (
                *row.statistics,
                Statistic("market_change", "Market Change", per_symbol.get(row.group), "pct"),
            ),
        )
        for row in rows
    )


# ------------------------------------------------------------------------------ plain text


def format_value(stat: Statistic) -> str:
    """A statistic's value as a person reads it: money to cents with thousands separators,
    fractions as percentages, durations as `D days HH:MM:SS`, times as UTC; None as `-`."""
    v = stat.value
    if v is None:
        return "-"
    if stat.unit == "money" and isinstance(v, Decimal | int | float):
        return f"{Decimal(v):,.2f}"
    if stat.unit == "pct" and isinstance(v, float | int | Decimal):
        return f"{float(v) * 100:.2f}%"
    if stat.unit == "ratio" and isinstance(v, float | int | Decimal):
        return f"{float(v):.4f}"
    if stat.unit == "duration" and isinstance(v, int):
        return format_duration(v)
    if stat.unit == "time" and isinstance(v, int):
        return datetime.fromtimestamp(v / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    return str(v)


def format_duration(ms: int) -> str:
    days, rest = divmod(ms, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    text = f"{days} days {hours:02}:{minutes:02}:{seconds:02}"
    return f"{text}.{millis:03}" if millis else text


def render_table(stats: Sequence[Statistic]) -> str:
    """Two aligned columns, label and value, one statistic a line."""
    width = max((len(s.label) for s in stats), default=0)
    return "\n".join(f"{s.label:<{width}}  {format_value(s)}" for s in stats)


def render_breakdown(title: str, rows: Sequence[GroupStatistics]) -> str:
    """A table with a line per group and a column per statistic, the title heading the group
    column; an empty breakdown is the title alone."""
    if not rows:
        return title
    header = [title, *(s.label for s in rows[0].statistics)]
    body = [[row.group, *(format_value(s) for s in row.statistics)] for row in rows]
    widths = [max(len(line[i]) for line in (header, *body)) for i in range(len(header))]
    lines = [header, *body]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    )
