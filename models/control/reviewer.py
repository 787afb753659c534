"""The trading state as a reviewer in the desk's review loop (`models.review.loop.Reviewer`).

Reducing is close-only: the demotion's `CloseOnlyReviewer` judges it (one rule for "only orders
that reduce exposure"), with the trading state as the stated cause. Paused and halted refuse
every new order, one failed check per order, so the decision log says which state refused what.
A proposal with no orders (a strategy starting, which places nothing yet) passes: strategies
keep running in every state.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from models.control.states import TradingState
from models.core.messages import Proposal, RiskCheck, RiskVerdict
from models.review.loop import ReviewContext
from models.validation.demotion import CloseOnlyReviewer

__all__ = ["TradingStateReviewer"]


@dataclass(frozen=True, slots=True)
class TradingStateReviewer:
    state: TradingState
    name: str = "trading_state"

    def review(self, proposal: Proposal, ctx: ReviewContext) -> RiskVerdict:
        if self.state is TradingState.ACTIVE or not proposal.intents:
            return RiskVerdict(approved=True, checks=[], fee_estimate=Decimal(0))
        if self.state is TradingState.REDUCING:
            why = "the desk is reducing (close-only)"
            return CloseOnlyReviewer(name=self.name, why=why).review(proposal, ctx)
        checks = [
            RiskCheck(
                name=self.name,
                passed=False,
                message=(
                    f"the desk is {self.state.value}: no new orders "
                    f"({intent.side.value} {intent.quantity} {intent.symbol} refused)"
                ),
            )
            for intent in proposal.intents
        ]
        return RiskVerdict(approved=False, checks=checks, fee_estimate=Decimal(0))
