"""The dashboard page (issue 13), served by the API itself: plain HTML, JavaScript and CSS
shipped as package data (`api/server/static/`), no build step, nothing from a CDN.

- `GET /dashboard` (and `/`, redirected), `/dashboard/app.js`, `/dashboard/app.css`: the page.
  They hold no state, so they are served without the token (a browser cannot send a header
  when it navigates); the page asks for the token once, keeps it in `sessionStorage` (gone
  with the tab) and sends it as the bearer header on every call and as the WebSocket's
  subprotocol (`api.server.stream`).
- `GET /dashboard/plotly-<version>.min.js`: plotly.js from the installed plotly package (a
  dependency already, for the backtest reports), so the charts need no network; its name
  carries the version, so a browser may keep it.
- `GET /api/equity` (behind the token): the run's equity over time, at most `points` points
  (the last equity of each time bucket), for the equity chart.

The page's answers carry a Content-Security-Policy that allows scripts, styles and connections
of this origin only (plotly sets inline styles, so `style-src` allows those).
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query
from fastapi.responses import RedirectResponse, Response

from api.server.common import RunQuery, plain, resolve_run
from api.server.context import ApiContext

__all__ = ["DASHBOARD_PATHS", "dashboard_router", "equity_curve", "plotly_path"]

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
PAGE_TYPES: Final = {
    "dashboard.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
MAX_POINTS: Final = 5000


def _plotly_version() -> str:
    import plotly

    return str(plotly.__version__)


def plotly_path() -> str:
    return f"/dashboard/plotly-{_plotly_version()}.min.js"


DASHBOARD_PATHS: Final = frozenset(
    {"/", "/dashboard", "/dashboard/app.js", "/dashboard/app.css", plotly_path()}
)
"""Served without the token: the page and its scripts, no state."""


@functools.cache
def _static(name: str) -> bytes:
    text = resources.files("api.server").joinpath("static", name).read_text(encoding="utf-8")
    if name == "dashboard.html":
        text = text.replace("{{PLOTLY}}", plotly_path())
    return text.encode()


@functools.cache
def _plotly_js() -> bytes:
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs()).encode()


def _page(name: str) -> Response:
    return Response(
        _static(name),
        media_type=PAGE_TYPES[name],
        headers={"Content-Security-Policy": CSP},
    )


def equity_curve(store: Any, run_id: str, points: int) -> list[dict[str, Any]]:
    """The equity of `run_id` over time: the last value of each of at most `points` equal
    time buckets, oldest first."""
    span = store.query(
        "SELECT min(ts_ms) AS lo, max(ts_ms) AS hi, count() AS n FROM positions FINAL "
        "WHERE run_id = {run:String}",
        {"run": run_id},
    )
    if not span or not span[0]["n"]:
        return []
    lo, hi = int(span[0]["lo"]), int(span[0]["hi"])
    bucket = max(1, -(-(hi - lo + 1) // points))
    rows = store.query(
        "SELECT intDiv(ts_ms - {lo:Int64}, {b:Int64}) AS k, max(ts_ms) AS last_ms, "
        "argMax(equity, (ts_ms, symbol)) AS equity FROM positions FINAL "
        "WHERE run_id = {run:String} GROUP BY k ORDER BY k",
        {"run": run_id, "lo": lo, "b": bucket},
    )
    return [{"ts_ms": int(r["last_ms"]), "equity": plain(r["equity"])} for r in rows]


def dashboard_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/dashboard", status_code=307)

    @router.get("/dashboard", include_in_schema=False)
    def page() -> Response:
        return _page("dashboard.html")

    @router.get("/dashboard/app.js", include_in_schema=False)
    def script() -> Response:
        return _page("app.js")

    @router.get("/dashboard/app.css", include_in_schema=False)
    def style() -> Response:
        return _page("app.css")

    @router.get(plotly_path(), include_in_schema=False)
    def plotly() -> Response:
        return Response(
            _plotly_js(),
            media_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": "private, max-age=86400"},
        )

    return router


def equity_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["read"])

    @router.get("/equity")
    def equity(
        run: RunQuery = None,
        points: Annotated[int, Query(ge=2, le=MAX_POINTS, description="At most this many")] = 500,
    ) -> dict[str, Any]:
        """The run's equity over time (the last value of each time bucket), oldest first."""
        with ctx.store.session() as store:
            run_id = resolve_run(store, ctx, run)
            curve = equity_curve(store, run_id, points)
        return {
            "run_id": run_id,
            "initial_cash": str(ctx.settings.execution.initial_cash),
            "points": curve,
        }

    return router
