"""The series behind the backtest report's charts, and the plotly figures drawn from them.

Split from `api.backtest_report` (the data model, the tables and the page) so each stays short.
The computations here (buy and hold, drawdown, monthly returns, thinning) are plain functions of
the report's inputs; plotly is imported only where a figure is built, and every figure is handed
back as a JSON-ready dict, so the page embeds it without plotly's own HTML writer (which would
add a CDN reference or a second copy of plotly.js).

Floats appear only on the way into a chart: the money itself stays Decimal.
"""

from __future__ import annotations

import html
import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from api import report_format as fmt
from api.report import visible_text
from models.performance.types import RoundTrip

V = TypeVar("V", Decimal, float)

CHART_POINTS = 5000
"""Points per line series, and candles per symbol, a chart draws at most (plus the bars the
trades sit in, kept whole): more would not show on a screen and would only make the file big."""


@dataclass(frozen=True, slots=True)
class OhlcBar:
    """One bar of a symbol's price chart; `ts_ms` is the bar's start (epoch ms, UTC)."""

    ts_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal


def iso(ms: int) -> str:
    """A chart's x value: plotly reads `YYYY-MM-DD HH:MM:SS` as a date, and the page is UTC."""
    return fmt.utc(ms)


def buy_and_hold(
    bars: Mapping[str, Sequence[OhlcBar]], initial_cash: Decimal, at_ms: Sequence[int]
) -> list[tuple[int, Decimal]]:
    """Equal-weight buy and hold of every symbol with bars: each gets `initial_cash / n`, bought
    at its first close and held; before a symbol's first bar its share waits as cash. Valued at
    each of `at_ms` with the last close at or before it (the equity curve's times, so both lines
    share their x values)."""
    usable = {s: b for s, b in bars.items() if b and b[0].close > 0}
    if not usable or not at_ms:
        return []
    share = initial_cash / len(usable)
    starts = {s: [b.ts_ms for b in series] for s, series in usable.items()}
    out: list[tuple[int, Decimal]] = []
    for ms in at_ms:
        value = Decimal(0)
        for sym, series in usable.items():
            i = bisect_right(starts[sym], ms) - 1
            value += share if i < 0 else share * series[i].close / series[0].close
        out.append((ms, value))
    return out


def drawdown(curve: Sequence[tuple[int, Decimal]]) -> list[tuple[int, float]]:
    """Underwater curve: at each point the fall from the highest equity so far, as a fraction
    (0 at a new high, -0.25 a quarter below it)."""
    peak: Decimal | None = None
    out: list[tuple[int, float]] = []
    for ms, value in curve:
        peak = value if peak is None or value > peak else peak
        out.append((ms, float(value / peak - 1) if peak > 0 else 0.0))
    return out


def monthly_returns(
    curve: Sequence[tuple[int, Decimal]], initial: Decimal | None = None
) -> dict[tuple[int, int], float]:
    """(year, month) -> that month's return, from the last equity of the month before (for the
    first month: `initial`, else the curve's first point) to the month's last equity."""
    if not curve:
        return {}
    last: dict[tuple[int, int], Decimal] = {}
    for ms, value in curve:
        day = datetime.fromtimestamp(ms / 1000, tz=UTC)
        last[(day.year, day.month)] = value
    out: dict[tuple[int, int], float] = {}
    before = initial if initial is not None else curve[0][1]
    for month, end in last.items():
        out[month] = float(end / before - 1) if before > 0 else 0.0
        before = end
    return out


def thin_line(points: Sequence[tuple[int, V]], limit: int = CHART_POINTS) -> list[tuple[int, V]]:
    """At most about `limit` points of a line, keeping its shape: the series is cut into
    `limit / 3` runs and each keeps its first, lowest and highest point (a drawdown's trough and
    a new high survive thinning, which every-nth sampling would drop)."""
    if len(points) <= limit:
        return list(points)
    runs = max(1, limit // 3)
    size = math.ceil(len(points) / runs)
    keep: set[int] = {len(points) - 1}
    for start in range(0, len(points), size):
        idx = range(start, min(start + size, len(points)))
        keep.add(start)
        keep.add(min(idx, key=lambda i: points[i][1]))
        keep.add(max(idx, key=lambda i: points[i][1]))
    return [points[i] for i in sorted(keep)]


def thin_bars(
    bars: Sequence[OhlcBar], trade_ms: Sequence[int], limit: int = CHART_POINTS
) -> list[OhlcBar]:
    """At most about `limit` candles: runs of neighbouring bars merge into one candle (first
    open, highest high, lowest low, last close), except the bars a trade entered or left in,
    which stay as they were so each marker sits on its own bar. Each kept bar can split a run in
    two, so the result holds at most `limit` candles plus two per kept bar."""
    if len(bars) <= limit:
        return list(bars)
    starts = [b.ts_ms for b in bars]
    kept = {i for ms in trade_ms if (i := bisect_right(starts, ms) - 1) >= 0}
    runs = max(1, limit - 2 * len(kept)) if 2 * len(kept) < limit // 2 else limit // 2
    size = math.ceil(len(bars) / runs)
    out: list[OhlcBar] = []
    group: list[OhlcBar] = []

    def flush() -> None:
        if group:
            out.append(
                OhlcBar(
                    group[0].ts_ms,
                    group[0].open,
                    max(b.high for b in group),
                    min(b.low for b in group),
                    group[-1].close,
                )
            )
            group.clear()

    for i, bar in enumerate(bars):
        if i in kept:
            flush()
            out.append(bar)
            continue
        if i % size == 0:
            flush()
        group.append(bar)
    flush()
    return out


# ---- figures: plain dicts for Plotly.newPlot (validated by plotly's graph objects) ----

_LAYOUT: dict[str, Any] = {
    "template": "plotly_white",
    "margin": {"l": 60, "r": 20, "t": 64, "b": 40},
    "height": 360,
    "hovermode": "x unified",
    "title": {"y": 0.98, "yanchor": "top", "x": 0.01},
    "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
}
_TIME_AXIS: dict[str, Any] = {"type": "date", "title": {"text": "time (UTC)"}}
LONG, SHORT, WIN, LOSS = "#1a7f37", "#c62828", "#1a7f37", "#c62828"


def _figure(data: list[Any], layout: dict[str, Any]) -> dict[str, Any]:
    import plotly.graph_objects as go

    title = {**_LAYOUT["title"], **layout.get("title", {})}
    fig = go.Figure(data=data, layout={**_LAYOUT, **layout, "title": title})
    spec: dict[str, Any] = fig.to_plotly_json()
    return spec


def equity_figure(
    equity: Sequence[tuple[int, Decimal]], benchmark: Sequence[tuple[int, Decimal]]
) -> dict[str, Any]:
    import plotly.graph_objects as go

    data = [
        go.Scatter(
            x=[iso(ms) for ms, _ in pts],
            y=[float(v) for _, v in pts],  # plotting only
            name=name,
            mode="lines",
            line={"width": width, "color": color, "dash": dash},
            hovertemplate="%{y:,.2f}",
        )
        for pts, name, color, width, dash in (
            (thin_line(benchmark), "buy and hold (equal weight)", "#888888", 1.2, "dot"),
            (thin_line(equity), "strategy equity", "#2266aa", 1.6, "solid"),
        )
        if pts
    ]
    return _figure(
        data,
        {
            "title": {"text": "Equity and buy and hold"},
            "xaxis": _TIME_AXIS,
            "yaxis": {"title": {"text": "equity"}, "tickformat": ",.0f"},
        },
    )


def drawdown_figure(equity: Sequence[tuple[int, Decimal]]) -> dict[str, Any]:
    import plotly.graph_objects as go

    pts = thin_line(drawdown(equity))
    line = go.Scatter(
        x=[iso(ms) for ms, _ in pts],
        y=[v for _, v in pts],
        name="drawdown",
        mode="lines",
        fill="tozeroy",
        line={"width": 1, "color": LOSS},
        hovertemplate="%{y:.2%}",
    )
    return _figure(
        [line],
        {
            "title": {"text": "Drawdown (fall from the highest equity so far)"},
            "xaxis": _TIME_AXIS,
            "yaxis": {"tickformat": ".0%"},
            "height": 280,
        },
    )


def _hover(trip: RoundTrip, side: str, price: Decimal) -> str:
    """Hover text of a marker; untrusted strings are escaped here, as plotly renders a small
    HTML subset in hover labels."""
    who = html.escape(visible_text(trip.strategy, 60))
    why = html.escape(visible_text(trip.exit_reason, 80))
    parts = [
        f"<b>{trip.direction} {side}</b> {html.escape(visible_text(trip.symbol, 30))}",
        f"time {fmt.utc(trip.entry_ms if side == 'entry' else trip.exit_ms)} UTC",
        f"price {fmt.price(price)}",
        f"size {fmt.quantity(trip.quantity)}",
        f"P&amp;L {fmt.money(trip.pnl)} ({fmt.pct(trip.return_pct)})",
        f"strategy {who}",
    ]
    if side == "exit":
        parts.append(f"exit reason {why}")
    return "<br>".join(parts)


def price_figure(
    symbol: str, bars: Sequence[OhlcBar], trips: Sequence[RoundTrip]
) -> dict[str, Any]:
    """Candles (thinned), a marker per entry (triangle up for long, down for short) and per
    exit (a cross), and a dotted line from each entry to its exit, green if it made money."""
    import plotly.graph_objects as go

    shown = thin_bars(bars, [ms for t in trips for ms in (t.entry_ms, t.exit_ms)])
    data: list[Any] = [
        go.Candlestick(
            x=[iso(b.ts_ms) for b in shown],
            open=[float(b.open) for b in shown],
            high=[float(b.high) for b in shown],
            low=[float(b.low) for b in shown],
            close=[float(b.close) for b in shown],
            name=html.escape(visible_text(symbol, 30)),
            increasing={"line": {"color": "#5b8c5a"}},
            decreasing={"line": {"color": "#b5523b"}},
        )
    ]
    for won, color in ((True, WIN), (False, LOSS)):
        xs: list[str | None] = []
        ys: list[float | None] = []
        for t in trips:
            if (t.pnl > 0) == won:
                xs += [iso(t.entry_ms), iso(t.exit_ms), None]
                ys += [float(t.entry_price), float(t.exit_price), None]
        if xs:
            data.append(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="lines",
                    line={"color": color, "width": 1, "dash": "dot"},
                    name="winning trade" if won else "losing trade",
                    hoverinfo="skip",
                )
            )
    for direction, symbol_shape, color in (
        ("long", "triangle-up", LONG),
        ("short", "triangle-down", SHORT),
    ):
        mine = [t for t in trips if t.direction == direction]
        if not mine:
            continue
        data.append(
            go.Scatter(
                x=[iso(t.entry_ms) for t in mine],
                y=[float(t.entry_price) for t in mine],
                mode="markers",
                marker={"symbol": symbol_shape, "size": 11, "color": color},
                name=f"{direction} entry",
                text=[_hover(t, "entry", t.entry_price) for t in mine],
                hovertemplate="%{text}<extra></extra>",
            )
        )
        data.append(
            go.Scatter(
                x=[iso(t.exit_ms) for t in mine],
                y=[float(t.exit_price) for t in mine],
                mode="markers",
                marker={"symbol": "x", "size": 9, "color": color, "line": {"width": 1}},
                name=f"{direction} exit",
                text=[_hover(t, "exit", t.exit_price) for t in mine],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    return _figure(
        data,
        {
            "title": {"text": f"{html.escape(visible_text(symbol, 30))}: price and trades"},
            "xaxis": {**_TIME_AXIS, "rangeslider": {"visible": False}},
            "yaxis": {"title": {"text": "price"}},
            "hovermode": "closest",
            "height": 400,
        },
    )


MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def monthly_figure(returns: Mapping[tuple[int, int], float]) -> dict[str, Any]:
    """Year x month heatmap of monthly returns, red below zero and green above, each cell
    labelled; months outside the backtest are blank."""
    import plotly.graph_objects as go

    years = sorted({y for y, _ in returns})
    z = [[returns.get((y, m)) for m in range(1, 13)] for y in years]
    text = [["" if v is None else f"{v:.1%}".replace("-0.0%", "0.0%") for v in row] for row in z]
    top = max((abs(v) for row in z for v in row if v is not None), default=0.01) or 0.01
    heat = go.Heatmap(
        z=z,
        x=list(MONTHS),
        y=[str(y) for y in years],
        text=text,
        texttemplate="%{text}",
        hovertemplate="%{y} %{x}: %{z:.2%}<extra></extra>",
        colorscale=[[0.0, "#c62828"], [0.5, "#f7f7f7"], [1.0, "#1a7f37"]],
        zmin=-top,
        zmax=top,
        showscale=False,
        xgap=2,
        ygap=2,
    )
    return _figure(
        [heat],
        {
            "title": {"text": "Monthly returns"},
            "yaxis": {"type": "category", "autorange": "reversed"},
            "xaxis": {"type": "category", "side": "top"},
            "height": 120 + 32 * len(years),
            "hovermode": "closest",
            "margin": {"l": 60, "r": 20, "t": 80, "b": 20},
        },
    )
