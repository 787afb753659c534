"""Alert builders: every alert the desk raises, its id derived from its cause.

An alert id is a hash of what the alert is about (`models.core.ids.alert_id`), so a replay or a
restart rewrites the same row instead of adding another, and one cause is one alert however
often it is met. The desk decides *when* to raise; this module says *what* the user reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal

from models.core.ids import alert_id
from models.core.messages import Alert, Bar, Fill, Order, OrderStatus, RiskVerdict, Severity
from models.core.trusted import trusted


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


def review_alert(
    decision_id: str, ts_ms: int, n: int, verdict: RiskVerdict, outcome: str, last: bool
) -> Alert:
    """A proposal the review loop refused in round `n`: a warning while it goes back to its
    proposer, critical when it was the last round."""
    failed = ", ".join(sorted({c.name for c in verdict.checks if not c.passed}))
    # Unvalidated (`models.core.trusted`): one per refused round, every value the desk's own.
    return trusted(
        Alert,
        {
            "alert_id": alert_id("risk", decision_id, n),
            "ts_ms": ts_ms,
            "severity": Severity.CRITICAL if last else Severity.WARNING,
            "source": "risk_gate",
            "message": f"{decision_id}: over limit ({failed}); {outcome}",
            "context": {"decision_id": decision_id, "round": n},
        },
    )


def budget_alert(day: date, cap: Decimal, spent: Decimal, ts_ms: int) -> Alert:
    """The GPT daily budget (event time) was reached: one alert per UTC day."""
    return Alert(
        alert_id=alert_id("gpt-budget", day.isoformat()),
        ts_ms=ts_ms,
        severity=Severity.WARNING,
        source="gpt",
        message=(
            f"GPT daily budget {cap} USD reached on {day} "
            f"({spent} spent): local engine only until the next UTC day"
        ),
        context={"day": day.isoformat()},
    )


def spend_alert(detail: str, ts_ms: int, decision_id: str) -> Alert:
    """The gateway's wall-clock spend guard stopped a call: real money spent today, over runs."""
    return Alert(
        alert_id=alert_id("gpt-spend", detail),
        ts_ms=ts_ms,
        severity=Severity.WARNING,
        source="gpt",
        message=f"{detail}; local engine only until the next UTC day"[:1500],
        context={"decision_id": decision_id},
    )


def fill_refused_alert(fill: Fill | Order, ts_ms: int, why: str) -> Alert:
    """The simulated venue could not fill an order (its fill, or the order when it was sized
    at its fill to nothing): the book could not pay or deliver."""
    return executor_alert(
        "fill-refused",
        fill.client_order_id,
        ts_ms,
        Severity.WARNING,
        f"order {fill.client_order_id} not filled: {why}",
        fill.decision_id,
        fill.symbol,
    )


def order_unknown_alert(
    client_order_id: str, ts_ms: int, error: str, decision_id: str, symbol: str
) -> Alert:
    """Neither placed nor refused for sure: the order is looked up again."""
    return executor_alert(
        "order-unknown",
        client_order_id,
        ts_ms,
        Severity.CRITICAL,
        f"order {client_order_id} state unknown: {error}; it is looked up again",
        decision_id,
        symbol,
    )


def late_report_alert(
    order: Order, status: OrderStatus, fills: Sequence[Fill], ts_ms: int
) -> Alert:
    """An order the desk had settled (given up, refused) that the exchange reports again:
    booked as the exchange says, at the fills' own prices; a human should know."""
    qty = sum((f.quantity for f in fills), Decimal(0))
    what = f"filled {qty} more" if fills else "is open on the exchange"
    return executor_alert(
        f"order-late-{status.value}",
        f"{order.client_order_id}:{len(fills)}:{ts_ms}",
        ts_ms,
        Severity.WARNING,
        f"order {order.client_order_id} ({order.side.value} {order.quantity} "
        f"{order.symbol}) was {order.status.value} but {what}: now {status.value}",
        order.decision_id,
        order.symbol,
    )


def unfit_fill_alert(fill: Fill, why: str) -> Alert:
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


def reconcile_alert(ts_ms: int, diffs: Sequence[str]) -> Alert:
    """The book was set to the exchange's balances at start-up; every difference is listed."""
    return Alert(
        alert_id=alert_id("reconcile", ts_ms, *diffs),
        ts_ms=ts_ms,
        severity=Severity.WARNING,
        source="executor",
        message="book reconciled with the exchange: " + "; ".join(diffs)[:1500],
        context={"differences": len(diffs)},
    )


def strange_orders_alert(ts_ms: int, strangers: Sequence[str]) -> Alert:
    """Open orders on the exchange the desk did not place."""
    return Alert(
        alert_id=alert_id("strange-orders", ts_ms, *strangers),
        ts_ms=ts_ms,
        severity=Severity.WARNING,
        source="executor",
        message=f"{len(strangers)} open order(s) on the exchange the desk did not "
        f"place: {', '.join(strangers[:10])}",
        context={"orders": len(strangers)},
    )
