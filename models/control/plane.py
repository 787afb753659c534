"""The desk's control state: the trading state, and the command ids already applied.

`ControlPlane.apply` takes one `ControlCommand` at its stream time and answers with a
`ControlAck`: applied (the state before and after, the stream time it took effect) or refused
(why: a disallowed switch). A command id already applied is answered with None: a replay or a
re-sent message changes nothing and is not acknowledged twice. The plane is part of the desk's
snapshotted state, so the applied ids survive a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from models.control.commands import ControlCommand, SetTradingState
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

    def apply(self, command: ControlCommand, at_ms: int) -> ControlAck | None:
        """Apply `command` at stream time `at_ms`; None when its id was seen before."""
        if command.command_id in self.applied:
            return None
        self.applied.add(command.command_id)
        before = self.state
        action = command.action
        reason = ""
        if isinstance(action, SetTradingState):
            reason = transition_refusal(before, action.state)
            if not reason:
                self.state = action.state
        return ControlAck(
            command_id=command.command_id,
            action=f"{action.kind}:{action.state.value}",
            issued_by=command.issued_by,
            issued_ms=command.issued_ms,
            applied_ms=at_ms,
            outcome="refused" if reason else "applied",
            state_before=before,
            state_after=self.state,
            reason=reason,
        )
