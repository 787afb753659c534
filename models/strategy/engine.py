"""Strategy controllers: the interface every controller answers, and the local engine.

A controller sees a `DecisionContext` and answers a `Proposal`; when the risk gate refuses it,
the controller gets the verdict back and answers an adjusted proposal (bounded rounds, decided by
the caller). The GPT controller of a later release implements the same two methods, so the desk
does not know which one it talks to. The local engine is deliberately simple and deterministic:
long-only, target a fraction of equity on a long signal, go flat on any risk-off signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from models.config.settings import ExecutionConfig, RiskConfig, StrategyConfig
from models.core.messages import (
    Branch,
    Direction,
    FeatureVector,
    Proposal,
    RiskVerdict,
    Side,
    Signal,
    TradeIntent,
)
from models.core.money import round_to_lot
from models.core.trusted import replaced
from models.review.risk import check_names, estimated_price, fee_for
from models.strategy.intents import intent as new_intent
from models.strategy.intents import proposal

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class DecisionContext:
    decision_id: str
    symbol: str
    branch: Branch
    signals: list[Signal]
    features: FeatureVector
    price: Decimal
    position: Decimal
    cash: Decimal
    equity: Decimal
    lot_size: Decimal
    risk: RiskConfig
    execution: ExecutionConfig


class StrategyController(Protocol):
    name: str

    def propose(self, ctx: DecisionContext) -> Proposal: ...

    def adjust(
        self, ctx: DecisionContext, previous: Proposal, verdict: RiskVerdict
    ) -> Proposal: ...


def desired_direction(signals: list[Signal]) -> Direction | None:
    """Risk-off wins: any FLAT or SHORT signal means flat; otherwise LONG if any says long."""
    directions = {s.direction for s in signals}
    if Direction.FLAT in directions or Direction.SHORT in directions:
        return Direction.FLAT
    if Direction.LONG in directions:
        return Direction.LONG
    return None


class LocalStrategyEngine:
    """Deterministic rules for both branches; the strategic branch sizes bigger."""

    name = "local"

    def __init__(self, cfg: StrategyConfig) -> None:
        self.cfg = cfg

    def _fraction(self, ctx: DecisionContext) -> Decimal:
        return (
            self.cfg.strategic_fraction
            if ctx.branch is Branch.STRATEGIC
            else self.cfg.target_fraction
        )

    def _target_quantity(self, ctx: DecisionContext, direction: Direction | None) -> Decimal:
        if direction is None:
            return ctx.position
        if direction is not Direction.LONG:
            return _ZERO
        return round_to_lot(ctx.equity * self._fraction(ctx) / ctx.price, ctx.lot_size)

    def propose(self, ctx: DecisionContext) -> Proposal:
        """A buy is sized at its fill (`size_fraction`: the target share of equity), its
        quantity the estimate at this close; a sell is explicit (whole lots of the position)."""
        direction = desired_direction(ctx.signals)
        target = self._target_quantity(ctx, direction)
        names = ", ".join(s.trigger for s in ctx.signals)
        intents: list[TradeIntent] = []
        delta = target - ctx.position
        # Only add to a long on a long signal; never trim a long because equity moved a bit.
        if delta > 0 and direction is Direction.LONG:
            qty = round_to_lot(delta, ctx.lot_size)
            if qty > 0:
                intents.append(new_intent(ctx.symbol, Side.BUY, qty, names, self._fraction(ctx)))
        elif delta < 0 and direction is Direction.FLAT:
            # Whole lots only: an exchange refuses a quantity off its step (a position bought
            # with the fee taken in the base asset holds such dust).
            qty = round_to_lot(-delta, ctx.lot_size)
            if qty > 0:
                intents.append(new_intent(ctx.symbol, Side.SELL, qty, names))
        rationale = (
            f"{ctx.branch.value} decision on {names}: direction "
            f"{direction.value if direction else 'none'}, target {target} from {ctx.position}"
        )
        confidence = min(1.0, max((s.strength for s in ctx.signals), default=0.0))
        return proposal(self.name, f"local-{ctx.branch.value}", intents, rationale, confidence)

    def adjust(self, ctx: DecisionContext, previous: Proposal, verdict: RiskVerdict) -> Proposal:
        """Shrink buys to what every failed limit allows; slice exits that are too big for one
        order into several orders, because a limit must never trap a position it should protect.
        A buy sized at its fill stays so when only the cash limits it (its fill is sized from
        the cash then available anyway); a per-order or per-position limit that binds makes it
        explicit, so the fill cannot buy more than the limit allowed."""
        failed = [c for c in verdict.checks if not c.passed]  # `verdict.failures`
        for c in failed:
            if c.name == "daily_loss":
                sells = [i for i in previous.intents if i.side is Side.SELL]
                return replaced(
                    previous,
                    {
                        "intents": sells,
                        "rationale": previous.rationale + "; daily loss limit: buys dropped",
                    },
                )
        intents: list[TradeIntent] = []
        held_left = ctx.position  # shared by all sells of the symbol, in order
        px = estimated_price(ctx.price, Side.BUY, ctx.execution)  # the higher, conservative
        unit_fee = fee_for(px, ctx.execution)
        lot = ctx.lot_size
        for intent in previous.intents:
            quantity = intent.quantity
            per_order = [quantity]
            overall = [quantity]
            by_cash = quantity
            # The names of the symbol's checks (`models.review.risk`, made once a symbol).
            order_notional, order_fee, _, position_notional = check_names(intent.symbol)
            online_size = f"online_size:{intent.symbol}"  # the online model's cap
            for c in failed:
                name = c.name
                limit = c.limit if c.limit is not None else _ZERO
                if name in (order_notional, online_size):  # online: models.online.reviewer
                    per_order.append(limit / px)
                elif name == order_fee and unit_fee > 0:
                    per_order.append(limit / unit_fee)
                elif name == position_notional:
                    overall.append(limit / px - ctx.position)
                elif name == "cash":
                    overall.append(limit / (px + unit_fee))
                    by_cash = min(by_cash, limit / (px + unit_fee))
            slice_qty = round_to_lot(min(per_order), lot)
            if intent.side is Side.BUY:
                qty = round_to_lot(min(*overall, slice_qty), lot)
                if qty > 0:
                    update: dict[str, object] = {"quantity": qty}
                    if qty < round_to_lot(by_cash, lot):  # a limit besides the cash
                        update["size_fraction"] = None
                    intents.append(replaced(intent, update))
                continue
            remaining = round_to_lot(min(*overall, held_left), lot)
            if remaining > 0 and slice_qty <= 0:
                continue  # not even one lot fits a single order: nothing to send
            held_left -= remaining
            while remaining > 0:
                part = min(remaining, slice_qty)
                intents.append(replaced(intent, {"quantity": part}))
                remaining -= part
        reasons = ", ".join([c.name for c in failed])
        return replaced(
            previous,
            {"intents": intents, "rationale": previous.rationale + f"; resized for {reasons}"},
        )
