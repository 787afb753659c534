"""A running strategy's wishes and how they become orders: `StrategyAction` (what it wants on
one bar, before sizing) and `to_intent` (sized once equity, price and lot are known).

Apart from the compiler so that sizing rules (a long entry sized at its fill, a short entry at
the decision, closes whole) read in one place, and the compiler keeps to checking and running
the condition trees.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Literal

from models.core.messages import Side, TradeIntent
from models.core.money import round_to_lot

__all__ = ["MAX_REASON", "ActionKind", "StrategyAction", "buy_to_fraction", "to_intent"]

MAX_REASON: Final = 500  # `TradeIntent.reason`
_ONE: Final = Decimal(1)

ActionKind = Literal["entry", "exit", "stop_loss", "take_profit"]


@dataclass(frozen=True, slots=True)
class StrategyAction:
    """What the strategy wants for one symbol on one bar, before sizing: `target_fraction` is
    the share of equity the symbol should hold afterwards (0 for every exit). `to_intent` turns
    it into a `TradeIntent` once equity, price and lot size are known."""

    symbol: str
    side: Side
    kind: ActionKind
    target_fraction: Decimal
    reason: str


def to_intent(
    action: StrategyAction,
    position: Decimal,
    price: Decimal,
    equity: Decimal,
    lot_size: Decimal,
) -> TradeIntent | None:
    """Size an action: a close sells a long (or buys back a short) whole, in whole lots; a long
    entry buys to `target_fraction` of equity, sized at its fill (`TradeIntent.size_fraction`),
    its quantity estimated at `price` as `equity * target_fraction / price` less the position,
    rounded down to the lot; a short entry sells that quantity, sized at the decision (a short
    sale needs no cash to fill). None when nothing to trade."""
    if action.target_fraction == 0:  # a close
        qty = round_to_lot(abs(position), lot_size)
        if qty <= 0 or (position > 0) != (action.side is Side.SELL):
            return None
        return TradeIntent(
            symbol=action.symbol, side=action.side, quantity=qty, reason=action.reason
        )
    if price <= 0 or equity <= 0:
        return None
    if action.side is Side.SELL:  # a short entry
        target = round_to_lot(equity * action.target_fraction / price, lot_size)
        qty = round_to_lot(target + position, lot_size)
        if qty <= 0:
            return None
        return TradeIntent(symbol=action.symbol, side=Side.SELL, quantity=qty, reason=action.reason)
    target = round_to_lot(equity * action.target_fraction / price, lot_size)
    qty = round_to_lot(target - position, lot_size)
    if qty <= 0:
        return None
    return buy_to_fraction(action.symbol, qty, action.target_fraction, action.reason)


def buy_to_fraction(symbol: str, quantity: Decimal, fraction: Decimal, reason: str) -> TradeIntent:
    """A buy sized at its fill to `fraction` of equity (at most all of it); `quantity` is the
    estimate at the decision's close."""
    return TradeIntent(
        symbol=symbol,
        side=Side.BUY,
        quantity=quantity,
        reason=reason,
        size_fraction=min(fraction, _ONE),
    )
