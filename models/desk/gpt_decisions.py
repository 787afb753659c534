"""GPT decisions at the desk: asking on a strategic trigger, and resuming with the answer.

A strategic trigger becomes a question (`start`) unless the symbol's question is still out
(`coalesced`) or was asked within the cooldown while a strategy runs (`cooled`); the decision is
logged `pending` and the desk goes on. The answer (`on_gpt_answer`) passes one round of the
review loop: approved, its strategy takes over and its orders are placed; refused, the verdict
goes back to GPT as the next round's question, until the rounds or the budget run out. An answer
that starts a new strategy (creates or replaces one) is also judged by the validation gate
(`models.review.validation`) on the symbols' recent bars up to the trigger
(`models.desk.bar_history`), and its round is reviewed even when it places no orders yet. A failed,
late (`timed_out`) or refused answer ends with the local engine deciding through the same loop
(`finish_local`), or, where a strategy runs on the symbol, with that strategy left in charge.

Functions of the `TradingDesk` (its entry points delegate here); the state is the desk's
components (`models.desk.gpt_session` holds the conversation's).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from models.core.commands import AskGpt
from models.core.events import BarEvent
from models.core.messages import (
    AdjustRound,
    DecisionRecord,
    DecisionStatus,
    GptOutcome,
)
from models.desk.bar_history import proposed_strategy
from models.desk.gpt_session import PendingGpt
from models.gpt.decider import Fallback, GptAnswer, GptDecider
from models.gpt.prompt import PositionInfo
from models.monitoring.alerts import review_alert, spend_alert
from models.review.loop import failed_names, review_round
from models.review.validation import answerable_refusal
from models.strategy.engine import DecisionContext
from models.strategy.takeover import take_over, waiting_proposal
from models.validation.cutoff import label_call

if TYPE_CHECKING:
    from models.desk.desk import DeskOutput, TradingDesk


def positions(desk: TradingDesk) -> dict[str, PositionInfo]:
    return {
        s: PositionInfo(
            quantity=p.quantity, avg_cost=p.avg_cost, mark_price=desk.portfolio.marks.get(s)
        )
        for s, p in sorted(desk.portfolio.positions.items())
        if p.quantity != 0
    }


def start(desk: TradingDesk, event: BarEvent) -> list[DeskOutput]:
    decider = desk.gpt.decider
    assert decider is not None
    bar = event.bar
    sym = bar.symbol
    decision_id = f"{sym}@{bar.end_ms}"
    ctx = desk.context(event, decision_id)
    active = desk.strategies.get(sym)
    question = decider.question(
        ctx,
        positions=positions(
            desk,
        ),
        performance=active.performance(desk.portfolio) if active else None,
        current=active.strategy if active else None,
        digest=desk.gpt.digest(sym, bar.end_ms),
    )
    request = desk.gpt.request(decision_id, sym, 0, bar.end_ms, question)
    pending = PendingGpt(event, decision_id, request, question)
    out: list[DeskOutput] = []
    # Calls in flight are reserved at the estimate, so concurrent calls cannot overshoot.
    ok, alert = desk.gpt.affordable(bar.end_ms, 1 + len(desk.gpt.pending))
    if not ok:
        if alert is not None:
            out.append(alert)
        detail = f"daily budget {desk.gpt.budget.cap} USD reached"
        out.append(desk.gpt.call_row(request, GptOutcome.BUDGET_EXHAUSTED, detail))
        out.extend(
            finish_local(desk, pending, ctx, Fallback(GptOutcome.BUDGET_EXHAUSTED, detail), 1)
        )
        return out
    desk.gpt.asked(pending)
    out.extend(
        desk.finalize(
            event, decision_id, [], DecisionStatus.PENDING, None, "waiting for GPT", bar.end_ms
        )
    )
    out.append(AskGpt(request))
    return out


def cooled(desk: TradingDesk, event: BarEvent) -> DecisionRecord:
    """A strategic trigger soon after the last question: the running strategy stays in
    charge (cost control); logged, so the decision log says why GPT was not asked."""
    bar = event.bar
    active = desk.strategies.strategies[bar.symbol]
    note = (
        f"GPT asked {(bar.end_ms - desk.gpt.last_asked[bar.symbol]) // 1000} s ago "
        f"(cooldown {desk.settings.gpt.cooldown}); {active.strategy.strategy_id} keeps running"
    )
    return desk.only_record(event, note)


def coalesced(desk: TradingDesk, event: BarEvent) -> DecisionRecord:
    """A strategic trigger while the symbol's GPT decision is out: one call at a time."""
    waiting = desk.gpt.pending[event.bar.symbol].decision_id
    note = f"GPT decision {waiting} still pending; one question per symbol at a time"
    return desk.only_record(event, note)


def timed_out(desk: TradingDesk, pending: PendingGpt) -> list[DeskOutput]:
    del desk.gpt.pending[pending.event.bar.symbol]
    detail = f"no answer within {desk.settings.gpt.max_wait} of event time"
    now = desk.latest[pending.event.bar.symbol]
    ctx = desk.context(pending.event, pending.decision_id, now)
    version = len(pending.rounds) + 2
    return finish_local(desk, pending, ctx, Fallback(GptOutcome.TIMEOUT, detail), version)


def finish_local(
    desk: TradingDesk, pending: PendingGpt, ctx: DecisionContext, why: Fallback, version: int
) -> list[DeskOutput]:
    """GPT could not decide: the local engine does, through the same loop, and the
    decision log says why (controller `local (gpt fallback: kind)`). Where a strategy runs
    on the symbol it stays in charge instead: it has acted on every bar meanwhile, and the
    local engine on top would trade the same moves twice."""
    now_ms = desk.latest[ctx.symbol].bar.end_ms
    active = desk.strategies.get(ctx.symbol)
    if active is not None:
        note = f"gpt fallback ({why.kind}); {active.strategy.strategy_id} keeps running"
        return desk.finalize(
            pending.event,
            pending.decision_id,
            pending.rounds,
            DecisionStatus.NO_ACTION,
            None,
            note,
            now_ms,
            version,
        )
    out: list[DeskOutput] = []
    status, proposal, note = desk.review(
        pending.decision_id,
        GptDecider.fallback(desk.controller.propose(ctx), why),
        lambda p, v: GptDecider.fallback(desk.controller.adjust(ctx, p, v), why),
        pending.rounds,
        now_ms,
        out,
    )
    note = f"gpt fallback ({why.kind}); " + (note or "local engine decided")
    out.extend(
        desk.finalize(
            pending.event,
            pending.decision_id,
            pending.rounds,
            status,
            proposal,
            note,
            now_ms,
            version,
        )
    )
    return out


def on_gpt_answer(desk: TradingDesk, answer: GptAnswer) -> list[DeskOutput]:
    """Resume the decision this answer belongs to; an answer nobody waits for any more
    (timed out, or from before a restart) is only logged. The answer's proposal passes
    one round of the review loop; a refusal goes back to GPT with every reason (the next
    round is its next answer), until the rounds or the budget run out."""
    decider = desk.gpt.decider
    out: list[DeskOutput] = []
    call = answer.call
    if answer.billed:  # a late answer was paid for all the same
        alert = desk.gpt.billed(call)
        if alert is not None:
            out.append(alert)
    pending = desk.gpt.answered(answer.request_id)
    if decider is None or pending is None:
        late = "answer arrived after the decision was taken; not used"
        detail = f"{call.detail}; {late}" if call.detail else late
        out.append(call.model_copy(update={"detail": detail}))
        return out
    sym = pending.event.bar.symbol
    now = desk.latest[sym]
    ctx = desk.context(pending.event, pending.decision_id, now)
    result = decider.interpret(answer, pending.question.amap)
    if isinstance(result, Fallback) and result.kind is GptOutcome.REJECTED:
        call = call.model_copy(update={"detail": f"{result.kind}: {result.detail}"[:1000]})
    # The model's memory of the future: an answer on bars before its knowledge cutoff says so.
    gpt = desk.settings.gpt
    out.append(label_call(call, anonymised=gpt.anonymize, fallback_model=gpt.model))
    version = len(pending.rounds) + 2
    if answer.failure is GptOutcome.BUDGET_EXHAUSTED:
        out.append(spend_alert(answer.detail, call.ts_ms, pending.decision_id))
    if isinstance(result, Fallback):
        del desk.gpt.pending[sym]
        out.extend(finish_local(desk, pending, ctx, result, version))
        return out
    running = desk.strategies.get(sym)
    takeover = take_over(result, running, desk.feature_history, sym, now.features.ts_ms)
    result = takeover.decision
    proposal = (
        decider.to_proposal(
            ctx,
            result,
            positions={s: p.quantity for s, p in desk.portfolio.positions.items()},
            prices=dict(desk.portfolio.marks),
            lot_sizes={s: spec.lot_size for s, spec in desk.settings.symbols.items()},
            entry_price=desk.portfolio.position(sym).avg_cost if ctx.position > 0 else None,
        )
        if takeover.acts_now
        else waiting_proposal(result)
    )
    placed = now.bar.end_ms
    review = desk.review_context()
    # A new strategy is judged on the bars up to the trigger (what the question saw), with or
    # without orders now; an answer that starts none is reviewed as before.
    new = proposed_strategy(desk.bar_history, result.strategy, running, pending.event.bar)
    if new is not None:
        review = dataclasses.replace(review, strategy=new)
    step = review_round(proposal, review, pending.rounds, desk.active_reviewers())
    proposal = step.proposal
    verdict = step.verdict
    if verdict is None or verdict.approved:
        del desk.gpt.pending[sym]
        if verdict is None:
            # Logged all the same: the decision log shows what GPT decided, orders or not;
            # nothing was reviewed, so the round has no verdict.
            pending.rounds.append(
                AdjustRound(round=len(pending.rounds), proposal=proposal, verdict=None)
            )
        out.extend(
            desk.strategies.activate(
                result, pending.decision_id, sym, placed, desk.portfolio.equity()
            )
        )
        if not proposal.intents:  # a strategy judged and approved may place nothing yet
            note = f"gpt {result.action}: no orders" + (
                f" ({takeover.note})" if takeover.note else ""
            )
            status = DecisionStatus.NO_ACTION
        else:
            note, status = f"gpt {result.action}", DecisionStatus.EXECUTED
        out.extend(
            desk.finalize(
                pending.event,
                pending.decision_id,
                pending.rounds,
                status,
                proposal,
                note,
                placed,
                version,
            )
        )
        if status is DecisionStatus.EXECUTED and pending.decision_id in desk.decisions.open:
            active = desk.strategies.get(sym)
            if active is not None and active.activation_id == pending.decision_id:
                desk.strategies.own(pending.decision_id, active)
        return out
    n = pending.rounds[-1].round
    affordable, alert = desk.gpt.affordable(pending.event.bar.end_ms, 1, now.bar.end_ms)
    if alert is not None:
        out.append(alert)
    # Too little history cannot be answered: asking again would only cost another call.
    answerable = answerable_refusal(verdict)
    if n < desk.settings.risk.max_adjust_rounds and affordable and answerable:
        out.append(review_alert(pending.decision_id, placed, n, verdict, "sent back to GPT", False))
        pending.question = decider.follow_up(pending.question, answer.raw_text, verdict)
        pending.request = desk.gpt.request(
            pending.decision_id, sym, n + 1, pending.event.bar.end_ms, pending.question
        )
        out.append(AskGpt(pending.request))
        return out
    ended = "GPT rounds exhausted" if answerable else "too little history to validate on"
    out.append(
        review_alert(pending.decision_id, placed, n, verdict, f"{ended}, local engine", True)
    )
    del desk.gpt.pending[sym]
    why = Fallback(
        GptOutcome.RISK_REFUSED,
        f"risk gate refused {n + 1} GPT round(s): {failed_names(verdict)}",
    )
    out.extend(finish_local(desk, pending, ctx, why, version))
    return out
