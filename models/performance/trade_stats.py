"""Statistics of a list of round trips: backtesting.py 0.6's trade section (win rate, best,
worst and average trade, durations, profit factor, expectancy, SQN, Kelly) plus Freqtrade's
longest winning and losing streaks, and the same row for each symbol, strategy, controller and
exit kind.

Definitions (backtesting.py's, also in the breakdowns so a row and the total read alike):
a win is a trade with pnl > 0, a loss pnl < 0 (a trade at exactly 0 is neither and breaks a
streak, as in Freqtrade); "Avg. Trade" is the geometric mean of the trades' returns and
"Expectancy" their arithmetic mean; the profit factor is the sum of winning returns over the
absolute sum of losing returns (returns, not money: backtesting.py's choice, which weighs every
trade by its return rather than its size), 0 when every trade lost, None when none lost (it
would be infinite) or there are no trades; SQN = sqrt(n) * mean(pnl) / stdev(pnl, ddof=1);
Kelly = W - (1 - W) / (mean win / mean loss), None without both a win and a loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from decimal import Decimal

from models.performance.returns import ceil_duration, finite, geometric_mean, variance
from models.performance.trades import exit_kind
from models.performance.types import GroupStatistics, RoundTrip, Statistic


def _mean(xs: Sequence[float]) -> float | None:
    return math.fsum(xs) / len(xs) if xs else None


def profit_factor(returns: Sequence[float]) -> float | None:
    gains = math.fsum(r for r in returns if r > 0)
    losses = math.fsum(r for r in returns if r < 0)
    return gains / abs(losses) if losses else None


def streaks(trades: Sequence[RoundTrip]) -> tuple[int, int]:
    """The longest runs of wins and of losses, trades taken in the order they closed."""
    best = {1: 0, -1: 0}
    run_sign, run = 0, 0
    for t in sorted(trades, key=lambda t: t.exit_ms):
        sign = (t.pnl > 0) - (t.pnl < 0)
        run = run + 1 if sign == run_sign else 1
        run_sign = sign
        if sign:
            best[sign] = max(best[sign], run)
    return best[1], best[-1]


def _duration(ms: float | None, unit_ms: int) -> int | None:
    return None if ms is None else ceil_duration(ms, unit_ms)


def trade_statistics(trades: Sequence[RoundTrip], unit_ms: int) -> list[Statistic]:
    """The trade section of the statistics table; durations rounded up to `unit_ms`."""
    n = len(trades)
    returns = [t.return_pct for t in trades]
    pnl = [float(t.pnl) for t in trades]
    wins = [p for p in pnl if p > 0]
    losses = [p for p in pnl if p < 0]
    win_rate = len(wins) / n if n else None
    durations = [t.duration_ms for t in trades]
    std = math.sqrt(variance(pnl)) if n > 1 else math.nan
    sqn = math.sqrt(n) * (math.fsum(pnl) / n) / std if std and math.isfinite(std) else None
    kelly = None
    if win_rate is not None and wins and losses:
        payoff = (math.fsum(wins) / len(wins)) / (-math.fsum(losses) / len(losses))
        kelly = finite(win_rate - (1 - win_rate) / payoff)
    most_wins, most_losses = streaks(trades)
    return [
        Statistic("trades", "# Trades", n, "count"),
        Statistic("win_rate", "Win Rate", win_rate, "pct"),
        Statistic("best_trade", "Best Trade", max(returns) if n else None, "pct"),
        Statistic("worst_trade", "Worst Trade", min(returns) if n else None, "pct"),
        Statistic("avg_trade", "Avg. Trade", finite(geometric_mean(returns)), "pct"),
        Statistic(
            "max_trade_duration",
            "Max. Trade Duration",
            _duration(max(durations) if n else None, unit_ms),
            "duration",
        ),
        Statistic(
            "avg_trade_duration",
            "Avg. Trade Duration",
            _duration(sum(durations) / n if n else None, unit_ms),
            "duration",
        ),
        Statistic("profit_factor", "Profit Factor", profit_factor(returns), "ratio"),
        Statistic("expectancy", "Expectancy", _mean(returns), "pct"),
        Statistic("sqn", "SQN", sqn, "ratio"),
        Statistic("kelly_criterion", "Kelly Criterion", kelly, "ratio"),
        Statistic("max_consecutive_wins", "Max. Consecutive Wins", most_wins, "count"),
        Statistic("max_consecutive_losses", "Max. Consecutive Losses", most_losses, "count"),
    ]


def group_row(trades: Sequence[RoundTrip], unit_ms: int) -> list[Statistic]:
    """One breakdown row: the figures of a group of trades that can be compared across groups."""
    n = len(trades)
    returns = [t.return_pct for t in trades]
    wins = sum(1 for t in trades if t.pnl > 0)
    losses = sum(1 for t in trades if t.pnl < 0)
    duration = sum(t.duration_ms for t in trades) / n if n else None
    return [
        Statistic("trades", "# Trades", n, "count"),
        Statistic("wins", "Wins", wins, "count"),
        Statistic("losses", "Losses", losses, "count"),
        Statistic("win_rate", "Win Rate", wins / n if n else None, "pct"),
        Statistic("pnl", "PnL", sum((t.pnl for t in trades), Decimal(0)), "money"),
        Statistic("fees", "Fees", sum((t.fees for t in trades), Decimal(0)), "money"),
        Statistic("avg_trade", "Avg. Trade", finite(geometric_mean(returns)), "pct"),
        Statistic("expectancy", "Expectancy", _mean(returns), "pct"),
        Statistic("best_trade", "Best Trade", max(returns) if n else None, "pct"),
        Statistic("worst_trade", "Worst Trade", min(returns) if n else None, "pct"),
        Statistic("profit_factor", "Profit Factor", profit_factor(returns), "ratio"),
        Statistic(
            "avg_trade_duration", "Avg. Trade Duration", _duration(duration, unit_ms), "duration"
        ),
    ]


def breakdown(
    trades: Sequence[RoundTrip], key: Callable[[RoundTrip], str], unit_ms: int
) -> tuple[GroupStatistics, ...]:
    """A row per distinct `key` of the trades, groups sorted by name."""
    groups: dict[str, list[RoundTrip]] = {}
    for t in trades:
        groups.setdefault(key(t), []).append(t)
    return tuple(
        GroupStatistics(name, tuple(group_row(groups[name], unit_ms))) for name in sorted(groups)
    )


def by_symbol(t: RoundTrip) -> str:
    return t.symbol


def by_strategy(t: RoundTrip) -> str:
    return t.strategy


def by_controller(t: RoundTrip) -> str:
    return t.controller


def by_exit_kind(t: RoundTrip) -> str:
    return exit_kind(t.exit_reason)
