"""The page of `stratflow validate`: every check's verdict with its numbers, and the charts.

One self-contained HTML file, built as the backtest report is (`api.backtest_report`: the same
styles, plotly.js inlined once, each figure a JSON spec drawn by `Plotly.newPlot`, nothing
fetched from outside the file, `data-charts` on <body> saying when all are drawn). Per strategy
and symbol: the verdict table, each check's figures (value, limit, passed, why), the first
differing values of a look-ahead, and three charts: the recursive check's difference against
the warm-up (log scale, tolerance line), the lag test's two equity curves, and the neighbours'
returns against the original's. Untrusted text (strategy names, symbols, messages) is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from api import backtest_charts as charts
from api.backtest_report import _CSS, _DRAW_JS, _esc, _plotly_js, _script_json
from models.validation.fragility import Fragility
from models.validation.lag import LagReport
from models.validation.lookahead import LookaheadReport
from models.validation.perturb import PerturbReport
from models.validation.recursive import RecursiveReport
from models.validation.verdicts import CheckResult, Figure, worst

__all__ = ["render", "write_validate_report"]

_EXTRA_CSS = """
.pass{color:#1a7f37;font-weight:bold}.warn{color:#b26a00;font-weight:bold}
.fail{color:#c62828;font-weight:bold}td.failed{background:#fdecea}
"""


def _num(x: float | int | None) -> str:
    if x is None:
        return "-"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:.6g}"


def _outcome(result: CheckResult) -> str:
    value = str(result.outcome)
    return f"<span class='{value}'>{value}</span>"


def _figures(figures: Sequence[Figure]) -> str:
    rows = [
        "<tr>"
        f"<td>{_esc(f.name, 80)}</td><td class='num'>{_num(f.value)}</td>"
        f"<td class='num'>{_num(f.limit)}</td>"
        f"<td{' class=failed' if not f.passed else ''}>"
        f"{'-' if f.limit is None else ('yes' if f.passed else 'no')}</td>"
        f"<td>{_esc(f.message, 300)}</td></tr>"
        for f in figures
    ]
    head = "<tr><th>figure</th><th>value</th><th>limit</th><th>passed</th><th>why</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>" if rows else ""


def _differences(report: LookaheadReport) -> str:
    if not report.differences:
        return ""
    rows = "".join(
        f"<tr><td>{_esc(d.name, 60)}</td><td>{d.path}</td><td class='num'>{d.cut:,}</td>"
        f"<td class='num'>{d.bar:,}</td><td class='num'>{d.truncated:.10g}</td>"
        f"<td class='num'>{d.full:.10g}</td></tr>"
        for d in report.differences
    )
    return (
        "<p>First value that differs, per feature or signal:</p><table><tr><th>name</th>"
        "<th>path</th><th>bars given</th><th>bar</th><th>with the cut history</th>"
        f"<th>with all bars</th></tr>{rows}</table>"
    )


def _figure(data: list[Any], layout: dict[str, Any]) -> dict[str, Any]:
    import plotly.graph_objects as go

    base = {
        "template": "plotly_white",
        "margin": {"l": 60, "r": 20, "t": 56, "b": 40},
        "height": 340,
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
    }
    spec: dict[str, Any] = go.Figure(data=data, layout={**base, **layout}).to_plotly_json()
    return spec


def recursive_figure(report: RecursiveReport) -> dict[str, Any]:
    import plotly.graph_objects as go

    floor = report.tolerance / 1000  # a zero difference drawn at the bottom of the log axis
    data = [
        go.Scatter(
            x=list(d.warmups),
            y=[max(v, floor) if v != float("inf") else None for v in d.differences],
            name=html.escape(d.name),
            mode="lines+markers",
        )
        for d in report.features
    ]
    data.append(
        go.Scatter(
            x=[
                min(f.warmups[0] for f in report.features),
                max(f.warmups[-1] for f in report.features),
            ],
            y=[report.tolerance, report.tolerance],
            name="tolerance",
            mode="lines",
            line={"dash": "dot", "color": "#c62828"},
        )
    )
    return _figure(
        data,
        {
            "title": {"text": "Recursive: relative difference from the full-history value"},
            "xaxis": {"type": "log", "title": {"text": "warm-up (bars before the target bar)"}},
            "yaxis": {"type": "log", "tickformat": ".1e"},
        },
    )


def lag_figure(report: LagReport, start_ms: Sequence[int]) -> dict[str, Any]:
    import plotly.graph_objects as go

    data = []
    for run, name, colour in (
        (report.normal, "as decided (next open)", "#2266aa"),
        (report.lagged, f"signals {report.delay} bar(s) later", "#c62828"),
    ):
        points = charts.thin_line(
            [(int(t), float(e)) for t, e in zip(start_ms, run.equity, strict=True)]
        )
        data.append(
            go.Scatter(
                x=[charts.iso(t) for t, _ in points],
                y=[v for _, v in points],
                name=name,
                mode="lines",
                line={"color": colour},
            )
        )
    return _figure(
        data,
        {
            "title": {"text": "Lag: equity with execution one bar later"},
            "xaxis": {"type": "date", "title": {"text": "time (UTC)"}},
            "yaxis": {"title": {"text": "equity"}, "tickformat": ",.0f"},
        },
    )


def perturb_figure(report: PerturbReport) -> dict[str, Any]:
    import plotly.graph_objects as go

    labels = [html.escape(e.neighbour.label) for e in report.evaluated]
    returns = [e.run.total_return for e in report.evaluated]
    data = [
        go.Bar(
            x=labels,
            y=returns,
            name="neighbours",
            marker={"color": ["#1a7f37" if r > 0 else "#c62828" for r in returns]},
        )
    ]
    if report.original is not None:
        data.append(
            go.Scatter(
                x=labels,
                y=[report.original.total_return] * len(labels),
                name="original",
                mode="lines",
                line={"dash": "dash", "color": "#2266aa"},
            )
        )
    return _figure(
        data,
        {
            "title": {"text": "Perturbation: return of each neighbour"},
            "yaxis": {"tickformat": ".1%", "title": {"text": "total return"}},
        },
    )


def _section(i: int, c: Fragility, figures: dict[str, Any], start_ms: Sequence[int]) -> str:
    parts = [
        f"<section id='s-{i}'><h2>{_esc(c.strategy, 80)} <small>{_esc(c.symbol, 30)} · "
        f"{c.bars:,} bars</small></h2>",
    ]

    def chart(ident: str, spec: dict[str, Any]) -> None:
        figures[ident] = spec
        parts.append(f"<div class='chart' id='{ident}'></div>")

    for result in c.results:
        parts.append(f"<h3>{html.escape(result.check)}: {_outcome(result)}</h3>")
        parts.append(f"<p>{_esc(result.summary, 600)}</p>")
        parts.append(_figures(result.figures))
        if result.check == "lookahead" and c.lookahead is not None:
            parts.append(_differences(c.lookahead))
        if result.check == "recursive" and c.recursive is not None and c.recursive.features:
            chart(f"recursive-{i}", recursive_figure(c.recursive))
        if result.check == "lag" and c.lag is not None and len(start_ms) == c.bars:
            chart(f"lag-{i}", lag_figure(c.lag, start_ms))
        if result.check == "perturb" and c.perturb is not None and c.perturb.evaluated:
            chart(f"perturb-{i}", perturb_figure(c.perturb))
    parts.append("</section>")
    return "\n".join(parts)


def _summary(checked: Sequence[Fragility]) -> str:
    rows = "".join(
        f"<tr><td><a href='#s-{i}'>{_esc(c.strategy, 80)}</a></td><td>{_esc(c.symbol, 30)}</td>"
        f"<td>{html.escape(r.check)}</td><td>{_outcome(r)}</td><td>{_esc(r.summary, 300)}</td></tr>"
        for i, c in enumerate(checked)
        for r in c.results
    )
    return (
        "<table><tr><th>strategy</th><th>symbol</th><th>check</th><th>outcome</th>"
        f"<th>summary</th></tr>{rows}</table>"
    )


def render(
    label: str, checked: Sequence[Fragility], times: Sequence[Sequence[int]] | None = None
) -> str:
    """The page; `times[i]`: the bar start times of `checked[i]` (the lag chart's x axis)."""
    figures: dict[str, Any] = {}
    sections = [
        _section(i, c, figures, times[i] if times is not None else ())
        for i, c in enumerate(checked)
    ]
    outcome = str(worst(c.outcome for c in checked))
    title = f"Validation of {label}"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{_esc(title, 120)}</title><style>{_CSS}{_EXTRA_CSS}</style></head><body>",
        f"<h1>{_esc(title, 120)}</h1>",
        f"<p class='meta'>Overall: <span class='{outcome}'>{outcome}</span> · "
        f"{len(checked)} strategy/symbol pair(s) · look-ahead, recursive (warm-up), one-bar lag"
        " and parameter perturbation checks; all times UTC.</p>",
        "<h2>Verdicts</h2>",
        _summary(checked) if checked else "<p><em>Nothing was checked.</em></p>",
        *sections,
        f"<script>{_plotly_js()}</script>",
        f"<script>const FIGURES={_script_json(figures)};{_DRAW_JS}</script>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_validate_report(
    label: str,
    checked: Sequence[Fragility],
    path: Path,
    times: Sequence[Sequence[int]] | None = None,
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(label, checked, times), encoding="utf-8")
    return path
