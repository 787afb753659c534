"""Cash, positions and PnL in `Decimal`, moved only by fills.

Average-cost accounting: buys raise the average cost, sells realise PnL against it. Fees are paid
in cash and counted in realised PnL so that equity = cash + sum(qty * mark) holds exactly.
The daily loss limit is measured against equity at the first mark of the UTC day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from models.core.messages import Fill, PositionSnapshot, Side
from models.core.trusted import trusted

_ZERO = Decimal(0)
COST_QUANTUM = Decimal("1e-12")  # ClickHouse Decimal(38, 12): stored and computed values agree
DAY_MS = 86_400_000


@dataclass(slots=True)
class Position:
    quantity: Decimal = _ZERO
    avg_cost: Decimal = _ZERO
    realized_pnl: Decimal = _ZERO


_NO_POSITION = Position()  # read only: what `snapshot` shows of a symbol never traded


@dataclass(slots=True)
class Portfolio:
    cash: Decimal
    positions: dict[str, Position] = field(default_factory=dict)
    marks: dict[str, Decimal] = field(default_factory=dict)
    fees_paid: Decimal = _ZERO
    day: int = -1
    day_start_equity: Decimal = _ZERO

    def position(self, symbol: str) -> Position:
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = Position()
        return pos

    def quantity(self, symbol: str) -> Decimal:
        pos = self.positions.get(symbol)
        return pos.quantity if pos else _ZERO

    def apply_fill(self, fill: Fill, *, allow_short: bool = False) -> None:
        """Move cash and position for one fill. A sell beyond the held quantity raises
        `ValueError` unless `allow_short` (the venue lends the symbol): then the position goes
        negative, a short, with the sale's proceeds in cash. A fill towards zero realises PnL
        against the average cost; one through zero closes the position and opens the other
        side with the remainder at the fill price."""
        pos = self.position(fill.symbol)
        signed = fill.quantity if fill.side is Side.BUY else -fill.quantity
        held = pos.quantity
        if fill.side is Side.SELL and not allow_short and fill.quantity > held:
            raise ValueError(f"sell of {fill.quantity} {fill.symbol} exceeds position {held}")
        if held == 0 or (held > 0) == (signed > 0):  # opens or adds: a new average cost
            new_qty = held + signed
            pos.avg_cost = (
                (pos.avg_cost * abs(held) + fill.quantity * fill.price) / abs(new_qty)
            ).quantize(COST_QUANTUM)
            pos.quantity = new_qty
        else:  # reduces, closes or flips
            closed = min(fill.quantity, abs(held))
            direction = 1 if held > 0 else -1
            pos.realized_pnl += (fill.price - pos.avg_cost) * closed * direction
            pos.quantity = held + signed
            if pos.quantity == 0:
                pos.avg_cost = _ZERO
            elif (pos.quantity > 0) != (held > 0):  # through zero: the rest opens at the fill
                pos.avg_cost = fill.price.quantize(COST_QUANTUM)
        notional = fill.quantity * fill.price
        self.cash += -notional - fill.fee if fill.side is Side.BUY else notional - fill.fee
        pos.realized_pnl -= fill.fee
        self.fees_paid += fill.fee
        self.marks.setdefault(fill.symbol, fill.price)

    def adopt(self, symbol: str, quantity: Decimal, avg_cost: Decimal) -> None:
        """Take the exchange's word for a position (reconciliation): the book must trade on
        what is really held, not on what it remembers. Not a profit or loss of the day."""
        before = self.equity()
        pos = self.position(symbol)
        pos.quantity = quantity
        pos.avg_cost = avg_cost.quantize(COST_QUANTUM) if quantity != 0 else _ZERO
        self._outside_the_book(self.equity() - before)

    def set_cash(self, cash: Decimal) -> None:
        """Take the exchange's cash balance (a deposit, a withdrawal, a fee the book missed):
        money moved outside the book's fills is not a profit or loss of the day."""
        before = self.cash
        self.cash = cash
        self._outside_the_book(cash - before)

    def _outside_the_book(self, delta: Decimal) -> None:
        """Move the day's loss baseline with a change that was not trading, so that a
        withdrawal cannot trip the daily loss limit and a deposit does not hide a loss."""
        if self.day >= 0:
            self.day_start_equity += delta

    def mark(self, symbol: str, price: Decimal, ts_ms: int) -> None:
        """Record the latest price at event time `ts_ms` (a bar's end).

        The first mark of a later UTC day fixes that day's start equity from the marks so far.
        Days only move forward: a bar of an earlier day (a quiet symbol's window closing late)
        updates its price but never resets the day's loss baseline. A bar ending exactly at
        midnight belongs to the day it closes, hence `ts_ms - 1`.
        """
        day = (ts_ms - 1) // DAY_MS
        if day > self.day:
            self.day = day
            self.day_start_equity = self.equity()
        self.marks[symbol] = price

    def market_value(self) -> Decimal:
        # A loop rather than `sum` over a generator (on every acting bar): the same additions
        # in the same order, so the same Decimal.
        marks = self.marks
        total = _ZERO
        for s, p in self.positions.items():
            total += p.quantity * marks.get(s, p.avg_cost)
        return total

    def equity(self) -> Decimal:
        return self.cash + self.market_value()

    def daily_pnl(self) -> Decimal:
        return self.equity() - self.day_start_equity if self.day >= 0 else _ZERO

    def snapshot(self, symbol: str, ts_ms: int) -> PositionSnapshot:
        pos = self.positions.get(symbol)
        if pos is None:
            pos = _NO_POSITION
        mark = self.marks.get(symbol, pos.avg_cost)
        # One per bar: built unvalidated (`models.core.trusted`), every value is the book's own.
        return trusted(
            PositionSnapshot,
            {
                "ts_ms": ts_ms,
                "symbol": symbol,
                "quantity": pos.quantity,
                "avg_cost": pos.avg_cost,
                "mark_price": mark,
                "realized_pnl": pos.realized_pnl,
                "unrealized_pnl": (mark - pos.avg_cost) * pos.quantity,
                "cash": self.cash,
                "equity": self.equity(),
            },
        )

    def summary(self) -> dict[str, str]:
        """Exact strings, for the decision log's `portfolio_before`."""
        out = {"cash": str(self.cash), "equity": str(self.equity())}
        for s, p in sorted(self.positions.items()):
            if p.quantity:
                out[f"qty:{s}"] = str(p.quantity)
        return out
