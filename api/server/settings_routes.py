"""Reading and changing settings over the API (`api.server.settings_edit` says what may change).

`GET /api/settings`: the settings in force in the flow (the run's settings with every change
the flow acknowledged, in order), secrets redacted, the changes made (applied or still
pending) and what may be changed. `PATCH /api/settings` `{"set": {"risk.max_order_notional":
30000}, "by": "alice"}`: validated as a whole (422 naming each key and its reason; nothing is
sent or recorded then), sent as one `ChangeSettings` control command, so the flow applies it at
that command's place in the stream (its Kafka record time, `applied_ms` in the ack: a replay
of the topics applies it at the same place), then recorded in the `settings_changes` ledger
with the diff, who and when; answered like a state command (200/202, the ack).

What reads a changed setting in the flow: the control plane keeps it
(`models.control.plane.ControlPlane.settings`, snapshotted, applied once) and the desk puts it
in force there and then (`models.desk.control.reconfigure`): risk limits, position fractions,
symbol specs, GPT model and budget.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from api.server.commands import CommandResult, WaitS, Who, issue
from api.server.common import RunQuery, invalid, resolve_run
from api.server.context import ApiContext
from api.server.settings_edit import (
    CHANGEABLE,
    SECRET_KEYS,
    SettingsRefused,
    apply_values,
    propose,
    redacted,
)
from models.config.settings import Settings
from models.control.commands import MAX_COMMAND_BYTES, MAX_SETTING_KEYS, ChangeSettings

__all__ = ["settings_router"]

LEDGER = "settings_changes"


class SettingsChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    set: dict[str, JsonValue] = Field(
        min_length=1,
        max_length=MAX_SETTING_KEYS,
        description='Dotted key -> new value, e.g. {"risk.max_order_notional": 30000}',
    )
    by: Who = "api"
    wait_s: WaitS = 5.0


def _recorded(store: Any, run_id: str) -> list[dict[str, Any]]:
    """The changes recorded for `run_id`, oldest first, each with its acknowledgement."""
    rows = store.query(
        "SELECT c.change_id AS change_id, c.changed_ms AS changed_ms, c.who AS who, "
        "c.diff AS diff, l.outcome AS outcome, l.applied_ms AS applied_ms "
        f"FROM {LEDGER} AS c FINAL LEFT JOIN (SELECT command_id, outcome, applied_ms "
        "FROM control_log FINAL WHERE run_id = {run:String}) AS l "
        "ON l.command_id = c.change_id WHERE c.run_id = {run:String} "
        "ORDER BY c.changed_ms, c.change_id",
        {"run": run_id},
    )
    return [
        {
            "change_id": r["change_id"],
            "changed_ms": r["changed_ms"],
            "who": r["who"],
            "diff": json.loads(r["diff"]),
            "applied": r["outcome"] == "applied",
            "applied_ms": r["applied_ms"] if r["outcome"] == "applied" else None,
        }
        for r in rows
    ]


def _in_force(base: Settings, changes: list[dict[str, Any]]) -> Settings:
    """`base` with every applied change, in order (one that no longer validates against
    `base` is left out: the config changed under it)."""
    settings = base
    for change in changes:
        if not change["applied"]:
            continue
        try:
            settings = apply_values(settings, {d["key"]: d["after"] for d in change["diff"]})
        except ValueError:
            continue
    return settings


def settings_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["settings"])

    @router.get("/settings")
    def read_settings(run: RunQuery = None) -> dict[str, Any]:
        """The settings in force (secrets redacted), the changes made, what may change."""
        with ctx.store.session() as store:
            run_id = resolve_run(store, ctx, run)
            changes = _recorded(store, run_id)
        return {
            "run_id": run_id,
            "settings": redacted(_in_force(ctx.settings, changes)),
            "changes": changes[-50:],
            "changeable": list(CHANGEABLE),
            "secrets": list(SECRET_KEYS),
        }

    @router.patch(
        "/settings",
        response_model=CommandResult,
        responses={
            202: {"model": CommandResult, "description": "Sent; not acknowledged within wait_s"},
            503: {"description": "No broker, or the command could not be sent or recorded"},
        },
    )
    def change_settings(body: SettingsChange) -> JSONResponse:
        """Change settings: validated, sent to the flow on the control topic, recorded."""
        with ctx.store.session() as store:
            run_id = resolve_run(store, ctx, None)
            current = _in_force(ctx.settings, _recorded(store, run_id))
        try:
            proposal = propose(current, body.set)
        except SettingsRefused as err:
            raise HTTPException(
                status_code=422,
                detail=[
                    {"loc": ["body", "set", *([key] if key else [])], "msg": msg, "type": kind}
                    for key, msg, kind in err.problems
                ],
            ) from None
        action = ChangeSettings(values=proposal.values)
        if len(action.model_dump_json()) > MAX_COMMAND_BYTES - 400:  # room for id, who, when
            raise invalid(("body", "set"), "too large for one control command: split it")
        change_id = f"set-{uuid.uuid4().hex}"
        # Sent first: a change the flow never got is not recorded as made.
        response = issue(ctx, action, change_id, body.by, body.wait_s)
        row = {
            "change_id": change_id,
            "changed_ms": ctx.clock(),
            "who": body.by,
            "diff": json.dumps(proposal.diff, separators=(",", ":")),
            "run_id": run_id,
        }
        with ctx.store.session() as store:
            store.insert_rows(LEDGER, [row])
        return response

    return router
