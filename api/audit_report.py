"""The audit export's files (issue 15, item 4): a run's decisions over a date range with their
inputs, every review round's verdict and reasons, the GPT calls made for them and the orders
and fills that resulted, as one HTML page a reviewer reads top to bottom, and as flat tables
(CSV and Parquet: one row per decision, per order, per fill) for tools.

Read in a handful of queries for the whole range (not one per decision: an audit covers
thousands), grouped here by decision id.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.server.common import json_field, plain

if TYPE_CHECKING:
    from connectors.store.clickhouse import Store

__all__ = ["AuditSet", "read_audit", "write_audit"]


@dataclass(frozen=True)
class AuditSet:
    run_id: str
    start_ms: int
    end_ms: int
    decisions: list[dict[str, Any]]
    orders: list[dict[str, Any]]
    fills: list[dict[str, Any]]
    gpt_calls: list[dict[str, Any]]


def read_audit(store: Store, run_id: str, start_ms: int, end_ms: int) -> AuditSet:
    """Every decision of `run_id` made in [start_ms, end_ms), and what belongs to them."""
    p = {"run": run_id, "a": start_ms, "b": end_ms}
    decisions = [
        plain(r)
        for r in store.query(
            "SELECT * EXCEPT run_id FROM decisions FINAL WHERE run_id = {run:String} "
            "AND ts_ms >= {a:Int64} AND ts_ms < {b:Int64} ORDER BY ts_ms, decision_id",
            p,
        )
    ]
    ids = [str(d["decision_id"]) for d in decisions]

    def of(table: str, order: str) -> list[dict[str, Any]]:
        if not ids:
            return []
        return [
            plain(r)
            for r in store.query(
                f"SELECT * EXCEPT run_id FROM {table} FINAL WHERE run_id = {{run:String}} "
                f"AND decision_id IN {{ids:Array(String)}} ORDER BY {order}",
                {"run": run_id, "ids": ids},
            )
        ]

    return AuditSet(
        run_id,
        start_ms,
        end_ms,
        decisions,
        of("orders", "placed_ms, client_order_id"),
        of("fills", "ts_ms, fill_id"),
        of("gpt_calls", "decision_id, round, ts_ms"),
    )


def _when(ts_ms: Any) -> str:
    return datetime.fromtimestamp(int(ts_ms) / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _e(value: Any) -> str:
    return html.escape(str(value))


def _round_html(r: dict[str, Any]) -> str:
    proposal = r.get("proposal") or {}
    intents = proposal.get("intents") or []
    wants = (
        ", ".join(f"{i.get('side')} {i.get('quantity')} {i.get('symbol')}" for i in intents)
        or "no orders"
    )
    verdict = r.get("verdict") or {}
    checks = verdict.get("checks") or []
    rows = "".join(
        f"<tr class={'ok' if c.get('passed') else 'no'}><td>{_e(c.get('name'))}</td>"
        f"<td>{'pass' if c.get('passed') else 'FAIL'}</td><td>{_e(c.get('value') or '')}</td>"
        f"<td>{_e(c.get('limit') or '')}</td><td>{_e(c.get('message') or '')}</td></tr>"
        for c in checks
    )
    approved = "approved" if verdict.get("approved") else "refused"
    return (
        f"<div class=round><b>round {_e(r.get('round'))}</b>: "
        f"{_e(proposal.get('controller', ''))} proposes {_e(wants)} "
        f"({_e(proposal.get('rationale', ''))}) &mdash; <b>{approved}</b>"
        + (f"<table>{rows}</table>" if rows else "")
        + "</div>"
    )


def _decision_html(
    d: dict[str, Any],
    orders: list[dict[str, Any]],
    fills: list[dict[str, Any]],
    calls: list[dict[str, Any]],
) -> str:
    triggers = json_field(d.get("triggers")) or []
    names = ", ".join(str(t.get("trigger")) for t in triggers if isinstance(t, dict)) or "none"
    features = (json_field(d.get("features")) or {}).get("values", {})
    feats = ", ".join(f"{k} {v:.6g}" for k, v in sorted(features.items()) if isinstance(v, float))
    rounds = "".join(_round_html(r) for r in json_field(d.get("rounds")) or [])
    gpt = "".join(
        f"<li>GPT {_e(c.get('model'))}, round {_e(c.get('round'))}: {_e(c.get('outcome'))}, "
        f"cost {_e(c.get('cost'))}, prompt {_e(str(c.get('prompt_hash'))[:12])}</li>"
        for c in calls
    )
    os_ = "".join(
        f"<li>order {_e(o['client_order_id'])}: {_e(o['side'])} {_e(o['quantity'])} "
        f"{_e(o['symbol'])}, {_e(o['status'])} {_e(o.get('reason') or '')}</li>"
        for o in orders
    )
    fs = "".join(
        f"<li>fill {_e(f['fill_id'])}: {_e(f['side'])} {_e(f['quantity'])} at "
        f"{_e(f['price'])}, fee {_e(f['fee'])}, {_when(f['ts_ms'])}</li>"
        for f in fills
    )
    return (
        f"<section><h3>{_when(d['ts_ms'])} &middot; {_e(d['symbol'])} &middot; "
        f"{_e(d['decision_id'])} &middot; {_e(d['status'])}</h3>"
        f"<p>branch {_e(d['branch'])}; triggers {_e(names)}; note {_e(d.get('note') or '-')}</p>"
        f"<p class=small>features: {_e(feats or '-')}</p>"
        f"{rounds}<ul>{gpt}{os_}{fs}</ul></section>"
    )


def _page(audit: AuditSet) -> str:
    orders: dict[str, list[dict[str, Any]]] = defaultdict(list)
    fills: dict[str, list[dict[str, Any]]] = defaultdict(list)
    calls: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for o in audit.orders:
        orders[str(o["decision_id"])].append(o)
    for f in audit.fills:
        fills[str(f["decision_id"])].append(f)
    for c in audit.gpt_calls:
        calls[str(c["decision_id"])].append(c)
    body = "".join(
        _decision_html(d, orders[i], fills[i], calls[i])
        for d in audit.decisions
        for i in [str(d["decision_id"])]
    )
    refused = sum(1 for d in audit.decisions if d["status"] == "rejected")
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>stratflow audit</title><style>"
        "body{font:13px system-ui,sans-serif;margin:2em;max-width:1100px}"
        "section{border-top:1px solid #ccc;padding:.5em 0}table{border-collapse:collapse;"
        "margin:.3em 0 .3em 1.5em}td{border:1px solid #ddd;padding:2px 6px}.no{color:#b00}"
        ".small{color:#555}.round{margin:.3em 0}</style></head><body>"
        f"<h1>Audit: run {_e(audit.run_id)}</h1><p>{_when(audit.start_ms)} to "
        f"{_when(audit.end_ms)} UTC: {len(audit.decisions)} decisions ({refused} refused), "
        f"{len(audit.orders)} orders, {len(audit.fills)} fills, {len(audit.gpt_calls)} GPT "
        f"calls.</p>{body}</body></html>"
    )


def write_audit(audit: AuditSet, out: Path) -> list[Path]:
    """The page and the tables (CSV and Parquet per table); their paths."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    page = out / "audit.html"
    page.write_text(_page(audit), encoding="utf-8")
    written = [page]
    for name, rows in (
        ("decisions", audit.decisions),
        ("orders", audit.orders),
        ("fills", audit.fills),
        ("gpt_calls", audit.gpt_calls),
    ):
        flat = [
            {k: v if isinstance(v, str | int | float | bool) or v is None else json.dumps(v)
             for k, v in r.items()}
            for r in rows
        ]  # fmt: skip
        table = (
            pa.Table.from_pylist(flat)
            if flat
            else pa.table({"decision_id": pa.array([], pa.string())})
        )
        pcsv.write_csv(table, out / f"{name}.csv")
        pq.write_table(table, out / f"{name}.parquet")
        written += [out / f"{name}.csv", out / f"{name}.parquet"]
    return written
