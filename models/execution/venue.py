"""Where the desk's orders go: one protocol for the simulated exchange and a real one.

The desk hands every approved order to its venue (`accept`), asks it what must leave the desk
for that order to reach the exchange (`outbound`: commands, see `models.core.commands`) and, on
every bar, asks it which orders the bar executes (`due`) and executes each (`execute`: an
execution report, as an executor answers), booking one before the next is sized. The simulated
exchange (`models.execution.sim_venue`) queues orders and fills them at the next bar's open
(an order sized at its fill is sized from what the book then holds): nothing leaves the desk.
A real exchange is reached through the executor, outside the desk: its stand-in here
(`ExchangeVenue`) only refuses a client order id it has seen (as an exchange that enforces
unique client order ids does), turns each accepted order into a `PlaceOrder` for the flow's
driver to carry out (with the order's estimated `quantity`, also for an order sized at its
fill), and has nothing due on a bar; its fills come back as execution reports
(`TradingDesk.on_execution`). Both venues book fills through the same desk method, so a
fill moves the book in one place.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from models.config.settings import ExecutionConfig
from models.core.commands import PlaceOrder
from models.core.messages import Bar, Order
from models.execution.reports import ExecutionReport
from models.execution.sizing import Funds


class Venue(Protocol):
    """Accepts orders; says on each bar what it filled."""

    execution: ExecutionConfig

    def accept(self, order: Order) -> bool:
        """Take a new order; False when its client order id was already seen."""
        ...

    def outbound(self, order: Order) -> tuple[PlaceOrder, ...]:
        """The commands that take an accepted order to its exchange (none when the venue
        fills it itself)."""
        ...

    def due(self, bar: Bar) -> list[Order]:
        """The orders this bar executes, taken off the venue's queue (none on a real exchange,
        whose reports come from its executor, through `TradingDesk.on_execution`)."""
        ...

    def execute(
        self, order: Order, bar: Bar, funds: Funds | None = None, lot: Decimal = Decimal(1)
    ) -> ExecutionReport:
        """What this bar did to one due order; `funds` (what the book holds now) sizes an
        order sized at its fill (`Order.size_fraction`)."""
        ...

    def on_bar(self, bar: Bar) -> list[ExecutionReport]:
        """What this bar did to the orders, one execution report per order, none sized from
        the book (a real exchange's reports come from its executor instead)."""
        ...


@dataclass(slots=True)
class KnownIds:
    """Client order ids already placed (newest `remember`): the same order twice is a no-op."""

    ids: OrderedDict[str, None] = field(default_factory=OrderedDict)
    remember: int = 100_000

    def first_time(self, client_order_id: str) -> bool:
        if client_order_id in self.ids:
            return False
        self.ids[client_order_id] = None
        if len(self.ids) > self.remember:
            self.ids.popitem(last=False)
        return True


@dataclass(slots=True)
class ExchangeVenue:
    """A real exchange as the desk sees it: orders leave for the executor, reports come back."""

    execution: ExecutionConfig
    known: KnownIds = field(default_factory=KnownIds)

    def accept(self, order: Order) -> bool:
        return self.known.first_time(order.client_order_id)

    def outbound(self, order: Order) -> tuple[PlaceOrder, ...]:
        return (PlaceOrder(order),)

    def due(self, bar: Bar) -> list[Order]:
        return []

    def execute(
        self, order: Order, bar: Bar, funds: Funds | None = None, lot: Decimal = Decimal(1)
    ) -> ExecutionReport:
        """Never asked: nothing is due here. A real exchange is sent the order's `quantity`,
        the estimate at the decision's close, also for an order sized at its fill."""
        raise NotImplementedError("a real exchange's fills come from its executor")

    def on_bar(self, bar: Bar) -> list[ExecutionReport]:
        return []
