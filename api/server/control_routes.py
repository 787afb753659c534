"""The routes that change what the flow does: its trading state, a halt, the run mode.

- `POST /api/control/state` `{"state": "active"|"reducing"|"paused"}`: one command, no
  confirmation (each of these can be undone by the next).
- `POST /api/control/halt`: destructive (open orders are cancelled), so in two calls: the first
  (no `confirm`) does nothing but answer 428 with a nonce valid for a minute; the second
  carries it as `confirm` and sends the halt. A wrong, used or expired nonce is 409.
- `POST /api/control/mode` `{"mode": "backtest"|"paper"|"live"}`: live needs the configured
  setup's promotion record (`api.promotion_steps.live_refusal`: a passing backtest,
  validation and paper run, and a person's approval, `stratflow approve`) — 409 with the one
  line naming what is missing — and then the same nonce confirmation as a halt. The flow
  records the mode asked for; the venue itself changes when a run is started on it
  (`POST /api/run/start` with `mode`, api/server/run_routes.py).
- `GET /api/control/commands/{command_id}`: the acknowledgement of a command sent earlier.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.server.commands import CommandId, CommandResult, WaitS, Who, find_ack, issue
from api.server.context import ApiContext
from models.control.commands import RunMode, SetMode, SetTradingState
from models.control.states import TradingState

__all__ = [
    "CONFIRMED",
    "ConfirmationNeeded",
    "confirmation",
    "control_router",
    "live_refusal",
]

HALT: Final = "halt"
LIVE: Final = "mode:live"

Nonce = Annotated[
    str | None,
    Field(default=None, min_length=1, max_length=100, description="The nonce of the first call"),
]


class StateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: Literal["active", "reducing", "paused"]
    command_id: CommandId = None
    by: Who = "api"
    wait_s: WaitS = 5.0


class HaltRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    confirm: Nonce = None
    command_id: CommandId = None
    by: Who = "api"
    wait_s: WaitS = 5.0


class ModeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: RunMode
    confirm: Nonce = None
    command_id: CommandId = None
    by: Who = "api"
    wait_s: WaitS = 5.0


class ConfirmationNeeded(BaseModel):
    detail: str
    confirm: str
    expires_ms: int


RESULTS: Final[dict[int | str, dict[str, Any]]] = {
    200: {"model": CommandResult, "description": "Acknowledged: applied"},
    202: {"model": CommandResult, "description": "Sent; not acknowledged within wait_s"},
    409: {"description": "Refused by the flow (the ack says why), or a bad confirmation"},
    503: {"description": "No broker, or the command could not be sent"},
}
CONFIRMED: Final[dict[int | str, dict[str, Any]]] = {
    **RESULTS,
    428: {"model": ConfirmationNeeded, "description": "Repeat with this nonce as `confirm`"},
}


def confirmation(ctx: ApiContext, action: str, what: str, nonce: str | None) -> JSONResponse | None:
    """The 428 answer with a fresh nonce when `nonce` is None; 409 when it does not confirm;
    None when it does."""
    if nonce is None:
        c = ctx.nonces.issue(action)
        needed = ConfirmationNeeded(
            detail=f"{what}: repeat the request with this nonce as `confirm` within "
            f"{(c.expires_ms - ctx.clock()) // 1000} s",
            confirm=c.nonce,
            expires_ms=c.expires_ms,
        )
        return JSONResponse(needed.model_dump(), status_code=428)
    if not ctx.nonces.redeem(nonce, action):
        raise HTTPException(
            status_code=409,
            detail="confirmation unknown, used, expired or for another action: ask again",
        )
    return None


def live_refusal(ctx: ApiContext) -> tuple[str, str]:
    """(the setup's hash, why live is refused: "" when its promotion is recorded)."""
    from api.promotion_steps import live_refusal
    from models.validation.promotion import setup_hash

    with ctx.store.session() as store:
        why = live_refusal(store, ctx.settings) or ""
    return setup_hash(ctx.settings), why


def control_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(prefix="/api/control", tags=["control"])

    @router.post("/state", responses=RESULTS, response_model=CommandResult)
    def set_state(body: StateRequest) -> JSONResponse:
        """Switch the trading state: active, reducing (close-only) or paused (no new orders)."""
        action = SetTradingState(state=TradingState(body.state))
        return issue(ctx, action, body.command_id, body.by, body.wait_s)

    @router.post("/halt", responses=CONFIRMED, response_model=CommandResult)
    def halt(body: HaltRequest) -> JSONResponse:
        """Halt: cancel open orders, nothing but cancels after (two calls, see 428)."""
        needed = confirmation(ctx, HALT, "halting cancels every open order", body.confirm)
        if needed is not None:
            return needed
        action = SetTradingState(state=TradingState.HALTED)
        return issue(ctx, action, body.command_id, body.by, body.wait_s)

    @router.post("/mode", responses=CONFIRMED, response_model=CommandResult)
    def set_mode(body: ModeRequest) -> JSONResponse:
        """Ask for another run mode; live needs the setup's promotion and a confirmation."""
        setup = ""
        if body.mode is RunMode.LIVE:
            setup, why = live_refusal(ctx)
            if why:
                raise HTTPException(status_code=409, detail=why)
            needed = confirmation(ctx, LIVE, "live trading places real orders", body.confirm)
            if needed is not None:
                return needed
        action = SetMode(mode=body.mode, setup=setup)
        return issue(ctx, action, body.command_id, body.by, body.wait_s)

    @router.get(
        "/commands/{command_id}",
        response_model=CommandResult,
        responses={404: {"description": "No acknowledgement of this id (yet)"}},
    )
    def command(
        command_id: Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")],
    ) -> CommandResult:
        """The acknowledgement of a command sent before (e.g. after a 202)."""
        ack = find_ack(ctx, command_id)
        if ack is None:
            raise HTTPException(status_code=404, detail="no acknowledgement of this command id")
        return CommandResult(command_id=command_id, acknowledged=True, replayed=False, ack=ack)

    return router
