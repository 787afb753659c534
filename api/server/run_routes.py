"""Starting and stopping the run over the API (api/server/runs.py says who controls what).

- `GET /api/run`: the run this API controls: running or not, its pid, who started and stopped
  it and when, its exit code, the last lines of its output.
- `POST /api/run/start` `{"processes": 1, "follow": true, "fresh": false, "mode": "backtest",
  "exchange": "binance", "by": "alice"}`: `stratflow serve` starts `stratflow run` with its
  config and broker (201); 409 while a run is running or when the API is served by a run; 503
  without a broker (the run's commands would have no way in). The mode is where its orders go
  (`RunOptions`): switching between backtest, paper and live is a stop and a start in the
  other mode. Live needs the setup's promotion record (409 naming the missing step) and the
  two-call confirmation, as `POST /api/control/mode` does.
- `POST /api/run/stop` `{"by": "alice"}`: stops the run at once, resumable (everything up to
  its last snapshot is written). Destructive for a live flow, so in two calls like a halt: the
  first answers 428 with a nonce, the second carries it as `confirm`. 409 with no run.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from api.server.commands import Who
from api.server.context import ApiContext
from api.server.control_routes import ConfirmationNeeded, Nonce, confirmation, live_refusal
from api.server.runs import NoRun, RunConflict, RunControl, RunOptions, RunView
from models.control.commands import RunMode

__all__ = ["run_router"]

STOP: Final = "run:stop"
LIVE: Final = "run:live"


class StartRequest(RunOptions):
    by: Who = "api"
    confirm: Nonce = None
    """A live start's nonce (the first call answers 428 with it)."""


class StopRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    confirm: Nonce = None
    by: Who = "api"


STARTED: Final[dict[int | str, dict[str, Any]]] = {
    201: {"model": RunView, "description": "Started"},
    428: {"model": ConfirmationNeeded, "description": "Live: repeat with this nonce"},
    409: {"description": "A run is running, this API is served by its run, or controls none"},
    503: {"description": "No broker"},
}
STOPPED: Final[dict[int | str, dict[str, Any]]] = {
    200: {"model": RunView, "description": "Stopped (or stopping: a run serving this API)"},
    409: {"description": "No run is running, or a bad confirmation"},
    428: {"model": ConfirmationNeeded, "description": "Repeat with this nonce as `confirm`"},
}


def _control(ctx: ApiContext) -> RunControl:
    if ctx.runs is None:
        raise HTTPException(status_code=409, detail="this API controls no run")
    return ctx.runs


def run_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(prefix="/api/run", tags=["run"])

    @router.get("", response_model=RunView)
    def view() -> RunView:
        """The run this API controls (none: not running, cannot start)."""
        if ctx.runs is None:
            return RunView(can_start=False, running=False)
        return ctx.runs.view()

    @router.post("/start", status_code=201, responses=STARTED, response_model=RunView)
    def start(body: StartRequest) -> RunView | JSONResponse:
        """Start a run (`stratflow serve` only), with the server's config and broker."""
        runs = _control(ctx)
        if runs.view().can_start and ctx.bus is None:
            raise HTTPException(
                status_code=503,
                detail="no broker: a run started here must share the API's broker "
                "(set KAFKA_BOOTSTRAP or kafka.bootstrap)",
            )
        if body.mode is RunMode.LIVE:
            _, why = live_refusal(ctx)
            if why:
                raise HTTPException(status_code=409, detail=why)
            what = f"a live run places real orders on {body.exchange}"
            needed = confirmation(ctx, LIVE, what, body.confirm)
            if needed is not None:
                return needed
        options = RunOptions.model_validate(body.model_dump(exclude={"by", "confirm"}))
        try:
            return runs.start(options, body.by)
        except RunConflict as err:
            raise HTTPException(status_code=409, detail=str(err)) from None

    @router.post("/stop", responses=STOPPED, response_model=RunView)
    def stop(body: StopRequest) -> RunView | JSONResponse:
        """Stop the run at once, resumable from its last snapshot (two calls, see 428)."""
        runs = _control(ctx)
        if not runs.view().running:
            raise HTTPException(status_code=409, detail="no run is running")
        what = "stopping ends the flow (it resumes from its last snapshot when started again)"
        needed = confirmation(ctx, STOP, what, body.confirm)
        if needed is not None:
            return needed
        try:
            return runs.stop(body.by)
        except NoRun as err:
            raise HTTPException(status_code=409, detail=str(err)) from None

    return router
