"""The trading desk: one ordered place where decisions meet the portfolio.

Every closed bar of every symbol passes here in stream order (and every news/social item, for
the GPT digest). For each bar the desk
1. lets the venue act on the bar (the simulated venue fills pending orders at its open:
   next-bar execution, no look-ahead),
2. marks the portfolio to the close and runs the symbol's running strategy, if any,
3. decides, in this order of precedence:
   - a running GPT strategy acts on its own rules on every bar, GPT asked or not (its decision
     is `SYMBOL@END/strategy` when a GPT decision takes `SYMBOL@END` on that bar);
   - a strategic trigger goes to GPT (when it is asked): the desk emits a `GptRequest` and the
     decision stays pending; it never waits for the answer itself;
   - otherwise a routine trigger goes to the local engine, unless a strategy owns the symbol;
   every proposal passes the review loop (`models.review.loop`); a refusal goes back to whoever
   proposed it with every reason (bounded rounds, each logged), and GPT's last refusal or any
   GPT failure ends with the local engine's fallback (or, where a strategy runs on the symbol,
   leaves it in charge);
4. emits the decision log row (a new version whenever the decision moves on), orders, fills,
   position snapshots, GPT call rows, strategy rows and alerts.

The desk only orders these steps; each is a component with its own tests: the decision book
(`decision_book`), the running strategies (`strategy_book`), the GPT conversation
(`gpt_session`), the fill ledger (`fill_ledger`), exchange reports (`exchange_reports`), the
review loop (`models.review.loop`) and the alert builders (`models.monitoring.alerts`).

All state lives in this object, which Bytewax snapshots, so a restart resumes it exactly; a
question still pending at a restart is asked again (the answer store makes that free).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from models.config.settings import Settings
from models.core.commands import ExchangeCommand
from models.core.events import BarEvent, TextEvent
from models.core.ids import client_order_id
from models.core.messages import (
    AdjustRound,
    Alert,
    Bar,
    Branch,
    DecisionRecord,
    DecisionStatus,
    Fill,
    GptCall,
    GptOutcome,
    GptRequest,
    Order,
    OrderStatus,
    PositionSnapshot,
    Proposal,
    RiskVerdict,
    Side,
    StrategyRecord,
)
from models.desk import exchange_reports
from models.desk.decision_book import DecisionBook
from models.desk.fill_ledger import FillLedger
from models.desk.gpt_session import GptSession, PendingGpt
from models.desk.strategy_book import StrategyActions, StrategyBook
from models.execution.reports import ExchangeState, ExecutionReport
from models.execution.sim_venue import SimulatedExchange, with_status
from models.execution.venue import ExchangeVenue, Venue
from models.gpt.decider import Fallback, GptAnswer, GptDecider
from models.gpt.news_digest import NewsBuffer
from models.gpt.prompt import PositionInfo
from models.monitoring.alerts import desk_error_alert, fill_refused_alert, review_alert, spend_alert
from models.portfolio.book import Portfolio
from models.review.loop import (
    DEFAULT_REVIEWERS,
    Refusal,
    ReviewContext,
    Reviewer,
    failed_names,
    review_round,
    run_review_loop,
)
from models.strategy.engine import DecisionContext, LocalStrategyEngine, StrategyController
from models.strategy.takeover import FeatureHistory, take_over, waiting_proposal

DeskOutput = (
    DecisionRecord
    | Order
    | Fill
    | PositionSnapshot
    | Alert
    | GptCall
    | GptRequest
    | StrategyRecord
    | ExchangeCommand
)

STRATEGY_CONTROLLER = "strategy"

# The desk's state as snapshotted: (name in the snapshot, component, field). The names and
# their order are those of earlier versions, so a snapshot taken before a field was added
# restores with that field at its default.
PERSISTED: tuple[tuple[str, str, str], ...] = (
    ("portfolio", "", "portfolio"),
    ("exchange", "", "exchange"),
    ("open_decisions", "decisions", "open"),
    ("decisions_made", "decisions", "made"),
    ("pending", "gpt", "pending"),
    ("strategies", "strategies", "strategies"),
    ("texts", "gpt", "texts"),
    ("latest", "", "latest"),
    ("budget", "gpt", "budget"),
    ("owners", "strategies", "owners"),
    ("last_asked", "gpt", "last_asked"),
    ("local_only", "gpt", "local_only"),
    ("seen_fills", "fills", "seen"),
    ("feature_history", "", "feature_history"),
    ("closed", "decisions", "closed"),
    ("fallen_back", "fills", "fallen_back"),
    ("given_up", "fills", "given_up"),
    ("held_fills", "fills", "held"),
)
PERSISTED_NAMES = tuple(name for name, _, _ in PERSISTED)


@dataclass(slots=True)
class TradingDesk:
    settings: Settings
    portfolio: Portfolio
    exchange: Venue  # where orders go: the simulated exchange, or the real one's stand-in
    controller: StrategyController
    gpt: GptSession
    venue: str = "sim"  # "sim": the simulated exchange fills; "exchange": an executor reports
    decisions: DecisionBook = field(default_factory=DecisionBook)
    strategies: StrategyBook = field(default_factory=StrategyBook)
    fills: FillLedger = field(default_factory=FillLedger)
    latest: dict[str, BarEvent] = field(default_factory=dict)  # last bar of each symbol
    feature_history: FeatureHistory = field(default_factory=FeatureHistory)  # warms strategies
    reviewers: tuple[Reviewer, ...] = DEFAULT_REVIEWERS

    @classmethod
    def create(
        cls,
        settings: Settings,
        controller: StrategyController | None = None,
        *,
        gpt: bool = False,
        venue: str = "sim",
    ) -> TradingDesk:
        """`gpt`: whether a GPT endpoint answers (the caller knows: key, base URL, replay);
        `venue`: "sim" (next-bar fills here) or "exchange" (an executor places the orders and
        reports back through `on_execution`)."""
        return cls(
            settings=settings,
            portfolio=Portfolio(cash=settings.execution.initial_cash),
            exchange=SimulatedExchange(settings.execution)
            if venue == "sim"
            else ExchangeVenue(settings.execution),
            controller=controller or LocalStrategyEngine(settings.strategy),
            gpt=GptSession.create(settings, ask=gpt and settings.strategy.controller == "gpt"),
            venue=venue,
            decisions=DecisionBook(venue=venue),
        )

    def state(self) -> tuple[Any, ...]:
        return tuple(
            getattr(getattr(self, part) if part else self, name) for _, part, name in PERSISTED
        )

    def restore(self, state: tuple[Any, ...]) -> None:
        # A snapshot from before a field was added leaves that field at its default.
        for (_, part, name), value in zip(PERSISTED[: len(state)], state, strict=True):
            setattr(getattr(self, part) if part else self, name, value)
        if isinstance(self.gpt.texts, dict):  # a snapshot from before the incremental buffer
            self.gpt.texts = NewsBuffer.from_lists(self.gpt.texts)
        # Data comes from the snapshot, settings from the current configuration.
        self.gpt.budget.cap = self.settings.gpt.daily_budget_usd
        self.exchange.execution = self.settings.execution

    def pending_requests(self) -> list[GptRequest]:
        """The questions still out, oldest first: a restarted flow asks them again."""
        return sorted((p.request for p in self.gpt.pending.values()), key=lambda r: r.request_id)

    # ---------------------------------------------------------------- per bar
    def on_bar_event(self, event: BarEvent) -> list[DeskOutput]:
        bar = event.bar
        sym = bar.symbol
        out: list[DeskOutput] = []
        out.extend(self._venue_fills(bar))
        self.portfolio.mark(sym, bar.close, bar.end_ms)
        self.latest[sym] = event
        self.feature_history.add(event.features)
        try:
            owned, actions = self._strategy_bar(event, out)
            waited = self.gpt.timed_out(sym, bar.end_ms)
            if waited is not None:
                out.extend(self._gpt_timed_out(waited))
            if event.branch is Branch.STRATEGIC and self.gpt.asks_about(sym):
                cooling = owned and self.gpt.cooling_down(sym, bar.end_ms)
                asking = sym in self.gpt.pending or not cooling  # a GPT decision takes SYM@END
                if actions is not None:  # the running strategy acts all the same
                    out.extend(self._strategy_orders(event, actions, shared=asking))
                if sym in self.gpt.pending:
                    out.append(self._coalesced(event))
                elif cooling:
                    if actions is None:
                        out.append(self._cooled(event))
                else:
                    out.extend(self._start_gpt(event))
            elif owned:  # the symbol's strategy decides; routine triggers are its business
                if actions is not None:  # until an answer replaces it
                    out.extend(self._strategy_orders(event, actions, shared=False))
            elif event.branch is not None:
                out.extend(self._decide_local(event))
        except Exception as err:  # fills above already moved the book: they must be logged
            what = f"decision on {bar.symbol}@{bar.end_ms} failed, no order placed"
            out.append(desk_error_alert("decision-error", bar, what, err))
        out.append(self.portfolio.snapshot(sym, bar.end_ms))
        return out

    def on_text(self, event: TextEvent) -> None:
        """Keep recent news/posts per symbol for the GPT digest."""
        clock = max((e.bar.end_ms for e in self.latest.values()), default=None)
        self.gpt.keep_text(event, clock)

    # ---------------------------------------------------------------- fills
    def _venue_fills(self, bar: Bar) -> list[DeskOutput]:
        """The simulated venue's fills at this bar's open, each booked or refused when the
        book cannot pay or deliver (as an exchange refuses an unfunded order)."""
        out: list[DeskOutput] = []
        for fill in self.exchange.on_bar(bar):
            record, order = self.decisions.order_of(fill.decision_id, fill.client_order_id)
            cost = fill.quantity * fill.price + fill.fee
            refused = (
                "insufficient cash at fill"
                if fill.side is Side.BUY and cost > self.portfolio.cash
                else "position too small at fill"
                if fill.side is Side.SELL and fill.quantity > self.portfolio.quantity(fill.symbol)
                else ""
            )
            if refused:
                if order is not None:
                    order = with_status(order, OrderStatus.REJECTED, bar.start_ms, refused)
                    out.append(order)
                out.append(fill_refused_alert(fill, bar.start_ms, refused))
            else:
                self.book_fill(fill)
                out.append(fill)
                if order is not None:
                    order = with_status(order, OrderStatus.FILLED, bar.start_ms)
                    out.append(order)
            if record is not None and order is not None:
                out.append(self.next_version(record, order, [] if refused else [fill]))
        return out

    def book_fill(self, fill: Fill) -> None:
        """The one place a fill moves the book (raises `ValueError` when it does not fit):
        credited to the strategy that placed it, applied to the portfolio."""
        avg_before = self.portfolio.position(fill.symbol).avg_cost
        self.portfolio.apply_fill(fill)
        self.strategies.credit(fill, avg_before)

    def next_version(
        self, record: DecisionRecord, order: Order, fills: list[Fill], note: str | None = None
    ) -> DecisionRecord:
        record = self.decisions.update(record, order, fills, note)
        if record.decision_id not in self.decisions.open:
            self.strategies.settled(record.decision_id)
        return record

    # ---------------------------------------------------------------- shared steps
    def _context(
        self, trigger: BarEvent, decision_id: str, now: BarEvent | None = None
    ) -> DecisionContext:
        """The decision's context: the trigger's branch and signals, the latest bar's prices."""
        at = now or trigger
        spec = self.settings.symbols.get(at.bar.symbol)
        return DecisionContext(
            decision_id=decision_id,
            symbol=at.bar.symbol,
            branch=trigger.branch or Branch.ROUTINE,
            signals=trigger.signals,
            features=at.features,
            price=at.bar.close,
            position=self.portfolio.quantity(at.bar.symbol)
            + self.decisions.in_flight(at.bar.symbol),
            cash=self.portfolio.cash,
            equity=self.portfolio.equity(),
            lot_size=spec.lot_size if spec else Decimal(1),
            risk=self.settings.risk,
            execution=self.settings.execution,
        )

    def _review_context(self) -> ReviewContext:
        return ReviewContext(
            settings=self.settings,
            portfolio=self.portfolio,
            prices=dict(self.portfolio.marks),
            pending_orders=self.decisions.pending_orders(),
        )

    def _review(
        self,
        decision_id: str,
        proposal: Proposal,
        adjust: Callable[[Proposal, RiskVerdict], Proposal],
        rounds: list[AdjustRound],
        ts_ms: int,
        out: list[DeskOutput],
    ) -> tuple[DecisionStatus, Proposal, str]:
        """The review loop for a proposer that adjusts at once; each refusal is an alert."""
        result = run_review_loop(
            proposal,
            adjust,
            self._review_context,
            rounds,
            self.settings.risk.max_adjust_rounds,
            self.reviewers,
        )
        out.extend(self._refusal_alert(decision_id, ts_ms, r) for r in result.refusals)
        return result.status, result.proposal, result.note

    @staticmethod
    def _refusal_alert(decision_id: str, ts_ms: int, refusal: Refusal) -> Alert:
        return review_alert(
            decision_id, ts_ms, refusal.round, refusal.verdict, refusal.outcome, refusal.last
        )

    def finalize(
        self,
        trigger: BarEvent,
        decision_id: str,
        rounds: list[AdjustRound],
        status: DecisionStatus,
        proposal: Proposal | None,
        note: str,
        placed_ms: int,
        version: int = 1,
    ) -> list[DeskOutput]:
        """Place the approved orders and write the decision's row."""
        orders: list[Order] = []
        if status is DecisionStatus.EXECUTED and proposal is not None:
            for i, intent in enumerate(proposal.intents):
                order = Order(
                    client_order_id=client_order_id(decision_id, i),
                    decision_id=decision_id,
                    symbol=intent.symbol,
                    side=intent.side,
                    quantity=intent.quantity,
                    status=OrderStatus.PENDING,
                    placed_ms=placed_ms,
                    updated_ms=placed_ms,
                    reason=intent.reason,
                )
                if self.exchange.accept(order):
                    orders.append(order)
        record = DecisionRecord(
            decision_id=decision_id,
            ts_ms=trigger.bar.end_ms,
            symbol=trigger.bar.symbol,
            branch=trigger.branch or Branch.ROUTINE,
            triggers=trigger.signals,
            features=trigger.features,
            rounds=rounds,
            status=status,
            orders=orders,
            portfolio_before=self.portfolio.summary(),
            note=note,
            version=version,
        )
        self.decisions.taken(record)
        out: list[DeskOutput] = [record]
        out.extend(orders)
        return out

    def _only_record(self, event: BarEvent, note: str) -> DecisionRecord:
        """A decision that places nothing and says why."""
        decision_id = f"{event.bar.symbol}@{event.bar.end_ms}"
        out = self.finalize(
            event, decision_id, [], DecisionStatus.NO_ACTION, None, note, event.bar.end_ms
        )
        record = out[0]
        assert isinstance(record, DecisionRecord)
        return record

    # ---------------------------------------------------------------- local engine
    def _decide_local(self, event: BarEvent) -> list[DeskOutput]:
        bar = event.bar
        decision_id = f"{bar.symbol}@{bar.end_ms}"
        ctx = self._context(event, decision_id)
        out: list[DeskOutput] = []
        rounds: list[AdjustRound] = []
        status, proposal, note = self._review(
            decision_id,
            self.controller.propose(ctx),
            lambda p, v: self.controller.adjust(ctx, p, v),
            rounds,
            bar.end_ms,
            out,
        )
        out.extend(self.finalize(event, decision_id, rounds, status, proposal, note, bar.end_ms))
        return out

    # ---------------------------------------------------------------- running strategies
    def _strategy_bar(
        self, event: BarEvent, out: list[DeskOutput]
    ) -> tuple[bool, StrategyActions | None]:
        sym = event.bar.symbol
        spec = self.settings.symbols.get(sym)
        ended: list[StrategyRecord] = []
        result = self.strategies.on_bar(
            event,
            self.portfolio,
            self.decisions.in_flight(sym),
            spec.lot_size if spec else Decimal(1),
            ended,
        )
        out.extend(ended)
        return result

    def _strategy_orders(
        self, event: BarEvent, actions: StrategyActions, *, shared: bool
    ) -> list[DeskOutput]:
        """Place a running strategy's actions through the review loop; `shared`: a GPT
        decision takes the bar's decision id, so the strategy's gets a `/strategy` suffix."""
        bar = event.bar
        decision_id = f"{bar.symbol}@{bar.end_ms}" + ("/strategy" if shared else "")
        ctx = self._context(event, decision_id)
        active = actions.active
        proposal = Proposal(
            controller=STRATEGY_CONTROLLER,
            strategy=active.strategy.strategy_id,
            intents=actions.intents,
            rationale=actions.rationale,
            confidence=active.confidence,
        )
        out: list[DeskOutput] = []
        rounds: list[AdjustRound] = []
        status, final, note = self._review(
            decision_id,
            proposal,
            lambda p, v: self.controller.adjust(ctx, p, v),
            rounds,
            bar.end_ms,
            out,
        )
        out.extend(self.finalize(event, decision_id, rounds, status, final, note, bar.end_ms))
        if decision_id in self.decisions.open:
            self.strategies.own(decision_id, active)
        return out

    # ---------------------------------------------------------------- GPT
    def _positions(self) -> dict[str, PositionInfo]:
        return {
            s: PositionInfo(
                quantity=p.quantity, avg_cost=p.avg_cost, mark_price=self.portfolio.marks.get(s)
            )
            for s, p in sorted(self.portfolio.positions.items())
            if p.quantity != 0
        }

    def _start_gpt(self, event: BarEvent) -> list[DeskOutput]:
        decider = self.gpt.decider
        assert decider is not None
        bar = event.bar
        sym = bar.symbol
        decision_id = f"{sym}@{bar.end_ms}"
        ctx = self._context(event, decision_id)
        active = self.strategies.get(sym)
        question = decider.question(
            ctx,
            positions=self._positions(),
            performance=active.performance(self.portfolio) if active else None,
            current=active.strategy if active else None,
            digest=self.gpt.digest(sym, bar.end_ms),
        )
        request = self.gpt.request(decision_id, sym, 0, bar.end_ms, question)
        pending = PendingGpt(event, decision_id, request, question)
        out: list[DeskOutput] = []
        # Calls in flight are reserved at the estimate, so concurrent calls cannot overshoot.
        ok, alert = self.gpt.affordable(bar.end_ms, 1 + len(self.gpt.pending))
        if not ok:
            if alert is not None:
                out.append(alert)
            detail = f"daily budget {self.gpt.budget.cap} USD reached"
            out.append(self.gpt.call_row(request, GptOutcome.BUDGET_EXHAUSTED, detail))
            out.extend(self._finish_local(pending, ctx, Fallback("budget_exhausted", detail), 1))
            return out
        self.gpt.asked(pending)
        out.extend(
            self.finalize(
                event, decision_id, [], DecisionStatus.PENDING, None, "waiting for GPT", bar.end_ms
            )
        )
        out.append(request)
        return out

    def _cooled(self, event: BarEvent) -> DecisionRecord:
        """A strategic trigger soon after the last question: the running strategy stays in
        charge (cost control); logged, so the decision log says why GPT was not asked."""
        bar = event.bar
        active = self.strategies.strategies[bar.symbol]
        note = (
            f"GPT asked {(bar.end_ms - self.gpt.last_asked[bar.symbol]) // 1000} s ago "
            f"(cooldown {self.settings.gpt.cooldown}); {active.strategy.strategy_id} keeps running"
        )
        return self._only_record(event, note)

    def _coalesced(self, event: BarEvent) -> DecisionRecord:
        """A strategic trigger while the symbol's GPT decision is out: one call at a time."""
        waiting = self.gpt.pending[event.bar.symbol].decision_id
        note = f"GPT decision {waiting} still pending; one question per symbol at a time"
        return self._only_record(event, note)

    def _gpt_timed_out(self, pending: PendingGpt) -> list[DeskOutput]:
        del self.gpt.pending[pending.event.bar.symbol]
        detail = f"no answer within {self.settings.gpt.max_wait} of event time"
        now = self.latest[pending.event.bar.symbol]
        ctx = self._context(pending.event, pending.decision_id, now)
        version = len(pending.rounds) + 2
        return self._finish_local(pending, ctx, Fallback("timeout", detail), version)

    def _finish_local(
        self, pending: PendingGpt, ctx: DecisionContext, why: Fallback, version: int
    ) -> list[DeskOutput]:
        """GPT could not decide: the local engine does, through the same loop, and the
        decision log says why (controller `local (gpt fallback: kind)`). Where a strategy runs
        on the symbol it stays in charge instead: it has acted on every bar meanwhile, and the
        local engine on top would trade the same moves twice."""
        now_ms = self.latest[ctx.symbol].bar.end_ms
        active = self.strategies.get(ctx.symbol)
        if active is not None:
            note = f"gpt fallback ({why.kind}); {active.strategy.strategy_id} keeps running"
            return self.finalize(
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
        status, proposal, note = self._review(
            pending.decision_id,
            GptDecider.fallback(self.controller.propose(ctx), why),
            lambda p, v: GptDecider.fallback(self.controller.adjust(ctx, p, v), why),
            pending.rounds,
            now_ms,
            out,
        )
        note = f"gpt fallback ({why.kind}); " + (note or "local engine decided")
        out.extend(
            self.finalize(
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

    def on_gpt_answer(self, answer: GptAnswer) -> list[DeskOutput]:
        """Resume the decision this answer belongs to; an answer nobody waits for any more
        (timed out, or from before a restart) is only logged. The answer's proposal passes
        one round of the review loop; a refusal goes back to GPT with every reason (the next
        round is its next answer), until the rounds or the budget run out."""
        decider = self.gpt.decider
        out: list[DeskOutput] = []
        call = answer.call
        if answer.billed:  # a late answer was paid for all the same
            alert = self.gpt.billed(call)
            if alert is not None:
                out.append(alert)
        pending = self.gpt.answered(answer.request_id)
        if decider is None or pending is None:
            late = "answer arrived after the decision was taken; not used"
            detail = f"{call.detail}; {late}" if call.detail else late
            out.append(call.model_copy(update={"detail": detail}))
            return out
        sym = pending.event.bar.symbol
        now = self.latest[sym]
        ctx = self._context(pending.event, pending.decision_id, now)
        result = decider.interpret(answer, pending.question.amap)
        if isinstance(result, Fallback) and result.kind == "rejected":
            call = call.model_copy(update={"detail": f"rejected: {result.detail}"[:1000]})
        out.append(call)
        version = len(pending.rounds) + 2
        if answer.failure == GptOutcome.BUDGET_EXHAUSTED.value:
            out.append(spend_alert(answer.detail, call.ts_ms, pending.decision_id))
        if isinstance(result, Fallback):
            del self.gpt.pending[sym]
            out.extend(self._finish_local(pending, ctx, result, version))
            return out
        takeover = take_over(
            result, self.strategies.get(sym), self.feature_history, sym, now.features.ts_ms
        )
        result = takeover.decision
        proposal = (
            decider.to_proposal(
                ctx,
                result,
                positions={s: p.quantity for s, p in self.portfolio.positions.items()},
                prices=dict(self.portfolio.marks),
                lot_sizes={s: spec.lot_size for s, spec in self.settings.symbols.items()},
                entry_price=self.portfolio.position(sym).avg_cost if ctx.position > 0 else None,
            )
            if takeover.acts_now
            else waiting_proposal(result)
        )
        placed = now.bar.end_ms
        step = review_round(proposal, self._review_context(), pending.rounds, self.reviewers)
        proposal = step.proposal
        verdict = step.verdict
        if verdict is None or verdict.approved:
            del self.gpt.pending[sym]
            if verdict is None:
                # Logged all the same: the decision log shows what GPT decided, orders or not.
                nothing = RiskVerdict(approved=True, checks=[], fee_estimate=Decimal(0))
                pending.rounds.append(
                    AdjustRound(round=len(pending.rounds), proposal=proposal, verdict=nothing)
                )
            out.extend(
                self.strategies.activate(
                    result, pending.decision_id, sym, placed, self.portfolio.equity()
                )
            )
            if verdict is None:
                note = f"gpt {result.action}: no orders" + (
                    f" ({takeover.note})" if takeover.note else ""
                )
                status = DecisionStatus.NO_ACTION
            else:
                note, status = f"gpt {result.action}", DecisionStatus.EXECUTED
            out.extend(
                self.finalize(
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
            if status is DecisionStatus.EXECUTED and pending.decision_id in self.decisions.open:
                active = self.strategies.get(sym)
                if active is not None and active.activation_id == pending.decision_id:
                    self.strategies.own(pending.decision_id, active)
            return out
        n = pending.rounds[-1].round
        affordable, alert = self.gpt.affordable(pending.event.bar.end_ms, 1, now.bar.end_ms)
        if alert is not None:
            out.append(alert)
        if n < self.settings.risk.max_adjust_rounds and affordable:
            out.append(
                review_alert(pending.decision_id, placed, n, verdict, "sent back to GPT", False)
            )
            pending.question = decider.follow_up(pending.question, answer.raw_text, verdict)
            pending.request = self.gpt.request(
                pending.decision_id, sym, n + 1, pending.event.bar.end_ms, pending.question
            )
            out.append(pending.request)
            return out
        out.append(
            review_alert(
                pending.decision_id, placed, n, verdict, "GPT rounds exhausted, local engine", True
            )
        )
        del self.gpt.pending[sym]
        why = Fallback(
            "risk_refused", f"risk gate refused {n + 1} GPT round(s): {failed_names(verdict)}"
        )
        out.extend(self._finish_local(pending, ctx, why, version))
        return out

    # ---------------------------------------------------------------- a real exchange
    def unreported_orders(self) -> list[Order]:
        return exchange_reports.unreported_orders(self)

    def orders_to_look_up(self) -> list[Order]:
        return exchange_reports.orders_to_look_up(self)

    def on_execution(self, report: ExecutionReport) -> list[DeskOutput]:
        return exchange_reports.on_execution(self, report)

    def on_exchange_state(self, state: ExchangeState, ts_ms: int) -> list[DeskOutput]:
        return exchange_reports.on_exchange_state(self, state, ts_ms)
