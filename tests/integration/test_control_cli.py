"""`stratflow control` (issue 13): one command published to the control topic of a real broker,
its id printed; a mistake (an unknown action, no broker) is one `error:` line."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.kafka.io import read_topic
from models.control.commands import ControlCommand, parse_command
from models.control.states import TradingState
from tests.support.cli import assert_user_error, lines, run_cli
from tests.support.flowkit import create_topics, make_settings, write_config

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize(
    ("action", "state"),
    [("pause", TradingState.PAUSED), ("halt", TradingState.HALTED), ("resume", "active")],
)
def test_a_command_reaches_the_control_topic_with_its_printed_id(
    kafka_bootstrap: str, tmp_path: Path, action: str, state: str
) -> None:
    settings = make_settings(tmp_path, {"SIMA": {}})
    create_topics(kafka_bootstrap, settings)
    config = write_config(settings, tmp_path / "cfg.yaml")
    args = ("control", action, "--by", "alice", "--config", str(config))
    proc = run_cli(*args, "--bootstrap", kafka_bootstrap, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (printed,) = lines(proc.stdout)
    (record,) = read_topic(kafka_bootstrap, settings.kafka.topics.control)
    command = parse_command(record.value)
    assert isinstance(command, ControlCommand)
    assert command.command_id == printed and command.issued_by == "alice"
    assert command.action.state == state


def test_an_unknown_action_is_one_error_line(tmp_path: Path) -> None:
    proc = run_cli("control", "sleep", "--bootstrap", "127.0.0.1:1", cwd=tmp_path)
    assert_user_error(proc, "unknown action 'sleep'")


def test_no_broker_is_one_error_line(tmp_path: Path) -> None:
    assert_user_error(run_cli("control", "pause", cwd=tmp_path), "no broker")
    proc = run_cli("control", "pause", "--bootstrap", "127.0.0.1:1", cwd=tmp_path)
    assert_user_error(proc)
