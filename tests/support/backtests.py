"""Plausible backtest results for the report's tests: random-walk bars, trades on them and the
equity curve those trades make, built from a seed (no dataset, no store, no flow).

The numbers only need to be coherent (a trade's P&L is its price move times its size less fees,
the equity is the cash plus the open trades marked at each close), not a strategy's.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

from api.backtest_charts import OhlcBar, drawdown
from api.backtest_report import BacktestReport, Breakdown, GptCalls
from models.performance.types import RoundTrip, Statistic

HOSTILE = "<img src=x onerror=alert(1)>"


def walk(
    seed: int, start: datetime, step_ms: int, n: int, first: float, places: int
) -> list[OhlcBar]:
    rng = random.Random(seed)
    t0 = int(start.replace(tzinfo=UTC).timestamp() * 1000)
    q = Decimal(1).scaleb(-places)
    out: list[OhlcBar] = []
    price = first
    for i in range(n):
        o = price
        c = max(o * (1 + rng.gauss(0.0002, 0.01)), first * 0.05)
        hi = max(o, c) * (1 + abs(rng.gauss(0, 0.003)))
        lo = min(o, c) * (1 - abs(rng.gauss(0, 0.003)))
        out.append(
            OhlcBar(
                t0 + i * step_ms,
                Decimal(o).quantize(q),
                Decimal(hi).quantize(q),
                Decimal(lo).quantize(q),
                Decimal(c).quantize(q),
            )
        )
        price = c
    return out


def trades_on(
    seed: int, symbol: str, bars: list[OhlcBar], n: int, notional: Decimal, strategy: str
) -> list[RoundTrip]:
    """`n` non-overlapping round trips, long or short, each holding a few bars."""
    rng = random.Random(seed)
    out: list[RoundTrip] = []
    slot = len(bars) // n
    for k in range(n):
        a = k * slot + rng.randrange(0, slot // 2)
        b = a + rng.randrange(1, slot // 2)
        entry, exit_ = bars[a].close, bars[b].close
        qty = (notional / entry).quantize(Decimal("0.001"))
        direction = "long" if rng.random() < 0.6 else "short"
        sign = 1 if direction == "long" else -1
        fees = ((entry + exit_) * qty * Decimal("0.001")).quantize(Decimal("0.0001"))
        out.append(
            RoundTrip(
                symbol=symbol,
                strategy=strategy,
                controller="local" if k % 3 else "gpt",
                direction=direction,
                entry_ms=bars[a].ts_ms,
                exit_ms=bars[b].ts_ms,
                entry_price=entry,
                exit_price=exit_,
                quantity=qty,
                fees=fees,
                pnl=(exit_ - entry) * qty * sign - fees,
                exit_reason=rng.choice(["take profit", "stop loss", "signal reversed", "end"]),
            )
        )
    return out


def equity_of(
    cash: Decimal, bars: dict[str, list[OhlcBar]], trips: list[RoundTrip]
) -> list[tuple[int, Decimal]]:
    """Cash plus every closed trade's P&L plus every open trade marked at the bar's close."""
    closes = {s: {b.ts_ms: b.close for b in series} for s, series in bars.items()}
    last: dict[str, Decimal] = {}
    curve: list[tuple[int, Decimal]] = []
    for ms in sorted({b.ts_ms for series in bars.values() for b in series}):
        for s in bars:
            if ms in closes[s]:
                last[s] = closes[s][ms]
        value = cash
        for t in trips:
            sign = 1 if t.direction == "long" else -1
            if t.exit_ms <= ms:
                value += t.pnl
            elif t.entry_ms <= ms:
                value += (last[t.symbol] - t.entry_price) * t.quantity * sign
        curve.append((ms, value))
    return curve


def report(
    seed: int = 1,
    *,
    symbols: tuple[str, ...] = ("GOOG", "MSFT"),
    start: datetime = datetime(2023, 11, 1),
    step_ms: int = 3_600_000,
    bars_per_symbol: int = 3000,
    trades_per_symbol: int = 12,
    strategy: str = "sma-cross@v1",
    title: str = "Backtest",
    dataset: str = "generated",
) -> BacktestReport:
    cash = Decimal(100_000)
    bars = {
        s: walk(seed * 100 + k, start, step_ms, bars_per_symbol, 50.0 + 100 * k, 2)
        for k, s in enumerate(symbols)
    }
    trips = [
        t
        for k, s in enumerate(symbols)
        for t in trades_on(seed * 100 + k, s, bars[s], trades_per_symbol, cash / 4, strategy)
    ]
    equity = equity_of(cash, bars, trips)
    wins = [t for t in trips if t.pnl > 0]
    stats = [
        Statistic("start", "Start", equity[0][0], "time"),
        Statistic("end", "End", equity[-1][0], "time"),
        Statistic("final_equity", "Final equity", equity[-1][1], "money"),
        Statistic("return", "Return", float(equity[-1][1] / cash - 1), "pct"),
        Statistic("max_drawdown", "Max drawdown", min(v for _, v in drawdown(equity)), "pct"),
        Statistic("sharpe", "Sharpe ratio", 0.87, "ratio"),
        Statistic("trades", "Round trips", len(trips), "count"),
        Statistic("win_rate", "Win rate", len(wins) / len(trips) if trips else None, "pct"),
        Statistic(
            "avg_duration",
            "Average trade duration",
            sum(t.duration_ms for t in trips) // max(1, len(trips)),
            "duration",
        ),
        Statistic("best_strategy", "Best strategy", strategy, "text"),
    ]
    by_symbol = [
        [
            Statistic("symbol", "Symbol", s, "text"),
            Statistic("trades", "Round trips", sum(t.symbol == s for t in trips), "count"),
            Statistic(
                "pnl", "Net P&L", sum((t.pnl for t in trips if t.symbol == s), Decimal(0)), "money"
            ),
        ]
        for s in symbols
    ]
    return BacktestReport(
        title=title,
        run_id=f"run-{seed}",
        dataset=dataset,
        initial_cash=cash,
        equity=equity,
        bars=bars,
        trades=trips,
        statistics=stats,
        breakdowns=[Breakdown("By symbol", by_symbol)],
        settings={
            "execution": {"cash": "100000", "fees_bps": 10, "currency": "USD"},
            "strategy": {"controller": "gpt", "name": strategy, "symbols": list(symbols)},
            "gpt": {"model": "gpt-4o-mini", "api_key": "sk-secret-123"},
        },
        gpt_calls=[
            GptCalls("ok", 14, Decimal("0.0213"), 18_432, 812.0, 2_310.0),
            GptCalls("timeout", 1, Decimal(0), 0, 30_000.0, 30_000.0),
        ],
    )
