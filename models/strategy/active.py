"""A GPT-written strategy while it runs: its compiled rules, its life and its track record.

The desk runs the active strategy of a symbol on every bar of that symbol and attributes to it
the fills of the orders it caused, so the next question to GPT can say how the strategy has been
doing (`performance`), and the `strategies` table can show it (`record`). Plain data: it is
pickled with the desk's snapshot, compiled strategy included.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import accumulate, repeat

from models.core.messages import Fill, Side, StrategyRecord, StrategyStatus
from models.gpt.prompt import StrategyPerformance
from models.portfolio.book import Portfolio
from models.strategy.compiler import CompiledStrategy

_ZERO = Decimal(0)


@dataclass(slots=True)
class ActiveStrategy:
    activation_id: str  # the decision that started it
    strategy: CompiledStrategy
    symbol: str  # the decision symbol: its bars count towards the horizon
    started_ms: int
    start_equity: Decimal
    confidence: float
    rationale: str
    bars: int = 0
    trades: int = 0
    wins: int = 0
    realized: Decimal = _ZERO
    peak_pnl: Decimal = _ZERO
    max_drawdown: float = 0.0
    version: int = 1

    @property
    def universe(self) -> frozenset[str]:
        return self.strategy.universe

    @property
    def expired(self) -> bool:
        return self.bars >= self.strategy.horizon_bars

    def on_fill(
        self, fill: Fill, avg_cost_before: Decimal, held_before: Decimal | None = None
    ) -> None:
        """A fill towards zero closes (part of) a trade: its profit is counted against the
        average cost (a sell closes a long, a buy a short); one that opens or adds only pays
        its fee. Without `held_before`, a sell closes and a buy opens (long only)."""
        held = (
            held_before
            if held_before is not None
            else (fill.quantity if fill.side is Side.SELL else _ZERO)
        )
        closing = (held > 0 and fill.side is Side.SELL) or (held < 0 and fill.side is Side.BUY)
        if closing:
            closed = min(fill.quantity, abs(held))
            direction = 1 if held > 0 else -1
            pnl = (fill.price - avg_cost_before) * closed * direction - fill.fee
            self.realized += pnl
            self.trades += 1
            self.wins += pnl > 0
        else:
            self.realized -= fill.fee

    def unrealized(self, portfolio: Portfolio) -> Decimal:
        """Open profit of the universe's positions (all of them: the desk runs one strategy
        per symbol, so a position in the universe is this strategy's)."""
        total = _ZERO
        for sym in self.universe:
            pos = portfolio.positions.get(sym)
            if pos is not None and pos.quantity != 0:
                mark = portfolio.marks.get(sym, pos.avg_cost)
                total += (mark - pos.avg_cost) * pos.quantity
        return total

    def on_bar(self, portfolio: Portfolio) -> None:
        """One more bar of the decision symbol: age and drawdown."""
        self.bars += 1
        pnl = self.realized + self.unrealized(portfolio)
        self.peak_pnl = max(self.peak_pnl, pnl)
        # At the peak the drawdown is 0.0 (or -0.0), which leaves `max_drawdown` (never below
        # 0.0, at most 1.0) as it is: no division then.
        if self.start_equity > 0 and self.peak_pnl != pnl:
            dd = float((self.peak_pnl - pnl) / self.start_equity)
            self.max_drawdown = min(1.0, max(self.max_drawdown, dd))

    def on_quiet_bars(self, portfolio: Portfolio, count: int) -> None:
        """`count` bars of the decision symbol with the book as it is now (its open profit
        does not move: the symbol is not held): the same as `count` calls of `on_bar`, the
        first of which sets the peak and drawdown that the others keep."""
        self.on_bar(portfolio)
        self.bars += count - 1

    def on_held_bars(self, terms: Sequence[Decimal]) -> None:
        """Bars of the decision symbol, the only symbol of its universe, held throughout;
        `terms[i]`: its open profit at bar i, `(mark - avg_cost) * quantity`. The same as one
        `on_bar` a bar: the peak is the first greatest P&L (as `max` keeps the old one on a
        tie), and the drawdown the largest `(peak - pnl) / start_equity`, taken once (a
        correctly rounded division and float conversion never reverse an order)."""
        realized = self.realized
        # realized + (0 + term) a bar, in C (`map`): the same operations as `on_bar`'s.
        pnls = list(map(operator.add, repeat(realized), map(operator.add, repeat(_ZERO), terms)))
        peaks = list(accumulate(pnls, max, initial=self.peak_pnl))
        self.bars += len(terms)
        self.peak_pnl = peaks[-1]
        if self.start_equity > 0:
            worst = max(map(operator.sub, peaks[1:], pnls))
            dd = float(worst / self.start_equity)
            self.max_drawdown = min(1.0, max(self.max_drawdown, dd))

    def performance(self, portfolio: Portfolio) -> StrategyPerformance:
        return StrategyPerformance(
            realized_pnl=self.realized,
            unrealized_pnl=self.unrealized(portfolio),
            trades=self.trades,
            hit_rate=self.wins / self.trades if self.trades else None,
            max_drawdown=self.max_drawdown,
            bars_active=self.bars,
        )

    def record(self, status: StrategyStatus, ended_ms: int | None = None) -> StrategyRecord:
        """The row for the `strategies` table; each call is a newer version of it."""
        spec = self.strategy.spec
        row = StrategyRecord(
            activation_id=self.activation_id,
            strategy_id=self.strategy.strategy_id,
            version=self.version,
            decision_id=self.activation_id,
            symbol=self.symbol,
            universe=sorted(self.universe),
            status=status,
            started_ms=self.started_ms,
            ended_ms=ended_ms,
            bars_active=self.bars,
            trades=self.trades,
            realized_pnl=self.realized,
            confidence=self.confidence,
            rationale=self.rationale[:2000],
            spec=spec.model_dump_json(),
        )
        self.version += 1
        return row
