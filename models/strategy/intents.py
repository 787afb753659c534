"""A running strategy's wishes and how they become orders: `StrategyAction` (what it wants on
one bar, before sizing) and `to_intent` (sized once equity, price and lot are known).

Apart from the compiler so that sizing rules (a long entry sized at its fill, a short entry at
the decision, closes whole) read in one place, and the compiler keeps to checking and running
the condition trees.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Final, Literal

from models.core.messages import SYMBOL_PATTERN, Proposal, Side, TradeIntent
from models.core.money import round_to_lot
from models.core.trusted import trusted

__all__ = [
    "MAX_REASON",
    "ActionKind",
    "StrategyAction",
    "buy_to_fraction",
    "intent",
    "proposal",
    "to_intent",
]

MAX_REASON: Final = 500  # `TradeIntent.reason`
MAX_RATIONALE: Final = 2000  # `Proposal.rationale`
_ONE: Final = Decimal(1)
_SYMBOL: Final = re.compile(SYMBOL_PATTERN)
_EXPLICIT: Final = frozenset({"symbol", "side", "quantity", "reason"})  # fields given
_BY_FRACTION: Final = _EXPLICIT | {"size_fraction"}


_SYMBOLS_SEEN: set[str] = set()  # symbols `SYMBOL_PATTERN` matched (a few per run)


def _symbol_ok(symbol: str) -> bool:
    """Whether `symbol` is what validation keeps (`SYMBOL_PATTERN`), remembered when it is."""
    if _SYMBOL.fullmatch(symbol) is None:
        return False
    if len(_SYMBOLS_SEEN) < 10_000:
        _SYMBOLS_SEEN.add(symbol)
    return True


def intent(
    symbol: str, side: Side, quantity: Decimal, reason: str, size_fraction: Decimal | None = None
) -> TradeIntent:
    """`TradeIntent(...)` of these values (`size_fraction` given only when not None), built
    unvalidated (`models.core.trusted`, an intent per strategy action) when every value is
    what validation keeps as it is; otherwise validated, which raises as it always did."""
    if (
        type(quantity) is Decimal
        and quantity.is_finite()
        and quantity > 0
        and type(reason) is str
        and len(reason) <= MAX_REASON
        and type(symbol) is str
        and (symbol in _SYMBOLS_SEEN or _symbol_ok(symbol))
        and type(side) is Side
        and (
            size_fraction is None
            or (
                side is Side.BUY
                and type(size_fraction) is Decimal
                and size_fraction.is_finite()
                and 0 < size_fraction <= 1
            )
        )
    ):
        fields = {
            "symbol": symbol,
            "side": side,
            "quantity": quantity,
            "reason": reason,
            "size_fraction": size_fraction,
        }
        return trusted(TradeIntent, fields, _EXPLICIT if size_fraction is None else _BY_FRACTION)
    if size_fraction is None:
        return TradeIntent(symbol=symbol, side=side, quantity=quantity, reason=reason)
    return TradeIntent(
        symbol=symbol, side=side, quantity=quantity, reason=reason, size_fraction=size_fraction
    )


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
        return intent(action.symbol, action.side, qty, action.reason)
    if price <= 0 or equity <= 0:
        return None
    if action.side is Side.SELL:  # a short entry
        target = round_to_lot(equity * action.target_fraction / price, lot_size)
        qty = round_to_lot(target + position, lot_size)
        if qty <= 0:
            return None
        return intent(action.symbol, Side.SELL, qty, action.reason)
    target = round_to_lot(equity * action.target_fraction / price, lot_size)
    qty = round_to_lot(target - position, lot_size)
    if qty <= 0:
        return None
    return buy_to_fraction(action.symbol, qty, action.target_fraction, action.reason)


def buy_to_fraction(symbol: str, quantity: Decimal, fraction: Decimal, reason: str) -> TradeIntent:
    """A buy sized at its fill to `fraction` of equity (at most all of it); `quantity` is the
    estimate at the decision's close."""
    return intent(symbol, Side.BUY, quantity, reason, min(fraction, _ONE))


def proposal(
    controller: str, strategy: str, intents: list[TradeIntent], rationale: str, confidence: float
) -> Proposal:
    """`Proposal(...)` of these values, built unvalidated (`models.core.trusted`, one or more
    per decision) when every value is what validation keeps as it is (validated intents, a
    float confidence within [0, 1], a rationale within its limit); otherwise validated, which
    raises as it always did. The intents are copied, as validation copies a list."""
    if (
        type(controller) is str
        and type(strategy) is str
        and type(rationale) is str
        and len(rationale) <= MAX_RATIONALE
        and type(confidence) is float
        and 0 <= confidence <= 1
        and all(type(i) is TradeIntent for i in intents)
    ):
        fields = {
            "controller": controller,
            "strategy": strategy,
            "intents": list(intents),
            "rationale": rationale,
            "confidence": confidence,
        }
        return trusted(Proposal, fields)
    return Proposal(
        controller=controller,
        strategy=strategy,
        intents=intents,
        rationale=rationale,
        confidence=confidence,
    )
