"""Control commands: what an operator (the CLI today, the API later) sends to the running flow
over the Kafka control topic, and how the flow reads them.

A command is a strict pydantic model (no coercion, no unknown field, bounded strings), so a
command that reaches the desk is exactly what was meant. `parse_command` never raises: a
malformed message is a reason, which ingest turns into a dead letter. The action is a tagged
union (`kind`), so settings changes can join later as one more member.

`ControlEvent` is a parsed command placed in the stream like a bar: its Kafka record time is
its event time (`at_ms`), and `partition`, `clock_ms`, `seq` place it in the desk's merge
(`models.market.merge`), so a replayed control topic gives the same commands at the same
places.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.control.states import TradingState

__all__ = [
    "ControlAction",
    "ControlCommand",
    "ControlEvent",
    "SetTradingState",
    "parse_command",
]

MAX_COMMAND_BYTES = 4096
"""A control message larger than this is refused before it is parsed."""

CommandId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]


class SetTradingState(BaseModel):
    """Switch the desk's trading state."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    kind: Literal["set_trading_state"] = "set_trading_state"
    state: TradingState


ControlAction = Annotated[SetTradingState, Field(discriminator="kind")]
"""Every action a command may carry (one today; settings changes join as further members)."""


class ControlCommand(BaseModel):
    """One command: its unique id (applied once), what to do, who sent it, when (ms)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    command_id: CommandId
    action: ControlAction
    issued_by: str = Field(min_length=1, max_length=100)
    issued_ms: int = Field(ge=0, lt=2**53)


def parse_command(value: bytes | None) -> ControlCommand | str:
    """The command in a control message, or why it is refused (one line)."""
    if value is None:
        return "control message without a value"
    if len(value) > MAX_COMMAND_BYTES:
        return f"control message of {len(value)} bytes, more than {MAX_COMMAND_BYTES}"
    try:
        # strict in JSON mode still reads an enum from its string value
        return ControlCommand.model_validate_json(value)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "message"
        return f"invalid control command: {where}: {first['msg']}"[:500]


@dataclass(frozen=True, slots=True)
class ControlEvent:
    """A command at its place in the stream: `at_ms` is its Kafka record time (event time)."""

    command: ControlCommand
    at_ms: int
    partition: str = ""
    clock_ms: int = 0
    seq: int = 0
