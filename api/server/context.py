"""Everything a request of the control API may use, built once by whoever serves it.

`stratflow run --api` builds it around the running flow: the run's settings, id and counters,
the decision log the run holds open (`StoreAccess` over the same chdb session: one process may
open a chdb directory, and every Store of the process on it shares the one session), and a
command bus on the run's broker. `stratflow serve` builds it on its own: its own store (a
ClickHouse server, or a chdb directory no run holds) and, when a broker is configured, a bus.
Tests build it with a bus and a clock of their own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from api.server.auth import ApiToken
from api.server.bus import CommandBus
from api.server.limits import DEFAULT_MAX_BODY
from api.server.nonce import NonceBook
from models.config.settings import Settings

if TYPE_CHECKING:
    from api.server.hub import StreamService
    from api.server.runs import RunControl
    from connectors.store.clickhouse import Store
    from dataflows.progress import FlowCounters

__all__ = ["ApiContext", "RunInfo", "StoreAccess", "StoreUnavailable", "wall_ms"]


def wall_ms() -> int:
    return int(time.time() * 1000)


class StoreUnavailable(RuntimeError):
    """The decision log cannot be read here (why: one line, for a 503)."""


class StoreAccess:
    """The decision log as the API reads it: one open `Store`, one query at a time (a server
    client's session takes no concurrent queries; chdb serialises them anyway)."""

    def __init__(self, store: Store | None, why_not: str = "no decision log configured") -> None:
        self._store = store
        self._why_not = why_not
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return self._store is not None and not self._store.closed

    def hand_over(self, why: str) -> Store | None:
        """Take the store away (a run the API started holds the embedded log now): reads
        answer 503 with `why` until `take_back`; the caller closes what it gets."""
        with self._lock:
            store, self._store, self._why_not = self._store, None, why
        return store

    def take_back(self, store: Store | None, why_not: str = "no decision log configured") -> None:
        """Serve `store` again (None: still unavailable, for `why_not`)."""
        with self._lock:
            self._store, self._why_not = store, why_not

    @contextmanager
    def session(self) -> Iterator[Store]:
        store = self._store
        if store is None or store.closed:
            raise StoreUnavailable(self._why_not)
        with self._lock:
            yield store


@dataclass(frozen=True)
class RunInfo:
    """The run the API is served from (`stratflow run --api`): its id, what its orders are,
    whether it resumed, and its counters (messages read, for the consumer lag)."""

    run_id: str
    mode: str
    resumed: bool = False
    counters: FlowCounters | None = None


@dataclass
class ApiContext:
    settings: Settings
    store: StoreAccess
    bus: CommandBus | None = None
    token: ApiToken | None = None
    run: RunInfo | None = None
    clock: Callable[[], int] = wall_ms
    bootstrap: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY
    max_wait_s: float = 30.0
    cors_origins: tuple[str, ...] = ()
    stream: StreamService | None = None
    """The WebSocket stream's source (`api.server.hub`); None without a broker."""
    runs: RunControl | None = None
    """What starts and stops the run (`api.server.runs`); None: neither here."""
    nonces: NonceBook = field(init=False)

    def __post_init__(self) -> None:
        self.nonces = NonceBook(self.clock)
