"""The validation gate as a reviewer: a new strategy is proven before it runs.

When a proposal would start a strategy (GPT creates or replaces one: `ReviewContext.strategy`),
`ValidationReviewer` runs it on the recent bars of every symbol of its universe and on the
stress scenarios built from them (`models.validation.gate.validate_strategy`,
`models.validation.scenarios`), under the configuration's `validation` section. Every figure
becomes a check named `validation:<SYMBOL>:<figure>` with its value and limit (the decision log
shows them all; a refusal sends the failed ones back to GPT, whose follow-up question reads
e.g. `lost 41.3% in the flash_crash scenario (...), limit 25%`). A proposal that starts no
strategy gets an empty approval: the round's verdict is the other reviewers' alone.

It judges only what it is given: the bars come from the desk's window
(`models.desk.bar_history`), cut at the decision's trigger bar, so the same bars give the same
verdict in a backtest and live, however late the answer arrives.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from models.core.messages import Proposal, RiskCheck, RiskVerdict
from models.review.loop import ReviewContext
from models.validation.gate import CHECK, validate_strategy
from models.validation.scenarios import build_scenarios
from models.validation.verdicts import CheckResult, Outcome, risk_checks
from models.vectorized.bars import BarArrays
from models.vectorized.evaluate import Costs

__all__ = ["UNANSWERABLE", "ValidationReviewer", "answerable_refusal"]

_NOTHING: Final = RiskVerdict(approved=True, checks=[], fee_estimate=Decimal(0))
UNANSWERABLE: Final = ("history_bars",)
"""Figures no answer can fix: a strategy refused for too little history is refused again
whatever GPT writes (until the bars arrive), so it is not sent back."""


def answerable_refusal(verdict: RiskVerdict) -> bool:
    """Whether a refusal is worth sending back: some failed check other than the gate's
    unanswerable figures (a verdict with no validation checks always is)."""
    return any(
        not (c.name.startswith(f"{CHECK}:") and c.name.rsplit(":", 1)[-1] in UNANSWERABLE)
        for c in verdict.failures
    )


@dataclass(frozen=True, slots=True)
class ValidationReviewer:
    """Judges the strategy a proposal would start; approves, with nothing to say, otherwise."""

    name: str = "validation"

    def results(self, ctx: ReviewContext) -> list[CheckResult]:
        """One verdict per symbol of the proposed strategy's universe (sorted); none when the
        proposal starts no strategy."""
        proposed = ctx.strategy
        if proposed is None:
            return []
        cfg = ctx.settings.validation
        out: list[CheckResult] = []
        for symbol in sorted(proposed.spec.universe):
            bars = proposed.history.get(symbol)
            if bars is None:  # no bar of it yet: nothing to judge on (refused: history_bars)
                bars = BarArrays.from_columns(symbol, [], 1, [], [], [], [], [])
            result = validate_strategy(
                proposed.spec,
                bars,
                build_scenarios(bars, cfg.scenarios),
                Costs.from_settings(ctx.settings, symbol),
                ctx.settings.features,
                cfg.thresholds,
                unmodelled=cfg.unmodelled,
            )
            out.append(dataclasses.replace(result, check=f"{CHECK}:{symbol}"))
        return out

    def review(self, proposal: Proposal, ctx: ReviewContext) -> RiskVerdict:
        results = self.results(ctx)
        if not results:
            return _NOTHING
        checks: list[RiskCheck] = [c for r in results for c in risk_checks(r)]
        approved = all(r.outcome is not Outcome.FAIL for r in results)
        return RiskVerdict(approved=approved, checks=checks, fee_estimate=Decimal(0))
