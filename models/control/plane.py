"""The desk's control state: the trading state, and the command ids already applied.

`ControlPlane.apply` takes one `ControlCommand` at its stream time and answers with a
`ControlAck`: applied (the state before and after, the stream time it took effect) or refused
(why: a disallowed switch). A command id already applied is answered with None: a replay or a
re-sent message changes nothing and is not acknowledged twice. The plane is part of the desk's
snapshotted state, so the applied ids survive a restart.

Settings changes and the requested run mode are kept here, at their place in the stream, so a
replay of the control topic rebuilds them exactly: `settings` holds the newest value of every
changed key, `mode` the mode last asked for (None: the one the run started in). The desk puts
the settings in force (`models.desk.control.reconfigure`); the mode is recorded only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from models.control.commands import (
    ChangeSettings,
    ControlCommand,
    RunMode,
    SetMode,
    SetTradingState,
    action_label,
)
from models.control.states import TradingState, transition_refusal

__all__ = ["ControlAck", "ControlPlane"]


class ControlAck(BaseModel):
    """The acknowledgement of one command: a `control_log` row and a message on the acks
    topic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command_id: str = Field(max_length=64)
    action: str = Field(max_length=64)
    issued_by: str = Field(max_length=100)
    issued_ms: int
    applied_ms: int  # the stream time the command took effect (or was refused)
    outcome: Literal["applied", "refused"]
    state_before: TradingState
    state_after: TradingState
    reason: str = Field(default="", max_length=500)


@dataclass(slots=True)
class ControlPlane:
    state: TradingState = TradingState.ACTIVE
    applied: set[str] = field(default_factory=set)
    settings: dict[str, Any] = field(default_factory=dict)
    """The newest value of every settings key changed by a command (dotted key -> JSON)."""
    mode: RunMode | None = None
    """The run mode last asked for; None: the one the run started in."""

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.state, self.applied, self.settings, self.mode)

    def __setstate__(self, state: tuple[Any, ...] | list[Any]) -> None:
        """A snapshot from before a field existed restores with that field at its default."""
        values = list(state)
        self.state = values[0]
        self.applied = values[1]
        self.settings = values[2] if len(values) > 2 else {}
        self.mode = values[3] if len(values) > 3 else None

    def apply(self, command: ControlCommand, at_ms: int, refusal: str = "") -> ControlAck | None:
        """Apply `command` at stream time `at_ms`; None when its id was seen before. A
        `refusal` (the desk found the command cannot apply: a settings change its own
        settings refuse) refuses it with that reason and changes nothing but the seen ids."""
        if command.command_id in self.applied:
            return None
        self.applied.add(command.command_id)
        before = self.state
        action = command.action
        reason = refusal
        if isinstance(action, SetTradingState) and not reason:
            reason = transition_refusal(before, action.state)
            if not reason:
                self.state = action.state
        elif isinstance(action, SetMode) and not reason:
            self.mode = action.mode
        elif isinstance(action, ChangeSettings) and not reason:  # validated by sender and desk
            self.settings.update(action.values)
        return ControlAck(
            command_id=command.command_id,
            action=action_label(action),
            issued_by=command.issued_by,
            issued_ms=command.issued_ms,
            applied_ms=at_ms,
            outcome="refused" if reason else "applied",
            state_before=before,
            state_after=self.state,
            reason=reason,
        )
