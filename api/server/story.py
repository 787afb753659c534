"""One decision's whole story, from the decision log alone: what triggered it, the features it
saw, the portfolio before, every review round (the proposal, every reviewer's verdict and
reasons), the GPT calls made for it (model, prompt hash and tokens, the raw answer, cost,
outcome), the strategy it started, its orders (newest status) and fills, and the trading
state in force when it was made (the last applied `set_trading_state` at or before its time).

The prompt itself is not stored (the log keeps its hash: the same prompt always hashes the
same, so two calls can be told equal or not); the answer is stored clipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from api.server.common import json_field, plain

if TYPE_CHECKING:
    from connectors.store.clickhouse import Store

__all__ = ["decision_story"]

_GPT_COLUMNS = (
    "call_id, ts_ms, round, model, prompt_hash, prompt_tokens, completion_tokens, latency_ms, "
    "cost, price_known, outcome, answer, detail"
)


def decision_story(store: Store, run_id: str, decision_id: str) -> dict[str, Any] | None:
    """The story of `decision_id` in `run_id`, None when the run has no such decision."""
    p = {"run": run_id, "id": decision_id}
    rows = store.query(
        "SELECT * EXCEPT run_id FROM decisions FINAL "
        "WHERE decision_id = {id:String} AND run_id = {run:String}",
        p,
    )
    if not rows:
        return None
    d = rows[0]
    gpt = store.query(
        f"SELECT {_GPT_COLUMNS} FROM gpt_calls FINAL "
        "WHERE decision_id = {id:String} AND run_id = {run:String} ORDER BY round, ts_ms",
        p,
    )
    orders = store.query(
        "SELECT * EXCEPT (run_id, decision_id) FROM orders FINAL "
        "WHERE decision_id = {id:String} AND run_id = {run:String} ORDER BY placed_ms, "
        "client_order_id",
        p,
    )
    fills = store.query(
        "SELECT * EXCEPT (run_id, decision_id) FROM fills FINAL "
        "WHERE decision_id = {id:String} AND run_id = {run:String} ORDER BY ts_ms, fill_id",
        p,
    )
    strategies = store.query(
        "SELECT * EXCEPT (run_id, decision_id) FROM strategies FINAL "
        "WHERE activation_id = {id:String} AND run_id = {run:String}",
        p,
    )
    state = store.query(
        "SELECT state_after, command_id, applied_ms FROM control_log FINAL "
        "WHERE run_id = {run:String} AND outcome = 'applied' "
        "AND startsWith(action, 'set_trading_state:') AND applied_ms <= {ts:Int64} "
        "ORDER BY applied_ms DESC, command_id DESC LIMIT 1",
        {"run": run_id, "ts": int(d["ts_ms"])},
    )
    return {
        "run_id": run_id,
        "decision_id": d["decision_id"],
        "ts_ms": d["ts_ms"],
        "symbol": d["symbol"],
        "branch": d["branch"],
        "status": d["status"],
        "note": d["note"],
        "version": d["version"],
        "triggers": json_field(d["triggers"]),
        "features": json_field(d["features"]),
        "portfolio_before": json_field(d["portfolio_before"]),
        "rounds": json_field(d["rounds"]),
        "gpt_calls": [plain(r) for r in gpt],
        "strategy": plain(strategies[0]) if strategies else None,
        "orders": [plain(r) for r in orders],
        "fills": [plain(r) for r in fills],
        "trading_state": plain(state[0]) if state else {"state_after": "active"},
    }
