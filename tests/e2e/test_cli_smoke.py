"""The `stratflow` console script in real processes: what only a process shows (the entry
point installed, exit codes as the shell sees them, a whole demo). Replay and run across runs
are tests/e2e/test_run_cli.py; every other command-line behaviour is tested in-process
(tests/unit/test_cli.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import assert_no_traceback, assert_user_error, clean_environ

SCRIPT = Path(sys.executable).with_name("stratflow")
STRATFLOW = str(SCRIPT) if SCRIPT.is_file() else shutil.which("stratflow")
pytestmark = pytest.mark.skipif(STRATFLOW is None, reason="the stratflow console script is absent")


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    assert STRATFLOW is not None
    return subprocess.run(
        [STRATFLOW, *args],
        cwd=cwd,
        env=env or clean_environ(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    return tmp_path


def test_help(cwd: Path) -> None:
    proc = cli("--help", cwd=cwd)
    assert proc.returncode == 0
    assert proc.stderr == ""
    for command in ("broker", "replay", "run", "demo", "config", "schemas"):
        assert command in proc.stdout


def test_a_mistake_is_one_line_and_exit_code_2(cwd: Path) -> None:
    assert_user_error(cli("run", "--bogus", cwd=cwd), "--bogus", "stratflow run --help")


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
    assert re.search(r"GOOG\s.*%", out) and re.search(r"EURUSD\s.*%", out), out
