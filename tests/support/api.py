"""The control API's test kit: the app in-process (starlette's TestClient: no socket), a clock,
and a command bus standing in for the flow (`FlowDouble`).

`FlowDouble` does with a command what the flow's desk does (`models.control.plane.ControlPlane
.apply` at the command's time, its acknowledgement written to `control_log` of the run), at
once instead of over Kafka; `restarted()` is the flow after a restart (the plane restored from
a pickle, as Bytewax restores the desk's snapshot). `deaf=True`: a flow that never answers.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.testclient import TestClient

from api.server.app import create_app
from api.server.auth import ApiToken
from api.server.context import ApiContext, RunInfo, StoreAccess
from connectors.store.clickhouse import Store
from models.config.settings import Settings
from models.control.commands import ControlCommand
from models.control.plane import ControlAck, ControlPlane

TOKEN = "test-token-5f1c2e9a7b3d"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Clock:
    """Epoch ms, moved by the test."""

    def __init__(self, ms: int = 1_741_000_000_000) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@dataclass
class FlowDouble:
    store: Store  # opened with the run's id: its rows are the run's
    clock: Clock
    plane: ControlPlane = field(default_factory=ControlPlane)
    deaf: bool = False
    sent: list[ControlCommand] = field(default_factory=list)
    acks: dict[str, ControlAck] = field(default_factory=dict)

    def send(self, command: ControlCommand) -> None:
        self.sent.append(command)
        if not self.deaf:
            self.deliver(command)

    def deliver(self, command: ControlCommand) -> ControlAck | None:
        """The flow reading `command` from the topic (again, after a restart)."""
        ack = self.plane.apply(command, self.clock())
        if ack is not None:
            self.store.insert("control_log", [ack])
            self.acks[ack.command_id] = ack
        return ack

    def wait_ack(self, command_id: str, timeout_s: float) -> ControlAck | None:
        return self.acks.get(command_id)

    def close(self) -> None:
        pass

    def restarted(self) -> FlowDouble:
        plane = pickle.loads(pickle.dumps(self.plane))
        return FlowDouble(self.store, self.clock, plane)


@contextmanager
def api_client(
    settings: Settings,
    store: Store | None,
    bus: Any = None,
    clock: Clock | None = None,
    run: RunInfo | None = None,
    token: str | None = TOKEN,
    **options: Any,
) -> Iterator[tuple[TestClient, ApiContext]]:
    ctx = ApiContext(
        settings=settings,
        store=StoreAccess(store),
        bus=bus,
        token=ApiToken(token) if token else None,
        run=run,
        clock=clock or Clock(),
        **options,
    )
    with TestClient(create_app(ctx), raise_server_exceptions=False) as client:
        yield client, ctx
