"""The simulated exchange used by backtests and the demo: next-bar market fills, fees, slippage.

An order sized as a fraction of equity (`Order.size_fraction`) is sized when it fills, from the
cash the book then has (`models.execution.sizing`), as backtesting.py sizes a fractional
`buy()`; an explicitly sized order fills its quantity.

No look-ahead: an order placed at the close of bar t can only fill at the open of a later bar of
the same symbol whose start is at or after the placement time. Orders are keyed by their
deterministic client order id, so placing the same order twice (a retry, a replay after a crash)
is a no-op, exactly as an exchange that enforces unique client order ids behaves.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal

from models.config.settings import ExecutionConfig
from models.core.commands import PlaceOrder
from models.core.messages import Bar, Fill, Order, OrderStatus, Side
from models.core.trusted import replaced, trusted
from models.execution.reports import ExecStatus, ExecutionReport
from models.execution.sizing import BPS, PRICE_QUANTUM, Funds, fee_of, size_at_fill

# The fields a validating call gives a filled order's report (the rest at their defaults).
FILLED_GIVEN = frozenset(ExecutionReport.model_fields) - {
    "exchange_order_id",
    "attempts",
    "reconciled",
    "error",
}


@dataclass(slots=True)
class SimulatedExchange:
    execution: ExecutionConfig
    pending: dict[str, list[Order]] = field(default_factory=dict)
    known_ids: OrderedDict[str, None] = field(default_factory=OrderedDict)
    remember: int = 100_000  # client order ids kept for the duplicate check (newest)

    def accept(self, order: Order) -> bool:
        """Accept a new order; False when this client order id was already seen."""
        if order.client_order_id in self.known_ids:
            return False
        self.known_ids[order.client_order_id] = None
        if len(self.known_ids) > self.remember:
            self.known_ids.popitem(last=False)
        self.pending.setdefault(order.symbol, []).append(order)
        return True

    def outbound(self, order: Order) -> tuple[PlaceOrder, ...]:
        """Nothing leaves the desk: this exchange fills the order itself, on a later bar."""
        return ()

    def fill_price(self, bar: Bar, side: Side) -> Decimal:
        slip = bar.open * self.execution.slippage_bps / BPS
        price = bar.open + slip if side is Side.BUY else bar.open - slip
        return price.quantize(PRICE_QUANTUM)

    def due(self, bar: Bar) -> list[Order]:
        """The pending orders of this symbol that fill at this bar's open (placed at or before
        its start), taken off the queue, in the order they were placed."""
        queue = self.pending.get(bar.symbol)
        if not queue:
            return []
        ready = [o for o in queue if o.placed_ms <= bar.start_ms]
        waiting = [o for o in queue if o.placed_ms > bar.start_ms]
        if waiting:
            self.pending[bar.symbol] = waiting
        else:
            del self.pending[bar.symbol]
        return ready

    def execute(
        self, order: Order, bar: Bar, funds: Funds | None = None, lot: Decimal = Decimal(1)
    ) -> ExecutionReport:
        """Fill a due order whole at this bar's open (slippage against us, fee on the fill).
        An order sized at its fill (`size_fraction`) is sized here from `funds`, what the book
        holds now (`models.execution.sizing`); when that buys no whole lot it is rejected with
        the reason. An explicit order fills its quantity: whether the book can pay or deliver
        it is the desk's to check, as an exchange refuses an unfunded order."""
        price = self.fill_price(bar, order.side)
        quantity = order.quantity
        if order.size_fraction is not None and funds is not None:
            sized = size_at_fill(order.size_fraction, funds, price, self.execution, lot)
            if sized.quantity <= 0:
                return ExecutionReport(
                    client_order_id=order.client_order_id,
                    decision_id=order.decision_id,
                    symbol=order.symbol,
                    side=order.side,
                    quantity=order.quantity,
                    status=ExecStatus.REJECTED,
                    error=sized.reason,
                    ts_ms=bar.start_ms,
                )
            quantity = sized.quantity
        # The fill and its report are built unvalidated (`models.core.trusted`): every value
        # is the order's (validated when it was placed) or the venue's own Decimal.
        fill = trusted(
            Fill,
            {
                "fill_id": f"{order.client_order_id}-1",
                "client_order_id": order.client_order_id,
                "decision_id": order.decision_id,
                "symbol": order.symbol,
                "side": order.side,
                "quantity": quantity,
                "price": price,
                "fee": fee_of(quantity, price, self.execution),
                "ts_ms": bar.start_ms,
            },
        )
        report = {
            "client_order_id": order.client_order_id,
            "decision_id": order.decision_id,
            "symbol": order.symbol,
            "side": order.side,
            "quantity": quantity,
            "status": ExecStatus.FILLED,
            "exchange_order_id": None,
            "filled": quantity,
            "average_price": price,
            "fills": [fill],
            "attempts": 1,
            "reconciled": False,
            "error": "",
            "ts_ms": bar.start_ms,
        }
        return trusted(ExecutionReport, report, FILLED_GIVEN)

    def on_bar(self, bar: Bar) -> list[ExecutionReport]:
        """Every due order of this symbol filled at this bar's open, one execution report per
        order, as a real exchange's executor answers; orders sized at their fill keep their
        estimate here (the desk sizes them with `due` and `execute`, booking each before the
        next is sized)."""
        return [self.execute(order, bar) for order in self.due(bar)]

    def open_orders(self) -> list[Order]:
        return [o for queue in self.pending.values() for o in queue]


def with_status(order: Order, status: OrderStatus, ts_ms: int, reason: str = "") -> Order:
    """The order's next version (`model_copy` without its generic machinery)."""
    return replaced(
        order,
        {
            "status": status,
            "updated_ms": ts_ms,
            "reason": reason or order.reason,
            "version": order.version + 1,
        },
    )
