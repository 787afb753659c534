"""The unit lane's guard (tests/support/purity.py) does what the lane promises: a connection, a
server socket, a process or the chdb engine is refused with a reason, and so is a fixture that
stands up a broker or a server. Each test clears the record of what it caused on purpose, which
would otherwise fail it at teardown."""

from __future__ import annotations

import contextlib
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.purity import _GUARD, ImpureTest


@pytest.fixture
def caused_on_purpose() -> Iterator[list[str]]:
    """What the guard recorded during the test, handed to it and then forgotten."""
    seen: list[str] = []
    yield seen
    with _GUARD.lock:
        _GUARD.violations.clear()


def _recorded(seen: list[str]) -> list[str]:
    with _GUARD.lock:
        seen.extend(_GUARD.violations)
    return seen


def test_a_network_connection_is_refused(caused_on_purpose: list[str]) -> None:
    with socket.socket() as s, pytest.raises(ImpureTest, match="opened a network connection"):
        s.connect(("127.0.0.1", 9))
    assert any("socket.connect" in v for v in _recorded(caused_on_purpose))


def test_a_host_lookup_is_refused(caused_on_purpose: list[str]) -> None:
    with pytest.raises(ImpureTest, match="resolved a host name"):
        socket.getaddrinfo("localhost", 9)
    assert _recorded(caused_on_purpose)


def test_a_server_socket_is_refused(caused_on_purpose: list[str]) -> None:
    with socket.socket() as s, pytest.raises(ImpureTest, match="bound a socket"):
        s.bind(("127.0.0.1", 0))
    assert any("socket.bind" in v for v in _recorded(caused_on_purpose))


def test_a_subprocess_is_refused(caused_on_purpose: list[str]) -> None:
    with pytest.raises(ImpureTest, match="started a subprocess"):
        subprocess.run(["true"], check=False)
    assert _recorded(caused_on_purpose)


def test_swallowing_the_refusal_does_not_hide_it(caused_on_purpose: list[str]) -> None:
    """Code under test that catches everything still leaves the record that fails the test."""
    # What a careless `except` in the code under test would do:
    with contextlib.suppress(BaseException), socket.socket() as s:
        s.connect(("127.0.0.1", 9))
    assert _recorded(caused_on_purpose)


def test_the_chdb_engine_is_refused(tmp_path: Path, caused_on_purpose: list[str]) -> None:
    from connectors.store.clickhouse import Store
    from models.config.settings import ClickHouseConfig

    with pytest.raises(ImpureTest, match="chdb"):
        Store.open(ClickHouseConfig(path=str(tmp_path / "ch")))


@pytest.mark.parametrize(
    "name", ["kafka_bootstrap", "fresh_topics", "openai_server", "exchange_emulator", "webhook"]
)
def test_a_service_fixture_is_refused(request: pytest.FixtureRequest, name: str) -> None:
    with pytest.raises(pytest.fail.Exception, match="not available here"):
        request.getfixturevalue(name)


def test_file_io_is_allowed(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("pure enough", encoding="utf-8")
    assert (tmp_path / "x.txt").read_text(encoding="utf-8") == "pure enough"
