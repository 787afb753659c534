"""The budget / fee / risk gate: every proposal passes here before any order exists.

The gate only judges; it never edits a proposal. A failed check carries its limit and the
value it saw, so the controller can size an adjusted proposal from the verdict alone. Estimates
use the decision price moved against us by the slippage allowance, so a passed order still fits
when it fills at the next bar's open unless the market gaps further than that.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from models.config.settings import ExecutionConfig, RiskConfig
from models.core.messages import Order, Proposal, RiskCheck, RiskVerdict, Side
from models.core.trusted import trusted
from models.portfolio.book import Portfolio

BPS = Decimal(10_000)
_ZERO = Decimal(0)
_UNSIZED = ("name", "passed", "message")  # the fields a check without a limit is given


def estimated_price(price: Decimal, side: Side, execution: ExecutionConfig) -> Decimal:
    slip = price * execution.slippage_bps / BPS
    return price + slip if side is Side.BUY else price - slip


def fee_for(notional: Decimal, execution: ExecutionConfig) -> Decimal:
    return notional * execution.fee_bps / BPS


def committed(
    pending: Iterable[Order], prices: dict[str, Decimal], execution: ExecutionConfig
) -> tuple[Decimal, dict[str, Decimal]]:
    """What orders placed but not filled yet already use: the cash their buys will take (at the
    estimated price, fees included) and each symbol's net quantity on its way. Buying power is
    reserved, never the proceeds of a sell that has not filled."""
    cash = _ZERO
    qty: dict[str, Decimal] = {}
    for order in pending:
        if order.side is Side.BUY:
            price = prices.get(order.symbol)
            if price is not None:
                notional = order.quantity * estimated_price(price, Side.BUY, execution)
                cash += notional + fee_for(notional, execution)
            qty[order.symbol] = qty.get(order.symbol, _ZERO) + order.quantity
        else:
            qty[order.symbol] = qty.get(order.symbol, _ZERO) - order.quantity
    return cash, qty


def check_names(symbol: str) -> tuple[str, str, str, str]:
    """The names of a symbol's per-order checks, made once per symbol: order notional, order
    fee, long only, position notional (what an adjusting controller looks for)."""
    names = _NAMES.get(symbol)
    if names is None:
        names = _NAMES[symbol] = (
            f"order_notional:{symbol}",
            f"order_fee:{symbol}",
            f"long_only:{symbol}",
            f"position_notional:{symbol}",
        )
    return names


_NAMES: dict[str, tuple[str, str, str, str]] = {}
_NOTIONAL = "order notional over the per-order limit"
_FEE = "estimated fee over the per-order fee budget"
_LONG_ONLY = "sell larger than the position (no short selling)"
_POSITION = "position after the order over the per-symbol limit"
_CASH = "not enough cash above the reserve for buys, fees and pending buys"
_DAILY = "daily loss limit reached: only risk-reducing orders"


def check(
    proposal: Proposal,
    portfolio: Portfolio,
    prices: dict[str, Decimal],
    risk: RiskConfig,
    execution: ExecutionConfig,
    pending: Iterable[Order] = (),
    shortable: frozenset[str] = frozenset(),
) -> RiskVerdict:
    """Judge a whole proposal against the limits, intents taken together, on top of the
    `pending` orders (placed, not filled yet): two symbols deciding on the same bar must not
    both spend the same cash, and a second signal must not sell the same position twice.
    A sell beyond the position (a short) is allowed only on a `shortable` symbol, and then
    counts as risk like a buy: its position notional (absolute) is limited the same way.

    Every check is built unvalidated (`models.core.trusted`, several per decision): each value
    is the gate's own Decimal or bool; a check holds its limit and the value it saw."""
    checks: list[RiskCheck] = []
    approved = True
    reserved, on_the_way = committed(pending, prices, execution) if pending else (_ZERO, {})
    cash_needed = _ZERO
    cash_freed = _ZERO
    total_fee = _ZERO
    increases_risk = False
    held: dict[str, Decimal] = {}  # each symbol's position with the orders on their way
    for sym, q in on_the_way.items():
        held[sym] = portfolio.quantity(sym) + q
    slippage, fee_bps = execution.slippage_bps, execution.fee_bps
    max_notional, max_fee = risk.max_order_notional, risk.max_fee_per_order
    for intent in proposal.intents:
        symbol, side, quantity = intent.symbol, intent.side, intent.quantity
        price = prices.get(symbol)
        if price is None:
            values = {
                "name": "price_known",
                "passed": False,
                "limit": None,
                "value": None,
                "message": f"no price for {symbol}",
            }
            checks.append(trusted(RiskCheck, values, _UNSIZED))
            approved = False
            continue
        slip = price * slippage / BPS  # `estimated_price`, `fee_for`
        px = price + slip if side is Side.BUY else price - slip
        notional = quantity * px
        fee = notional * fee_bps / BPS
        total_fee += fee
        names = check_names(symbol)
        passed = notional <= max_notional
        approved = approved and passed
        values = {
            "name": names[0],
            "passed": passed,
            "limit": max_notional,
            "value": notional,
            "message": _NOTIONAL,
        }
        checks.append(trusted(RiskCheck, values))
        passed = fee <= max_fee
        approved = approved and passed
        values = {
            "name": names[1],
            "passed": passed,
            "limit": max_fee,
            "value": fee,
            "message": _FEE,
        }
        checks.append(trusted(RiskCheck, values))
        qty = held.get(symbol)
        if qty is None:
            qty = portfolio.quantity(symbol)
        if side is Side.BUY:
            after = qty + quantity
            increases_risk = increases_risk or after > 0
            cash_needed += notional + fee
        else:
            after = qty - quantity
            if symbol in shortable:
                increases_risk = increases_risk or after < 0
            else:
                passed = quantity <= qty
                approved = approved and passed
                values = {
                    "name": names[2],
                    "passed": passed,
                    "limit": qty,
                    "value": quantity,
                    "message": _LONG_ONLY,
                }
                checks.append(trusted(RiskCheck, values))
            cash_freed += notional - fee
        grows = abs(after) > abs(qty) or (after != 0 and (after > 0) != (qty > 0))
        if grows and (side is Side.BUY or symbol in shortable):
            exposure = abs(after) * px
            limit = risk.max_position_notional
            passed = exposure <= limit
            approved = approved and passed
            values = {
                "name": names[3],
                "passed": passed,
                "limit": limit,
                "value": exposure,
                "message": _POSITION,
            }
            checks.append(trusted(RiskCheck, values))
        held[symbol] = after
    if cash_needed > 0:
        spendable = portfolio.cash - reserved + cash_freed - risk.min_cash
        passed = cash_needed <= spendable
        approved = approved and passed
        values = {
            "name": "cash",
            "passed": passed,
            "limit": spendable,
            "value": cash_needed,
            "message": _CASH,
        }
        checks.append(trusted(RiskCheck, values))
    if increases_risk:
        loss = -portfolio.daily_pnl()
        passed = loss < risk.daily_loss_limit
        approved = approved and passed
        values = {
            "name": "daily_loss",
            "passed": passed,
            "limit": risk.daily_loss_limit,
            "value": loss,
            "message": _DAILY,
        }
        checks.append(trusted(RiskCheck, values))
    return trusted(RiskVerdict, {"approved": approved, "checks": checks, "fee_estimate": total_fee})
