"""The `stratflow` console script, run for real in subprocesses.

The rule under test: a user mistake gets exactly one `error:` line on stderr and exit code 2, a
bug one `internal error:` line and exit code 1, and never a Python traceback.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).with_name("stratflow")
STRATFLOW = str(SCRIPT) if SCRIPT.is_file() else shutil.which("stratflow")
pytestmark = pytest.mark.skipif(STRATFLOW is None, reason="the stratflow console script is absent")

UNREACHABLE = "127.0.0.1:1"


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything that would change what the CLI does."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("STRATFLOW")
        and k not in ("KAFKA_BOOTSTRAP", "CLICKHOUSE_URL", "FORCE_COLOR", "COLUMNS")
    }
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    assert STRATFLOW is not None
    return subprocess.run(
        [STRATFLOW, *args],
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def assert_no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert "panicked" not in proc.stderr, proc.stderr


def assert_user_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 2, exactly one line on stderr, starting `error:` and naming what went wrong."""
    assert_no_traceback(proc)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    err = lines(proc.stderr)
    assert len(err) == 1, proc.stderr
    assert err[0].startswith("error: "), err[0]
    for needle in needles:
        assert needle in err[0], (needle, err[0])
    return err[0]


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
    env = clean_env(
        STRATFLOW__RISK__MAX_ORDER_NOTIONAL="5000", KAFKA_BOOTSTRAP="kafka.example:9092"
    )
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
    env = clean_env(STRATFLOW__RISK__MAX_ORDER_NOTIONAL="-1")
    assert_user_error(cli("config", "check", cwd=cwd, env=env), "risk.max_order_notional")


def test_bad_config_stops_every_command(cwd: Path) -> None:
    env = clean_env(STRATFLOW__RISK__MAX_ORDER_NOTIONAL="-1")
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


def test_unreachable_broker_fails_fast(cwd: Path) -> None:
    """`replay` and `run` give up on a dead bootstrap address with one line (run used to hang),
    from the refusal itself, not after waiting out their timeout: the reason says so, and no
    wall-clock bound makes the test depend on how loaded the machine is."""
    assert STRATFLOW is not None
    commands = {
        "replay": [STRATFLOW, "replay", "GOOG", "--bootstrap", UNREACHABLE],
        "run": [STRATFLOW, "run", "--no-follow"],
    }
    env = clean_env(KAFKA_BOOTSTRAP=UNREACHABLE)  # `run` takes it from the environment
    procs = {
        name: subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, cmd in commands.items()
    }
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    try:
        for name, p in procs.items():
            out, err = p.communicate(timeout=240)  # a hang guard, not a bound
            results[name] = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
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
    proc = cli("run", "--bootstrap", UNREACHABLE, cwd=cwd)
    assert_user_error(proc, "chdb directory", "in use")


def test_unreachable_clickhouse_server(cwd: Path) -> None:
    env = clean_env(CLICKHOUSE_URL="http://127.0.0.1:1")
    proc = cli("run", "--bootstrap", UNREACHABLE, cwd=cwd, env=env)
    assert_user_error(proc, "ClickHouse at http://127.0.0.1:1 is unreachable")


def test_bug_is_one_line_unless_debugging(cwd: Path) -> None:
    """Not a user error: one `internal error:` line and exit 1; STRATFLOW_DEBUG=1 shows it."""
    code = (
        "import api.cli as cli\n"
        "def boom(path):\n"
        "    raise RuntimeError('boom\\nsecond line')\n"
        "cli.settings_from = boom\n"
        "cli.main(['config', 'check'])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=clean_env(), capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert_no_traceback(proc)
    assert lines(proc.stderr) == [
        "internal error: RuntimeError: boom (STRATFLOW_DEBUG=1 shows the traceback)"
    ]
    debug = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=clean_env(STRATFLOW_DEBUG="1"),
        capture_output=True,
        text=True,
    )
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
    assert "RuntimeError: boom" in debug.stderr


def test_schemas_check_on_the_checkout(cwd: Path) -> None:
    proc = cli("schemas", "--check", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert "schemas up to date" in proc.stdout


def test_schemas_write_then_check(cwd: Path) -> None:
    """In a scratch directory (the checkout's specs/schemas is never touched here)."""
    code = (
        "import sys, pathlib\n"
        "import api.schemas_cmd as s\n"
        "import api.cli as cli\n"
        "s.default_schema_dir = lambda: pathlib.Path('out')\n"
        "cli.main(sys.argv[1:])\n"
    )

    def schemas(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", code, "schemas", *args],
            cwd=cwd,
            env=clean_env(),
            capture_output=True,
            text=True,
            check=False,
        )

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


# ------------------------------------------------------------------------------ happy paths


@pytest.mark.kafka
def test_replay_then_run(cwd: Path, kafka_bootstrap: str) -> None:
    """A shipped dataset through a real broker, then the pipeline to the end of the topic."""
    run_id = uuid.uuid4().hex[:10]
    topics = (
        "market",
        "news",
        "social",
        "decisions",
        "orders",
        "fills",
        "alerts",
        "dead_letters",
        "control",
    )
    env = clean_env(
        KAFKA_BOOTSTRAP=kafka_bootstrap,
        **{f"STRATFLOW__KAFKA__TOPICS__{t.upper()}": f"test.cli.{t}.{run_id}" for t in topics},
    )
    proc = cli("replay", "goog", cwd=cwd, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert_no_traceback(proc)
    assert re.search(rf"published 2,148 messages to test\.cli\.market\.{run_id}", proc.stdout)
    proc = cli("run", "--no-follow", cwd=cwd, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert_no_traceback(proc)
    assert (cwd / "var" / "clickhouse").is_dir()


@pytest.mark.kafka
def test_demo_end_to_end(cwd: Path) -> None:
    proc = cli("demo", "--scenario-minutes", "5", cwd=cwd, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_no_traceback(proc)
    out = proc.stdout
    match = re.search(r"^report: (\S+)$", out, re.MULTILINE)
    assert match, out
    report = cwd / match.group(1)
    assert report.name == "report.html"
    assert report.is_file()
    assert report.resolve().is_relative_to((cwd / "var" / "runs").resolve())
    decisions = re.search(r"^\W*decisions\W+([\d,]+)\W*$", out, re.MULTILINE)
    assert decisions, out
    assert int(decisions.group(1).replace(",", "")) > 0
    assert re.search(r"(routine|strategic)\W+(executed|no_action)\W+\d+", out)
    assert "final cash" in out
