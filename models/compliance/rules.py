"""The pre-trade rules, each one pure function of an order intent and what the desk knows
(`RuleInput`), answering pass, warn or block with its reason and figures (`RuleResult`).

Modelled on the pre-trade controls of MiFID II RTS 6, Article 15(1): price collars (a), maximum
order values (b) and volumes (c), maximum messages (c), repeated automated execution throttles
(d); with what firms add beside them: blocked and restricted lists, venue and jurisdiction
allow-lists, position and concentration limits, self-trade prevention, trading hours, and the
exchange's own minimum size and ticks. specs/models.compliance.md says what each enforces and
why.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum

from models.compliance.config import ComplianceConfig
from models.core.messages import Order, Side, TradeIntent

__all__ = ["RULES", "Level", "RuleInput", "RuleResult"]

_ZERO = Decimal(0)


class Level(StrEnum):
    PASS = "pass"
    WARN = "warn"
    BLOCK = "block"


@dataclass(frozen=True, slots=True)
class RuleResult:
    rule: str
    level: Level
    reason: str = ""
    limit: Decimal | None = None
    value: Decimal | None = None


@dataclass(frozen=True, slots=True)
class RuleInput:
    intent: TradeIntent
    config: ComplianceConfig
    venue: str
    now_ms: int
    reference_price: Decimal | None
    """The last trade or close the desk has of the instrument (None: none known)."""
    price_estimate: Decimal | None
    """What the order is expected to fill at (the reference moved by slippage)."""
    position: Decimal
    equity: Decimal
    pending: Sequence[Order]
    """Our orders on their way (not yet filled)."""
    recent_orders: Sequence[tuple[int, str, Side]]
    """Our orders placed recently: (time ms, symbol, side), oldest first."""


Rule = Callable[[RuleInput], RuleResult | None]


def _ok(rule: str) -> RuleResult:
    return RuleResult(rule, Level.PASS)


def _reduces(x: RuleInput) -> bool:
    return abs(_after(x)) < abs(x.position) and _after(x) * x.position >= 0


def blocked(x: RuleInput) -> RuleResult | None:
    """A blocked instrument takes no order that adds exposure; getting out stays possible."""
    sym = x.intent.symbol
    if sym in x.config.blocked and not _reduces(x):
        return RuleResult("blocked_instrument", Level.BLOCK, f"{sym} is on the blocked list")
    if sym in x.config.restricted:
        return RuleResult("restricted_instrument", Level.WARN, f"{sym} is on the restricted list")
    return None


def venue(x: RuleInput) -> RuleResult | None:
    allowed = x.config.allowed_venues
    if allowed is None:
        return None
    if x.venue not in allowed:
        why = f"venue {x.venue} is not allowed for this account ({', '.join(sorted(allowed))})"
        return RuleResult("venue", Level.BLOCK, why)
    return _ok("venue")


def jurisdiction(x: RuleInput) -> RuleResult | None:
    allowed = x.config.allowed_jurisdictions
    if allowed is None:
        return None
    where = x.config.instrument_jurisdictions.get(x.intent.symbol)
    if where is None:
        why = f"{x.intent.symbol}'s jurisdiction is unknown (instrument_jurisdictions)"
        return RuleResult("jurisdiction", Level.BLOCK, why)
    if where not in allowed:
        return RuleResult("jurisdiction", Level.BLOCK, f"{x.intent.symbol} is of {where}")
    return _ok("jurisdiction")


def price_collar(x: RuleInput) -> RuleResult | None:
    collar = x.config.price_collar
    if collar is None:
        return None
    ref, est = x.reference_price, x.price_estimate
    if ref is None or ref <= 0 or est is None:
        return RuleResult("price_collar", Level.BLOCK, "no reference price: refused (fail closed)")
    move = abs(est / ref - 1)
    if move > collar:
        why = f"price {est} is {move:.2%} from the reference {ref}, over the {collar:.2%} collar"
        return RuleResult("price_collar", Level.BLOCK, why, collar, move)
    return RuleResult("price_collar", Level.PASS, "", collar, move)


def order_value(x: RuleInput) -> RuleResult | None:
    limit, est = x.config.max_order_value, x.price_estimate
    if limit is None:
        return None
    if est is None:
        return RuleResult("order_value", Level.BLOCK, "no price to value the order (fail closed)")
    value = x.intent.quantity * est
    level = Level.BLOCK if value > limit else Level.PASS
    why = f"order value {value:.2f} over {limit}" if level is Level.BLOCK else ""
    return RuleResult("order_value", level, why, limit, value)


def order_quantity(x: RuleInput) -> RuleResult | None:
    limit = x.config.max_order_quantity
    if limit is None:
        return None
    q = x.intent.quantity
    level = Level.BLOCK if q > limit else Level.PASS
    return RuleResult(
        "order_quantity", level, f"{q} over {limit}" if level is Level.BLOCK else "", limit, q
    )


def _after(x: RuleInput) -> Decimal:
    signed = x.intent.quantity if x.intent.side is Side.BUY else -x.intent.quantity
    return x.position + signed


def position_value(x: RuleInput) -> RuleResult | None:
    limit, est = x.config.max_position_value, x.price_estimate
    if limit is None:
        return None
    after = abs(_after(x))
    if after <= abs(x.position):
        return _ok("position_value")  # reducing is always allowed
    if est is None:
        return RuleResult("position_value", Level.BLOCK, "no price to value the position")
    value = after * est
    level = Level.BLOCK if value > limit else Level.PASS
    why = f"position value {value:.2f} over {limit}" if level is Level.BLOCK else ""
    return RuleResult("position_value", level, why, limit, value)


def concentration(x: RuleInput) -> RuleResult | None:
    limit, est = x.config.max_concentration, x.price_estimate
    if limit is None:
        return None
    after = abs(_after(x))
    if after <= abs(x.position):
        return _ok("concentration")
    if est is None or x.equity <= 0:
        return RuleResult("concentration", Level.BLOCK, "no price or equity to measure it")
    share = after * est / x.equity
    level = Level.BLOCK if share > limit else Level.PASS
    why = (
        f"{share:.1%} of equity in {x.intent.symbol}, over {limit:.0%}"
        if level is Level.BLOCK
        else ""
    )
    return RuleResult("concentration", level, why, limit, share)


def _count_since(x: RuleInput, window_s: int, match: Callable[[str, Side], bool]) -> int:
    since = x.now_ms - window_s * 1000
    return sum(1 for ts, sym, side in x.recent_orders if ts > since and match(sym, side))


def order_rate(x: RuleInput) -> RuleResult | None:
    t = x.config.order_rate
    if t is None:
        return None
    n = _count_since(x, t.window_s, lambda _s, _d: True) + 1
    level = Level.BLOCK if n > t.count else Level.PASS
    why = f"{n} orders in {t.window_s} s, over {t.count}" if level is Level.BLOCK else ""
    return RuleResult("order_rate", level, why, Decimal(t.count), Decimal(n))


def repeat_throttle(x: RuleInput) -> RuleResult | None:
    t = x.config.repeat_throttle
    if t is None:
        return None
    sym, side = x.intent.symbol, x.intent.side
    n = _count_since(x, t.window_s, lambda s, d: s == sym and d is side) + 1
    level = Level.BLOCK if n > t.count else Level.PASS
    why = (
        f"{n} {side.value}s of {sym} in {t.window_s} s, over {t.count}"
        if level is Level.BLOCK
        else ""
    )
    return RuleResult("repeat_throttle", level, why, Decimal(t.count), Decimal(n))


def self_trade(x: RuleInput) -> RuleResult | None:
    """Never send an order that would meet one of ours still on its way."""
    opposite = [o for o in x.pending if o.symbol == x.intent.symbol and o.side is not x.intent.side]
    if opposite:
        why = f"would cross our own open {opposite[0].side.value} {opposite[0].client_order_id}"
        return RuleResult("self_trade", Level.BLOCK, why)
    return _ok("self_trade")


def trading_hours(x: RuleInput) -> RuleResult | None:
    hours = x.config.hours.get(x.venue)
    if hours is None:
        return None
    at = datetime.fromtimestamp(x.now_ms / 1000, UTC)
    minute = at.hour * 60 + at.minute
    open_now = at.weekday() in hours.weekdays and hours.open_minute <= minute < hours.close_minute
    if not open_now:
        return RuleResult("trading_hours", Level.BLOCK, f"{x.venue} is closed at {at:%a %H:%M} UTC")
    return _ok("trading_hours")


def market_limits(x: RuleInput) -> RuleResult | None:
    rules = x.config.markets.get(x.intent.symbol)
    if rules is None:
        return None
    q = x.intent.quantity
    if rules.min_quantity is not None and q < rules.min_quantity:
        return RuleResult(
            "market_limits", Level.BLOCK, f"{q} under the minimum {rules.min_quantity}",
            rules.min_quantity, q,
        )  # fmt: skip
    if rules.quantity_step is not None and q % rules.quantity_step != 0:
        why = f"{q} is not a multiple of the step {rules.quantity_step}"
        return RuleResult("market_limits", Level.BLOCK, why, rules.quantity_step, q)
    return _ok("market_limits")


RULES: Mapping[str, Rule] = {
    "instrument_lists": blocked,
    "venue": venue,
    "jurisdiction": jurisdiction,
    "price_collar": price_collar,
    "order_value": order_value,
    "order_quantity": order_quantity,
    "position_value": position_value,
    "concentration": concentration,
    "order_rate": order_rate,
    "repeat_throttle": repeat_throttle,
    "self_trade": self_trade,
    "trading_hours": trading_hours,
    "market_limits": market_limits,
}
"""Every rule, in the order a verdict lists them."""
