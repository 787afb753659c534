"""Rounding of quantities to what an exchange accepts, in `Decimal`."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal


def round_to_lot(quantity: Decimal, lot: Decimal) -> Decimal:
    """Down to a whole number of lots: never more than was decided."""
    if quantity <= 0:
        return Decimal(0)
    return (quantity / lot).to_integral_value(rounding=ROUND_DOWN) * lot
