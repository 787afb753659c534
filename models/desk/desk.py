"""The trading desk: one ordered place where decisions meet the portfolio.

Every closed bar of every symbol passes here in stream order (and every news/social item, for
the GPT digest). For each bar the desk
1. fills the symbol's pending orders at this bar's open (next-bar execution, no look-ahead),
2. marks the portfolio to the close and runs the symbol's active GPT strategy, if any,
3. decides, in this order of precedence:
   - an active GPT strategy acts on its own rules on every bar it runs, GPT asked or not (its
     decision is `SYMBOL@END/strategy` when a GPT decision takes `SYMBOL@END` on that bar);
   - a strategic trigger goes to GPT (when a key is configured): the desk emits a `GptRequest`
     and the decision stays pending; it never waits for the answer itself (how the answer's
     strategy takes over: models/strategy/takeover.py);
   - otherwise a routine trigger goes to the local engine, unless a strategy owns the symbol;
   each proposal passes the risk gate; a refusal goes back to whoever proposed it with the
   verdict (bounded rounds, each logged), and GPT's last refusal or any GPT failure ends with
   the local engine's fallback (or, where a strategy runs on the symbol, leaves it in charge);
4. emits the decision log row (a new version whenever the decision moves on), orders, fills,
   position snapshots, GPT call rows, strategy rows and alerts.

`on_gpt_answer` resumes a pending decision when the flow brings its answer: in a backtest right
away (so a re-run is identical), live whenever the worker has it, while other symbols go on.
All state lives in this object, which Bytewax snapshots, so a restart resumes it exactly; a
question still pending at a restart is asked again (the answer store makes that free).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from models.config.settings import Settings, parse_duration_ms
from models.core.messages import (
    AdjustRound,
    Alert,
    Bar,
    Branch,
    DecisionRecord,
    DecisionStatus,
    FeatureVector,
    Fill,
    GptCall,
    GptOutcome,
    GptRequest,
    NewsItem,
    Order,
    OrderStatus,
    PositionSnapshot,
    Proposal,
    RiskVerdict,
    Severity,
    Side,
    Signal,
    SocialPost,
    StrategyRecord,
    StrategyStatus,
    TradeIntent,
    gpt_call_id,
)
from models.execution.decision_status import (
    decision_status,
    filled_quantity,
    order_status,
    stale_report,
)
from models.execution.fill_holdback import FillHoldback
from models.execution.reports import ExchangeState, ExecStatus, ExecutionReport
from models.execution.sim_venue import SimulatedExchange, client_order_id, with_status
from models.gpt.cost import DailyBudget, utc_day
from models.gpt.decider import (
    STRICT_SCHEMA_NAME,
    Fallback,
    GptAnswer,
    GptDecider,
    Question,
)
from models.gpt.news_digest import NewsBuffer
from models.gpt.prompt import PositionInfo, digest_from, prompt_hash
from models.portfolio.book import Portfolio
from models.review.risk import check
from models.strategy.active import ActiveStrategy
from models.strategy.compiler import CompiledDecision, to_intent
from models.strategy.engine import (
    DecisionContext,
    LocalStrategyEngine,
    StrategyController,
    round_to_lot,
)
from models.strategy.spec import GptDecision
from models.strategy.takeover import FeatureHistory, take_over, waiting_proposal


@dataclass(frozen=True, slots=True)
class ExchangeCommand:
    """Something the desk wants done on the exchange besides placing an order (a fallback)."""

    kind: str  # "cancel_open"
    symbol: str
    reason: str


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


@dataclass(frozen=True, slots=True)
class BarEvent:
    """A closed bar with what the per-symbol stage made of it."""

    bar: Bar
    features: FeatureVector
    signals: list[Signal]
    branch: Branch | None
    partition: str = ""  # where it came from, and its place there (see models/market/merge.py)
    clock_ms: int = 0
    seq: int = 0


@dataclass(frozen=True, slots=True)
class TextEvent:
    """A news item or social post on its way to the GPT digest, placed like a bar."""

    item: NewsItem | SocialPost
    partition: str = ""
    clock_ms: int = 0
    seq: int = 0


def alert_id(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32]


def executor_alert(
    kind: str,
    key: str,
    ts_ms: int,
    severity: Severity,
    message: str,
    decision_id: str,
    symbol: str,
) -> Alert:
    """An alert about one order or fill; its id is derived, so a replay rewrites it."""
    return Alert(
        alert_id=alert_id(kind, key),
        ts_ms=ts_ms,
        severity=severity,
        source="executor",
        message=message,
        context={"decision_id": decision_id, "symbol": symbol},
    )


def desk_error_alert(kind: str, bar: Bar, what: str, err: Exception) -> Alert:
    """A bug met while handling `bar`: critical, one per kind and bar (replays land on it)."""
    return Alert(
        alert_id=alert_id(kind, bar.symbol, bar.end_ms),
        ts_ms=bar.end_ms,
        severity=Severity.CRITICAL,
        source="desk",
        message=f"{what}: {type(err).__name__}: {err}",
        context={"symbol": bar.symbol},
    )


@dataclass(slots=True)
class PendingGpt:
    """A decision waiting for GPT: where it started, what was asked, what was refused."""

    event: BarEvent  # the trigger
    decision_id: str
    request: GptRequest
    question: Question
    rounds: list[AdjustRound] = field(default_factory=list)


# The desk's state as snapshotted (everything but the settings and the stateless helpers).
PERSISTED = (
    "portfolio",
    "exchange",
    "open_decisions",
    "decisions_made",
    "pending",
    "strategies",
    "texts",
    "latest",
    "budget",
    "owners",
    "last_asked",
    "local_only",
    "seen_fills",
    "feature_history",
    "closed",
    "fallen_back",
    "given_up",
    "held_fills",
)
CLOSED_KEPT = 1_000  # settled, not wholly filled decisions kept for a late report (newest)


@dataclass(slots=True)
class TradingDesk:
    settings: Settings
    portfolio: Portfolio
    exchange: SimulatedExchange
    controller: StrategyController
    gpt: GptDecider | None = None  # None: the local engine decides everything
    open_decisions: dict[str, DecisionRecord] = field(default_factory=dict)
    decisions_made: int = 0
    pending: dict[str, PendingGpt] = field(default_factory=dict)  # by symbol
    strategies: dict[str, ActiveStrategy] = field(default_factory=dict)  # by symbol
    texts: NewsBuffer = field(default_factory=NewsBuffer)  # kept news/posts by symbol
    latest: dict[str, BarEvent] = field(default_factory=dict)  # last bar of each symbol
    budget: DailyBudget = field(default_factory=lambda: DailyBudget(Decimal(0)))
    owners: dict[str, ActiveStrategy] = field(default_factory=dict)  # decision -> strategy
    last_asked: dict[str, int] = field(default_factory=dict)  # symbol -> bar end of last question
    venue: str = "sim"  # "sim": the simulated exchange fills; "exchange": an executor reports
    local_only: set[str] = field(default_factory=set)  # symbols the safe_local fallback took
    seen_fills: dict[str, None] = field(default_factory=dict)  # exchange fills applied (newest)
    feature_history: FeatureHistory = field(default_factory=FeatureHistory)  # warms new strategies
    # Exchange venue: settled decisions with an order not wholly filled (refused, given up,
    # partly filled), by id (newest CLOSED_KEPT): such an order may still report fills (one
    # the executor gave up on that the exchange filled after all), and its report finds them.
    closed: dict[str, DecisionRecord] = field(default_factory=dict)
    fallen_back: dict[str, None] = field(default_factory=dict)  # orders whose fallback ran
    # Orders reported `failed` (not found after an error that may have placed them): looked up
    # once more before the book is reconciled, so a late fill is booked at its own price.
    given_up: dict[str, str] = field(default_factory=dict)  # client order id -> decision id
    held_fills: FillHoldback = field(default_factory=FillHoldback)  # not fitting the book yet
    _max_wait_ms: int = 0
    _digest_window_ms: int = 0
    _cooldown_ms: int = 0

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
        use_gpt = gpt and settings.strategy.controller == "gpt"
        return cls(
            settings=settings,
            portfolio=Portfolio(cash=settings.execution.initial_cash),
            exchange=SimulatedExchange(settings.execution),
            controller=controller or LocalStrategyEngine(settings.strategy),
            gpt=GptDecider(settings) if use_gpt else None,
            budget=DailyBudget(settings.gpt.daily_budget_usd),
            _max_wait_ms=parse_duration_ms(settings.gpt.max_wait),
            _digest_window_ms=parse_duration_ms(settings.gpt.digest_window),
            _cooldown_ms=parse_duration_ms(settings.gpt.cooldown),
            venue=venue,
        )

    def state(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in PERSISTED)

    def restore(self, state: tuple[Any, ...]) -> None:
        # A snapshot from before a field was added leaves that field at its default.
        for name, value in zip(PERSISTED[: len(state)], state, strict=True):
            setattr(self, name, value)
        if isinstance(self.texts, dict):  # a snapshot from before the incremental buffer
            self.texts = NewsBuffer.from_lists(self.texts)
        # Data comes from the snapshot, settings from the current configuration.
        self.budget.cap = self.settings.gpt.daily_budget_usd
        self.exchange.execution = self.settings.execution

    def pending_requests(self) -> list[GptRequest]:
        """The questions still out, oldest first: a restarted flow asks them again."""
        return sorted((p.request for p in self.pending.values()), key=lambda r: r.request_id)

    # ---------------------------------------------------------------- per bar
    def on_bar_event(self, event: BarEvent) -> list[DeskOutput]:
        bar = event.bar
        sym = bar.symbol
        out: list[DeskOutput] = []
        if self.venue == "sim":
            out.extend(self._fill_pending(bar))
        self.portfolio.mark(sym, bar.close, bar.end_ms)
        self.latest[sym] = event
        self.feature_history.add(event.features)
        try:
            owned, strategy_orders = self._strategy_bar(event, out)
            pending = self.pending.get(sym)
            if pending is not None and bar.end_ms - pending.event.bar.end_ms > self._max_wait_ms:
                out.extend(self._gpt_timed_out(pending))
            if (
                event.branch is Branch.STRATEGIC
                and self.gpt is not None
                and sym not in self.local_only
            ):
                cooling = owned and self._cooling_down(sym, bar.end_ms)
                asking = sym in self.pending or not cooling  # a GPT decision takes SYM@END
                if strategy_orders is not None:  # the running strategy acts all the same
                    out.extend(strategy_orders(asking))
                if sym in self.pending:
                    out.append(self._coalesced(event))
                elif cooling:
                    if strategy_orders is None:
                        out.append(self._cooled(event))
                else:
                    out.extend(self._start_gpt(event))
            elif owned:  # the symbol's strategy decides; routine triggers are its business
                if strategy_orders is not None:  # until an answer replaces it
                    out.extend(strategy_orders(False))
            elif event.branch is not None:
                out.extend(self._decide_local(event))
        except Exception as err:  # fills above already moved the book: they must be logged
            out.append(self._decision_failed(event, err))
        out.append(self.portfolio.snapshot(sym, bar.end_ms))
        return out

    def on_text(self, event: TextEvent) -> None:
        """Keep recent news/posts per symbol for the digest (only when GPT is asked); the
        buffer's rules are in `models.gpt.news_digest`."""
        if self.gpt is None or self.settings.gpt.digest_items == 0:
            return
        item = event.item
        # Age is judged by the bars' clock, never by an item's own (perhaps forged) time.
        clock = max((e.bar.end_ms for e in self.latest.values()), default=None)
        symbols = [s for s in dict.fromkeys(item.symbols) if s in self.settings.symbols]
        keep = 4 * self.settings.gpt.digest_items
        self.texts.add(item, symbols, clock, self._digest_window_ms, keep)

    def _decision_failed(self, event: BarEvent, err: Exception) -> Alert:
        """A decision that raised places nothing; say so loudly, keep the rest of the bar."""
        bar = event.bar
        what = f"decision on {bar.symbol}@{bar.end_ms} failed, no order placed"
        return desk_error_alert("decision-error", bar, what, err)

    # ---------------------------------------------------------------- fills
    def _order_of(
        self, decision_id: str, client_order_id: str
    ) -> tuple[DecisionRecord | None, Order | None]:
        """The open (or, on the exchange venue, recently settled and not wholly filled)
        decision of an order, and the order as that decision holds it."""
        record = self.open_decisions.get(decision_id) or self.closed.get(decision_id)
        order = next(
            (o for o in (record.orders if record else []) if o.client_order_id == client_order_id),
            None,
        )
        return record, order

    def _record_update(
        self, record: DecisionRecord, updated: Order, fills: list[Fill], note: str | None = None
    ) -> DecisionRecord:
        """The decision's next version with one order changed and new fills, its status
        following its orders (`models.execution.decision_status`); a decision whose orders are all
        settled is no longer open."""
        orders = [
            updated if o.client_order_id == updated.client_order_id else o for o in record.orders
        ]
        change: dict[str, object] = {
            "orders": orders,
            "fills": record.fills + fills,
            "version": record.version + 1,
        }
        if note is not None:
            change["note"] = note
        record = record.model_copy(update=change)
        record = record.model_copy(update={"status": decision_status(record)})
        did = record.decision_id
        self.closed.pop(did, None)
        if all(o.status is not OrderStatus.PENDING for o in orders):
            self.open_decisions.pop(did, None)
            self.owners.pop(did, None)
            if self.venue == "exchange" and any(o.status is not OrderStatus.FILLED for o in orders):
                self.closed[did] = record
                if len(self.closed) > CLOSED_KEPT:
                    del self.closed[next(iter(self.closed))]
        else:
            self.open_decisions[did] = record
        return record

    def _fill_pending(self, bar: Bar) -> list[DeskOutput]:
        out: list[DeskOutput] = []
        for fill in self.exchange.on_bar(bar):
            record, order = self._order_of(fill.decision_id, fill.client_order_id)
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
                out.append(
                    executor_alert(
                        "fill-refused",
                        fill.client_order_id,
                        bar.start_ms,
                        Severity.WARNING,
                        f"order {fill.client_order_id} not filled: {refused}",
                        fill.decision_id,
                        fill.symbol,
                    )
                )
            else:
                owner = self.owners.get(fill.decision_id)
                if owner is not None:
                    owner.on_fill(fill, self.portfolio.position(fill.symbol).avg_cost)
                self.portfolio.apply_fill(fill)
                out.append(fill)
                if order is not None:
                    order = with_status(order, OrderStatus.FILLED, bar.start_ms)
                    out.append(order)
            if record is not None and order is not None:
                out.append(self._record_update(record, order, [] if refused else [fill]))
        return out

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
            position=self.portfolio.quantity(at.bar.symbol) + self._in_flight(at.bar.symbol),
            cash=self.portfolio.cash,
            equity=self.portfolio.equity(),
            lot_size=spec.lot_size if spec else Decimal(1),
            risk=self.settings.risk,
            execution=self.settings.execution,
        )

    def _tradeable(self, proposal: Proposal) -> tuple[Proposal, list[str]]:
        """Leave out orders worth less than their symbol's `min_notional` (at the latest mark):
        the exchange refuses them, and a top-up of a few cents is not a decision anyway."""
        keep: list[TradeIntent] = []
        small: list[str] = []
        for intent in proposal.intents:
            spec = self.settings.symbols.get(intent.symbol)
            price = self.portfolio.marks.get(intent.symbol)
            floor = spec.min_notional if spec is not None else Decimal(0)
            if floor > 0 and price is not None and intent.quantity * price < floor:
                small.append(f"{intent.side.value} {intent.quantity} {intent.symbol}")
            else:
                keep.append(intent)
        if not small:
            return proposal, small
        note = f"; under min_notional, not placed: {', '.join(small)}"
        kept = proposal.model_copy(
            update={"intents": keep, "rationale": (proposal.rationale + note)[:2000]}
        )
        return kept, small

    def _pending_orders(self) -> list[Order]:
        """Orders placed and not filled yet (the next bar's open, or an exchange that has not
        reported): the risk gate reserves their cash and quantities."""
        return [
            o
            for record in self.open_decisions.values()
            for o in record.orders
            if o.status is OrderStatus.PENDING
        ]

    def _in_flight(self, symbol: str) -> Decimal:
        """Net quantity of the symbol's orders still on their way (an exchange that has not
        reported yet): a decision counts them as held, or a second signal would buy twice."""
        net = Decimal(0)
        for o in self._pending_orders():
            if o.symbol == symbol:
                net += o.quantity if o.side is Side.BUY else -o.quantity
        return net

    def _risk_alert(
        self, decision_id: str, ts_ms: int, n: int, verdict: RiskVerdict, outcome: str, last: bool
    ) -> Alert:
        failed = ", ".join(sorted({c.name for c in verdict.failures}))
        return Alert(
            alert_id=alert_id("risk", decision_id, n),
            ts_ms=ts_ms,
            severity=Severity.CRITICAL if last else Severity.WARNING,
            source="risk_gate",
            message=f"{decision_id}: over limit ({failed}); {outcome}",
            context={"decision_id": decision_id, "round": n},
        )

    def _gate(
        self,
        ctx: DecisionContext,
        proposal: Proposal,
        adjust: Callable[[Proposal, RiskVerdict], Proposal],
        rounds: list[AdjustRound],
        ts_ms: int,
        out: list[DeskOutput],
    ) -> tuple[DecisionStatus, Proposal, str]:
        """Risk gate ⇄ adjust until approved, nothing left, stalled or out of rounds; the
        round numbers continue those already in `rounds` (a GPT decision's), and the loop has
        its own bound, so the local fallback of a refused GPT decision gets its full rounds."""
        rounds_left = self.settings.risk.max_adjust_rounds
        prices = dict(self.portfolio.marks)
        status, note = DecisionStatus.REJECTED, ""
        first = len(rounds)
        for k in range(rounds_left + 1):
            n = first + k
            proposal, small = self._tradeable(proposal)
            if not proposal.intents:
                status = DecisionStatus.NO_ACTION
                if small:
                    note = f"under min_notional, none placed: {', '.join(small)}"[:500]
                else:
                    note = "adjusted down to no orders" if k else "controller proposed no orders"
                break
            verdict = check(
                proposal,
                self.portfolio,
                prices,
                self.settings.risk,
                self.settings.execution,
                self._pending_orders(),
            )
            rounds.append(AdjustRound(round=n, proposal=proposal, verdict=verdict))
            if verdict.approved:
                status = DecisionStatus.EXECUTED
                break
            failed = ", ".join(sorted({c.name for c in verdict.failures}))
            adjusted = adjust(proposal, verdict) if k < rounds_left else None
            stalled = adjusted is not None and adjusted.intents == proposal.intents
            if adjusted is None:
                outcome = "rounds exhausted, decision rejected"
            elif stalled:
                outcome = "controller cannot adjust further, decision rejected"
            else:
                outcome = "sent back to controller"
            last = adjusted is None or stalled
            out.append(self._risk_alert(ctx.decision_id, ts_ms, n, verdict, outcome, last))
            if adjusted is None or stalled:
                note = f"risk gate refused after {k + 1} round(s): {failed}"
                break
            proposal = adjusted
        return status, proposal, note

    def _finalize(
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
                if self.exchange.place(order):
                    orders.append(order)
                    if self.venue == "exchange":  # the executor fills it, not the simulator
                        self.exchange.pending.get(order.symbol, []).remove(order)
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
        if orders:
            self.open_decisions[decision_id] = record
        if version == 1:
            self.decisions_made += 1
        out: list[DeskOutput] = [record]
        out.extend(orders)
        return out

    # ---------------------------------------------------------------- local engine
    def _decide_local(self, event: BarEvent) -> list[DeskOutput]:
        bar = event.bar
        decision_id = f"{bar.symbol}@{bar.end_ms}"
        ctx = self._context(event, decision_id)
        out: list[DeskOutput] = []
        rounds: list[AdjustRound] = []
        status, proposal, note = self._gate(
            ctx,
            self.controller.propose(ctx),
            lambda p, v: self.controller.adjust(ctx, p, v),
            rounds,
            bar.end_ms,
            out,
        )
        out.extend(self._finalize(event, decision_id, rounds, status, proposal, note, bar.end_ms))
        return out

    # ---------------------------------------------------------------- active strategies
    def _strategy_bar(
        self, event: BarEvent, out: list[DeskOutput]
    ) -> tuple[bool, Callable[[bool], list[DeskOutput]] | None]:
        """Run the symbol's active strategy on this bar (always, so `crosses_*` see every bar)
        and age it. Returns whether a strategy owns the symbol, and a thunk placing its
        actions (None when it has none); the thunk's argument says a GPT decision takes the
        bar's decision id, so the strategy's gets a `/strategy` suffix."""
        bar = event.bar
        sym = bar.symbol
        active = self.strategies.get(sym)
        if active is None:
            return False, None
        if sym == active.symbol:
            active.on_bar(self.portfolio)
            if active.expired:
                out.extend(self._end_strategy(active, StrategyStatus.EXPIRED, bar.end_ms))
                return False, None
        # Orders on their way count as held: a slow exchange must not make it buy twice.
        position = self.portfolio.quantity(sym) + self._in_flight(sym)
        held = self.portfolio.quantity(sym)
        entry = self.portfolio.position(sym).avg_cost if held > 0 else None
        actions = active.strategy.on_bar(sym, event.features, position, entry)
        if not actions:
            return True, None
        spec = self.settings.symbols.get(sym)
        lot = spec.lot_size if spec else Decimal(1)
        equity = self.portfolio.equity()
        intents = [
            i for a in actions if (i := to_intent(a, position, bar.close, equity, lot)) is not None
        ]
        if not intents:
            return True, None

        def place(shared: bool) -> list[DeskOutput]:
            decision_id = f"{sym}@{bar.end_ms}" + ("/strategy" if shared else "")
            ctx = self._context(event, decision_id)
            proposal = Proposal(
                controller=STRATEGY_CONTROLLER,
                strategy=active.strategy.strategy_id,
                intents=intents,
                rationale="; ".join(a.reason for a in actions)[:2000],
                confidence=active.confidence,
            )
            result: list[DeskOutput] = []
            rounds: list[AdjustRound] = []
            status, final, note = self._gate(
                ctx,
                proposal,
                lambda p, v: self.controller.adjust(ctx, p, v),
                rounds,
                bar.end_ms,
                result,
            )
            result.extend(
                self._finalize(event, decision_id, rounds, status, final, note, bar.end_ms)
            )
            if decision_id in self.open_decisions:
                self.owners[decision_id] = active
            return result

        return True, place

    def _end_strategy(
        self, active: ActiveStrategy, status: StrategyStatus, ts_ms: int
    ) -> list[DeskOutput]:
        for sym in [s for s, a in self.strategies.items() if a is active]:
            del self.strategies[sym]
        return [active.record(status, ended_ms=ts_ms)]

    def _activate(
        self, decision: CompiledDecision, pending: PendingGpt, ts_ms: int
    ) -> list[DeskOutput]:
        """A new strategy takes over its universe; derisk without one retires the current."""
        out: list[DeskOutput] = []
        sym = pending.event.bar.symbol
        strategy = decision.strategy
        if decision.action == "hold":
            return out
        if strategy is None:  # derisk, nothing to run next
            current = self.strategies.get(sym)
            if current is not None:
                out.extend(self._end_strategy(current, StrategyStatus.RETIRED, ts_ms))
            return out
        # Its age counts in bars of the decision symbol, or of its first symbol if GPT gave
        # the decision symbol no part in it.
        clock_symbol = sym if sym in strategy.universe else min(strategy.universe)
        new = ActiveStrategy(
            activation_id=pending.decision_id,
            strategy=strategy,
            symbol=clock_symbol,
            started_ms=ts_ms,
            start_equity=self.portfolio.equity(),
            confidence=decision.confidence,
            rationale=decision.rationale,
        )
        current = self.strategies.get(sym)
        if (
            current is not None
            and current.strategy.strategy_id == strategy.strategy_id
            and current.universe == strategy.universe
        ):
            return out  # the same strategy again: it keeps running, with its track record
        for s in sorted(strategy.universe | {sym}):
            old = self.strategies.get(s)
            if old is not None:
                out.extend(self._end_strategy(old, StrategyStatus.REPLACED, ts_ms))
        for s in strategy.universe:
            self.strategies[s] = new
        out.append(new.record(StrategyStatus.ACTIVE))
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

    def _call_row(self, request: GptRequest, outcome: GptOutcome, detail: str) -> GptCall:
        """The `gpt_calls` row of a call that was not made."""
        gpt = self.gpt
        assert gpt is not None
        model = self.settings.gpt.model
        return GptCall(
            call_id=request.request_id,
            ts_ms=request.ts_ms,
            decision_id=request.decision_id,
            round=request.round,
            symbol=request.symbol,
            model=model,
            prompt_hash=prompt_hash(
                model,
                [t.model_dump() for t in request.messages],
                GptDecision,
                gpt.schema,
                STRICT_SCHEMA_NAME,
            ),
            outcome=outcome,
            detail=detail,
        )

    def _budget_alert(self, ts_ms: int) -> Alert:
        cap = self.budget.cap
        day = utc_day(ts_ms)
        return Alert(
            alert_id=alert_id("gpt-budget", day.isoformat()),
            ts_ms=ts_ms,
            severity=Severity.WARNING,
            source="gpt",
            message=(
                f"GPT daily budget {cap} USD reached on {day} "
                f"({self.budget.spent(day)} spent): local engine only until the next UTC day"
            ),
            context={"day": day.isoformat()},
        )

    def _start_gpt(self, event: BarEvent) -> list[DeskOutput]:
        gpt = self.gpt
        assert gpt is not None
        bar = event.bar
        sym = bar.symbol
        decision_id = f"{sym}@{bar.end_ms}"
        ctx = self._context(event, decision_id)
        active = self.strategies.get(sym)
        digest = digest_from(
            self.texts.get(sym, ()),
            sym,
            bar.end_ms,
            self._digest_window_ms,
            self.settings.gpt.digest_items,
        )
        question = gpt.question(
            ctx,
            positions=self._positions(),
            performance=active.performance(self.portfolio) if active else None,
            current=active.strategy if active else None,
            digest=digest,
        )
        request = GptRequest(
            request_id=gpt_call_id(decision_id, 0),
            decision_id=decision_id,
            symbol=sym,
            round=0,
            ts_ms=bar.end_ms,
            messages=question.messages,
        )
        out: list[DeskOutput] = []
        # Calls in flight are reserved at the estimate, so concurrent calls cannot overshoot.
        estimate = self.settings.gpt.cost_estimate_usd * (1 + len(self.pending))
        replay = self.settings.gpt.cache_mode == "replay"  # costs nothing, stays reproducible
        if not replay and not self.budget.can_spend(utc_day(bar.end_ms), estimate):
            if self.budget.crossed_now:
                out.append(self._budget_alert(bar.end_ms))
            detail = f"daily budget {self.budget.cap} USD reached"
            out.append(self._call_row(request, GptOutcome.BUDGET_EXHAUSTED, detail))
            pending = PendingGpt(event, decision_id, request, question)
            out.extend(self._finish_local(pending, ctx, Fallback("budget_exhausted", detail), 1))
            return out
        self.pending[sym] = PendingGpt(event, decision_id, request, question)
        self.last_asked[sym] = bar.end_ms
        out.extend(
            self._finalize(
                event, decision_id, [], DecisionStatus.PENDING, None, "waiting for GPT", bar.end_ms
            )
        )
        out.append(request)
        return out

    def _cooling_down(self, sym: str, now_ms: int) -> bool:
        last = self.last_asked.get(sym)
        return last is not None and now_ms - last < self._cooldown_ms

    def _cooled(self, event: BarEvent) -> DecisionRecord:
        """A strategic trigger soon after the last question: the running strategy stays in
        charge (cost control); logged, so the decision log says why GPT was not asked."""
        bar = event.bar
        active = self.strategies[bar.symbol]
        note = (
            f"GPT asked {(bar.end_ms - self.last_asked[bar.symbol]) // 1000} s ago "
            f"(cooldown {self.settings.gpt.cooldown}); {active.strategy.strategy_id} keeps running"
        )
        decision_id = f"{bar.symbol}@{bar.end_ms}"
        out = self._finalize(
            event, decision_id, [], DecisionStatus.NO_ACTION, None, note, bar.end_ms
        )
        record = out[0]
        assert isinstance(record, DecisionRecord)
        return record

    def _coalesced(self, event: BarEvent) -> DecisionRecord:
        """A strategic trigger while the symbol's GPT decision is out: one call at a time."""
        bar = event.bar
        waiting = self.pending[bar.symbol].decision_id
        note = f"GPT decision {waiting} still pending; one question per symbol at a time"
        decision_id = f"{bar.symbol}@{bar.end_ms}"
        out = self._finalize(
            event, decision_id, [], DecisionStatus.NO_ACTION, None, note, bar.end_ms
        )
        record = out[0]
        assert isinstance(record, DecisionRecord)
        return record

    def _gpt_timed_out(self, pending: PendingGpt) -> list[DeskOutput]:
        del self.pending[pending.event.bar.symbol]
        wait = self.settings.gpt.max_wait
        detail = f"no answer within {wait} of event time"
        now = self.latest[pending.event.bar.symbol]
        ctx = self._context(pending.event, pending.decision_id, now)
        version = len(pending.rounds) + 2
        return self._finish_local(pending, ctx, Fallback("timeout", detail), version)

    def _finish_local(
        self, pending: PendingGpt, ctx: DecisionContext, why: Fallback, version: int
    ) -> list[DeskOutput]:
        """GPT could not decide: the local engine does, through the same gate, and the
        decision log says why (controller `local (gpt fallback: kind)`). Where a strategy runs
        on the symbol it stays in charge instead: it has acted on every bar meanwhile, and the
        local engine on top would trade the same moves twice."""
        out: list[DeskOutput] = []
        active = self.strategies.get(ctx.symbol)
        if active is not None:
            note = f"gpt fallback ({why.kind}); {active.strategy.strategy_id} keeps running"
            return self._finalize(
                pending.event,
                pending.decision_id,
                pending.rounds,
                DecisionStatus.NO_ACTION,
                None,
                note,
                self.latest[ctx.symbol].bar.end_ms,
                version,
            )
        local = GptDecider.fallback(self.controller.propose(ctx), why)
        status, proposal, note = self._gate(
            ctx,
            local,
            lambda p, v: GptDecider.fallback(self.controller.adjust(ctx, p, v), why),
            pending.rounds,
            self.latest[ctx.symbol].bar.end_ms,
            out,
        )
        note = f"gpt fallback ({why.kind}); " + (note or "local engine decided")
        out.extend(
            self._finalize(
                pending.event,
                pending.decision_id,
                pending.rounds,
                status,
                proposal,
                note,
                self.latest[ctx.symbol].bar.end_ms,
                version,
            )
        )
        return out

    def on_gpt_answer(self, answer: GptAnswer) -> list[DeskOutput]:
        """Resume the decision this answer belongs to; an answer nobody waits for any more
        (timed out, or from before a restart) is only logged."""
        gpt = self.gpt
        out: list[DeskOutput] = []
        call = answer.call
        if answer.billed:  # a late answer was paid for all the same
            self.budget.record(utc_day(call.ts_ms), call.cost)
            if self.budget.crossed_now:
                out.append(self._budget_alert(call.ts_ms))
        pending = next(
            (p for p in self.pending.values() if p.request.request_id == answer.request_id), None
        )
        if gpt is None or pending is None:
            late = "answer arrived after the decision was taken; not used"
            detail = f"{call.detail}; {late}" if call.detail else late
            out.append(call.model_copy(update={"detail": detail}))
            return out
        sym = pending.event.bar.symbol
        now = self.latest[sym]
        ctx = self._context(pending.event, pending.decision_id, now)
        result = gpt.interpret(answer, pending.question.amap)
        if isinstance(result, Fallback) and result.kind == "rejected":
            call = call.model_copy(update={"detail": f"rejected: {result.detail}"[:1000]})
        out.append(call)
        version = len(pending.rounds) + 2
        if answer.failure == GptOutcome.BUDGET_EXHAUSTED.value:
            # The gateway's wall-clock guard: real money spent today, over every run.
            out.append(
                Alert(
                    alert_id=alert_id("gpt-spend", answer.detail),
                    ts_ms=call.ts_ms,
                    severity=Severity.WARNING,
                    source="gpt",
                    message=f"{answer.detail}; local engine only until the next UTC day"[:1500],
                    context={"decision_id": pending.decision_id},
                )
            )
        if isinstance(result, Fallback):
            del self.pending[sym]
            out.extend(self._finish_local(pending, ctx, result, version))
            return out
        takeover = take_over(
            result, self.strategies.get(sym), self.feature_history, sym, now.features.ts_ms
        )
        result = takeover.decision
        proposal, _small = self._tradeable(
            gpt.to_proposal(
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
        if not proposal.intents:
            del self.pending[sym]
            note = f"gpt {result.action}: no orders" + (
                f" ({takeover.note})" if takeover.note else ""
            )
            # Logged all the same: the decision log shows what GPT decided, orders or not.
            nothing = RiskVerdict(approved=True, checks=[], fee_estimate=Decimal(0))
            pending.rounds.append(
                AdjustRound(round=len(pending.rounds), proposal=proposal, verdict=nothing)
            )
            out.extend(self._activate(result, pending, placed))
            out.extend(
                self._finalize(
                    pending.event,
                    pending.decision_id,
                    pending.rounds,
                    DecisionStatus.NO_ACTION,
                    proposal,
                    note,
                    placed,
                    version,
                )
            )
            return out
        risk = self.settings.risk
        verdict = check(
            proposal,
            self.portfolio,
            dict(self.portfolio.marks),
            risk,
            self.settings.execution,
            self._pending_orders(),
        )
        n = len(pending.rounds)
        pending.rounds.append(AdjustRound(round=n, proposal=proposal, verdict=verdict))
        if verdict.approved:
            del self.pending[sym]
            out.extend(self._activate(result, pending, placed))
            out.extend(
                self._finalize(
                    pending.event,
                    pending.decision_id,
                    pending.rounds,
                    DecisionStatus.EXECUTED,
                    proposal,
                    f"gpt {result.action}",
                    placed,
                    version,
                )
            )
            if pending.decision_id in self.open_decisions:
                active = self.strategies.get(sym)
                if active is not None and active.activation_id == pending.decision_id:
                    self.owners[pending.decision_id] = active
            return out
        replay = self.settings.gpt.cache_mode == "replay"
        affordable = replay or self.budget.can_spend(
            utc_day(pending.event.bar.end_ms), self.settings.gpt.cost_estimate_usd
        )
        if not affordable and self.budget.crossed_now:
            out.append(self._budget_alert(now.bar.end_ms))
        if n < risk.max_adjust_rounds and affordable:
            out.append(
                self._risk_alert(
                    pending.decision_id, placed, n, verdict, "sent back to GPT", last=False
                )
            )
            question = gpt.follow_up(pending.question, answer.raw_text, verdict)
            pending.question = question
            pending.request = GptRequest(
                request_id=gpt_call_id(pending.decision_id, n + 1),
                decision_id=pending.decision_id,
                symbol=sym,
                round=n + 1,
                ts_ms=pending.event.bar.end_ms,
                messages=question.messages,
            )
            out.append(pending.request)
            return out
        out.append(
            self._risk_alert(
                pending.decision_id, placed, n, verdict, "GPT rounds exhausted, local engine", True
            )
        )
        del self.pending[sym]
        failed = ", ".join(sorted({c.name for c in verdict.failures}))
        why = Fallback("risk_refused", f"risk gate refused {n + 1} GPT round(s): {failed}")
        out.extend(self._finish_local(pending, ctx, why, version))
        return out

    # ---------------------------------------------------------------- a real exchange
    def unreported_orders(self) -> list[Order]:
        """Orders placed with an executor whose report never came (a restart): sent again,
        the executor finds them on the exchange by client order id instead of duplicating."""
        if self.venue != "exchange":
            return []
        return [
            o
            for r in self.open_decisions.values()
            for o in r.orders
            if o.status is OrderStatus.PENDING
        ]

    def orders_to_look_up(self) -> list[Order]:
        """Orders the executor gave up on (`failed`: maybe placed, not found): the gateway
        looks each up once more, without creating it, before the book is next reconciled
        with the exchange's balances; a late fill then arrives as a report at its price,
        instead of the balance being adopted at the mark."""
        found: list[Order] = []
        for cid, decision_id in list(self.given_up.items()):
            _, order = self._order_of(decision_id, cid)
            if order is None or order.status is OrderStatus.PENDING:
                del self.given_up[cid]  # no longer held, or re-opened (polled as pending)
            else:
                found.append(order)
        return found

    def on_execution(self, report: ExecutionReport) -> list[DeskOutput]:
        """Apply what the exchange did with one order: its fills move the book, the order and
        the decision get a new version; a failed order raises a critical alert and applies
        the configured fallback, written into the decision log."""
        out: list[DeskOutput] = []
        if report.status is ExecStatus.UNKNOWN:
            # Neither placed nor refused for sure: the order stays pending and is looked up
            # again (`unreported_orders`); nothing moves until the exchange says.
            return [
                executor_alert(
                    "order-unknown",
                    report.client_order_id,
                    report.ts_ms,
                    Severity.CRITICAL,
                    f"order {report.client_order_id} state unknown: {report.error}; "
                    "it is looked up again",
                    report.decision_id,
                    report.symbol,
                )
            ]
        record, order = self._order_of(report.decision_id, report.client_order_id)
        applied = self._apply_exchange_fills(report, out)
        status = {
            ExecStatus.FILLED: OrderStatus.FILLED,
            ExecStatus.PARTIALLY_FILLED: OrderStatus.PARTIALLY_FILLED,
            ExecStatus.OPEN: OrderStatus.PENDING,
        }.get(report.status, OrderStatus.REJECTED)
        settled = order is not None and order.status is not OrderStatus.PENDING
        if settled:
            self.given_up.pop(report.client_order_id, None)  # looked up again: known now
        elif report.status is ExecStatus.FAILED and order is not None:
            self.given_up[report.client_order_id] = report.decision_id
            if len(self.given_up) > CLOSED_KEPT:
                del self.given_up[next(iter(self.given_up))]
        if order is not None and stale_report(order, status, len(applied)):
            return out  # settled before, nothing new (a repeated failure: no second fallback)
        if report.status is ExecStatus.OPEN and not applied and not settled:
            return out  # accepted, nothing filled yet: the order stays pending
        # The fallback is for an order the desk is waiting for; one it had settled (or does
        # not hold) already had its outcome.
        held = order is not None and not settled
        again = report.client_order_id in self.fallen_back  # reopened, then failed again
        fallback = self.settings.execution.fallback if report.failed and held else ""
        shown = f"{fallback} (ran before: not again)" if again else fallback
        if order is not None and record is not None:
            filled = filled_quantity(order, [*record.fills, *applied])
            new_status = order_status(order, status, filled)
            updated = with_status(order, new_status, report.ts_ms, report.error[:500])
            out.append(updated)
            note = record.note
            if report.failed and not settled:
                note = (
                    f"{note}; order {order.client_order_id} {report.status.value} after "
                    f"{report.attempts} attempt(s): {report.error}; fallback: {shown}"
                )[:2000]
            elif settled:
                note = (
                    f"{note}; order {order.client_order_id} {new_status.value} after it was "
                    f"{order.status.value}: the exchange reported it again"
                )[:2000]
                out.append(self._late_alert(order, new_status, applied, report))
            out.append(self._record_update(record, updated, applied, note))
        if report.failed and (fallback or order is None):
            out.append(
                executor_alert(
                    "order-failed",
                    report.client_order_id,
                    report.ts_ms,
                    Severity.CRITICAL,
                    f"order {report.client_order_id} ({report.side.value} {report.quantity} "
                    f"{report.symbol}) {report.status.value}: {report.error}; "
                    f"fallback: {shown or 'none, not an open order of the desk'}",
                    report.decision_id,
                    report.symbol,
                )
            )
            if fallback and not again:
                self.fallen_back[report.client_order_id] = None
                if len(self.fallen_back) > CLOSED_KEPT:
                    del self.fallen_back[next(iter(self.fallen_back))]
                out.extend(self._exchange_fallback(report, fallback))
        out.extend(self.held_fills.release(self._book_held, self._unfit))  # may fit now
        return out

    def _apply_exchange_fills(self, report: ExecutionReport, out: list[DeskOutput]) -> list[Fill]:
        """Book the report's fills not seen before, at their own prices; returns them."""
        applied: list[Fill] = []
        for fill in report.fills:
            if fill.fill_id in self.seen_fills:
                continue  # the same report again (a restart re-asked the exchange)
            owner = self.owners.get(fill.decision_id)
            avg_before = self.portfolio.position(fill.symbol).avg_cost
            try:
                self.portfolio.apply_fill(fill)
            except ValueError as err:  # sold more than the book holds: held for later reports
                out.extend(self._unfit(f, why) for f, why in self.held_fills.hold(fill, str(err)))
                continue
            if owner is not None:
                owner.on_fill(fill, avg_before)
            self.seen_fills[fill.fill_id] = None
            if len(self.seen_fills) > 100_000:
                del self.seen_fills[next(iter(self.seen_fills))]
            applied.append(fill)
            out.append(fill)
        return applied

    def _late_alert(
        self, order: Order, status: OrderStatus, fills: list[Fill], report: ExecutionReport
    ) -> Alert:
        """An order the desk had settled (given up, refused) that the exchange reports again:
        booked as the exchange says, at the fills' own prices; a human should know."""
        qty = sum((f.quantity for f in fills), Decimal(0))
        what = f"filled {qty} more" if fills else "is open on the exchange"
        return executor_alert(
            f"order-late-{status.value}",
            f"{order.client_order_id}:{len(fills)}:{report.ts_ms}",
            report.ts_ms,
            Severity.WARNING,
            f"order {order.client_order_id} ({order.side.value} {order.quantity} "
            f"{order.symbol}) was {order.status.value} but {what}: now {status.value}",
            order.decision_id,
            order.symbol,
        )

    def _book_held(self, fill: Fill) -> list[DeskOutput]:
        """Book a fill that did not fit the book when its report came
        (`models.execution.fill_holdback`;
        raises `ValueError` while it still does not): the fill, and its decision's next
        version when the desk still holds that decision."""
        if fill.fill_id in self.seen_fills:
            return []  # booked meanwhile from a repeated report
        owner = self.owners.get(fill.decision_id)
        avg_before = self.portfolio.position(fill.symbol).avg_cost
        self.portfolio.apply_fill(fill)
        if owner is not None:
            owner.on_fill(fill, avg_before)
        self.seen_fills[fill.fill_id] = None
        out: list[DeskOutput] = [fill]
        record, order = self._order_of(fill.decision_id, fill.client_order_id)
        if record is not None and order is not None:
            out.append(self._record_update(record, order, [fill]))
        return out

    def _unfit(self, fill: Fill, why: str) -> Alert:
        """A fill given up for good: it never fitted the book."""
        return executor_alert(
            "ledger",
            fill.fill_id,
            fill.ts_ms,
            Severity.CRITICAL,
            f"fill {fill.fill_id} does not fit the book: {why}; reconcile with the exchange",
            fill.decision_id,
            fill.symbol,
        )

    def _exchange_fallback(self, report: ExecutionReport, action: str) -> list[DeskOutput]:
        sym = report.symbol
        if action == "cancel_open":
            return [ExchangeCommand("cancel_open", sym, f"order {report.client_order_id} failed")]
        if action == "safe_local":
            self.local_only.add(sym)
            self.pending.pop(sym, None)  # its answer, if it comes, is only logged
            active = self.strategies.get(sym)
            if active is not None:
                return self._end_strategy(active, StrategyStatus.RETIRED, report.ts_ms)
            return []
        if action != "flatten" or "/flatten-" in report.decision_id:
            return []  # hold; and a failed flatten is not flattened again (no loop)
        spec = self.settings.symbols.get(sym)
        position = round_to_lot(self.portfolio.quantity(sym), spec.lot_size if spec else Decimal(1))
        now = self.latest.get(sym)
        if position <= 0 or now is None:
            return []  # nothing held, or dust below one lot the exchange would refuse
        decision_id = f"{report.decision_id}/flatten-{report.client_order_id}"
        proposal = Proposal(
            controller="fallback",
            strategy="flatten",
            intents=[
                TradeIntent(
                    symbol=sym,
                    side=Side.SELL,
                    quantity=position,
                    reason=f"fallback after failed order {report.client_order_id}",
                )
            ],
            rationale=f"order {report.client_order_id} could not be placed: flatten {sym}",
            confidence=1.0,
        )
        nothing = RiskVerdict(approved=True, checks=[], fee_estimate=Decimal(0))
        rounds = [AdjustRound(round=0, proposal=proposal, verdict=nothing)]
        note = f"fallback flatten after order {report.client_order_id} failed"
        return self._finalize(
            now, decision_id, rounds, DecisionStatus.EXECUTED, proposal, note, report.ts_ms
        )

    def on_exchange_state(self, state: ExchangeState, ts_ms: int) -> list[DeskOutput]:
        """Start-up reconciliation: the exchange's balances become the book (cash in the
        account currency, the base asset of every configured BASE/QUOTE symbol), every
        difference is a warning, and open orders the desk does not know are reported."""
        out: list[DeskOutput] = []
        currency = self.settings.execution.currency
        diffs: list[str] = []
        cash = state.balances.get(currency)
        if cash is not None and cash != self.portfolio.cash:
            diffs.append(f"cash {self.portfolio.cash} -> {cash} {currency}")
            self.portfolio.set_cash(cash)
        for sym in sorted(self.settings.symbols):
            base, _, quote = sym.partition("/")
            if not quote:
                continue  # not an exchange pair: nothing to compare
            held = state.balances.get(base, Decimal(0))
            mine = self.portfolio.quantity(sym)
            price = state.prices.get(sym)
            if price is not None and price > 0:
                self.portfolio.marks.setdefault(sym, price)  # valued before its first bar
            if held != mine:
                diffs.append(f"{sym} {mine} -> {held}")
                # The cost of what the book did not buy is unknown: the price now stands for
                # it, so the adopted quantity starts without a made-up profit.
                avg = self.portfolio.position(sym).avg_cost if mine > 0 else Decimal(0)
                mark = self.portfolio.marks.get(sym, Decimal(0))
                self.portfolio.adopt(sym, held, avg or mark)
        known = {o.client_order_id for o in self.unreported_orders()}
        strangers = [
            str(o.get("clientOrderId") or o.get("id"))
            for o in state.open_orders
            if str(o.get("clientOrderId")) not in known
        ]
        if diffs:
            out.append(
                Alert(
                    alert_id=alert_id("reconcile", ts_ms, *diffs),
                    ts_ms=ts_ms,
                    severity=Severity.WARNING,
                    source="executor",
                    message="book reconciled with the exchange: " + "; ".join(diffs)[:1500],
                    context={"differences": len(diffs)},
                )
            )
        if strangers:
            out.append(
                Alert(
                    alert_id=alert_id("strange-orders", ts_ms, *strangers),
                    ts_ms=ts_ms,
                    severity=Severity.WARNING,
                    source="executor",
                    message=f"{len(strangers)} open order(s) on the exchange the desk did not "
                    f"place: {', '.join(strangers[:10])}",
                    context={"orders": len(strangers)},
                )
            )
        return out
