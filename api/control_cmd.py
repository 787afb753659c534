"""`stratflow control pause|resume|reduce|halt`: one control command to the running flow.

Until the control API exists, this is how an operator switches the desk's trading state: the
command (`models.control.commands.ControlCommand`, a fresh id, who from `--by` or the OS user,
the wall-clock time) is published to the configured control topic and its id printed; the flow
applies it at its place in the stream and acknowledges it in `control_log` and on the acks
topic (`kafka.topics.control_acks`). A mistake (an unknown action, no broker, a refused
delivery) is one `error:` line.
"""

from __future__ import annotations

import getpass
import time
import uuid
from pathlib import Path
from typing import Annotated, Final

import typer

from models.control.states import TradingState

ACTIONS: Final[dict[str, TradingState]] = {
    "pause": TradingState.PAUSED,
    "resume": TradingState.ACTIVE,
    "reduce": TradingState.REDUCING,
    "halt": TradingState.HALTED,
}

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML config (default: ./stratflow.yaml, else the built-in one)"
    ),
]


def _who(by: str | None) -> str:
    from api.cli import UserError

    if by is not None:
        name = by.strip()
        if not name or any(not ch.isprintable() for ch in name) or len(name) > 100:
            raise UserError("--by needs a name (printable, up to 100 characters)")
        return name
    try:
        return getpass.getuser()[:100] or "unknown"
    except (KeyError, OSError):
        raise UserError("cannot tell who you are: give --by NAME") from None


def control(
    action: Annotated[str, typer.Argument(help="pause | resume | reduce | halt")],
    by: Annotated[
        str | None, typer.Option("--by", help="Who sends it (default: the OS user)")
    ] = None,
    config: ConfigOpt = None,
    bootstrap: Annotated[
        str | None, typer.Option(envvar="KAFKA_BOOTSTRAP", help="Kafka host:port")
    ] = None,
) -> None:
    """Switch the running flow's trading state (pause: no new orders; resume: active; reduce:
    close-only; halt: cancel open orders, nothing but cancels)."""
    from api.cli import UserError, _check_broker, console, guarded, settings_from
    from connectors.kafka.io import make_producer, publish
    from models.control.commands import ControlCommand, SetTradingState

    def go() -> None:
        state = ACTIONS.get(action)
        if state is None:
            raise UserError(f"unknown action {action!r}: pause, resume, reduce or halt")
        settings = settings_from(config)
        if not bootstrap:
            raise UserError("no broker: set KAFKA_BOOTSTRAP or --bootstrap")
        _check_broker(bootstrap, "--bootstrap")
        command = ControlCommand(
            command_id=f"cli-{uuid.uuid4().hex}",
            action=SetTradingState(state=state),
            issued_by=_who(by),
            issued_ms=int(time.time() * 1000),
        )
        failed: list[str] = []

        def delivered(err: object, _msg: object) -> None:
            if err is not None:
                failed.append(str(err))

        producer = make_producer(bootstrap)
        topic = settings.kafka.topics.control
        publish(
            producer,
            topic,
            command.command_id.encode(),
            command.model_dump_json().encode(),
            on_delivery=delivered,
        )
        if producer.flush(10) or failed:
            why = failed[0] if failed else "not delivered within 10 s"
            raise UserError(f"control command not sent to {topic}: {why}")
        console.out(command.command_id, highlight=False)

    guarded(go)
