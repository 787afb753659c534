"""The status of one run, read from the decision log (and, served from the run's own process,
from its counters and the broker): trading state, positions, cash, P&L, open orders, the last
decisions, alerts and dead letters, GPT spend, and the consumer lag where it can be measured.

The consumer lag is the input topics' messages not yet read: their end offsets now, less what
the flow has read. The flow keeps its offsets in its recovery snapshots, not in a consumer
group, so only the run's own process knows what it has read (its counters), and only when it
started from the beginning of the topics (a resumed run started at a snapshot's offsets,
which it does not report). Anywhere else the lag is null with the reason.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from api.server.common import plain
from api.server.context import ApiContext

if TYPE_CHECKING:
    from connectors.store.clickhouse import Store

__all__ = ["LagProbe", "run_status"]

DAY_MS = 86_400_000


@dataclass
class LagProbe:
    """The consumer lag of the run served from this process, measured at most every
    `every_ms` (end offsets cost a few broker round trips)."""

    ctx: ApiContext
    every_ms: int = 5_000
    _last: tuple[int, dict[str, Any]] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def read(self) -> dict[str, Any]:
        run, bootstrap = self.ctx.run, self.ctx.bootstrap
        if run is None or run.counters is None:
            return _no_lag("measured only in the run's own process (stratflow run --api)")
        if run.resumed:
            return _no_lag("the run resumed from a snapshot, whose offsets it does not report")
        if not bootstrap:
            return _no_lag("no broker")
        with self._lock:
            now = self.ctx.clock()
            if self._last is not None and now - self._last[0] < self.every_ms:
                return self._last[1]
            result = self._measure(bootstrap, run.counters.records)
            self._last = (now, result)
            return result

    def _measure(self, bootstrap: str, read: int) -> dict[str, Any]:
        from connectors.kafka.io import topic_end_offsets

        t = self.ctx.settings.kafka.topics
        try:
            end = sum(
                sum(topic_end_offsets(bootstrap, topic, timeout_s=2.0).values())
                for topic in (t.market, t.news, t.social, t.control)
            )
        except Exception as err:  # the broker's trouble is reported, never raised
            return _no_lag(f"end offsets not available: {type(err).__name__}")
        return {"messages": max(0, end - read), "end_offsets": end, "read": read, "note": ""}


def _no_lag(why: str) -> dict[str, Any]:
    return {"messages": None, "end_offsets": None, "read": None, "note": why}


def _one(store: Store, sql: str, run_id: str) -> dict[str, Any]:
    rows = store.query(sql, {"run": run_id})
    return rows[0] if rows else {}


def run_status(store: Store, ctx: ApiContext, run_id: str) -> dict[str, Any]:
    """Everything `GET /api/status` shows of `run_id`, lag aside."""
    r = {"run": run_id}
    state = _one(
        store,
        "SELECT state_after, applied_ms, command_id FROM control_log FINAL "
        "WHERE run_id = {run:String} AND outcome = 'applied' "
        "AND startsWith(action, 'set_trading_state:') "
        "ORDER BY applied_ms DESC, command_id DESC LIMIT 1",
        run_id,
    )
    positions = store.query(
        "SELECT symbol, argMax(quantity, ts_ms) AS quantity, argMax(avg_cost, ts_ms) AS avg_cost,"
        " argMax(mark_price, ts_ms) AS mark_price, argMax(realized_pnl, ts_ms) AS realized_pnl,"
        " argMax(unrealized_pnl, ts_ms) AS unrealized_pnl, max(ts_ms) AS last_ms "
        "FROM positions FINAL WHERE run_id = {run:String} GROUP BY symbol ORDER BY symbol",
        r,
    )
    book = _one(
        store,
        "SELECT cash, equity, ts_ms FROM positions FINAL WHERE run_id = {run:String} "
        "ORDER BY ts_ms DESC, symbol DESC LIMIT 1",
        run_id,
    )
    open_orders = store.query(
        "SELECT client_order_id, decision_id, symbol, side, quantity, order_type, placed_ms "
        "FROM orders FINAL WHERE run_id = {run:String} AND status = 'pending' "
        "ORDER BY placed_ms DESC, client_order_id DESC LIMIT 100",
        r,
    )
    decisions = store.query(
        "SELECT decision_id, ts_ms, symbol, branch, status, n_orders, n_fills, "
        "substring(note, 1, 300) AS note FROM decisions FINAL WHERE run_id = {run:String} "
        "ORDER BY ts_ms DESC, decision_id DESC LIMIT 10",
        r,
    )
    alerts = store.query(
        "SELECT alert_id, ts_ms, severity, source, substring(message, 1, 300) AS message "
        "FROM alerts FINAL WHERE run_id = {run:String} ORDER BY ts_ms DESC, alert_id DESC "
        "LIMIT 10",
        r,
    )
    severities = store.query(
        "SELECT severity, count() AS n FROM alerts FINAL WHERE run_id = {run:String} "
        "GROUP BY severity ORDER BY severity",
        r,
    )
    dead = _one(
        store, "SELECT count() AS n FROM dead_letters FINAL WHERE run_id = {run:String}", run_id
    )
    return {
        "run_id": run_id,
        "trading_state": str(state.get("state_after") or "active"),
        "state_since_ms": state.get("applied_ms"),
        "positions": [plain(p) for p in positions if p["quantity"] != 0],
        "cash": plain(book.get("cash")),
        "equity": plain(book.get("equity")),
        "pnl": _pnl(ctx, positions, book),
        "open_orders": [plain(o) for o in open_orders],
        "last_decisions": [plain(d) for d in decisions],
        "alerts": {
            "by_severity": {str(s["severity"]): int(s["n"]) for s in severities},
            "latest": [plain(a) for a in alerts],
        },
        "dead_letters": int(dead.get("n") or 0),
        "gpt": _gpt_spend(store, ctx, run_id),
    }


def _pnl(ctx: ApiContext, positions: list[dict[str, Any]], book: dict[str, Any]) -> dict[str, Any]:
    realized = sum((Decimal(p["realized_pnl"]) for p in positions), Decimal(0))
    unrealized = sum((Decimal(p["unrealized_pnl"]) for p in positions), Decimal(0))
    equity = book.get("equity")
    since_start = (
        Decimal(equity) - ctx.settings.execution.initial_cash if equity is not None else None
    )
    return {
        "realized": str(realized),
        "unrealized": str(unrealized),
        "since_start": None if since_start is None else str(since_start),
    }


def _gpt_spend(store: Store, ctx: ApiContext, run_id: str) -> dict[str, Any]:
    row = _one(
        store,
        "SELECT count() AS calls, countIf(outcome = 'ok') AS answered, sum(cost) AS cost, "
        "max(ts_ms) AS last_ms FROM gpt_calls FINAL WHERE run_id = {run:String}",
        run_id,
    )
    calls = int(row.get("calls") or 0)
    today = Decimal(0)
    if calls:
        # The budget's day is the UTC day of event time: that of the newest call.
        day = int(row["last_ms"]) // DAY_MS
        spent = store.query(
            "SELECT sum(cost) AS cost FROM gpt_calls FINAL WHERE run_id = {run:String} "
            "AND intDiv(ts_ms, 86400000) = {day:Int64}",
            {"run": run_id, "day": day},
        )
        today = Decimal(spent[0]["cost"]) if spent else Decimal(0)
    return {
        "calls": calls,
        "answered": int(row.get("answered") or 0),
        "cost_usd": str(Decimal(row.get("cost") or 0)) if calls else "0",
        "cost_today_usd": str(today),
        "daily_budget_usd": str(ctx.settings.gpt.daily_budget_usd),
        "model": ctx.settings.gpt.model,
    }
