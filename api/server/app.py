"""The control API's app factory: `create_app(ctx)` wires the routes, the token, the limits and
the error answers around one `ApiContext`.

- `GET /api/health` needs no token and says only that the server answers (`{"status":
  "ok"}`): nothing about the run, the store or the broker.
- `GET /api/openapi.json` needs no token either: the shape of the API is not state. The
  interactive docs pages are off (they load scripts from a CDN).
- Everything else needs the bearer token (`api.server.auth.BearerGate`, before routing).
- Errors are JSON `{"detail": ...}`: 401/403 say only that, 413 a body too large, 422 FastAPI's
  own shape (`loc`, `msg`, `type`, never the input: it may be a secret), 503 when the decision
  log or the broker cannot answer (one line). A bug is a 500 with no detail; its traceback is
  logged on the server, never sent.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from starlette.middleware.cors import CORSMiddleware

from api.server.auth import BearerGate
from api.server.context import ApiContext, StoreUnavailable
from api.server.control_routes import control_router
from api.server.dashboard import DASHBOARD_PATHS, dashboard_router, equity_router
from api.server.limits import BodyLimit, cors_options
from api.server.read_routes import read_router
from api.server.run_routes import run_router
from api.server.settings_routes import settings_router
from api.server.stream import stream_router
from connectors.store.errors import ClickHouseError

__all__ = ["create_app"]

_LOG = logging.getLogger("stratflow.api")

OPEN_PATHS = frozenset({"/api/health", "/api/openapi.json"}) | DASHBOARD_PATHS
"""The paths served without the token: they reveal no state (the dashboard page and its
scripts ask for the token themselves)."""


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


def _unavailable(_request: Request, exc: Exception) -> JSONResponse:
    why = str(exc) if isinstance(exc, StoreUnavailable) else "the decision log did not answer"
    if isinstance(exc, ClickHouseError):
        _LOG.warning("decision log: %s", exc)
    return JSONResponse({"detail": why}, status_code=503)


def _internal(_request: Request, exc: Exception) -> JSONResponse:
    _LOG.error("internal error in the control API", exc_info=exc)
    return JSONResponse({"detail": "internal error"}, status_code=500)


def create_app(ctx: ApiContext) -> FastAPI:
    """The control API on `ctx` (see the module's docstring)."""
    app = FastAPI(
        title="stratflow control API",
        version="1",
        openapi_url="/api/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    # Enforced by BearerGate; declared here so the OpenAPI document names the scheme.
    guard = [Depends(HTTPBearer(auto_error=False))]

    @app.get("/api/health", tags=["health"])
    def health() -> dict[str, str]:
        """Whether the server answers; nothing else."""
        return {"status": "ok"}

    app.include_router(read_router(ctx), dependencies=guard)
    app.include_router(control_router(ctx), dependencies=guard)
    app.include_router(settings_router(ctx), dependencies=guard)
    app.include_router(run_router(ctx), dependencies=guard)
    app.include_router(equity_router(ctx), dependencies=guard)
    app.include_router(stream_router(ctx))  # a WebSocket: checks the token itself
    app.include_router(dashboard_router(ctx))  # the page: no state, in OPEN_PATHS
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StoreUnavailable, _unavailable)
    app.add_exception_handler(ClickHouseError, _unavailable)
    app.add_exception_handler(Exception, _internal)
    # The last added runs first: the body limit, CORS (a preflight needs no token), the gate.
    app.add_middleware(BearerGate, token=ctx.token, open_paths=OPEN_PATHS)
    cors: Any = cors_options(ctx.cors_origins)
    if cors is not None:
        app.add_middleware(CORSMiddleware, **cors)
    app.add_middleware(BodyLimit, max_bytes=ctx.max_body_bytes)
    return app
