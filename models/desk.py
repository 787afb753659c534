"""The trading desk: one ordered place where decisions meet the portfolio.

Every closed bar of every symbol passes here in stream order. For each bar the desk
1. fills the symbol's pending orders at this bar's open (next-bar execution, no look-ahead),
2. marks the portfolio to the close,
3. when the router asked for a decision: asks the controller, runs the risk gate, sends a
   refused proposal back to the controller with the verdict (bounded rounds, each logged),
   and places the approved orders with client order ids derived from the decision id,
4. emits the decision log row (again, with a higher version, once its orders have filled),
   orders, fills, position snapshots and alerts.
All state lives in this object, which Bytewax snapshots, so a restart resumes it exactly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from decimal import Decimal

from models.config import Settings
from models.messages import (
    AdjustRound,
    Alert,
    Bar,
    Branch,
    DecisionRecord,
    DecisionStatus,
    FeatureVector,
    Fill,
    Order,
    OrderStatus,
    PositionSnapshot,
    Proposal,
    Severity,
    Side,
    Signal,
)
from models.portfolio import Portfolio
from models.risk import check
from models.sim_exchange import SimulatedExchange, client_order_id, with_status
from models.strategy import DecisionContext, LocalStrategyEngine, StrategyController

DeskOutput = DecisionRecord | Order | Fill | PositionSnapshot | Alert


@dataclass(frozen=True, slots=True)
class BarEvent:
    """A closed bar with what the per-symbol stage made of it."""

    bar: Bar
    features: FeatureVector
    signals: list[Signal]
    branch: Branch | None
    partition: str = ""  # where it came from, and its place there (see models/merge.py)
    clock_ms: int = 0
    seq: int = 0


def alert_id(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32]


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
class TradingDesk:
    settings: Settings
    portfolio: Portfolio
    exchange: SimulatedExchange
    controller: StrategyController
    open_decisions: dict[str, DecisionRecord] = field(default_factory=dict)
    decisions_made: int = 0

    @classmethod
    def create(
        cls, settings: Settings, controller: StrategyController | None = None
    ) -> TradingDesk:
        return cls(
            settings=settings,
            portfolio=Portfolio(cash=settings.execution.initial_cash),
            exchange=SimulatedExchange(settings.execution),
            controller=controller or LocalStrategyEngine(settings.strategy),
        )

    # ---------------------------------------------------------------- per bar
    def on_bar_event(self, event: BarEvent) -> list[DeskOutput]:
        bar = event.bar
        out: list[DeskOutput] = []
        out.extend(self._fill_pending(bar))
        self.portfolio.mark(bar.symbol, bar.close, bar.end_ms)
        if event.branch is not None:
            try:
                out.extend(self._decide(event))
            except Exception as err:  # fills above already moved the book: they must be logged
                out.append(self._decision_failed(event, err))
        out.append(self.portfolio.snapshot(bar.symbol, bar.end_ms))
        return out

    def _decision_failed(self, event: BarEvent, err: Exception) -> Alert:
        """A decision that raised places nothing; say so loudly, keep the rest of the bar."""
        bar = event.bar
        what = f"decision on {bar.symbol}@{bar.end_ms} failed, no order placed"
        return desk_error_alert("decision-error", bar, what, err)

    def _fill_pending(self, bar: Bar) -> list[DeskOutput]:
        out: list[DeskOutput] = []
        for fill in self.exchange.on_bar(bar):
            record = self.open_decisions.get(fill.decision_id)
            order = next(
                (
                    o
                    for o in (record.orders if record else [])
                    if o.client_order_id == fill.client_order_id
                ),
                None,
            )
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
                    Alert(
                        alert_id=alert_id("fill-refused", fill.client_order_id),
                        ts_ms=bar.start_ms,
                        severity=Severity.WARNING,
                        source="executor",
                        message=f"order {fill.client_order_id} not filled: {refused}",
                        context={"decision_id": fill.decision_id, "symbol": fill.symbol},
                    )
                )
            else:
                self.portfolio.apply_fill(fill)
                out.append(fill)
                if order is not None:
                    order = with_status(order, OrderStatus.FILLED, bar.start_ms)
                    out.append(order)
            if record is not None and order is not None:
                orders = [
                    order if o.client_order_id == order.client_order_id else o
                    for o in record.orders
                ]
                fills = record.fills + ([] if refused else [fill])
                record = record.model_copy(
                    update={"orders": orders, "fills": fills, "version": record.version + 1}
                )
                out.append(record)
                if all(o.status is not OrderStatus.PENDING for o in orders):
                    del self.open_decisions[record.decision_id]
                else:
                    self.open_decisions[record.decision_id] = record
        return out

    def _context(self, event: BarEvent, decision_id: str) -> DecisionContext:
        spec = self.settings.symbols.get(event.bar.symbol)
        return DecisionContext(
            decision_id=decision_id,
            symbol=event.bar.symbol,
            branch=event.branch or Branch.ROUTINE,
            signals=event.signals,
            features=event.features,
            price=event.bar.close,
            position=self.portfolio.quantity(event.bar.symbol),
            cash=self.portfolio.cash,
            equity=self.portfolio.equity(),
            lot_size=spec.lot_size if spec else Decimal(1),
            risk=self.settings.risk,
            execution=self.settings.execution,
        )

    def _decide(self, event: BarEvent) -> list[DeskOutput]:
        bar = event.bar
        decision_id = f"{bar.symbol}@{bar.end_ms}"
        ctx = self._context(event, decision_id)
        prices = dict(self.portfolio.marks)
        risk = self.settings.risk
        out: list[DeskOutput] = []
        rounds: list[AdjustRound] = []
        proposal: Proposal = self.controller.propose(ctx)
        status = DecisionStatus.REJECTED
        note = ""
        for n in range(risk.max_adjust_rounds + 1):
            if not proposal.intents:
                status = DecisionStatus.NO_ACTION
                note = "controller proposed no orders"
                break
            verdict = check(proposal, self.portfolio, prices, risk, self.settings.execution)
            rounds.append(AdjustRound(round=n, proposal=proposal, verdict=verdict))
            if verdict.approved:
                status = DecisionStatus.EXECUTED
                break
            failed = ", ".join(sorted({c.name for c in verdict.failures}))
            adjusted = (
                self.controller.adjust(ctx, proposal, verdict)
                if n < risk.max_adjust_rounds
                else None
            )
            stalled = adjusted is not None and adjusted.intents == proposal.intents
            last = adjusted is None or stalled
            if adjusted is None:
                outcome = "rounds exhausted, decision rejected"
            elif stalled:
                outcome = "controller cannot adjust further, decision rejected"
            else:
                outcome = "sent back to controller"
            out.append(
                Alert(
                    alert_id=alert_id("risk", decision_id, n),
                    ts_ms=bar.end_ms,
                    severity=Severity.CRITICAL if last else Severity.WARNING,
                    source="risk_gate",
                    message=f"{decision_id}: over limit ({failed}); {outcome}",
                    context={"decision_id": decision_id, "round": n},
                )
            )
            if adjusted is None or stalled:
                note = f"risk gate refused after {n + 1} round(s): {failed}"
                break
            proposal = adjusted
        orders: list[Order] = []
        if status is DecisionStatus.EXECUTED:
            for i, intent in enumerate(proposal.intents):
                order = Order(
                    client_order_id=client_order_id(decision_id, i),
                    decision_id=decision_id,
                    symbol=intent.symbol,
                    side=intent.side,
                    quantity=intent.quantity,
                    status=OrderStatus.PENDING,
                    placed_ms=bar.end_ms,
                    updated_ms=bar.end_ms,
                    reason=intent.reason,
                )
                if self.exchange.place(order):
                    orders.append(order)
        if status is DecisionStatus.NO_ACTION and rounds:
            note = "adjusted down to no orders"
        record = DecisionRecord(
            decision_id=decision_id,
            ts_ms=bar.end_ms,
            symbol=bar.symbol,
            branch=ctx.branch,
            triggers=event.signals,
            features=event.features,
            rounds=rounds,
            status=status,
            orders=orders,
            portfolio_before=self.portfolio.summary(),
            note=note,
        )
        if orders:
            self.open_decisions[decision_id] = record
        self.decisions_made += 1
        out.append(record)
        out.extend(orders)
        return out
