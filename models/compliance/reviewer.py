"""Compliance as a reviewer of the desk's review loop: every rule (`models.compliance.rules`)
on every intent of every proposal, GPT's and the local engine's alike.

Each rule's answer is a check named `compliance:<rule>:<symbol>`: a block fails it (the
proposal goes back to its proposer with the reason, and no proposer can approve it: only a
proposal without the blocked order passes), a warning passes with `warn:` before its reason,
so it is on record in the decision log. The reviewer is built for one decision: the
decision's time (`now_ms`), the venue and the account's recent orders come from the desk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from models.compliance.config import ComplianceConfig
from models.compliance.rules import RULES, Level, RuleInput, RuleResult
from models.core.messages import Proposal, RiskCheck, RiskVerdict, Side
from models.review.loop import ReviewContext

__all__ = ["ComplianceReviewer", "judge_intents"]


def _estimate(reference: Decimal | None, side: Side, slippage_bps: Decimal) -> Decimal | None:
    if reference is None:
        return None
    move = reference * slippage_bps / Decimal(10_000)
    return reference + move if side is Side.BUY else reference - move


def judge_intents(
    proposal: Proposal,
    ctx: ReviewContext,
    config: ComplianceConfig,
    venue: str,
    now_ms: int,
    recent_orders: Sequence[tuple[int, str, Side]],
) -> list[tuple[str, RuleResult]]:
    """(symbol, result) of every rule that has something to say, intent by intent."""
    out: list[tuple[str, RuleResult]] = []
    equity = ctx.portfolio.equity()
    slippage = ctx.settings.execution.slippage_bps
    for intent in proposal.intents:
        reference = ctx.prices.get(intent.symbol)
        x = RuleInput(
            intent=intent,
            config=config,
            venue=venue,
            now_ms=now_ms,
            reference_price=reference,
            price_estimate=_estimate(reference, intent.side, slippage),
            position=ctx.portfolio.quantity(intent.symbol),
            equity=equity,
            pending=ctx.pending_orders,
            recent_orders=recent_orders,
        )
        for rule in RULES.values():
            result = rule(x)
            if result is not None:
                out.append((intent.symbol, result))
    return out


@dataclass(frozen=True, slots=True)
class ComplianceReviewer:
    config: ComplianceConfig
    venue: str
    now_ms: int
    recent_orders: Sequence[tuple[int, str, Side]] = ()
    name: str = "compliance"

    def review(self, proposal: Proposal, ctx: ReviewContext) -> RiskVerdict:
        checks = []
        for symbol, r in judge_intents(
            proposal, ctx, self.config, self.venue, self.now_ms, self.recent_orders
        ):
            message = f"{r.level.value}: {r.reason}" if r.reason else ""
            checks.append(
                RiskCheck(
                    name=f"compliance:{r.rule}:{symbol}",
                    passed=r.level is not Level.BLOCK,
                    limit=r.limit,
                    value=r.value,
                    message=message,
                )
            )
        return RiskVerdict(
            approved=all(c.passed for c in checks), checks=checks, fee_estimate=Decimal(0)
        )
