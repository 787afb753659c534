"""The desk's decisions while their orders are out: versions, reservations, late reports.

A decision is logged once when it is taken and again (a new `version`) whenever one of its
orders moves; its status follows its orders (`models.execution.decision_status`). While any of
its orders is pending the decision is *open*: those orders reserve cash and quantity for the
review loop, and count as held when the next decision sizes a position. On the exchange venue a
settled decision with an order not wholly filled is kept a while (`CLOSED_KEPT`, newest) in
case the exchange reports on it again (a fill after the executor gave up).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from models.core.messages import DecisionRecord, Fill, Order, OrderStatus, Side
from models.core.trusted import replaced
from models.execution.decision_status import status_of

CLOSED_KEPT = 1_000  # settled, not wholly filled decisions kept for a late report (newest)


@dataclass(slots=True)
class DecisionBook:
    venue: str = "sim"  # "sim" | "exchange": only the exchange reports on settled orders
    open: dict[str, DecisionRecord] = field(default_factory=dict)
    closed: dict[str, DecisionRecord] = field(default_factory=dict)
    made: int = 0  # decisions taken (first versions written)

    def order_of(
        self, decision_id: str, client_order_id: str
    ) -> tuple[DecisionRecord | None, Order | None]:
        """The open (or, on the exchange venue, recently settled and not wholly filled)
        decision of an order, and the order as that decision holds it."""
        record = self.open.get(decision_id) or self.closed.get(decision_id)
        order = next(
            (o for o in (record.orders if record else []) if o.client_order_id == client_order_id),
            None,
        )
        return record, order

    def update(
        self, record: DecisionRecord, updated: Order, fills: list[Fill], note: str | None = None
    ) -> DecisionRecord:
        """The decision's next version with one order changed and new fills, its status
        following its orders; a decision whose orders are all settled is no longer open."""
        orders = [
            updated if o.client_order_id == updated.client_order_id else o for o in record.orders
        ]
        all_fills = record.fills + fills
        change: dict[str, object] = {
            "orders": orders,
            "fills": all_fills,
            "version": record.version + 1,
        }
        if note is not None:
            change["note"] = note
        change["status"] = status_of(orders, all_fills, record.status)
        record = replaced(record, change)
        did = record.decision_id
        self.closed.pop(did, None)
        if all(o.status is not OrderStatus.PENDING for o in orders):
            self.open.pop(did, None)
            if self.venue == "exchange" and any(o.status is not OrderStatus.FILLED for o in orders):
                self.closed[did] = record
                if len(self.closed) > CLOSED_KEPT:
                    del self.closed[next(iter(self.closed))]
        else:
            self.open[did] = record
        return record

    def taken(self, record: DecisionRecord) -> None:
        """A decision's version written by the desk itself (not an order's move): it stays
        open while it has orders; its first version counts as a decision made."""
        if record.orders:
            self.open[record.decision_id] = record
        if record.version == 1:
            self.made += 1

    def pending_orders(self) -> list[Order]:
        """Orders placed and not filled yet (the next bar's open, or an exchange that has not
        reported): the review loop reserves their cash and quantities."""
        return [
            o
            for record in self.open.values()
            for o in record.orders
            if o.status is OrderStatus.PENDING
        ]

    def in_flight(self, symbol: str) -> Decimal:
        """Net quantity of the symbol's orders still on their way (an exchange that has not
        reported yet): a decision counts them as held, or a second signal would buy twice."""
        net = Decimal(0)
        for o in self.pending_orders():
            if o.symbol == symbol:
                net += o.quantity if o.side is Side.BUY else -o.quantity
        return net
