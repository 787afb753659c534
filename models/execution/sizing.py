"""Sizing a buy at its fill: how many lots a fraction-of-equity order buys at the fill price.

A decision is taken at a bar's close and fills at a later bar's open. An order sized at the
close (`equity * fraction / close`) and checked against the cash at the close is refused whole
when the open gaps up and the book can no longer pay for it; backtesting.py instead sizes a
fractional `buy(size=f)` when it fills, from the margin then available:
`int(margin_available * leverage * f // (adjusted_price + commission per unit))`, where the
adjusted price includes the spread and the commission is per unit at the unadjusted price. Our
equivalent, for an order with `size_fraction = f` (`models.core.messages.TradeIntent`):

    budget = min(cash available, f * equity - held * fill price)
    units  = lot-round(budget / (fill price * (1 + fee rate)))

less one lot while that costs more than the cash available (the fee is rounded as the venue
rounds it). `f` is the share of equity the symbol's position should be worth after the buy,
which is how every strategy here states its target; flat and all-in (f = 1, no other positions)
that is exactly backtesting.py's `buy()`: every unit the cash pays for, fee included. Adding to
a position buys the difference to the target, at most what the cash pays for. Differences from
backtesting.py: our slippage is in the fill price and the fee is on that price, lots may be
fractional (`lot_size`), and "available" leaves out the cash reserve (`risk.min_cash`) and what
other pending buys reserve, as the review loop does.

Pure: the desk says what the book holds at the fill (`Funds`); the venue asks `size_at_fill`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from models.config.settings import ExecutionConfig
from models.core.money import round_to_lot

__all__ = ["NO_LOT_FOR_CASH", "NO_LOT_FOR_TARGET", "Funds", "Sized", "fee_of", "size_at_fill"]

PRICE_QUANTUM: Final = Decimal("1e-8")
BPS: Final = Decimal(10_000)
NO_LOT_FOR_CASH: Final = "cash buys no whole lot at fill"
NO_LOT_FOR_TARGET: Final = "target buys no whole lot at fill"


@dataclass(frozen=True, slots=True)
class Funds:
    """What the book holds when an order fills, as far as sizing it needs."""

    cash: Decimal  # spendable now: cash less the reserve and other pending buys' reservations
    equity: Decimal  # cash plus every position, this symbol's marked at the fill's bar open
    held: Decimal  # the symbol's quantity already held


@dataclass(frozen=True, slots=True)
class Sized:
    """How many units a fraction order buys; 0 with the reason when it buys none."""

    quantity: Decimal
    reason: str = ""


def fee_of(quantity: Decimal, price: Decimal, execution: ExecutionConfig) -> Decimal:
    """The venue's fee of a fill, rounded as the venue books it."""
    return (quantity * price * execution.fee_bps / BPS).quantize(PRICE_QUANTUM)


def size_at_fill(
    fraction: Decimal, funds: Funds, price: Decimal, execution: ExecutionConfig, lot: Decimal
) -> Sized:
    """The whole lots a buy of `fraction` of equity gets at `price` (the fill price, slippage
    included): never more than `funds.cash` pays for, fee included."""
    target = fraction * funds.equity - funds.held * price
    budget = min(funds.cash, target)
    if budget <= 0 or price <= 0:
        return Sized(Decimal(0), NO_LOT_FOR_CASH if funds.cash <= target else NO_LOT_FOR_TARGET)
    unit = price * (1 + execution.fee_bps / BPS)
    qty = round_to_lot(budget / unit, lot)
    # Rounding the fee may add up to half a quantum: step back until the cash pays.
    while qty > 0 and qty * price + fee_of(qty, price, execution) > funds.cash:
        qty -= lot
    if qty <= 0:
        return Sized(Decimal(0), NO_LOT_FOR_CASH if funds.cash <= target else NO_LOT_FOR_TARGET)
    return Sized(qty)
