"""The `stratflow` command line, in-process: its help, `config check`, and every user mistake.

The rule under test: a user mistake gets exactly one `error:` line on stderr and exit code 2, a
bug one `internal error:` line and exit code 1, and never a Python traceback. Each command runs
through `api.cli.main`, what the console script calls (tests/support/cli.py); the mistakes that
need a broker, a ClickHouse server or a locked chdb directory are
tests/integration/test_cli_services.py, and the console script itself, in real processes,
tests/e2e/test_cli_smoke.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import api.cli
import api.schemas_cmd
from tests.support.cli import CliResult, assert_no_traceback, assert_user_error, lines, run_cli

UNREACHABLE = "127.0.0.1:1"


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> CliResult:
    return run_cli(*args, cwd=cwd, env=env)


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    return tmp_path


# ------------------------------------------------------------------------------ help


def test_help(cwd: Path) -> None:
    proc = cli("--help", cwd=cwd)
    assert proc.returncode == 0
    assert proc.stderr == ""
    for command in ("broker", "replay", "run", "demo", "config", "schemas"):
        assert command in proc.stdout


@pytest.mark.parametrize(
    "command", [["replay"], ["run"], ["demo"], ["broker"], ["config", "check"]]
)
def test_command_help(cwd: Path, command: list[str]) -> None:
    proc = cli(*command, "--help", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert "--config" in proc.stdout
    assert_no_traceback(proc)


def test_no_arguments_shows_help(cwd: Path) -> None:
    proc = cli(cwd=cwd)
    assert_no_traceback(proc)
    assert "Usage" in proc.stdout
    assert "replay" in proc.stdout


# ------------------------------------------------------------------------------ config check


def test_config_check_prints_values_in_force(cwd: Path) -> None:
    proc = cli("config", "check", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "config OK" in out
    assert "stratflow.yaml" in out
    assert "overridden by" not in out
    for expected in ("symbols:", "GOOG:", "bar_interval: 1d", "max_order_notional: '25000'"):
        assert expected in out


def test_config_check_names_env_overrides(cwd: Path) -> None:
    env = dict(STRATFLOW__RISK__MAX_ORDER_NOTIONAL="5000", KAFKA_BOOTSTRAP="kafka.example:9092")
    proc = cli("config", "check", cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "overridden by STRATFLOW__RISK__MAX_ORDER_NOTIONAL: risk.max_order_notional" in out
    assert "overridden by KAFKA_BOOTSTRAP: kafka.bootstrap" in out
    assert "max_order_notional: '5000'" in out
    assert "bootstrap: kafka.example:9092" in out


def test_config_check_prefers_local_stratflow_yaml(cwd: Path) -> None:
    (cwd / "stratflow.yaml").write_text("symbols: {ABC: {}}\nrisk: {min_cash: '123'}\n")
    proc = cli("config", "check", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert "config OK: stratflow.yaml" in proc.stdout
    assert "ABC:" in proc.stdout
    assert "GOOG" not in proc.stdout
    assert "min_cash: '123'" in proc.stdout


# ------------------------------------------------------------------------------ user mistakes


def test_config_file_missing(cwd: Path) -> None:
    assert_user_error(cli("config", "check", "-c", "missing.yaml", cwd=cwd), "missing.yaml")


def test_config_invalid_yaml(cwd: Path) -> None:
    (cwd / "bad.yaml").write_text("symbols: {GOOG: {}}\nrisk: [\n")
    assert_user_error(cli("config", "check", "-c", "bad.yaml", cwd=cwd), "not valid YAML")


def test_config_invalid_value(cwd: Path) -> None:
    (cwd / "bad.yaml").write_text("symbols: {GOOG: {}}\nrisk: {max_order_notional: -5}\n")
    assert_user_error(cli("config", "check", "-c", "bad.yaml", cwd=cwd), "risk.max_order_notional")


def test_config_unknown_key(cwd: Path) -> None:
    (cwd / "stratflow.yaml").write_text("symbols: {GOOG: {}}\nrisk: {max_order: 5}\n")
    assert_user_error(cli("config", "check", cwd=cwd), "risk.max_order", "not permitted")


def test_config_several_problems_one_error_line(cwd: Path) -> None:
    (cwd / "stratflow.yaml").write_text("symbols: {goog: {}}\nriks: {}\n")
    proc = cli("config", "check", cwd=cwd)
    assert_no_traceback(proc)
    assert proc.returncode == 2
    err = lines(proc.stderr)
    assert [ln.startswith("error:") for ln in err] == [True, False]
    assert "symbols.goog" in proc.stderr
    assert "riks" in proc.stderr


def test_env_override_invalid(cwd: Path) -> None:
    env = dict(STRATFLOW__RISK__MAX_ORDER_NOTIONAL="-1")
    assert_user_error(cli("config", "check", cwd=cwd, env=env), "risk.max_order_notional")


def test_bad_config_stops_every_command(cwd: Path) -> None:
    env = dict(STRATFLOW__RISK__MAX_ORDER_NOTIONAL="-1")
    proc = cli("demo", "--scenario-minutes", "1", cwd=cwd, env=env)
    assert_user_error(proc, "risk.max_order_notional")
    assert not (cwd / "var").exists()


def test_replay_missing_file(cwd: Path) -> None:
    proc = cli("replay", "no_such_file.csv", "--bootstrap", UNREACHABLE, cwd=cwd)
    assert_user_error(proc, "no_such_file.csv", "GOOG")


def test_replay_without_broker(cwd: Path) -> None:
    assert_user_error(cli("replay", "GOOG", cwd=cwd), "no broker", "KAFKA_BOOTSTRAP")


def test_replay_symbol_not_in_config(cwd: Path) -> None:
    (cwd / "file.csv").write_text(
        "ts,open,high,low,close,volume\n2024-01-02,10,11,9,10.5,100\n2024-01-03,10.5,12,10,11,120\n"
    )
    proc = cli("replay", "file.csv", "--bootstrap", UNREACHABLE, cwd=cwd)
    assert_user_error(proc, "FILE", "not in the config")


def test_replay_unusable_file(cwd: Path) -> None:
    (cwd / "GOOG.csv").write_text("when,what\n1,2\n")  # a local file wins over the dataset
    proc = cli("replay", "GOOG.csv", "--bootstrap", UNREACHABLE, cwd=cwd)
    assert_user_error(proc, "GOOG.csv", "no time column")


@pytest.mark.parametrize("speed", ["0", "-2", "nan"])
def test_replay_bad_speed(cwd: Path, speed: str) -> None:
    proc = cli("replay", "GOOG", f"--speed={speed}", "--bootstrap", UNREACHABLE, cwd=cwd)
    assert_user_error(proc, "--speed")


def test_replay_speed_not_a_number(cwd: Path) -> None:
    proc = cli("replay", "GOOG", "--speed", "fast", "--bootstrap", UNREACHABLE, cwd=cwd)
    assert_user_error(proc, "--speed", "stratflow replay --help")


def test_demo_unknown_dataset(cwd: Path) -> None:
    assert_user_error(cli("demo", "--dataset", "NOPE", cwd=cwd), "NOPE", "GOOG")


def test_demo_negative_minutes(cwd: Path) -> None:
    assert_user_error(cli("demo", "--scenario-minutes", "-1", cwd=cwd), "--scenario-minutes")


def test_run_without_broker(cwd: Path) -> None:
    assert_user_error(cli("run", cwd=cwd), "no broker")


def test_unknown_option(cwd: Path) -> None:
    assert_user_error(cli("run", "--bogus", cwd=cwd), "--bogus", "stratflow run --help")


def test_unknown_command(cwd: Path) -> None:
    assert_user_error(cli("launch", cwd=cwd), "launch")


def test_missing_argument(cwd: Path) -> None:
    assert_user_error(cli("replay", cwd=cwd), "source")


def test_broker_port_out_of_range(cwd: Path) -> None:
    assert_user_error(cli("broker", "--port", "70000", cwd=cwd), "--port")


def test_bug_is_one_line_unless_debugging(cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not a user error: one `internal error:` line and exit 1; STRATFLOW_DEBUG=1 lets it
    through (the console script then dies with Python's traceback)."""

    def boom(path: Path | None) -> None:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(api.cli, "settings_from", boom)
    proc = cli("config", "check", cwd=cwd)
    assert proc.returncode == 1
    assert_no_traceback(proc)
    assert lines(proc.stderr) == [
        "internal error: RuntimeError: boom (STRATFLOW_DEBUG=1 shows the traceback)"
    ]
    with pytest.raises(RuntimeError, match="boom"):
        cli("config", "check", cwd=cwd, env={"STRATFLOW_DEBUG": "1"})


def test_schemas_check_on_the_checkout(cwd: Path) -> None:
    proc = cli("schemas", "--check", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert "schemas up to date" in proc.stdout


def test_schemas_write_then_check(cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a scratch directory (the checkout's specs/schemas is never touched here)."""
    monkeypatch.setattr(api.schemas_cmd, "default_schema_dir", lambda: Path("out"))

    def schemas(*args: str) -> CliResult:
        return cli("schemas", *args, cwd=cwd)

    proc = schemas("--check")
    assert_no_traceback(proc)
    assert proc.returncode == 1
    [err] = lines(proc.stderr)
    assert err.startswith("error: ")
    assert "market.json (missing)" in err
    proc = schemas()
    assert proc.returncode == 0, proc.stderr
    assert "wrote out/market.json" in proc.stdout
    assert (cwd / "out" / "config.json").is_file()
    proc = schemas("--check")
    assert proc.returncode == 0, proc.stderr


def test_an_in_process_run_leaves_nothing_behind(cwd: Path) -> None:
    """What a command changes in its process (main() quiets clickhouse_connect's logger, the
    environment it was given, the working directory, the consoles) is undone for the next test."""
    import logging
    import os
    import signal

    api.cli._user_errors()  # what a module sets up when imported stays: import them first
    quieted = logging.getLogger("clickhouse_connect")
    before = (
        dict(os.environ),
        os.getcwd(),
        list(quieted.handlers),
        quieted.propagate,
        signal.getsignal(signal.SIGTERM),
        (api.cli.console, api.cli.err_console),
    )
    proc = cli("config", "check", cwd=cwd, env={"STRATFLOW__RISK__MAX_ORDER_NOTIONAL": "-1"})
    assert_user_error(proc, "risk.max_order_notional")
    after = (
        dict(os.environ),
        os.getcwd(),
        list(quieted.handlers),
        quieted.propagate,
        signal.getsignal(signal.SIGTERM),
        (api.cli.console, api.cli.err_console),
    )
    assert after == before
