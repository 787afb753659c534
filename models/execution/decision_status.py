"""What a decision and its orders are, given what the exchange reported: the fills decide.

A decision is logged `executed` when its orders are placed; what happens to them later (a fill
refused by the simulated book, an exchange that rejects, an order the executor gave up on that
filled after all) must show in the decision log, or the report counts decisions that never
traded as executed and misses trades that did. The rules, shared by both venues:

- An order with fills is never `rejected`: refused after fills, it is `filled` once they reach
  its quantity, else `partially_filled`; otherwise the exchange's word (filled, partly
  filled, open) stands.
- A decision's status follows its orders once it has any:
  - some order filled (in part or whole): `executed` (mixed outcomes included: the decision
    moved the book; the note names each refused order);
  - every order refused with nothing filled: `rejected`;
  - otherwise (orders still on their way): `executed`, as when they were placed.
  A decision without orders keeps the status it was decided with (`no_action`, `rejected`,
  `pending`).
- A report about an order that is settled already changes nothing unless it brings new fills
  (a late fill after `rejected`: the order and the decision move to what the fills say) or says
  that a refused order is open on the exchange after all (it is `pending` again).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from models.core.messages import DecisionRecord, DecisionStatus, Fill, Order, OrderStatus

__all__ = ["decision_status", "filled_quantity", "order_status", "stale_report", "status_of"]

REFUSED = (OrderStatus.REJECTED, OrderStatus.EXPIRED)
TRADED = (OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED)


def filled_quantity(order: Order, fills: Iterable[Fill]) -> Decimal:
    """What the fills of `order` (by client order id) executed."""
    cid = order.client_order_id
    return sum((f.quantity for f in fills if f.client_order_id == cid), Decimal(0))


def order_status(order: Order, reported: OrderStatus, filled: Decimal) -> OrderStatus:
    """The order's status from a report's word and the quantity filled so far: fills win over
    a refusal (the exchange traded it, whatever else it said). A `filled`, `partially_filled`
    or open word stands as the exchange said it (a fee taken in the base asset makes the
    fills' quantity smaller than what the exchange filled)."""
    if reported is not OrderStatus.REJECTED or filled <= 0:
        return reported
    return OrderStatus.FILLED if filled >= order.quantity else OrderStatus.PARTIALLY_FILLED


def decision_status(record: DecisionRecord) -> DecisionStatus:
    """The decision's status from its orders and fills (the rules in the module docstring)."""
    return status_of(record.orders, record.fills, record.status)


def status_of(orders: list[Order], fills: list[Fill], decided: DecisionStatus) -> DecisionStatus:
    """`decision_status` of a decision with these orders and fills, decided `decided`."""
    if not orders:
        return decided
    if fills or any(o.status in TRADED for o in orders):
        return DecisionStatus.EXECUTED
    if all(o.status in REFUSED for o in orders):
        return DecisionStatus.REJECTED
    return DecisionStatus.EXECUTED


def stale_report(order: Order, reported: OrderStatus, new_fills: int) -> bool:
    """A report that can change nothing: the order is settled already, it brings no new fill,
    and it does not say that a refused order is open on the exchange after all."""
    if order.status is OrderStatus.PENDING or new_fills:
        return False
    return not (order.status in REFUSED and reported is OrderStatus.PENDING)
