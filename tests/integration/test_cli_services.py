"""`stratflow` mistakes that only show against a service, in-process (tests/support/cli.py): a
dead broker address, an unreachable ClickHouse server, a chdb directory another process holds.
Each is one `error:` line and exit code 2, said from the refusal itself."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import CliResult, assert_user_error, run_cli

UNREACHABLE = "127.0.0.1:1"


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    return tmp_path


def test_unreachable_broker_fails_fast(cwd: Path) -> None:
    """`replay` and `run` give up on a dead bootstrap address with one line (run used to hang),
    from the refusal itself, not after waiting out their timeout: the reason says so, and no
    wall-clock bound makes the test depend on how loaded the machine is."""
    results: dict[str, CliResult] = {
        "replay": run_cli("replay", "GOOG", "--bootstrap", UNREACHABLE, cwd=cwd),
        # `run` takes it from the environment
        "run": run_cli("run", "--no-follow", cwd=cwd, env={"KAFKA_BOOTSTRAP": UNREACHABLE}),
    }
    assert_user_error(
        results["replay"], f"not reachable at --bootstrap={UNREACHABLE}: connection refused"
    )
    assert_user_error(
        results["run"], f"not reachable at KAFKA_BOOTSTRAP={UNREACHABLE}: connection refused"
    )
    for result in results.values():
        assert " within " not in result.stderr  # the timeout path was not taken


@pytest.fixture
def locked_chdb(cwd: Path) -> Iterator[Path]:
    """Another process holding ./var/clickhouse, as a second `stratflow run` would."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from connectors.store.clickhouse import Store\n"
            "from models.config.settings import ClickHouseConfig\n"
            "store = Store.open(ClickHouseConfig(path='var/clickhouse'))\n"
            "print('ready', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        yield cwd / "var" / "clickhouse"
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        try:
            holder.wait(timeout=20)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()


def test_locked_clickhouse_directory(cwd: Path, locked_chdb: Path) -> None:
    proc = run_cli("run", "--bootstrap", UNREACHABLE, cwd=cwd)
    assert_user_error(proc, "chdb directory", "in use")


def test_unreachable_clickhouse_server(cwd: Path) -> None:
    env = {"CLICKHOUSE_URL": "http://127.0.0.1:1"}
    proc = run_cli("run", "--bootstrap", UNREACHABLE, cwd=cwd, env=env)
    assert_user_error(proc, "ClickHouse at http://127.0.0.1:1 is unreachable")
