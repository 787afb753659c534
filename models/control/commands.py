"""Control commands: what an operator (the CLI today, the API later) sends to the running flow
over the Kafka control topic, and how the flow reads them.

A command is a strict pydantic model (no coercion, no unknown field, bounded strings), so a
command that reaches the desk is exactly what was meant. `parse_command` never raises: a
malformed message is a reason, which ingest turns into a dead letter. The action is a tagged
union (`kind`): a trading state (`SetTradingState`), settings changes (`ChangeSettings`, dotted
keys and their new values, validated against `Settings` by the sender before they are sent:
the control API) and the run mode an operator asks for (`SetMode`; live needs the setup's
promotion, checked by the sender).

`ControlEvent` is a parsed command placed in the stream like a bar: its Kafka record time is
its event time (`at_ms`), and `partition`, `clock_ms`, `seq` place it in the desk's merge
(`models.market.merge`), so a replayed control topic gives the same commands at the same
places.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from models.control.states import TradingState

__all__ = [
    "ChangeSettings",
    "ControlAction",
    "ControlCommand",
    "ControlEvent",
    "RunMode",
    "SetMode",
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


SettingKey = Annotated[
    str, Field(min_length=1, max_length=120, pattern=r"^[a-z_]+(\.[A-Za-z0-9_./:-]+)+$")
]
"""A dotted settings key below a section (`risk.max_order_notional`, `symbols.ABC.lot_size`)."""

MAX_SETTING_KEYS = 32


class ChangeSettings(BaseModel):
    """Change settings of the running flow: each dotted key's new value (JSON), in the order
    given. The sender validated the changed settings as a whole (`Settings`); the plane keeps
    the newest value of each key (`ControlPlane.settings`)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    kind: Literal["change_settings"] = "change_settings"
    values: dict[SettingKey, JsonValue] = Field(min_length=1, max_length=MAX_SETTING_KEYS)


class RunMode(StrEnum):
    """Where the flow's orders go: nowhere but the simulator (backtest), the exchange emulator
    or a test network (paper), a real exchange (live)."""

    BACKTEST = "backtest"
    PAPER = "paper"
    LIVE = "live"


class SetMode(BaseModel):
    """The run mode an operator asks for. `setup` is the promoted setup (its hash) whose
    record allowed a switch to live; empty for the other modes."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    kind: Literal["set_mode"] = "set_mode"
    mode: RunMode
    setup: str = Field(default="", max_length=64)


ControlAction = Annotated[SetTradingState | ChangeSettings | SetMode, Field(discriminator="kind")]
"""Every action a command may carry."""


class ControlCommand(BaseModel):
    """One command: its unique id (applied once), what to do, who sent it, when (ms)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    command_id: CommandId
    action: ControlAction
    issued_by: str = Field(min_length=1, max_length=100)
    issued_ms: int = Field(ge=0, lt=2**53)


def action_label(action: SetTradingState | ChangeSettings | SetMode) -> str:
    """The action in one short line (`ControlAck.action`, at most 64 characters):
    `set_trading_state:paused`, `change_settings:risk.max_order_notional,gpt.model`,
    `set_mode:live`."""
    detail: str
    if isinstance(action, SetTradingState):
        detail = action.state.value
    elif isinstance(action, SetMode):
        detail = action.mode.value
    else:
        detail = ",".join(action.values)
    text = f"{action.kind}:{detail}"
    return text if len(text) <= 64 else text[:61] + "..."


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
