"""The unit lane's guard: a test under tests/unit that opens a network connection, binds a
server socket, starts a process or opens the chdb engine fails, whatever the code under test
does with the error.

Why an audit hook rather than patching `socket.socket.connect` and `subprocess.Popen`: a module
that did `from subprocess import Popen` at import time, or a C extension that goes through
CPython's socket module, is caught all the same. The hook is installed once per process (they
cannot be removed) and only acts while a unit test runs. Each violation is recorded and raised
as a `BaseException`, so a broad `except Exception` in the code under test cannot hide it; the
record fails the test at teardown even if something caught the exception anyway (a thread).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

GUARDED_EVENTS = {
    "socket.connect": "opened a network connection",
    "socket.bind": "bound a socket (a server)",
    "socket.sendto": "sent a datagram",
    "socket.getaddrinfo": "resolved a host name",
    "subprocess.Popen": "started a subprocess",
    "os.posix_spawn": "started a process",
    "os.fork": "forked the process",
    "os.forkpty": "forked the process",
    "os.system": "ran a shell command",
    "os.exec": "replaced the process",
}
HINT = "tests/unit is the pure lane: move the test to tests/integration or tests/e2e"
STORE_MODULES = ("chdb",)
"""Importing these for the first time during a unit test means it is about to open a store."""


class ImpureTest(BaseException):
    """Raised where a unit test reached outside the process (not an `Exception`: the code under
    test must not be able to swallow it)."""


class _Guard:
    def __init__(self) -> None:
        self.active = False
        self.violations: list[str] = []
        self.lock = threading.Lock()

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active:
            return
        what = GUARDED_EVENTS.get(event)
        if what is None and event == "import" and args and args[0] in STORE_MODULES:
            what = f"imported {args[0]} (the in-process ClickHouse engine)"
        if what is None:
            return
        if event == "socket.bind" and (_is_unix_path(args) or _importing()):
            return
        detail = f"{what}: {event}{_brief(args)}"
        with self.lock:
            self.violations.append(detail)
        raise ImpureTest(f"{detail}; {HINT}")


def _is_unix_path(args: tuple[Any, ...]) -> bool:
    """A bind of an AF_UNIX path is file I/O, not a server on the network."""
    return len(args) >= 2 and isinstance(args[1], (str, bytes))


def _importing() -> bool:
    """A bind while a module is being imported is a capability probe (urllib3 binds ::1 to
    learn whether the host has IPv6, and closes it at once), not a server the test starts."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib._bootstrap"):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def _brief(args: tuple[Any, ...]) -> str:
    text = repr(args[1:] if args and hasattr(args[0], "family") else args)
    return f" {text[:160]}"


_GUARD = _Guard()
_installed = False


def _install() -> None:
    global _installed
    if not _installed:
        sys.addaudithook(_GUARD.hook)
        _installed = True


def _refuse_chdb_session(*_args: Any, **_kwargs: Any) -> Any:
    raise ImpureTest(f"opened the chdb engine (a store); {HINT}")


@pytest.fixture(autouse=True)
def _pure_unit_test(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Active for the duration of each test (setup and teardown of its own fixtures included)."""
    _install()
    store = sys.modules.get("connectors.store.clickhouse")
    if store is not None:  # chdb already loaded by an earlier test in this process
        monkeypatch.setattr(store, "_new_chdb_session", _refuse_chdb_session)
    with _GUARD.lock:
        _GUARD.violations.clear()
    _GUARD.active = True
    try:
        yield
    finally:
        _GUARD.active = False
    with _GUARD.lock:
        seen, _GUARD.violations[:] = list(_GUARD.violations), []
    if seen:
        pytest.fail(f"{HINT}; this test {'; '.join(seen)}", pytrace=False)
