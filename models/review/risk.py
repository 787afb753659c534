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


def _check(name: str, passed: bool, limit: Decimal, value: Decimal, message: str) -> RiskCheck:
    """A check with its limit and the value seen, built unvalidated (`models.core.trusted`):
    every value is the gate's own Decimal or bool (several per decision)."""
    return trusted(
        RiskCheck,
        {"name": name, "passed": passed, "limit": limit, "value": value, "message": message},
    )


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
    counts as risk like a buy: its position notional (absolute) is limited the same way."""
    checks: list[RiskCheck] = []
    reserved, on_the_way = committed(pending, prices, execution)
    cash_needed = _ZERO
    cash_freed = _ZERO
    total_fee = _ZERO
    increases_risk = False
    held: dict[str, Decimal] = {sym: portfolio.quantity(sym) + q for sym, q in on_the_way.items()}
    for intent in proposal.intents:
        price = prices.get(intent.symbol)
        if price is None:
            values = {
                "name": "price_known",
                "passed": False,
                "limit": None,
                "value": None,
                "message": f"no price for {intent.symbol}",
            }
            checks.append(trusted(RiskCheck, values, _UNSIZED))
            continue
        px = estimated_price(price, intent.side, execution)
        notional = intent.quantity * px
        fee = fee_for(notional, execution)
        total_fee += fee
        checks.append(
            _check(
                f"order_notional:{intent.symbol}",
                notional <= risk.max_order_notional,
                risk.max_order_notional,
                notional,
                "order notional over the per-order limit",
            )
        )
        checks.append(
            _check(
                f"order_fee:{intent.symbol}",
                fee <= risk.max_fee_per_order,
                risk.max_fee_per_order,
                fee,
                "estimated fee over the per-order fee budget",
            )
        )
        qty = held.get(intent.symbol, portfolio.quantity(intent.symbol))
        if intent.side is Side.BUY:
            after = qty + intent.quantity
            increases_risk = increases_risk or after > 0
            cash_needed += notional + fee
        else:
            after = qty - intent.quantity
            if intent.symbol in shortable:
                increases_risk = increases_risk or after < 0
            else:
                checks.append(
                    _check(
                        f"long_only:{intent.symbol}",
                        intent.quantity <= qty,
                        qty,
                        intent.quantity,
                        "sell larger than the position (no short selling)",
                    )
                )
            cash_freed += notional - fee
        grows = abs(after) > abs(qty) or (after != 0 and (after > 0) != (qty > 0))
        if grows and (intent.side is Side.BUY or intent.symbol in shortable):
            exposure = abs(after) * px
            checks.append(
                _check(
                    f"position_notional:{intent.symbol}",
                    exposure <= risk.max_position_notional,
                    risk.max_position_notional,
                    exposure,
                    "position after the order over the per-symbol limit",
                )
            )
        held[intent.symbol] = after
    if cash_needed > 0:
        spendable = portfolio.cash - reserved + cash_freed - risk.min_cash
        checks.append(
            _check(
                "cash",
                cash_needed <= spendable,
                spendable,
                cash_needed,
                "not enough cash above the reserve for buys, fees and pending buys",
            )
        )
    if increases_risk:
        loss = -portfolio.daily_pnl()
        checks.append(
            _check(
                "daily_loss",
                loss < risk.daily_loss_limit,
                risk.daily_loss_limit,
                loss,
                "daily loss limit reached: only risk-reducing orders",
            )
        )
    return trusted(
        RiskVerdict,
        {"approved": all(c.passed for c in checks), "checks": checks, "fee_estimate": total_fee},
    )
