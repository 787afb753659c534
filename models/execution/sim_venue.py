"""The simulated exchange used by backtests and the demo: next-bar market fills, fees, slippage.

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
from models.execution.reports import ExecStatus, ExecutionReport

PRICE_QUANTUM = Decimal("1e-8")
BPS = Decimal(10_000)


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

    def on_bar(self, bar: Bar) -> list[ExecutionReport]:
        """Fill every eligible pending order of this symbol at this bar's open: one execution
        report per order, as a real exchange's executor answers."""
        queue = self.pending.get(bar.symbol)
        if not queue:
            return []
        reports: list[ExecutionReport] = []
        waiting: list[Order] = []
        for order in queue:
            if order.placed_ms > bar.start_ms:
                waiting.append(order)
                continue
            price = self.fill_price(bar, order.side)
            fee = (order.quantity * price * self.execution.fee_bps / BPS).quantize(PRICE_QUANTUM)
            fill = Fill(
                fill_id=f"{order.client_order_id}-1",
                client_order_id=order.client_order_id,
                decision_id=order.decision_id,
                symbol=order.symbol,
                side=order.side,
                quantity=order.quantity,
                price=price,
                fee=fee,
                ts_ms=bar.start_ms,
            )
            reports.append(
                ExecutionReport(
                    client_order_id=order.client_order_id,
                    decision_id=order.decision_id,
                    symbol=order.symbol,
                    side=order.side,
                    quantity=order.quantity,
                    status=ExecStatus.FILLED,
                    filled=order.quantity,
                    average_price=price,
                    fills=[fill],
                    ts_ms=bar.start_ms,
                )
            )
        if waiting:
            self.pending[bar.symbol] = waiting
        else:
            del self.pending[bar.symbol]
        return reports

    def open_orders(self) -> list[Order]:
        return [o for queue in self.pending.values() for o in queue]


def with_status(order: Order, status: OrderStatus, ts_ms: int, reason: str = "") -> Order:
    return order.model_copy(
        update={
            "status": status,
            "updated_ms": ts_ms,
            "reason": reason or order.reason,
            "version": order.version + 1,
        }
    )
