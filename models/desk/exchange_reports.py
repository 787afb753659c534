"""What a real exchange did with the desk's orders: reports, late fills, fallbacks, reconciling.

The executor answers every order with an `ExecutionReport`. Its fills move the book at their own
prices (once each: a repeated report is recognised by fill id), the order and its decision get a
new version, and a failed order raises a critical alert and applies the configured fallback
(`execution.fallback`: hold, cancel_open, flatten, safe_local), written into the decision log. A
sell that does not fit the book yet is held until the report it waits for arrives
(`models.execution.fill_holdback`). At start-up the exchange's balances become the book
(`models.portfolio.reconcile`).

Functions of the `TradingDesk` (its entry points delegate here); the state is the desk's
components.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from models.core.commands import CancelOpen
from models.core.messages import (
    AdjustRound,
    Alert,
    Fill,
    Order,
    OrderStatus,
    Proposal,
    Severity,
    Side,
    StrategyStatus,
    TradeIntent,
)
from models.core.money import round_to_lot
from models.desk import promotion_watch
from models.execution.decision_status import filled_quantity, order_status, stale_report
from models.execution.reports import ExchangeState, ExecStatus, ExecutionReport
from models.execution.sim_venue import with_status
from models.monitoring.alerts import (
    executor_alert,
    late_report_alert,
    order_unknown_alert,
    unfit_fill_alert,
)
from models.portfolio.reconcile import reconcile

if TYPE_CHECKING:
    from models.desk.desk import DeskOutput, TradingDesk


def unreported_orders(desk: TradingDesk) -> list[Order]:
    """Orders placed with an executor whose report never came (a restart): sent again,
    the executor finds them on the exchange by client order id instead of duplicating."""
    if desk.venue != "exchange":
        return []
    return desk.decisions.pending_orders()


def orders_to_look_up(desk: TradingDesk) -> list[Order]:
    """Orders the executor gave up on (`failed`: maybe placed, not found): the gateway
    looks each up once more, without creating it, before the book is next reconciled
    with the exchange's balances; a late fill then arrives as a report at its price,
    instead of the balance being adopted at the mark."""
    found: list[Order] = []
    for cid, decision_id in list(desk.fills.given_up.items()):
        _, order = desk.decisions.order_of(decision_id, cid)
        if order is None or order.status is OrderStatus.PENDING:
            del desk.fills.given_up[cid]  # no longer held, or re-opened (polled as pending)
        else:
            found.append(order)
    return found


def on_execution(desk: TradingDesk, report: ExecutionReport) -> list[DeskOutput]:
    """Apply what the exchange did with one order: its fills move the book, the order and
    the decision get a new version; a failed order raises a critical alert and applies
    the configured fallback, written into the decision log."""
    out: list[DeskOutput] = []
    if report.status is ExecStatus.UNKNOWN:
        # Neither placed nor refused for sure: the order stays pending and is looked up
        # again (`unreported_orders`); nothing moves until the exchange says.
        return [
            order_unknown_alert(
                report.client_order_id,
                report.ts_ms,
                report.error,
                report.decision_id,
                report.symbol,
            )
        ]
    record, order = desk.decisions.order_of(report.decision_id, report.client_order_id)
    applied = apply_exchange_fills(desk, report, out)
    status = {
        ExecStatus.FILLED: OrderStatus.FILLED,
        ExecStatus.PARTIALLY_FILLED: OrderStatus.PARTIALLY_FILLED,
        ExecStatus.OPEN: OrderStatus.PENDING,
    }.get(report.status, OrderStatus.REJECTED)
    settled = order is not None and order.status is not OrderStatus.PENDING
    if settled:
        desk.fills.given_up.pop(report.client_order_id, None)  # looked up again: known now
    elif report.status is ExecStatus.FAILED and order is not None:
        desk.fills.gave_up(report.client_order_id, report.decision_id)
    if order is not None and stale_report(order, status, len(applied)):
        return out  # settled before, nothing new (a repeated failure: no second fallback)
    if report.status is ExecStatus.OPEN and not applied and not settled:
        return out  # accepted, nothing filled yet: the order stays pending
    # The fallback is for an order the desk is waiting for; one it had settled (or does
    # not hold) already had its outcome.
    held = order is not None and not settled
    again = report.client_order_id in desk.fills.fallen_back  # reopened, then failed again
    fallback = desk.settings.execution.fallback if report.failed and held else ""
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
            out.append(late_report_alert(order, new_status, applied, report.ts_ms))
        out.append(desk.next_version(record, updated, applied, note))
        final = new_status is not OrderStatus.PENDING  # measured against the simulator
        out.extend(promotion_watch.on_report(desk, order, applied, final))
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
            desk.fills.fell_back(report.client_order_id)
            out.extend(exchange_fallback(desk, report, fallback))
    out.extend(
        desk.fills.held.release(lambda f: book_held(desk, f), unfit_fill_alert)
    )  # may fit now
    return out


def apply_exchange_fills(
    desk: TradingDesk, report: ExecutionReport, out: list[DeskOutput]
) -> list[Fill]:
    """Book the report's fills not seen before, at their own prices; returns them."""
    applied: list[Fill] = []
    for fill in report.fills:
        if fill.fill_id in desk.fills.seen:
            continue  # the same report again (a restart re-asked the exchange)
        try:
            desk.book_fill(fill)
        except ValueError as err:  # sold more than the book holds: held for later reports
            out.extend(unfit_fill_alert(f, why) for f, why in desk.fills.held.hold(fill, str(err)))
            continue
        desk.fills.booked(fill.fill_id)
        applied.append(fill)
        out.append(fill)
    return applied


def book_held(desk: TradingDesk, fill: Fill) -> list[DeskOutput]:
    """Book a fill that did not fit the book when its report came (raises `ValueError`
    while it still does not): the fill, and its decision's next version when the desk
    still holds that decision."""
    if fill.fill_id in desk.fills.seen:
        return []  # booked meanwhile from a repeated report
    desk.book_fill(fill)
    desk.fills.booked(fill.fill_id)
    out: list[DeskOutput] = [fill]
    record, order = desk.decisions.order_of(fill.decision_id, fill.client_order_id)
    if record is not None and order is not None:
        out.append(desk.next_version(record, order, [fill]))
    return out


def exchange_fallback(desk: TradingDesk, report: ExecutionReport, action: str) -> list[DeskOutput]:
    sym = report.symbol
    if action == "cancel_open":
        return [CancelOpen(sym, f"order {report.client_order_id} failed")]
    if action == "safe_local":
        desk.gpt.local_only.add(sym)
        desk.gpt.pending.pop(sym, None)  # its answer, if it comes, is only logged
        active = desk.strategies.get(sym)
        if active is not None:
            return [desk.strategies.end(active, StrategyStatus.RETIRED, report.ts_ms)]
        return []
    if action != "flatten" or "/flatten-" in report.decision_id:
        return []  # hold; and a failed flatten is not flattened again (no loop)
    spec = desk.settings.symbols.get(sym)
    position = round_to_lot(desk.portfolio.quantity(sym), spec.lot_size if spec else Decimal(1))
    now = desk.latest.get(sym)
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
    # The flatten is a proposal like any other: the review loop judges it, and a refusal goes
    # back to the local engine (which slices an order too big for the limits).
    ctx = desk.context(now, decision_id)
    out: list[DeskOutput] = []
    rounds: list[AdjustRound] = []
    status, final, why = desk.review(
        decision_id,
        proposal,
        lambda p, v: desk.controller.adjust(ctx, p, v),
        rounds,
        report.ts_ms,
        out,
    )
    note = f"fallback flatten after order {report.client_order_id} failed" + (
        f"; {why}" if why else ""
    )
    out.extend(desk.finalize(now, decision_id, rounds, status, final, note, report.ts_ms))
    return out


def on_exchange_state(desk: TradingDesk, state: ExchangeState, ts_ms: int) -> list[Alert]:
    """Start-up reconciliation (`models.portfolio.reconcile`)."""
    known = [o.client_order_id for o in desk.unreported_orders()]
    return list(reconcile(desk.portfolio, state, desk.settings, known, ts_ms))
