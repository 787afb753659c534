"""The backtest report: one self-contained HTML file a trader opens offline.

Inputs are plain values (`BacktestReport`): the equity curve, each symbol's bars, the round
trips and the statistics another module computed, the settings used and the GPT calls. Nothing
here reads a store or recomputes a statistic, so the page shows exactly what the run measured.

One file per call, however many backtests: each time-coherent dataset (GOOG 2004-13, EURUSD
2017-18, a generated day of ticks) is its own backtest with its own time axis, and the page sets
them side by side (a comparison table, then one section each) instead of chaining eras into one
curve. plotly.js is inlined once, every figure is a JSON spec drawn by `Plotly.newPlot`, and the
page references nothing outside itself: it works from a USB stick on a plane.

Untrusted text (strategy ids, exit reasons, symbols, settings values) is made visible
(`visible_text`) and HTML-escaped in tables, hover labels and titles alike; the figures' JSON is
embedded with `<`, `>` and `&` as unicode escapes, so no string can close the script.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from api import backtest_charts as charts
from api import report_format as fmt
from api.backtest_charts import OhlcBar
from api.report import visible_text
from models.performance.types import RoundTrip, Statistic

__all__ = ["BacktestReport", "Breakdown", "GptCalls", "OhlcBar", "render", "write_backtest_report"]

SECRET_KEYS = re.compile(r"key|secret|token|password|passphrase", re.IGNORECASE)
"""Settings whose name says they hold a credential are shown as `***`, never their value."""


@dataclass(frozen=True, slots=True)
class GptCalls:
    """GPT calls of one outcome ("ok", "timeout", "refused", ...) in a backtest."""

    outcome: str
    calls: int
    cost_usd: Decimal
    tokens: int
    mean_latency_ms: float | None = None
    max_latency_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Breakdown:
    """A table of statistics by something (symbol, strategy, controller): one row per group,
    each row the same statistics in the same order; the columns are the first row's labels."""

    title: str
    rows: Sequence[Sequence[Statistic]]


@dataclass(frozen=True, slots=True)
class BacktestReport:
    """One backtest over one time-coherent dataset, as the report shows it.

    `equity` is (epoch ms, equity) in time order; `buy_and_hold` is the benchmark on the same
    clock, or None to compute it (`charts.buy_and_hold`: equal weight of every symbol in `bars`
    from `initial_cash`). `bars` may be long: the charts thin them (`charts.CHART_POINTS`)."""

    title: str
    run_id: str
    dataset: str
    initial_cash: Decimal
    equity: Sequence[tuple[int, Decimal]]
    bars: Mapping[str, Sequence[OhlcBar]]
    trades: Sequence[RoundTrip]
    statistics: Sequence[Statistic]
    buy_and_hold: Sequence[tuple[int, Decimal]] | None = None
    breakdowns: Sequence[Breakdown] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    gpt_calls: Sequence[GptCalls] = ()
    currency: str = "USD"
    in_sample: str = ""
    """The GPT decisions' label against the model's knowledge cutoff
    (`models.validation.cutoff.RunLabel.banner`); "" without GPT decisions."""
    in_sample_flagged: bool = False
    """True when some GPT decision may come from the model's memory (shown as a warning)."""

    def benchmark(self) -> list[tuple[int, Decimal]]:
        if self.buy_and_hold is not None:
            return list(self.buy_and_hold)
        return charts.buy_and_hold(self.bars, self.initial_cash, [ms for ms, _ in self.equity])


def _esc(text: str, limit: int = 200) -> str:
    """Untrusted text for a page: hidden characters spelled out, then HTML-escaped."""
    return html.escape(visible_text(text, limit))


def _table(
    head: Sequence[str], rows: Sequence[Sequence[tuple[str, bool]]], css: str, ident: str = ""
) -> str:
    """Cells are (HTML, is_number), built by `_text`, `_num` or `_stat_cell`, which escape
    what they are given; numbers are right-aligned."""
    attr = f" id='{ident}'" if ident else ""
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>"
        + "".join(f"<td class='num'>{t}</td>" if n else f"<td>{t}</td>" for t, n in r)
        + "</tr>"
        for r in rows
    )
    return f"<table class='{css}'{attr}><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _text(value: str, limit: int = 200) -> tuple[str, bool]:
    return _esc(value, limit), False


def _num(value: str) -> tuple[str, bool]:
    return html.escape(value), True


_NUMERIC_UNITS = {"money", "pct", "ratio", "count", "duration"}


def _stat_cell(stat: Statistic | None) -> tuple[str, bool]:
    if stat is None:
        return _num("—")
    if stat.unit in _NUMERIC_UNITS and not isinstance(stat.value, str):
        return _num(fmt.statistic(stat))
    return html.escape(fmt.statistic(stat)), False


def _period(report: BacktestReport) -> str:
    if not report.equity:
        return fmt.NONE
    first, last = report.equity[0][0], report.equity[-1][0]
    return f"{fmt.utc(first)} to {fmt.utc(last)} ({fmt.duration(last - first)})"


def _total_return(curve: Sequence[tuple[int, Decimal]], initial: Decimal) -> float | None:
    return float(curve[-1][1] / initial - 1) if curve and initial > 0 else None


def _comparison(reports: Sequence[BacktestReport], benchmarks: Sequence[list[Any]]) -> str:
    """One column per backtest: what it ran on, then every statistic (in the order they first
    appear; `—` where a backtest lacks one). Final equity, return, buy and hold, round trips and
    GPT cost are worked out here only where the statistics do not carry a row of that label."""
    head = ["", *(visible_text(r.dataset, 60) for r in reports)]
    rows: list[list[tuple[str, bool]]] = [
        [_text("Title"), *(_text(r.title, 80) for r in reports)],
        [_text("Period (UTC)"), *(_text(_period(r)) for r in reports)],
        [_text("Symbols"), *(_text(" ".join(sorted(r.bars)), 120) for r in reports)],
        [_text("Initial cash"), *(_num(fmt.money(r.initial_cash)) for r in reports)],
    ]
    by_key: list[dict[str, Statistic]] = [{s.key: s for s in r.statistics} for r in reports]
    labels: dict[str, str] = {}
    for r in reports:
        for s in r.statistics:
            labels.setdefault(s.key, s.label)
    rows += [
        [_text(label), *(_stat_cell(k.get(key)) for k in by_key)] for key, label in labels.items()
    ]
    pairs = list(zip(reports, benchmarks, strict=True))
    derived: list[tuple[str, list[str]]] = [
        ("Final equity", [fmt.money(r.equity[-1][1] if r.equity else None) for r in reports]),
        ("Return", [fmt.pct(_total_return(r.equity, r.initial_cash)) for r in reports]),
        ("Buy and hold return", [fmt.pct(_total_return(b, r.initial_cash)) for r, b in pairs]),
        ("Round trips", [fmt.count(len(r.trades)) for r in reports]),
        (
            "GPT cost (USD)",
            [fmt.money(sum((g.cost_usd for g in r.gpt_calls), Decimal(0)), 4) for r in reports],
        ),
    ]
    known = {label.casefold() for label in labels.values()}
    rows += [
        [_text(label), *(_num(v) for v in values)]
        for label, values in derived
        if label.casefold() not in known
    ]
    return _table(head, rows, "compare", "comparison")


def _statistics(stats: Sequence[Statistic], ident: str) -> str:
    rows = [[_text(s.label), _stat_cell(s)] for s in stats]
    return _table(["Statistic", "Value"], rows, "stats", ident)


def _breakdown(b: Breakdown, ident: str) -> str:
    if not b.rows:
        return f"<h3>{_esc(b.title)}</h3><p><em>none</em></p>"
    head = [visible_text(s.label, 60) for s in b.rows[0]]
    rows = [[_stat_cell(s) for s in row] for row in b.rows]
    return f"<h3>{_esc(b.title)}</h3>" + _table(head, rows, "stats breakdown", ident)


TRADE_COLUMNS = (
    "#",
    "Symbol",
    "Direction",
    "Entry time",
    "Exit time",
    "Entry price",
    "Exit price",
    "Size",
    "P&L",
    "Return",
    "Fees",
    "Duration",
    "Exit reason",
    "Strategy",
    "Controller",
)


def _trades(trips: Sequence[RoundTrip], ident: str) -> str:
    if not trips:
        return "<p><em>No round trip in this backtest.</em></p>"
    rows = [
        [
            _num(str(i)),
            _text(t.symbol, 30),
            (f"<span class='{t.direction}'>{html.escape(t.direction)}</span>", False),
            _text(fmt.utc(t.entry_ms)),
            _text(fmt.utc(t.exit_ms)),
            _num(fmt.price(t.entry_price)),
            _num(fmt.price(t.exit_price)),
            _num(fmt.quantity(t.quantity)),
            _num(fmt.money(t.pnl)),
            _num(fmt.pct(t.return_pct)),
            _num(fmt.money(t.fees)),
            _num(fmt.duration(t.duration_ms)),
            _text(t.exit_reason, 80),
            _text(t.strategy, 60),
            _text(t.controller, 30),
        ]
        for i, t in enumerate(sorted(trips, key=lambda t: (t.entry_ms, t.symbol)), start=1)
    ]
    return f"<div class='wide'>{_table(TRADE_COLUMNS, rows, 'trades sortable', ident)}</div>"


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, Mapping):
        out: list[tuple[str, str]] = []
        for k, v in value.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if SECRET_KEYS.search(str(k)) and not isinstance(v, Mapping):
                out.append((key, "***" if v not in (None, "") else ""))
            else:
                out += _flatten(v, key)
        return out or [(prefix, "{}")]
    if isinstance(value, list | tuple):
        if all(not isinstance(v, Mapping | list | tuple) for v in value):
            return [(prefix, ", ".join(str(v) for v in value))]
        return [row for i, v in enumerate(value) for row in _flatten(v, f"{prefix}[{i}]")]
    return [(prefix, "" if value is None else str(value))]


def _settings(settings: Mapping[str, Any]) -> str:
    if not settings:
        return "<p><em>No settings recorded.</em></p>"
    rows = [[_text(k, 120), _text(v, 300)] for k, v in _flatten(settings)]
    return (
        f"<details><summary>Settings used ({len(rows)} values; credentials hidden)</summary>"
        + _table(["Setting", "Value"], rows, "settings")
        + "</details>"
    )


def _gpt(calls: Sequence[GptCalls], ident: str) -> str:
    if not calls:
        return "<p>No GPT call in this backtest.</p>"

    def ms(v: float | None) -> tuple[str, bool]:
        return _num(fmt.NONE if v is None else f"{v:,.0f} ms")

    rows = [
        [
            _text(c.outcome, 60),
            _num(fmt.count(c.calls)),
            _num(fmt.money(c.cost_usd, 4)),
            _num(fmt.count(c.tokens)),
            ms(c.mean_latency_ms),
            ms(c.max_latency_ms),
        ]
        for c in calls
    ]
    rows.append(
        [
            ("<b>total</b>", False),
            _num(fmt.count(sum(c.calls for c in calls))),
            _num(fmt.money(sum((c.cost_usd for c in calls), Decimal(0)), 4)),
            _num(fmt.count(sum(c.tokens for c in calls))),
            _num(""),
            ms(
                max((c.max_latency_ms for c in calls if c.max_latency_ms is not None), default=None)
            ),
        ]
    )
    head = ["Outcome", "Calls", "Cost (USD)", "Tokens", "Mean latency", "Worst latency"]
    return _table(head, rows, "gpt", ident)


def _section(i: int, r: BacktestReport, benchmark: list[Any], figures: dict[str, Any]) -> str:
    """One backtest: its charts (placeholders filled by the figure script) and tables."""
    parts = [
        f"<section class='backtest' id='bt-{i}'>",
        f"<h2>{_esc(r.title, 120)} <small>{_esc(r.dataset, 60)}</small></h2>",
        f"<p class='meta'>run <code>{_esc(r.run_id, 80)}</code> · {html.escape(_period(r))} · "
        f"initial cash {html.escape(fmt.money(r.initial_cash))} {_esc(r.currency, 10)} · "
        f"symbols {_esc(' '.join(sorted(r.bars)), 200)}</p>",
    ]
    if r.in_sample:
        css = "banner insample" if r.in_sample_flagged else "banner"
        parts.append(f"<p class='{css}' id='in-sample-{i}'>{_esc(r.in_sample, 600)}</p>")

    def chart(ident: str, spec: dict[str, Any], kind: str) -> None:
        figures[ident] = spec
        parts.append(f"<div class='chart {kind}' id='{ident}'></div>")

    if r.equity:
        chart(f"equity-{i}", charts.equity_figure(r.equity, benchmark), "equity")
        chart(f"drawdown-{i}", charts.drawdown_figure(r.equity), "drawdown")
    else:
        parts.append("<p><em>No equity point in this backtest.</em></p>")
    for j, (symbol, bars) in enumerate(sorted(r.bars.items())):
        if bars:
            trips = [t for t in r.trades if t.symbol == symbol]
            chart(f"price-{i}-{j}", charts.price_figure(symbol, bars, trips), "price")
    months = charts.monthly_returns(r.equity, r.initial_cash)
    if months:
        chart(f"monthly-{i}", charts.monthly_figure(months), "monthly")
    parts += ["<h3>Statistics</h3>", _statistics(r.statistics, f"stats-{i}")]
    parts += [_breakdown(b, f"breakdown-{i}-{k}") for k, b in enumerate(r.breakdowns)]
    parts += [
        f"<h3>Trades ({len(r.trades):,} round trips; click a column to sort)</h3>",
        _trades(r.trades, f"trades-{i}"),
        "<h3>GPT calls and cost</h3>",
        _gpt(r.gpt_calls, f"gpt-{i}"),
        "<h3>Settings</h3>",
        _settings(r.settings),
        "</section>",
    ]
    return "\n".join(parts)


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#222}
h1{margin-bottom:.2em}h2{border-top:2px solid #2266aa;padding-top:.6em;margin-top:2em}
h2 small{color:#666;font-weight:normal;font-size:.7em}.meta{color:#555}
nav a{margin-right:1em}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
.wide{overflow-x:auto}table.trades td{white-space:nowrap}
table.trades td:nth-last-child(-n+3){white-space:normal;min-width:8em;overflow-wrap:anywhere}
th{background:#f3f5f8;position:sticky;top:0}td.num{text-align:right;white-space:nowrap}
table.settings td{overflow-wrap:anywhere;max-width:50em}
table.sortable th{cursor:pointer}.long{color:#1a7f37}.short{color:#c62828}
.chart{width:100%;min-height:200px}details summary{cursor:pointer;margin:.5em 0}
.banner{padding:.6em 1em;border:1px solid #ccc;background:#f6f8fa}
.banner.insample{border:2px solid #c62828;background:#fdecea;color:#8b1a1a;font-weight:bold}
"""

# Sorting the trade list by a click on its header; numbers sort by value (the cell text
# without separators, %, and "N days HH:MM" as minutes), text alphabetically.
_SORT_JS = """
function cellKey(t){const d=t.match(/^(-?\\d+) days? (\\d\\d):(\\d\\d)/);
if(d){return (+d[1])*1440+(+d[2])*60+(+d[3]);}
const n=parseFloat(t.replace(/[,%\\s]/g,''));return isNaN(n)?t:n;}
document.querySelectorAll('table.sortable').forEach(function(tb){
tb.querySelectorAll('th').forEach(function(th,c){th.addEventListener('click',function(){
const body=tb.tBodies[0];const rows=Array.from(body.rows);const up=th.dataset.dir!=='up';
th.dataset.dir=up?'up':'down';rows.sort(function(a,b){
const x=cellKey(a.cells[c].textContent),y=cellKey(b.cells[c].textContent);
const r=(typeof x===typeof y)?(x<y?-1:x>y?1:0):(typeof x==='number'?-1:1);return up?r:-r;});
rows.forEach(function(r){body.appendChild(r);});});});});
"""

# Draws every figure; `data-charts` on <body> says when all are drawn ("ready") or that one
# failed ("failed", with the error on the console), for a reader's tools and the browser test.
_DRAW_JS = """
const config={responsive:true,displaylogo:false};
Promise.all(Object.keys(FIGURES).map(function(id){
const f=FIGURES[id];return Plotly.newPlot(id,f.data,f.layout,config);}))
.then(function(){document.body.dataset.charts='ready';})
.catch(function(e){document.body.dataset.charts='failed';console.error(e);});
"""


def _script_json(value: Any) -> str:
    """JSON that is safe inside <script>: nothing in it can close the element or start a
    comment, whatever the strings hold."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    bundle: str = get_plotlyjs()
    if "</script" in bundle.lower():  # would end the inline element early
        raise RuntimeError("the plotly.js bundle cannot be inlined: it contains </script")
    return bundle


def render(reports: Sequence[BacktestReport], title: str | None = None) -> str:
    """The whole page as one string: styles, tables, plotly.js and the figures' JSON."""
    if not reports:
        raise ValueError("a backtest report needs at least one backtest")
    title = title or (reports[0].title if len(reports) == 1 else "Backtests side by side")
    benchmarks = [r.benchmark() for r in reports]
    figures: dict[str, Any] = {}
    sections = [
        _section(i, r, b, figures) for i, (r, b) in enumerate(zip(reports, benchmarks, strict=True))
    ]
    nav = " ".join(f"<a href='#bt-{i}'>{_esc(r.dataset, 60)}</a>" for i, r in enumerate(reports))
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{_esc(title, 120)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title, 120)}</h1>",
        f"<p class='meta'>{len(reports)} backtest{'s' if len(reports) != 1 else ''}, each on its "
        "own dataset and clock; all times UTC; money rounded to cents for reading.</p>",
        f"<nav>{nav}</nav>" if len(reports) > 1 else "",
        "<h2>Comparison</h2>" + _comparison(reports, benchmarks) if len(reports) > 1 else "",
        *sections,
        f"<script>{_plotly_js()}</script>",
        f"<script>const FIGURES={_script_json(figures)};{_DRAW_JS}{_SORT_JS}</script>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_backtest_report(
    reports: Sequence[BacktestReport], path: Path, title: str | None = None
) -> Path:
    """Write the page for `reports` (one backtest, or several side by side) to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(reports, title), encoding="utf-8")
    return path
