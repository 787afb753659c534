"""Whether an order decided a while ago may still be sent: the age rule of the executor.

Orders queue behind an exchange outage (the one order worker waits out each timeout and
retry), and when it ends they would all go out at once, decided on prices up to a minute old.
An order older than `execution.max_order_age` (event time from its decision to the moment the
executor would send it) is re-checked here at the current price with the risk gate's limits:
it goes out only when the price has moved less than `execution.stale_price_tolerance_bps`
since the decision and the order still fits `risk.max_order_notional` and, for a buy, the
free cash; otherwise it is dropped with the reason (`stale: decided at X, Y ms old; ...`),
which the executor reports as a rejection (the desk records it and applies its fallback).
Pure: the executor supplies the clock and the prices.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from models.config.base import parse_duration_ms
from models.config.settings import Settings
from models.core.messages import Order, Side

__all__ = ["StaleRule", "stale_reason", "stale_rule"]

_BPS: Final = Decimal(10_000)


@dataclass(frozen=True, slots=True)
class StaleRule:
    """`max_age_ms` 0 turns the rule off. `max_order_notional` None: no notional limit."""

    max_age_ms: int
    price_tolerance_bps: Decimal
    max_order_notional: Decimal | None = None
    fee_bps: Decimal = Decimal(0)

    def is_stale(self, order: Order, now_ms: int) -> bool:
        return self.max_age_ms > 0 and now_ms - order.placed_ms > self.max_age_ms


def stale_rule(settings: Settings) -> StaleRule:
    """The rule of a run's settings (`execution.max_order_age`, the risk gate's limits)."""
    ex = settings.execution
    return StaleRule(
        max_age_ms=parse_duration_ms(ex.max_order_age),
        price_tolerance_bps=ex.stale_price_tolerance_bps,
        max_order_notional=settings.risk.max_order_notional,
        fee_bps=ex.fee_bps,
    )


def stale_reason(
    order: Order,
    now_ms: int,
    rule: StaleRule,
    *,
    decided_price: Decimal | None,
    current_price: Decimal | None,
    free_quote: Decimal | None,
) -> str | None:
    """None: send the order (fresh, or stale but still within the limits at the current
    price); else why it is dropped. Without a current price, or without the price at the
    decision, a stale order cannot be re-checked and is dropped (never sent on a guess)."""
    if not rule.is_stale(order, now_ms):
        return None
    head = f"stale: decided at {order.placed_ms}, {now_ms - order.placed_ms} ms old"
    if current_price is None or current_price <= 0:
        return f"{head}; no current price to re-check it"
    if decided_price is None or decided_price <= 0:
        return f"{head}; the price at the decision is unknown"
    moved = abs(current_price - decided_price) / decided_price * _BPS
    if moved > rule.price_tolerance_bps:
        return (
            f"{head}; price moved {moved.quantize(Decimal('0.1'))} bps ({decided_price} -> "
            f"{current_price}), tolerance {rule.price_tolerance_bps} bps"
        )
    notional = order.quantity * current_price
    if rule.max_order_notional is not None and notional > rule.max_order_notional:
        return f"{head}; notional {notional} at {current_price} > {rule.max_order_notional}"
    if order.side is Side.BUY and free_quote is not None:
        cost = notional * (1 + rule.fee_bps / _BPS)
        if cost > free_quote:
            return f"{head}; cost {cost} at {current_price} > free cash {free_quote}"
    return None
