"""Run summary from the decision log: what a user reads after a demo or a backtest.

Everything here is read back from ClickHouse with `FINAL`, so the report shows what the store
holds (after idempotent replacement), not what the flow believes it wrote.

Dead-letter payloads, news and posts are untrusted text from outside: the report shows them
truncated, with invisible and control characters spelled out as `\\uXXXX`, and HTML-escaped, so a
headline can neither run script in the reader's browser nor hide what it says.
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, cast

from connectors.store.clickhouse import TABLES, Store


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
    latest_dead_letters: list[dict[str, Any]] = field(default_factory=list)
    text_counts: dict[str, int] = field(default_factory=dict)
    """Stored news headlines and social posts, by kind ('news', 'social')."""
    latest_texts: list[dict[str, Any]] = field(default_factory=list)
    closes: dict[str, list[tuple[int, Decimal]]] = field(default_factory=dict)
    """Per symbol, (bar start ms, close) in time order, thinned to at most ~CLOSE_POINTS."""
    gpt_calls: list[dict[str, Any]] = field(default_factory=list)
    """GPT calls by outcome: count, cost, tokens, mean and worst latency."""
    strategies: list[dict[str, Any]] = field(default_factory=list)
    """The latest GPT strategy activations."""
    dead_letter_reasons_cut: int = 0
    """Dead letters in groups beyond the first `REASON_GROUPS` (not listed one by one)."""


LATEST_ROWS = 10
REASON_GROUPS = 100
"""Dead-letter groups (topic, reason kind) the report lists; the rest are counted in one line."""
TEXT_CHARS = 120
"""Characters of a payload or a headline shown in the report (the store keeps the rest)."""
CLOSE_POINTS = 1500
"""Bars per symbol the price plot reads at most: a line chart shows no more, and `stratflow run`
on years of minute bars must not pull them all into memory for a picture."""

# Dead-letter reasons carry values (window numbers, timestamps, ids); grouping by the reason's
# kind keeps the table short and the number of groups bounded on a large store.
_REASON_KIND = r"""multiIf(
    match(reason, '^(late|duplicate|not valid JSON|internal error|kafka error): '),
        extract(reason, '^([^:]+)'),
    match(reason, '^event time .* ahead of '), 'event time ahead of the trusted clock',
    match(reason, '^event time .* jumps '), 'event time jumps past the partition clock',
    match(reason, '^event time .*first events'), 'event time not confirmed at partition start',
    startsWith(reason, 'event time '), 'event time implausible',
    match(reason, '^symbol \\S+ belongs to partition'), 'symbol off its home partition',
    startsWith(reason, 'bar interval '), 'bar interval coarser than the window',
    replaceRegexpOne(replaceRegexpOne(reason, ';.*$', ''), ' (\'\\^|\\().*$', ''))"""


def _dec(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


class _OneRun:
    """A store whose queries see only some runs' rows: each `FROM <table> FINAL` reads
    `(SELECT * FROM <table> FINAL WHERE run_id IN ...)` instead."""

    _FROM: ClassVar = re.compile(r"\bFROM\s+(\w+)\s+FINAL\b")

    def __init__(self, store: Store, run_ids: Sequence[str]) -> None:
        self._store = store
        self._run_ids = list(run_ids)

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        scoped = self._FROM.sub(
            r"FROM (SELECT * FROM \1 FINAL WHERE run_id IN {_run_ids:Array(String)}) AS \1", sql
        )
        return self._store.query(scoped, {**(params or {}), "_run_ids": self._run_ids})


def summarize(store: Store, run_id: str | Sequence[str] | None = None) -> RunSummary:
    """What the store holds; with `run_id` (or several), only the rows those runs wrote."""
    if run_id is not None:
        store = cast(Store, _OneRun(store, [run_id] if isinstance(run_id, str) else run_id))
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
    # One more group than shown, so a cut list can say so instead of dropping a whole topic.
    reasons = store.query(
        f"SELECT topic, {_REASON_KIND} AS reason, count() AS n FROM dead_letters FINAL "
        f"GROUP BY topic, reason ORDER BY topic, n DESC, reason LIMIT {REASON_GROUPS + 1}"
    )
    more_reasons = len(reasons) > REASON_GROUPS
    reasons = reasons[:REASON_GROUPS]
    latest_dead = store.query(
        "SELECT record_ms, topic, `partition`, `offset`, reason, "
        f"substringUTF8(payload, 1, {TEXT_CHARS * 2}) AS payload, "
        "lengthUTF8(payload) AS payload_chars FROM dead_letters FINAL "
        f"ORDER BY record_ms DESC, topic, `partition` DESC, `offset` DESC LIMIT {LATEST_ROWS}"
    )
    texts = store.query("SELECT kind, count() AS n FROM news FINAL GROUP BY kind ORDER BY kind")
    latest_texts = store.query(
        "SELECT ts_ms, kind, id, symbols, source, "
        f"substringUTF8(if(kind = 'news', headline, text), 1, {TEXT_CHARS * 2}) AS text, "
        "lengthUTF8(if(kind = 'news', headline, text)) AS text_chars "
        f"FROM news FINAL ORDER BY ts_ms DESC, kind, id LIMIT {LATEST_ROWS}"
    )
    closes = store.query(
        "SELECT symbol, start_ms, close FROM (SELECT symbol, start_ms, close, "
        "row_number() OVER (PARTITION BY symbol ORDER BY start_ms) AS rn, "
        "count() OVER (PARTITION BY symbol) AS total FROM bars FINAL) "
        f"WHERE (rn - 1) % greatest(1, intDiv(total, {CLOSE_POINTS})) = 0 OR rn = total "
        "ORDER BY symbol, start_ms"
    )
    by_symbol: dict[str, list[tuple[int, Decimal]]] = {}
    for r in closes:
        by_symbol.setdefault(str(r["symbol"]), []).append((int(r["start_ms"]), _dec(r["close"])))
    alerts = store.query(
        "SELECT severity, source, count() AS n FROM alerts FINAL GROUP BY severity, source "
        "ORDER BY severity, source"
    )
    curve = store.query(
        "SELECT ts_ms, argMax(equity, symbol) AS equity FROM positions FINAL "
        "GROUP BY ts_ms ORDER BY ts_ms"
    )
    gpt_calls = store.query(
        "SELECT outcome, count() AS calls, sum(cost) AS cost_usd, "
        "sum(prompt_tokens + completion_tokens) AS tokens, "
        "round(avg(latency_ms)) AS mean_ms, max(latency_ms) AS max_ms "
        "FROM gpt_calls FINAL GROUP BY outcome ORDER BY calls DESC, outcome"
    )
    strategies = store.query(
        "SELECT started_ms, symbol, strategy_id, status, bars_active, trades, realized_pnl, "
        "confidence FROM strategies FINAL ORDER BY started_ms DESC, activation_id "
        f"LIMIT {LATEST_ROWS}"
    )
    return RunSummary(
        counts=counts,
        gpt_calls=gpt_calls,
        strategies=[
            {
                "started": _utc(int(r["started_ms"])),
                "symbol": r["symbol"],
                "strategy": visible_text(str(r["strategy_id"]), 60),
                "status": r["status"],
                "bars": r["bars_active"],
                "trades": r["trades"],
                "realized P&L": r["realized_pnl"],
                "confidence": r["confidence"],
            }
            for r in strategies
        ],
        decisions=decisions,
        positions=[
            p for p in positions if _dec(p["quantity"]) != 0 or _dec(p["realized_pnl"]) != 0
        ],
        cash=_dec(last[0]["cash"]) if last else None,
        equity=_dec(last[0]["equity"]) if last else None,
        dead_letter_reasons=reasons,
        dead_letter_reasons_cut=(
            counts.get("dead_letters", 0) - sum(int(r["n"]) for r in reasons) if more_reasons else 0
        ),
        alerts=alerts,
        equity_curve=[(int(r["ts_ms"]), _dec(r["equity"])) for r in curve],
        latest_dead_letters=[
            {
                "record time": _utc(int(r["record_ms"])),
                "topic": r["topic"],
                "partition": r["partition"],
                "offset": r["offset"],
                "reason": visible_text(str(r["reason"]), 2 * TEXT_CHARS),
                "payload": visible_text(str(r["payload"]), TEXT_CHARS, int(r["payload_chars"])),
            }
            for r in latest_dead
        ],
        text_counts={str(r["kind"]): int(r["n"]) for r in texts},
        latest_texts=[
            {
                "time": _utc(int(r["ts_ms"])),
                "kind": r["kind"],
                "id": visible_text(str(r["id"]), 40),
                "symbols": " ".join(r["symbols"]),
                "source": visible_text(str(r["source"]), 40),
                "headline or text": visible_text(str(r["text"]), TEXT_CHARS, int(r["text_chars"])),
            }
            for r in latest_texts
        ],
        closes=by_symbol,
    )


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def visible_text(text: str, limit: int, total_chars: int | None = None) -> str:
    """At most `limit` characters of untrusted text, with what a reader cannot see spelled out.

    Control, format (zero-width, bidi overrides), private-use and separator characters become
    `\\uXXXX`, so a right-to-left override cannot reverse the rest of a table row and a
    zero-width space cannot hide inside a symbol. Not HTML-safe by itself: callers escape.
    """
    out: list[str] = []
    for ch in text[:limit]:
        if ch != " " and unicodedata.category(ch)[0] in "CZ":
            code = ord(ch)
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    total = len(text) if total_chars is None else max(total_chars, len(text))
    if total > limit:
        out.append(f"… (+{total - limit:,} chars)")
    return "".join(out)


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


def plot_closes(summary: RunSummary, path: Path) -> Path | None:
    """PNG of each symbol's bar closes, rebased to 100 at its first bar: one small chart per
    symbol, since the shipped histories come from different decades and cadences."""
    series = {sym: pts for sym, pts in sorted(summary.closes.items()) if pts and pts[0][1] > 0}
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    ncols = min(3, len(series))
    nrows = math.ceil(len(series) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 2.6 * nrows), dpi=100, squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax, (sym, pts) in zip(flat, series.items(), strict=False):
        first = pts[0][1]
        xs = [datetime.fromtimestamp(ms / 1000, tz=UTC) for ms, _ in pts]
        ys = [float(c / first * 100) for _, c in pts]  # plotting only, not accounting
        ax.plot(xs, ys, linewidth=1.0, color="#2266aa")
        ax.axhline(100, color="#999999", linewidth=0.6, linestyle=":")
        ax.set_title(sym, fontsize=10)
        locator = mdates.AutoDateLocator(minticks=3, maxticks=7)  # type: ignore[no-untyped-call]
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
        ax.tick_params(labelsize=8)
        ax.xaxis.get_offset_text().set_fontsize(8)
        ax.grid(alpha=0.3)
    for ax in flat[len(series) :]:
        ax.set_visible(False)
    fig.suptitle("Bar close per symbol, first bar = 100", fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _cell(value: Any) -> str:
    """Decimals exactly, without the column's trailing zeros or an exponent (0E-12 -> 0)."""
    if isinstance(value, Decimal):
        if value == 0:
            return "0"
        text = format(value, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    return str(value)


def _money(value: Decimal | None) -> str:
    """An amount for the headline, as the console prints it: `44,293.48`; `n/a` if none."""
    return "n/a" if value is None else html.escape(f"{value:,.2f}")


def _table(rows: list[dict[str, Any]], css: str = "") -> str:
    """Every header and cell HTML-escaped: rows may hold text straight from a feed."""
    if not rows:
        return "<p><em>none</em></p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in r.values()) + "</tr>"
        for r in rows
    )
    cls = f" class='{html.escape(css)}'" if css else ""
    return f"<table{cls}><tr>{head}</tr>{body}</table>"


def write_report(
    summary: RunSummary,
    out_dir: Path,
    title: str,
    *,
    name: str = "report.html",
    portfolio: bool = True,
    note: str = "",
) -> Path:
    """The decision log's page. `portfolio` False leaves out cash, equity and the plots (a
    summary over several runs, each with its own portfolio, has no one equity); `note` is
    trusted HTML put under the title."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = plot_equity(summary, out_dir / "equity.png") if portfolio else None
    prices = plot_closes(summary, out_dir / "prices.png") if portfolio else None
    counts = [{"table": k, "rows": v} for k, v in summary.counts.items()]
    texts = [{"kind": k, "rows": v} for k, v in summary.text_counts.items()]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;margin-bottom:1.5em}"
        "img{max-width:100%;height:auto}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}"
        "table.text td{text-align:left;max-width:40em;overflow-wrap:anywhere}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        note,
        f"<p>Final cash <b>{_money(summary.cash)}</b>, equity <b>{_money(summary.equity)}</b></p>"
        if portfolio
        else "",
        "<img src='equity.png' alt='equity curve'>" if png else "",
        "<img src='prices.png' alt='bar close per symbol, rebased to 100'>" if prices else "",
        "<h2>Rows in the decision log</h2>",
        _table(counts),
        "<h2>Decisions by branch and status</h2>",
        _table(summary.decisions),
        "<h2>GPT strategy controller</h2>",
        _table(summary.gpt_calls)
        if summary.gpt_calls
        else "<p>No GPT call in this run: the local strategy engine decided (no OPENAI_API_KEY "
        "or OPENAI_BASE_URL, or strategy.controller = local).</p>",
        f"<h3>Latest {LATEST_ROWS} GPT strategies</h3>" if summary.strategies else "",
        _table(summary.strategies, css="text") if summary.strategies else "",
        "<h2>Positions (last snapshot per symbol)</h2>" if portfolio else "",
        _table(summary.positions) if portfolio else "",
        "<h2>Dead letters by reason</h2>",
        _table(summary.dead_letter_reasons, "text"),
        f"<p>... and {summary.dead_letter_reasons_cut:,} more dead letters in further groups "
        "(the <code>dead_letters</code> table has them all).</p>"
        if summary.dead_letter_reasons_cut
        else "",
        f"<h2>Latest {LATEST_ROWS} dead letters</h2>",
        "<p>Payloads as received, truncated; invisible characters shown as \\uXXXX.</p>",
        _table(summary.latest_dead_letters, css="text"),
        "<h2>News and social items stored</h2>",
        "<p>Untrusted text: stored as data, never read as instructions. GPT sees it only as "
        "fenced, cleaned quotes; it can never change a limit.</p>",
        _table(texts),
        f"<h2>Latest {LATEST_ROWS} news and social items</h2>",
        _table(summary.latest_texts, css="text"),
        "<h2>Alerts</h2>",
        _table(summary.alerts),
        "</body></html>",
    ]
    path = out_dir / name
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
