"""The trading desk: one ordered place where decisions meet the portfolio.

Every closed bar of every symbol passes here in stream order (and every news/social item, for
the GPT digest). For each bar the desk
1. lets the venue act on the bar (the simulated venue fills pending orders at its open:
   next-bar execution, no look-ahead; an order sized as a fraction of equity is sized there,
   from what the book holds as it fills: `funds_at_fill`),
2. marks the portfolio to the close and runs the symbol's running strategy, if any,
3. decides, in this order of precedence:
   - a running GPT strategy acts on its own rules on every bar, GPT asked or not (its decision
     is `SYMBOL@END/strategy` when a GPT decision takes `SYMBOL@END` on that bar);
   - a strategic trigger goes to GPT (when it is asked): the desk emits an `AskGpt` command and
     the decision stays pending; it never waits for the answer itself;
   - otherwise a routine trigger goes to the local engine, unless a strategy owns the symbol;
   every proposal passes the review loop (`models.review.loop`); a refusal goes back to whoever
   proposed it with every reason (bounded rounds, each logged), and GPT's last refusal or any
   GPT failure ends with the local engine's fallback (or, where a strategy runs on the symbol,
   leaves it in charge);
4. emits the decision log row (a new version whenever the decision moves on), orders, fills,
   position snapshots, GPT call rows, strategy rows and alerts (its rows, `DeskRow`), and the
   commands for the outside world (`models.core.commands`: ask GPT, place an order on a real
   exchange, cancel open orders), which a driver in `dataflows/` carries out.

The desk only orders these steps; each is a component with its own tests: `decision_book`,
`strategy_book` (running strategies), `gpt_session`, `fill_ledger`, `exchange_reports`,
`bar_history` (the gate's windows), `promotion_watch` (a live run's demotion), `models.review.loop`,
`models.monitoring.alerts`.
All state lives in this object, which Bytewax snapshots, so a restart resumes it exactly; a
question still pending at a restart is asked again (the answer store makes that free).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from models.config.settings import Settings
from models.core.blocks import BarBlock, PositionColumns
from models.core.commands import AskGpt, Command, is_command
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
    Order,
    OrderStatus,
    PositionSnapshot,
    Proposal,
    RiskVerdict,
    Side,
    StrategyRecord,
    TradeIntent,
)
from models.core.trusted import frozen_maker, replaced, trusted
from models.desk import bar_history, exchange_reports, gpt_decisions, promotion_watch, quiet
from models.desk.bar_history import BarHistory
from models.desk.control import ControlAck, ControlEvent, ControlPlane, on_control, with_state
from models.desk.control import reapply as reapply_settings
from models.desk.decision_book import DecisionBook
from models.desk.fill_ledger import FillLedger
from models.desk.gpt_session import GptSession
from models.desk.persisted import PERSISTED
from models.desk.strategy_book import StrategyActions, StrategyBook
from models.execution.reports import ExchangeState, ExecutionReport
from models.execution.sim_venue import SimulatedExchange, with_status
from models.execution.sizing import Funds
from models.execution.venue import ExchangeVenue, Venue
from models.gpt.decider import GptAnswer
from models.gpt.news_digest import NewsBuffer
from models.monitoring.alerts import desk_error_alert, fill_refused_alert, review_alert
from models.portfolio.book import Portfolio
from models.review.loop import (
    DEFAULT_REVIEWERS,
    Refusal,
    ReviewContext,
    Reviewer,
    run_review_loop,
)
from models.review.risk import committed
from models.strategy.compiler import CompiledStrategy, Rejection
from models.strategy.engine import DecisionContext, LocalStrategyEngine, StrategyController
from models.strategy.intents import proposal
from models.strategy.takeover import FeatureHistory
from models.strategy.user_file import compile_standing
from models.validation.demotion import DemotionWatch


def desk_failure_alert(event: BarEvent, err: Exception) -> Alert:
    """A bar the desk failed on (a bug): the driver's alert for a failed event."""
    bar = event.bar
    return desk_error_alert("desk-error", bar, f"desk failed on {bar.symbol} bar {bar.end_ms}", err)


def standing_strategies(settings: Settings) -> tuple[CompiledStrategy, ...]:
    """The configuration's strategies, compiled (the settings were checked when loaded)."""
    result = compile_standing(
        settings.strategies, settings.symbols, settings.execution, settings.shortable()
    )
    if isinstance(result, Rejection):
        raise ValueError("; ".join(result.reasons))
    return tuple(result)


DeskRow = (
    DecisionRecord
    | Order
    | Fill
    | PositionSnapshot
    | PositionColumns
    | Alert
    | GptCall
    | StrategyRecord
    | ControlAck
)
"""What the desk logs: every item it emits that is not a command is one of these."""

DeskOutput = DeskRow | Command


def strategy_proposal(
    strategy_id: str, intents: list[TradeIntent], rationale: str, confidence: float
) -> Proposal:
    """A running strategy's proposal (`models.strategy.intents.proposal`: unvalidated when
    its values are what validation would keep, else validated)."""
    return proposal(STRATEGY_CONTROLLER, strategy_id, intents, rationale, confidence)


STRATEGY_CONTROLLER = "strategy"
_decision_context = frozen_maker(DecisionContext)
_review_context = frozen_maker(ReviewContext)

# The fields a validating call would be given (`model_fields_set`) where the desk builds its
# own records unvalidated (`models.core.trusted`): the rest are left at their defaults.
ORDER_GIVEN = frozenset(Order.model_fields) - {"order_type", "version"}
RECORD_GIVEN = frozenset(DecisionRecord.model_fields) - {"fills"}


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
    bar_history: BarHistory | None = None  # recent bars for the validation gate (GPT desks)
    shortable: frozenset[str] = frozenset()  # symbols the venue lends (settings), not state
    demotion: DemotionWatch | None = None  # an exchange run's demotion watch (promotion.watch)
    control: ControlPlane = field(default_factory=ControlPlane)  # trading state (models.control)

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
        session = GptSession.create(settings, ask=gpt and settings.strategy.controller == "gpt")
        history, reviewers = bar_history.wiring(settings, asks_gpt=session.decider is not None)
        return cls(
            settings=settings,
            portfolio=Portfolio(cash=settings.execution.initial_cash),
            exchange=SimulatedExchange(settings.execution)
            if venue == "sim"
            else ExchangeVenue(settings.execution),
            controller=controller or LocalStrategyEngine(settings.strategy),
            gpt=session,
            venue=venue,
            decisions=DecisionBook(venue=venue),
            strategies=StrategyBook(standing=standing_strategies(settings)),
            shortable=settings.shortable(),
            reviewers=reviewers,
            bar_history=history,
            demotion=promotion_watch.watch_for(settings, venue),
        )

    def state(self) -> tuple[Any, ...]:
        return tuple(
            getattr(getattr(self, part) if part else self, name) for _, part, name in PERSISTED
        )

    def restore(self, state: tuple[Any, ...]) -> None:
        for (_, part, name), value in zip(PERSISTED[: len(state)], state, strict=True):
            setattr(getattr(self, part) if part else self, name, value)
        if isinstance(self.gpt.texts, dict):  # a snapshot from before the incremental buffer
            self.gpt.texts = NewsBuffer.from_lists(self.gpt.texts)
        # Data comes from the snapshot, settings from the current configuration.
        self.gpt.budget.cap = self.settings.gpt.daily_budget_usd
        self.exchange.execution = self.settings.execution
        self.bar_history = bar_history.restored(self.bar_history, self.settings, self.gpt.decider)
        reapply_settings(self)  # the control plane's settings changes (models.desk.control)

    def pending_requests(self) -> list[AskGpt]:
        """The questions still out, oldest first, as commands: a restarted flow asks them
        again."""
        requests = sorted(
            (p.request for p in self.gpt.pending.values()), key=lambda r: r.request_id
        )
        return [AskGpt(r) for r in requests]

    # ---------------------------------------------------------------- per bar
    def on_bar_event(self, event: BarEvent) -> list[DeskOutput]:
        return self._after_fills(event, self._venue_fills(event.bar))

    def _after_fills(self, event: BarEvent, out: list[DeskOutput]) -> list[DeskOutput]:
        """The rest of `on_bar_event` once the venue's fills at the bar's open are in `out`
        (a list of the caller's, appended to and returned)."""
        bar = event.bar
        sym = bar.symbol
        self.portfolio.mark(sym, bar.close, bar.end_ms)
        out.extend(promotion_watch.on_bar(self, bar))  # drawdown, the simulator's opens
        self.latest[sym] = event
        self.feature_history.add(event.features)
        if self.bar_history is not None:  # the validation gate's window (GPT desks only)
            self.bar_history.add(bar)
        try:
            owned, actions = self._strategy_bar(event, out)
            waited = self.gpt.timed_out(sym, bar.end_ms)
            if waited is not None:
                out.extend(gpt_decisions.timed_out(self, waited))
            if (
                event.branch is Branch.STRATEGIC
                and self.gpt.asks_about(sym)
                and not self.strategies.is_standing(sym)
            ):
                cooling = owned and self.gpt.cooling_down(sym, bar.end_ms)
                asking = sym in self.gpt.pending or not cooling  # a GPT decision takes SYM@END
                if actions is not None:  # the running strategy acts all the same
                    out.extend(self._strategy_orders(event, actions, shared=asking))
                if sym in self.gpt.pending:
                    out.append(gpt_decisions.coalesced(self, event))
                elif cooling:
                    if actions is None:
                        out.append(gpt_decisions.cooled(self, event))
                else:
                    out.extend(gpt_decisions.start(self, event))
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

    def on_bar_block(self, block: BarBlock, start: int = 0) -> tuple[list[DeskOutput], int]:
        """Bars `start..` of `block`, with exactly the outputs and state of `on_bar_event` on
        each: runs of quiet bars at once (`models.desk.quiet`, their snapshots as one
        `PositionColumns`), every other bar through `on_bar_event`. Stops after a bar whose
        outputs hold a command (the driver carries it out, an inline answer included, before
        the next bar) and returns the outputs and the index to go on from (`len(block)`: done).
        A bar whose `on_bar_event` fails gives the alert the driver gives for a failed event."""
        out: list[DeskOutput] = []
        i, n = start, len(block)
        branched = sorted(block.branches)
        while i < n:
            columns = None
            fills: list[DeskOutput] | None = None  # bar i's fills, when made already
            if n - i >= quiet.SHORTEST_RUN:  # shorter: the per-bar path costs less
                columns, i = quiet.quiet_bars(self, block, i, branched, followed=True)
                if columns is not None:
                    out.append(columns)
                if i == n:
                    break
                if n - i >= quiet.SHORTEST_RUN and quiet.fills_due(self, block.symbol):
                    # A fill bar: its fills first, as `on_bar_event` makes them; the rest of
                    # the bar is often quiet, and then it opens the next quiet run.
                    bar = block.bars.bar(i)
                    try:
                        fills = self._venue_fills(bar)
                    except Exception as err:  # as below: the bar's alert, nothing else
                        event = block.event(i)
                        i += 1
                        if columns is not None:
                            quiet.keep_latest(self, block, i - 2, event)
                        out.append(desk_failure_alert(event, err))
                        continue
                    more, i = quiet.quiet_bars(self, block, i, branched, followed=True)
                    if more is not None:
                        out.extend(fills)
                        out.append(more)
                        columns, fills = more, None
                        if i == n:
                            break
            event = block.event(i)
            i += 1
            try:
                if fills is None:
                    outputs = self.on_bar_event(event)
                else:
                    outputs = self._after_fills(event, fills)
            except Exception as err:  # as the driver guards an event
                if columns is not None:  # the run before kept no `latest` (`followed`)
                    quiet.keep_latest(self, block, i - 2, event)
                out.append(desk_failure_alert(event, err))
                continue
            out.extend(outputs)
            if any(is_command(item) for item in outputs):
                break
        return out, i

    def on_text(self, event: TextEvent) -> None:
        """Keep recent news/posts per symbol for the GPT digest."""
        clock = max((e.bar.end_ms for e in self.latest.values()), default=None)
        self.gpt.keep_text(event, clock)

    def on_control(self, event: ControlEvent) -> list[DeskOutput]:
        return on_control(self, event)  # ack, and a halt's cancels

    # ---------------------------------------------------------------- fills
    def _venue_fills(self, bar: Bar) -> list[DeskOutput]:
        """The simulated venue's fills at this bar's open, one order at a time so each is
        sized and paid from the book as the previous one left it: an order sized at its fill
        is sized from the cash then available (rejected with the reason when that buys no whole
        lot); an explicit one is booked, or refused when the book cannot pay or deliver it (as
        an exchange refuses an unfunded order)."""
        dues = self.exchange.due(bar)
        if not dues:  # most bars
            return []
        out: list[DeskOutput] = []
        spec = self.settings.symbols.get(bar.symbol)
        lot = spec.lot_size if spec else Decimal(1)
        for due in dues:
            funds = self.funds_at_fill(due, bar) if due.size_fraction is not None else None
            report = self.exchange.execute(due, bar, funds, lot)
            record, order = self.decisions.order_of(due.decision_id, due.client_order_id)
            booked = report.fills[:1]  # the simulated venue fills an order whole, or not
            refused = report.error if not booked else self._unfunded(booked[0])
            if refused:
                booked = []
                if order is not None:
                    order = with_status(order, OrderStatus.REJECTED, bar.start_ms, refused)
                    out.append(order)
                out.append(fill_refused_alert(due, bar.start_ms, refused))
            else:
                (fill,) = booked
                self.book_fill(fill)
                out.append(fill)
                if order is not None:  # `with_status(order, FILLED, ...)`, in one copy
                    update: dict[str, Any] = {
                        "status": OrderStatus.FILLED,
                        "updated_ms": bar.start_ms,
                        "reason": order.reason,
                        "version": order.version + 1,
                    }
                    if order.quantity != fill.quantity:  # sized at its fill
                        update["quantity"] = fill.quantity
                    order = replaced(order, update)
                    out.append(order)
            if record is not None and order is not None:
                out.append(self.next_version(record, order, booked))
        return out

    def _unfunded(self, fill: Fill) -> str:
        """Why the book cannot take an explicit fill ("" when it can)."""
        if fill.side is Side.BUY and fill.quantity * fill.price + fill.fee > self.portfolio.cash:
            return "insufficient cash at fill"
        if (
            fill.side is Side.SELL
            and fill.quantity > self.portfolio.quantity(fill.symbol)
            and fill.symbol not in self.shortable
        ):
            return "position too small at fill"
        return ""

    def funds_at_fill(self, order: Order, bar: Bar) -> Funds:
        """What the book holds as `order` fills at this bar's open: the cash it may spend (less
        the reserve and what the other pending buys reserve, as the review loop counts it),
        equity with the symbol marked at the open, and the symbol's position."""
        others = [
            o for o in self.decisions.pending_orders() if o.client_order_id != order.client_order_id
        ]
        marks = self.portfolio.marks  # read only
        reserved, _ = committed(others, marks, self.settings.execution)
        held = self.portfolio.quantity(bar.symbol)
        mark = marks.get(bar.symbol, self.portfolio.position(bar.symbol).avg_cost)
        return Funds(
            cash=self.portfolio.cash - reserved - self.settings.risk.min_cash,
            equity=self.portfolio.equity() + held * (bar.open - mark),
            held=held,
        )

    def book_fill(self, fill: Fill) -> None:
        """The one place a fill moves the book (raises `ValueError` when it does not fit):
        credited to the strategy that placed it, applied to the portfolio."""
        before = self.portfolio.position(fill.symbol)
        avg_before, held_before = before.avg_cost, before.quantity
        self.portfolio.apply_fill(fill, allow_short=fill.symbol in self.shortable)
        self.strategies.credit(fill, avg_before, held_before)

    def next_version(
        self, record: DecisionRecord, order: Order, fills: list[Fill], note: str | None = None
    ) -> DecisionRecord:
        record = self.decisions.update(record, order, fills, note)
        if record.decision_id not in self.decisions.open:
            self.strategies.settled(record.decision_id)
        return record

    # ---------------------------------------------------------------- shared steps
    def context(
        self, trigger: BarEvent, decision_id: str, now: BarEvent | None = None
    ) -> DecisionContext:
        """The decision's context: the trigger's branch and signals, the latest bar's prices."""
        at = now or trigger
        bar = at.bar
        symbol = bar.symbol
        settings = self.settings
        spec = settings.symbols.get(symbol)
        portfolio = self.portfolio
        return _decision_context(  # `DecisionContext(...)`, its fields in order
            decision_id,
            symbol,
            trigger.branch or Branch.ROUTINE,
            trigger.signals,
            at.features,
            bar.close,
            portfolio.quantity(symbol) + self.decisions.in_flight(symbol),
            portfolio.cash,
            portfolio.equity(),
            spec.lot_size if spec else Decimal(1),
            settings.risk,
            settings.execution,
        )

    def active_reviewers(self) -> tuple[Reviewer, ...]:
        # + close-only once demoted, + the trading state's reviewer unless active
        return with_state(self, promotion_watch.active_reviewers(self))

    def review_context(self) -> ReviewContext:
        portfolio = self.portfolio
        return _review_context(  # `ReviewContext(...)`, its fields in order
            self.settings,
            portfolio,
            dict(portfolio.marks),
            self.decisions.pending_orders(),
            self.shortable,
            None,
        )

    def review(
        self,
        decision_id: str,
        proposal: Proposal,
        adjust: Callable[[Proposal, RiskVerdict], Proposal],
        rounds: list[AdjustRound],
        ts_ms: int,
        out: list[DeskOutput],
    ) -> tuple[DecisionStatus, Proposal, str]:
        """The review loop for a proposer that adjusts at once; each refusal is an alert. The
        book does not move while it runs: one review context serves every round."""
        context = self.review_context()
        result = run_review_loop(
            proposal,
            adjust,
            lambda: context,
            rounds,
            self.settings.risk.max_adjust_rounds,
            self.active_reviewers(),
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
        """Place the approved orders and write the decision's row. Both are built unvalidated
        (`models.core.trusted`): every value is the desk's own or a validated intent's, and the
        lists are copied as validation copies them (`rounds` grows on after a GPT round)."""
        orders: list[Order] = []
        if status is DecisionStatus.EXECUTED and proposal is not None:
            for i, intent in enumerate(proposal.intents):
                fields = {
                    "client_order_id": client_order_id(decision_id, i),
                    "decision_id": decision_id,
                    "symbol": intent.symbol,
                    "side": intent.side,
                    "quantity": intent.quantity,
                    "order_type": "market",
                    "status": OrderStatus.PENDING,
                    "placed_ms": placed_ms,
                    "updated_ms": placed_ms,
                    "reason": intent.reason,
                    "version": 1,
                    "size_fraction": intent.size_fraction,
                }
                order = trusted(Order, fields, ORDER_GIVEN)
                if self.exchange.accept(order):
                    orders.append(order)
        bar = trigger.bar
        fields = {
            "decision_id": decision_id,
            "ts_ms": bar.end_ms,
            "symbol": bar.symbol,
            "branch": trigger.branch or Branch.ROUTINE,
            "triggers": list(trigger.signals),
            "features": trigger.features,
            "rounds": list(rounds),
            "status": status,
            "orders": orders,
            "fills": [],
            "portfolio_before": self.portfolio.summary(),
            "note": note,
            "version": version,
        }
        record = trusted(DecisionRecord, fields, RECORD_GIVEN)
        self.decisions.taken(record)
        out: list[DeskOutput] = [record]
        for order in orders:  # each order's row, then what takes it to the exchange (if any)
            out.append(order)
            out.extend(self.exchange.outbound(order))
            promotion_watch.placed(self, order)  # a live run follows it to its fills
        return out

    def only_record(self, event: BarEvent, note: str) -> DecisionRecord:
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
        ctx = self.context(event, decision_id)
        out: list[DeskOutput] = []
        rounds: list[AdjustRound] = []
        status, proposal, note = self.review(
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
        active = actions.active
        proposal = strategy_proposal(
            active.strategy.strategy_id, actions.intents, actions.rationale, active.confidence
        )
        # The context only serves an adjustment: made at the first refusal (the review loop
        # does not move the book, so it is the context of this bar all the same).
        made: list[DecisionContext] = []

        def adjust(previous: Proposal, verdict: RiskVerdict) -> Proposal:
            if not made:
                made.append(self.context(event, decision_id))
            return self.controller.adjust(made[0], previous, verdict)

        out: list[DeskOutput] = []
        rounds: list[AdjustRound] = []
        status, final, note = self.review(decision_id, proposal, adjust, rounds, bar.end_ms, out)
        out.extend(self.finalize(event, decision_id, rounds, status, final, note, bar.end_ms))
        if decision_id in self.decisions.open:
            self.strategies.own(decision_id, active)
        return out

    # ---------------------------------------------------------------- GPT
    def on_gpt_answer(self, answer: GptAnswer) -> list[DeskOutput]:
        return gpt_decisions.on_gpt_answer(self, answer)

    # ---------------------------------------------------------------- a real exchange
    def unreported_orders(self) -> list[Order]:
        return exchange_reports.unreported_orders(self)

    def orders_to_look_up(self) -> list[Order]:
        return exchange_reports.orders_to_look_up(self)

    def on_execution(self, report: ExecutionReport) -> list[DeskOutput]:
        return exchange_reports.on_execution(self, report)

    def on_exchange_state(self, state: ExchangeState, ts_ms: int) -> list[Alert]:
        return exchange_reports.on_exchange_state(self, state, ts_ms)
