"""Run summary from the decision log: what a user reads after a demo or a backtest.

Everything here is read back from ClickHouse with `FINAL`, so the report shows what the store
holds (after idempotent replacement), not what the flow believes it wrote.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from connectors.clickhouse_store import TABLES, Store


@dataclass
class RunSummary:
    counts: dict[str, int]
    decisions: list[dict[str, Any]]
    positions: list[dict[str, Any]]
    cash: Decimal | None
    equity: Decimal | None
    dead_letter_reasons: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    equity_curve: list[tuple[int, Decimal]] = field(default_factory=list)


def _dec(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def summarize(store: Store) -> RunSummary:
    counts = {t: int(store.query(f"SELECT count() AS n FROM {t} FINAL")[0]["n"]) for t in TABLES}
    decisions = store.query(
        "SELECT branch, status, count() AS n FROM decisions FINAL GROUP BY branch, status "
        "ORDER BY branch, status"
    )
    positions = store.query(
        "SELECT symbol, argMax(quantity, ts_ms) AS quantity, argMax(avg_cost, ts_ms) AS avg_cost, "
        "argMax(mark_price, ts_ms) AS mark_price, argMax(realized_pnl, ts_ms) AS realized_pnl "
        "FROM positions FINAL GROUP BY symbol ORDER BY symbol"
    )
    last = store.query(
        "SELECT cash, equity FROM positions FINAL ORDER BY ts_ms DESC, symbol DESC LIMIT 1"
    )
    reasons = store.query(
        "SELECT replaceRegexpOne(reason, '[:(].*$', '') AS reason, count() AS n "
        "FROM dead_letters FINAL GROUP BY reason ORDER BY n DESC, reason LIMIT 20"
    )
    alerts = store.query(
        "SELECT severity, source, count() AS n FROM alerts FINAL GROUP BY severity, source "
        "ORDER BY severity, source"
    )
    curve = store.query(
        "SELECT ts_ms, argMax(equity, symbol) AS equity FROM positions FINAL "
        "GROUP BY ts_ms ORDER BY ts_ms"
    )
    return RunSummary(
        counts=counts,
        decisions=decisions,
        positions=[
            p for p in positions if _dec(p["quantity"]) != 0 or _dec(p["realized_pnl"]) != 0
        ],
        cash=_dec(last[0]["cash"]) if last else None,
        equity=_dec(last[0]["equity"]) if last else None,
        dead_letter_reasons=reasons,
        alerts=alerts,
        equity_curve=[(int(r["ts_ms"]), _dec(r["equity"])) for r in curve],
    )


def plot_equity(summary: RunSummary, path: Path) -> Path | None:
    """PNG of equity after every bar in event-time order (histories of different eras follow
    each other, so the x axis counts bars instead of showing dates)."""
    if not summary.equity_curve:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [float(e) for _, e in summary.equity_curve]  # plotting only, not accounting
    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    ax.plot(range(len(values)), values, linewidth=1.2, color="#2266aa")
    ax.set_title("Portfolio equity after each bar")
    ax.set_xlabel("bar (event-time order)")
    ax.set_ylabel("equity")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(summary: RunSummary, out_dir: Path, title: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    png = plot_equity(summary, out_dir / "equity.png")
    counts = [{"table": k, "rows": v} for k, v in summary.counts.items()]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;margin-bottom:1.5em}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Final cash <b>{summary.cash}</b>, equity <b>{summary.equity}</b></p>",
        "<img src='equity.png' alt='equity curve'>" if png else "",
        "<h2>Rows in the decision log</h2>",
        _table(counts),
        "<h2>Decisions by branch and status</h2>",
        _table(summary.decisions),
        "<h2>Positions (last snapshot per symbol)</h2>",
        _table(summary.positions),
        "<h2>Dead letters by reason</h2>",
        _table(summary.dead_letter_reasons),
        "<h2>Alerts</h2>",
        _table(summary.alerts),
        "</body></html>",
    ]
    path = out_dir / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
