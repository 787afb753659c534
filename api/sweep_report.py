"""The sweep's own report page (`sweep.html`): the ranked points, what the winner is worth (the
deflated Sharpe ratio over every trial of its family, the probability of backtest overfitting,
each with its figures and a short explanation), and the walk-forward run.

It shows what it is given (`SweepResult`, `SweepValidation`) and computes no statistic; it
shares the backtest report's page furniture (styles, escaping, plotly.js inlined once, the
figure script that sets `<body data-charts>`), so it opens offline like the backtest reports.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from api import backtest_charts as charts
from api.backtest_report import (
    _CSS,
    _DRAW_JS,
    _SORT_JS,
    _esc,
    _num,
    _plotly_js,
    _script_json,
    _table,
    _text,
)
from api.sweep import SweepResult
from api.sweep_validation import SweepValidation

__all__ = ["DSR_ABOUT", "PBO_ABOUT", "render_sweep", "write_sweep_report"]

DSR_ABOUT = (
    "The deflated Sharpe ratio (Bailey & López de Prado, 2014) is the probability that the"
    " winner's true Sharpe ratio is above the best one luck alone would give over the number of"
    " configurations tried (all trials of this strategy family in the ledger, earlier sweeps"
    " included), allowing for the skew and fat tails of its returns and the length of the"
    " history. 0.95 or more: unlikely to be the luck of the search."
)
PBO_ABOUT = (
    "The probability of backtest overfitting (Bailey, Borwein, López de Prado & Zhu, 2015)"
    " cuts the history into blocks and, for every way of picking half of them, takes the best"
    " configuration on that half and ranks it on the other half. PBO is the share of splits"
    " where it lands at or below the median: about 0.5 for configurations that differ by noise"
    " only, near 0 when the in-sample choice carries over."
)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _stat(value: Any) -> str:
    if value is None or isinstance(value, str):
        return "—" if value is None else value
    return f"{float(value):.4f}"


def _worth(v: SweepValidation, figures: dict[str, Any]) -> list[str]:
    parts = ["<h2>What the winner is worth</h2>"]
    if v.ledger_note:
        parts.append(f"<p class='meta'>{_esc(v.ledger_note, 400)}</p>")
    parts.append("<h3>Deflated Sharpe ratio</h3>")
    if v.dsr is not None:
        d = v.dsr
        parts.append(f"<p><strong>{_esc(d.explain(), 600)}</strong></p>")
        parts.append(
            _table(
                ["figure", "value"],
                [
                    [_text("Sharpe ratio (per period)"), _num(_fmt(d.sharpe, 4))],
                    [
                        _text("luck's best Sharpe ratio SR0 (per period)"),
                        _num(_fmt(d.benchmark, 4)),
                    ],
                    [_text("trials (N)"), _num(f"{d.n_trials:,}")],
                    [
                        _text("variance of the trials' Sharpe ratios"),
                        _num(f"{d.trials_variance:.3g}"),
                    ],
                    [_text("periods"), _num(f"{d.n_obs:,}")],
                    [_text("skew"), _num(_fmt(d.skew, 2))],
                    [_text("kurtosis"), _num(_fmt(d.kurtosis, 2))],
                ],
                "figures",
                "dsr",
            )
        )
    else:
        parts.append(f"<p>DSR not available: {_esc(v.dsr_note, 300)}</p>")
    parts.append(f"<p class='meta'>{html.escape(DSR_ABOUT)}</p>")
    parts.append("<h3>Probability of backtest overfitting</h3>")
    if v.pbo is not None:
        p = v.pbo
        parts.append(f"<p><strong>{_esc(p.explain(), 600)}</strong></p>")
        figures["pbo-logits"] = _logits_figure([float(x) for x in p.logits])
        parts.append("<div class='chart' id='pbo-logits'></div>")
    else:
        parts.append(f"<p>PBO not available: {_esc(v.pbo_note, 300)}</p>")
    parts.append(f"<p class='meta'>{html.escape(PBO_ABOUT)}</p>")
    return parts


def _logits_figure(logits: list[float]) -> dict[str, Any]:
    import plotly.graph_objects as go

    return charts._figure(
        [go.Histogram(x=logits, nbinsx=40, marker={"color": "#2266aa"}, name="splits")],
        {
            "title": {"text": "Logit of the in-sample winner's out-of-sample rank (<= 0: overfit)"},
            "xaxis": {"title": {"text": "logit"}},
            "yaxis": {"title": {"text": "splits"}},
            "shapes": [
                {
                    "type": "line",
                    "x0": 0,
                    "x1": 0,
                    "yref": "paper",
                    "y0": 0,
                    "y1": 1,
                    "line": {"color": "#c62828", "dash": "dot"},
                }
            ],
        },
    )


def _walk(v: SweepValidation, figures: dict[str, Any]) -> list[str]:
    w = v.walk
    if w is None:
        return []
    parts = ["<h2>Walk-forward</h2>", f"<p>{_esc(w.summary(), 600)}</p>"]
    equity = charts.equity_figure(list(w.equity), [])
    equity["layout"]["title"]["text"] = "Stitched out-of-sample equity"
    figures["walk-equity"] = equity
    parts.append("<div class='chart equity' id='walk-equity'></div>")
    rows = []
    for r, (is_ms, oos_ms, end_ms) in zip(w.windows, v.window_times, strict=True):
        params = ", ".join(f"{k}={val}" for k, val in r.choice.params.items())
        rows.append(
            [
                _num(str(r.window.index)),
                _text(charts.iso(is_ms)),
                _text(f"{charts.iso(oos_ms)} to {charts.iso(end_ms)}"),
                _text(params, 300),
                _num(_fmt(r.is_sharpe, 2)),
                _num(_fmt(r.oos_sharpe, 2)),
                _num(_fmt(r.efficiency, 2)),
                _num(f"{r.oos_return:.2%}"),
                _num(str(r.oos_trades)),
            ]
        )
    parts.append(
        "<div class='wide'>"
        + _table(
            [
                "window",
                "in-sample from",
                "out-of-sample",
                "chosen",
                "IS Sharpe",
                "OOS Sharpe",
                "efficiency",
                "OOS return",
                "OOS trades",
            ],
            rows,
            "sortable",
            "walk-windows",
        )
        + "</div>"
    )
    return parts


def render_sweep(result: SweepResult, validation: SweepValidation, symbol: str) -> str:
    """The whole page as one string."""
    title = f"Sweep of {validation.family} on {symbol}"
    figures: dict[str, Any] = {}
    keys = list(dict.fromkeys([result.rank_by, "sharpe_ratio", "return", "max_drawdown"]))
    top = [
        [
            _num(str(i)),
            _text(", ".join(f"{k}={val}" for k, val in row.params.items()), 300),
            *[_num(_stat(row.statistics.get(k))) for k in keys],
            _num(str(row.trades)),
        ]
        for i, row in enumerate(result.top, 1)
    ]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{_esc(title, 120)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title, 120)}</h1>",
        f"<p class='meta'>{_esc(result.summary(), 400)} · sweep <code>"
        f"{_esc(validation.sweep_id, 80)}</code> · returns per {_esc(result.period, 10)}</p>",
        "<h2>Best points</h2>",
        _table(["#", "parameters", *keys, "trades"], top, "sortable", "sweep-top"),
        *_worth(validation, figures),
        *_walk(validation, figures),
        f"<script>{_plotly_js()}</script>",
        f"<script>const FIGURES={_script_json(figures)};{_DRAW_JS}{_SORT_JS}</script>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write_sweep_report(
    result: SweepResult, validation: SweepValidation, symbol: str, path: Path
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_sweep(result, validation, symbol), encoding="utf-8")
    return path
