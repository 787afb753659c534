"""The review loop: one protocol for every reviewer, bounded rounds, every refusal's reasons
back to the proposer, and a new reviewer plugged in without touching the loop."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from models.config.settings import Settings
from models.core.messages import (
    AdjustRound,
    DecisionRecord,
    DecisionStatus,
    Direction,
    Proposal,
    RiskCheck,
    RiskVerdict,
    Side,
    TradeIntent,
)
from models.desk.desk import TradingDesk
from models.portfolio.book import Portfolio
from models.review.loop import (
    DEFAULT_REVIEWERS,
    RefusalOutcome,
    ReviewContext,
    RiskReviewer,
    combined,
    review_round,
    run_review_loop,
    tradeable,
)
from tests.unit.test_desk import event, of, settings

D = Decimal


def proposal(*quantities: str, symbol: str = "ABC") -> Proposal:
    return Proposal(
        controller="local",
        strategy="t",
        intents=[
            TradeIntent(symbol=symbol, side=Side.BUY, quantity=D(q), reason="r") for q in quantities
        ],
        rationale="test",
        confidence=0.5,
    )


def context(cfg: Settings | None = None, price: str = "100") -> ReviewContext:
    book = Portfolio(cash=D(10_000))
    book.mark("ABC", D(price), 0)
    return ReviewContext(
        settings=cfg or settings(), portfolio=book, prices=dict(book.marks), pending_orders=[]
    )


@dataclass(frozen=True)
class Scripted:
    """A reviewer answering from a script, one verdict per call, recording what it saw."""

    answers: tuple[bool, ...]
    seen: list[Proposal]
    name: str = "scripted"

    def review(self, proposal: Proposal, ctx: ReviewContext) -> RiskVerdict:
        ok = self.answers[min(len(self.seen), len(self.answers) - 1)]
        self.seen.append(proposal)
        check = RiskCheck(name=f"{self.name}_rule", passed=ok, message="scripted")
        return RiskVerdict(approved=ok, checks=[check], fee_estimate=D(0))


@dataclass(frozen=True)
class MaxQuantity:
    """A second reviewer of the kind later issues add: refuses any intent above a size."""

    limit: Decimal
    name: str = "max_quantity"

    def review(self, proposal: Proposal, ctx: ReviewContext) -> RiskVerdict:
        big = [i for i in proposal.intents if i.quantity > self.limit]
        check = RiskCheck(
            name="max_quantity",
            passed=not big,
            limit=self.limit,
            value=max((i.quantity for i in big), default=None),
            message="too big" if big else "ok",
        )
        return RiskVerdict(approved=not big, checks=[check], fee_estimate=D(0))


def halve(p: Proposal, _: RiskVerdict) -> Proposal:
    intents = [i.model_copy(update={"quantity": i.quantity / 2}) for i in p.intents]
    return p.model_copy(update={"intents": intents})


def test_the_risk_gate_is_the_first_reviewer() -> None:
    assert isinstance(DEFAULT_REVIEWERS[0], RiskReviewer)


def test_one_reviewers_verdict_is_the_rounds_verdict_unchanged() -> None:
    """With the risk gate alone the decision log is what it was before the loop existed."""
    v = RiskVerdict(approved=True, checks=[], fee_estimate=D(3))
    assert combined([v]) is v


def test_a_round_is_approved_only_when_every_reviewer_approves_and_carries_every_check() -> None:
    a, b = Scripted((True,), []), Scripted((False,), [], name="other")
    rounds: list[AdjustRound] = []
    step = review_round(proposal("1"), context(), rounds, (a, b))
    assert step.verdict is not None and not step.verdict.approved
    assert [c.name for c in step.verdict.checks] == ["scripted_rule", "other_rule"]
    assert rounds == [AdjustRound(round=0, proposal=proposal("1"), verdict=step.verdict)]


@given(st.lists(st.booleans(), min_size=1, max_size=8), st.integers(0, 5), st.integers(0, 3))
def test_rounds_are_bounded_and_the_status_is_the_last_verdict(
    answers: list[bool], max_rounds: int, earlier: int
) -> None:
    """For any reviewer behaviour: at most max_rounds + 1 rounds are logged, numbered after
    the rounds already there; executed exactly when the last logged round was approved; one
    refusal per refused round, the last one marked last unless the decision executed."""
    reviewer = Scripted(tuple(answers), [])
    refused = RiskVerdict(approved=False, checks=[], fee_estimate=D(0))
    old = [AdjustRound(round=i, proposal=proposal("1"), verdict=refused) for i in range(earlier)]
    rounds = list(old)
    result = run_review_loop(proposal("64"), halve, context, rounds, max_rounds, (reviewer,))
    new = rounds[earlier:]
    assert 1 <= len(new) <= max_rounds + 1
    assert [r.round for r in new] == list(range(earlier, earlier + len(new)))
    assert (result.status is DecisionStatus.EXECUTED) == new[-1].verdict.approved
    refusals = [r for r in new if not r.verdict.approved]
    assert [f.round for f in result.refusals] == [r.round for r in refusals]
    if result.status is not DecisionStatus.EXECUTED:
        assert result.refusals[-1].last and result.note.startswith("risk gate refused")
    assert all(not f.last for f in result.refusals[:-1])


def test_the_proposer_gets_every_reason_and_its_adjustment_is_reviewed_again() -> None:
    seen: list[tuple[Proposal, RiskVerdict]] = []

    def adjust(p: Proposal, v: RiskVerdict) -> Proposal:
        seen.append((p, v))
        return halve(p, v)

    reviewers = (RiskReviewer(), MaxQuantity(D(10)))
    rounds: list[AdjustRound] = []
    result = run_review_loop(proposal("40"), adjust, context, rounds, 3, reviewers)
    assert result.status is DecisionStatus.EXECUTED
    assert [r.proposal.intents[0].quantity for r in rounds] == [D(40), D(20), D(10)]
    # each refusal handed the proposer the risk gate's checks and the new reviewer's
    names = {c.name for c in seen[0][1].checks}
    assert "max_quantity" in names and len(names) > 1


def test_a_proposer_that_cannot_adjust_stalls_the_loop() -> None:
    rounds: list[AdjustRound] = []
    result = run_review_loop(
        proposal("40"), lambda p, v: p, context, rounds, 5, (MaxQuantity(D(1)),)
    )
    assert result.status is DecisionStatus.REJECTED and len(rounds) == 1
    assert result.refusals[0].outcome == RefusalOutcome.STALLED.value and result.refusals[0].last


def test_nothing_to_place_is_no_action_and_logs_no_round() -> None:
    rounds: list[AdjustRound] = []
    result = run_review_loop(proposal(), halve, context, rounds, 3)
    assert result.status is DecisionStatus.NO_ACTION and rounds == []
    assert result.note == "controller proposed no orders"


def test_orders_under_min_notional_are_left_out_before_review() -> None:
    cfg = settings()
    cfg = cfg.model_copy(
        update={"symbols": {"ABC": cfg.symbols["ABC"].model_copy(update={"min_notional": D(50)})}}
    )
    kept, small = tradeable(proposal("0.1", "2"), context(cfg))
    assert [i.quantity for i in kept.intents] == [D(2)] and small == ["buy 0.1 ABC"]
    result = run_review_loop(proposal("0.1"), halve, lambda: context(cfg), [], 3)
    assert result.status is DecisionStatus.NO_ACTION
    assert result.note.startswith("under min_notional, none placed")


def test_a_new_reviewer_joins_the_desk_without_touching_the_loop() -> None:
    """The seam later stages plug into: a desk given one more reviewer refuses what it
    refuses, logs its check in every round, and raises the refusal alerts."""
    plain = TradingDesk.create(settings())
    strict = TradingDesk.create(settings())
    strict.reviewers = (*DEFAULT_REVIEWERS, MaxQuantity(D(1)))
    bar = event(0, "100", "100", Direction.LONG)
    ok = of(DecisionRecord, plain.on_bar_event(bar))[0]
    refused = of(DecisionRecord, strict.on_bar_event(bar))[0]
    assert ok.status is DecisionStatus.EXECUTED
    assert refused.status is not DecisionStatus.EXECUTED and not refused.orders
    assert refused.rounds and all(
        any(c.name == "max_quantity" for c in r.verdict.checks) for r in refused.rounds
    )
