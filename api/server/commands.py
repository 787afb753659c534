"""Sending one control command and waiting for the flow's word on it, as the routes share it.

A command goes out on the control topic (`CommandBus.send`) and the request waits, at most
its `wait_s` (bounded by the context's `max_wait_s`), for the acknowledgement: 200 with it when
applied, 409 when the flow refused it (a halted desk asked to go active), 202 when none came
in time (the flow may be behind, or stopped: `GET /api/control/commands/{id}` asks again).

A request may name its `command_id` (an idempotency key): an id the flow already
acknowledged is not sent again, its acknowledgement is returned (`replayed`); the flow
applies each id once anyway (`models.control.plane.ControlPlane`), across restarts too.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Final

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.server.bus import BusError
from api.server.common import resolve_run
from api.server.context import ApiContext, StoreUnavailable
from connectors.store.errors import ClickHouseError
from models.control.commands import ChangeSettings, ControlCommand, SetMode, SetTradingState
from models.control.plane import ControlAck

__all__ = [
    "CommandId",
    "CommandResult",
    "WaitS",
    "Who",
    "find_ack",
    "issue",
    "result_response",
]

CommandId = Annotated[
    str | None,
    Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="Idempotency key: a command id already acknowledged is not sent again",
    ),
]
Who = Annotated[
    str,
    Field(
        default="api",
        min_length=1,
        max_length=100,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="Who sends it (recorded with the command)",
    ),
]
WaitS = Annotated[
    float,
    Field(default=5.0, ge=0, le=30, description="Seconds to wait for the acknowledgement"),
]

NO_BUS: Final = "no broker: commands need KAFKA_BOOTSTRAP or kafka.bootstrap"


class CommandResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command_id: str
    acknowledged: bool
    replayed: bool = False
    ack: ControlAck | None = None


def find_ack(ctx: ApiContext, command_id: str, run: str | None = None) -> ControlAck | None:
    """The acknowledgement of `command_id` seen by the bus or logged in `control_log` for the
    run served (None when neither has it)."""
    if ctx.bus is not None:
        seen = ctx.bus.wait_ack(command_id, 0)
        if seen is not None:
            return seen
    try:
        with ctx.store.session() as store:
            run_id = resolve_run(store, ctx, run)
            rows = store.query(
                "SELECT * EXCEPT run_id FROM control_log FINAL "
                "WHERE command_id = {id:String} AND run_id = {run:String} LIMIT 1",
                {"id": command_id, "run": run_id},
            )
    except (StoreUnavailable, ClickHouseError):
        return None
    return ControlAck.model_validate(rows[0]) if rows else None


def result_response(result: CommandResult) -> JSONResponse:
    status = 202
    if result.ack is not None:
        status = 409 if result.ack.outcome == "refused" else 200
    return JSONResponse(result.model_dump(mode="json"), status_code=status)


def issue(
    ctx: ApiContext,
    action: SetTradingState | ChangeSettings | SetMode,
    command_id: str | None,
    by: str,
    wait_s: float,
) -> JSONResponse:
    """Send `action` as one command (or answer a replayed id) and wait for its ack."""
    if command_id is not None:
        known = find_ack(ctx, command_id)
        if known is not None:
            return result_response(
                CommandResult(command_id=command_id, acknowledged=True, replayed=True, ack=known)
            )
    if ctx.bus is None:
        raise HTTPException(status_code=503, detail=NO_BUS)
    command = ControlCommand(
        command_id=command_id or f"api-{uuid.uuid4().hex}",
        action=action,
        issued_by=by,
        issued_ms=ctx.clock(),
    )
    try:
        ctx.bus.send(command)
    except BusError as err:
        raise HTTPException(status_code=503, detail=str(err)) from None
    ack = ctx.bus.wait_ack(command.command_id, min(wait_s, ctx.max_wait_s))
    return result_response(
        CommandResult(
            command_id=command.command_id, acknowledged=ack is not None, replayed=False, ack=ack
        )
    )
