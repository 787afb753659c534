"""The review loop: every proposal passes one chain of reviewers before any order exists.

Whoever proposes (the local engine, a running strategy, GPT, a fallback) hands its proposal to
the same loop. A round first leaves out orders too small to place (`tradeable`), then asks every
reviewer in turn; each answers with a verdict and its reasons (`Reviewer`), never by editing the
proposal. The round's verdict is theirs taken together: approved only when every reviewer
approves, with every reviewer's checks. A refusal goes back to the proposer with all those
reasons; the proposer adjusts and the next round reviews again, until the proposal is approved,
nothing is left to place, the proposer cannot adjust further, or the rounds run out.

Every round is appended to the decision's `rounds` (what the decision log shows). Proposers that
answer at once use `run_review_loop`; GPT answers asynchronously, so the desk runs one
`review_round` per answer and asks `next_step` what to do with a refusal: the same rounds, the
same bound, the same outcomes.

The risk gate (`models.review.risk`) is the first reviewer; compliance, the ML correction and the
validation gate join the chain as further `Reviewer`s without touching the loop. The validation
gate (`models.review.validation`) judges the strategy a proposal would start
(`ReviewContext.strategy`), so a round that starts one is reviewed even with no orders.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from models.config.settings import Settings
from models.core.messages import (
    AdjustRound,
    DecisionStatus,
    Order,
    Proposal,
    RiskVerdict,
    TradeIntent,
)
from models.core.trusted import frozen_maker, replaced, trusted
from models.portfolio.book import Portfolio
from models.review.risk import check
from models.strategy.spec import StrategySpec
from models.vectorized.bars import BarArrays


@dataclass(frozen=True, slots=True)
class ReviewContext:
    """What a reviewer may look at: the book, the latest prices, the orders on their way;
    `shortable` is `settings.shortable()`, given by a caller that keeps it (None: computed)."""

    settings: Settings
    portfolio: Portfolio
    prices: Mapping[str, Decimal]
    pending_orders: Sequence[Order]
    shortable: frozenset[str] | None = None
    strategy: ProposedStrategy | None = None
    """The strategy the proposal would start running (GPT's new or replacing one), with the
    bars it is validated on; None: the proposal starts none (only its orders are judged)."""


@dataclass(frozen=True, slots=True)
class ProposedStrategy:
    """A strategy a proposal would start running and the recent bars of each symbol of its
    universe (oldest first, up to the decision's trigger), for the validation gate."""

    spec: StrategySpec
    history: Mapping[str, BarArrays]


class Reviewer(Protocol):
    """One stage that can say no. It judges; it never edits a proposal."""

    @property
    def name(self) -> str:
        """Who judged: shown with the reviewer's verdict."""
        ...

    def review(self, proposal: Proposal, ctx: ReviewContext) -> RiskVerdict:
        """Judge `proposal`: approved, or refused with every failed check and its limit."""
        ...


@dataclass(frozen=True, slots=True)
class RiskReviewer:
    """The budget / fee / risk gate as a reviewer (`models.review.risk.check`)."""

    name: str = "risk_gate"

    def review(self, proposal: Proposal, ctx: ReviewContext) -> RiskVerdict:
        prices = ctx.prices if isinstance(ctx.prices, dict) else dict(ctx.prices)  # read only
        shortable = ctx.settings.shortable() if ctx.shortable is None else ctx.shortable
        return check(
            proposal,
            ctx.portfolio,
            prices,
            ctx.settings.risk,
            ctx.settings.execution,
            ctx.pending_orders,
            shortable,
        )


DEFAULT_REVIEWERS: tuple[Reviewer, ...] = (RiskReviewer(),)


def combined(verdicts: Sequence[RiskVerdict]) -> RiskVerdict:
    """Every reviewer's verdict taken together: approved only when all approve. A reviewer
    with nothing to judge (approved, no checks, no fee) adds nothing: left out."""
    if len(verdicts) > 1:
        verdicts = [v for v in verdicts if not v.approved or v.checks or v.fee_estimate] or [
            verdicts[0]
        ]
    if len(verdicts) == 1:
        return verdicts[0]
    return RiskVerdict(
        approved=all(v.approved for v in verdicts),
        checks=[c for v in verdicts for c in v.checks],
        fee_estimate=sum((v.fee_estimate for v in verdicts), Decimal(0)),
    )


def tradeable(proposal: Proposal, ctx: ReviewContext) -> tuple[Proposal, list[str]]:
    """Leave out orders worth less than their symbol's `min_notional` (at the latest mark):
    the exchange refuses them, and a top-up of a few cents is not a decision anyway."""
    keep: list[TradeIntent] = []
    small: list[str] = []
    for intent in proposal.intents:
        spec = ctx.settings.symbols.get(intent.symbol)
        price = ctx.portfolio.marks.get(intent.symbol)
        floor = spec.min_notional if spec is not None else Decimal(0)
        if floor > 0 and price is not None and intent.quantity * price < floor:
            small.append(f"{intent.side.value} {intent.quantity} {intent.symbol}")
        else:
            keep.append(intent)
    if not small:
        return proposal, small
    note = f"; under min_notional, not placed: {', '.join(small)}"
    kept = replaced(proposal, {"intents": keep, "rationale": (proposal.rationale + note)[:2000]})
    return kept, small


@dataclass(frozen=True, slots=True)
class RoundResult:
    """One round: the proposal as reviewed, what was too small to place, and the verdict
    (None when nothing was left to review: no round is logged then)."""

    proposal: Proposal
    small: list[str]
    verdict: RiskVerdict | None


def review_round(
    proposal: Proposal,
    ctx: ReviewContext,
    rounds: list[AdjustRound],
    reviewers: Sequence[Reviewer] = DEFAULT_REVIEWERS,
) -> RoundResult:
    """Review `proposal` once and log the round (numbered after those already in `rounds`).
    A proposal with no orders left is reviewed only when it starts a strategy
    (`ctx.strategy`): a strategy is always judged, even one that places nothing yet."""
    proposal, small = tradeable(proposal, ctx)
    if not proposal.intents and ctx.strategy is None:
        return RoundResult(proposal, small, None)
    if len(reviewers) == 1:  # `combined` of one verdict is that verdict
        verdict = reviewers[0].review(proposal, ctx)
    else:
        verdict = combined([r.review(proposal, ctx) for r in reviewers])
    # Unvalidated (`models.core.trusted`): the round's number, the proposal and verdict as built.
    rounds.append(
        trusted(AdjustRound, {"round": len(rounds), "proposal": proposal, "verdict": verdict})
    )
    return _round_result(proposal, small, verdict)


_round_result = frozen_maker(RoundResult)  # `RoundResult(...)`, its fields in order


class RefusalOutcome(StrEnum):
    """What a refused round leads to."""

    SENT_BACK = "sent back to controller"
    EXHAUSTED = "rounds exhausted, decision rejected"
    STALLED = "controller cannot adjust further, decision rejected"


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused round, for the alert the desk raises: its number, verdict and what followed."""

    round: int
    verdict: RiskVerdict
    outcome: str
    last: bool


_refusal = frozen_maker(Refusal)  # `Refusal(...)`, its fields in order


@dataclass(slots=True)
class LoopResult:
    """How the loop ended: the decision's status, the final proposal, a note for the log,
    and every refusal on the way."""

    status: DecisionStatus
    proposal: Proposal
    note: str
    refusals: list[Refusal] = field(default_factory=list)


def same_intents(one: list[TradeIntent], other: list[TradeIntent]) -> bool:
    """`one == other`, told apart cheaply where they differ in length or in a quantity (an
    adjustment resizes: pydantic's equality of each pair costs several µs)."""
    if len(one) != len(other):
        return False
    for a, b in zip(one, other, strict=True):
        if a is not b and a.quantity != b.quantity:
            return False
    return one == other


def failed_names(verdict: RiskVerdict) -> str:
    return ", ".join(sorted({c.name for c in verdict.checks if not c.passed}))


def run_review_loop(
    proposal: Proposal,
    adjust: Callable[[Proposal, RiskVerdict], Proposal],
    ctx_now: Callable[[], ReviewContext],
    rounds: list[AdjustRound],
    max_rounds: int,
    reviewers: Sequence[Reviewer] = DEFAULT_REVIEWERS,
) -> LoopResult:
    """Review ⇄ adjust until approved, nothing left, stalled or out of rounds. The round
    numbers continue those already in `rounds` (a GPT decision's), and the loop has its own
    bound, so the local fallback of a refused GPT decision gets its full rounds. `ctx_now`
    gives the review context of each round (the book does not move between rounds, but the
    caller owns it)."""
    result = LoopResult(DecisionStatus.REJECTED, proposal, "")
    for k in range(max_rounds + 1):
        step = review_round(result.proposal, ctx_now(), rounds, reviewers)
        result.proposal = step.proposal
        if step.verdict is None:
            result.status = DecisionStatus.NO_ACTION
            if step.small:
                result.note = f"under min_notional, none placed: {', '.join(step.small)}"[:500]
            else:
                result.note = "adjusted down to no orders" if k else "controller proposed no orders"
            return result
        verdict = step.verdict
        if verdict.approved:
            result.status = DecisionStatus.EXECUTED
            return result
        adjusted = adjust(step.proposal, verdict) if k < max_rounds else None
        stalled = adjusted is not None and same_intents(adjusted.intents, step.proposal.intents)
        outcome = (
            RefusalOutcome.EXHAUSTED
            if adjusted is None
            else RefusalOutcome.STALLED
            if stalled
            else None
        )
        n = rounds[-1].round
        result.refusals.append(
            _refusal(n, verdict, (outcome or RefusalOutcome.SENT_BACK).value, outcome is not None)
        )
        if adjusted is None or stalled:
            result.note = f"risk gate refused after {k + 1} round(s): {failed_names(verdict)}"
            return result
        result.proposal = adjusted
    return result
