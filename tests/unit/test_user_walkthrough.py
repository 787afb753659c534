"""Regressions from walking through the README as a new user: every mistake one clear line,
Ctrl-C leaves a summary, the report says when it leaves something out, no secret is printed.
The commands run in-process (tests/support/cli.py); Ctrl-C in real processes is
tests/e2e/test_walkthrough_interrupts.py, and the report over a real store
tests/integration/test_report_store.py."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import typer

from api import cli
from api.demo import RunDirError, new_run_dir
from api.report import RunSummary, write_report
from dataflows.progress import FlowCounters
from dataflows.run import RESUME_NOTE, RecoveryDirError, recovery_config, stop_message
from models.config.settings import load_settings
from tests.support.cli import assert_no_traceback, assert_user_error, run_cli

ROOT = Path(__file__).resolve().parents[2]
BUILTIN = ROOT / "api" / "stratflow.yaml"


# ------------------------------------------------------------------------------ config mistakes


def test_misspelt_key_names_the_nearest_known_key(tmp_path: Path) -> None:
    (tmp_path / "stratflow.yaml").write_text(
        "symbols: {GOOG: {bar_intervl: 1d}}\nrisk: {max_order_notionl: 5}\n"
    )
    proc = run_cli("config", "check", cwd=tmp_path)
    assert_no_traceback(proc)
    assert proc.returncode == 2
    assert "did you mean risk.max_order_notional?" in proc.stderr
    assert "did you mean symbols.GOOG.bar_interval?" in proc.stderr


def test_misspelt_section_names_the_nearest_section(tmp_path: Path) -> None:
    (tmp_path / "stratflow.yaml").write_text("symbols: {GOOG: {}}\nriskk: {}\n")
    assert_user_error(run_cli("config", "check", cwd=tmp_path), "riskk", "did you mean risk?")


def test_a_partial_config_file_says_it_replaces_the_builtin(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text('execution: {initial_cash: "50000"}\n')
    assert_user_error(
        run_cli("config", "check", "-c", "mine.yaml", cwd=tmp_path),
        "symbols",
        "replaces the built-in one",
        "api/stratflow.yaml",
    )


def test_explain_leaves_other_problems_alone() -> None:
    text = (
        "execution.initial_cash: Input should be greater than 0\n"
        "zzz: Extra inputs are not permitted"
    )
    assert cli.explain_config_error(text) == text


def test_config_check_hides_the_clickhouse_password(tmp_path: Path) -> None:
    env = dict(CLICKHOUSE_URL="http://reader:s3cret-pw@db.example:8123/?password=s3cret-pw")
    proc = run_cli("config", "check", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "s3cret-pw" not in proc.stdout + proc.stderr
    assert "url: http://reader:***@db.example:8123/?***" in proc.stdout


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://u:p@h:8123/db", "http://u:***@h:8123/db"),
        ("https://h", "https://h"),
        ("http://u@h:1", "http://u@h:1"),
        ("http://[::1]:8123", "http://[::1]:8123"),
        ("http://h:notaport", "***"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert cli.redact_url(url) == shown


# ------------------------------------------------------------------------------ demo / run options


def test_demo_datasets_split_on_commas(tmp_path: Path) -> None:
    proc = run_cli("demo", "-d", "goog,NOPE", "--scenario-minutes", "0", cwd=tmp_path)
    assert_user_error(proc, "unknown dataset NOPE")
    assert not (tmp_path / "var").exists()


def test_demo_empty_dataset(tmp_path: Path) -> None:
    assert_user_error(run_cli("demo", "-d", " , ", cwd=tmp_path), "--dataset is empty")


def test_demo_unusable_run_root_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    env = dict(STRATFLOW_RUNS=str(tmp_path / "afile" / "runs"))
    proc = run_cli("demo", "--scenario-minutes", "0", "-d", "GOOG", cwd=tmp_path, env=env)
    assert_user_error(proc, "cannot create a run directory", "STRATFLOW_RUNS")


def test_new_run_dir_refuses_a_file_as_root(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RunDirError, match="Not a directory"):
        new_run_dir(tmp_path / "afile" / "runs")


def test_paper_without_pair_symbols_points_at_the_paper_config(tmp_path: Path) -> None:
    proc = run_cli("run", "--paper", cwd=tmp_path)
    assert_user_error(proc, "BASE/QUOTE", "--config deploy/paper.yaml")
    assert not (tmp_path / "var").exists(), "no broker or run directory for a refused run"


# ------------------------------------------------------------------------------ file-system errors


def test_an_os_error_naming_a_path_is_a_user_error(capsys: pytest.CaptureFixture[str]) -> None:
    def go() -> None:
        Path("/proc/no-such-dir/x").write_text("x")

    with pytest.raises(typer.Exit) as exc:
        cli.guarded(go)
    assert exc.value.exit_code == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: /proc/no-such-dir/x: No such file or directory", err


def test_an_os_error_without_a_path_stays_a_bug() -> None:
    def go() -> None:
        raise OSError("something deep")

    with pytest.raises(OSError, match="something deep"):
        cli.guarded(go)


def test_unusable_recovery_dir_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    settings = load_settings(BUILTIN, {"STRATFLOW__RECOVERY__DIR": str(tmp_path / "afile")})
    with pytest.raises(RecoveryDirError, match="afile is not usable: not a directory"):
        recovery_config(settings)
    settings = load_settings(BUILTIN, {"STRATFLOW__RECOVERY__DIR": str(tmp_path / "afile/rec")})
    with pytest.raises(RecoveryDirError, match="is not usable"):
        recovery_config(settings)
    assert cli._user_error_in(RecoveryDirError("x")) is not None


# ------------------------------------------------------------------------------ Ctrl-C


def test_stop_message_counts_and_note() -> None:
    counters = FlowCounters()
    counters.add(records=1234, bars=5, decisions=2, dead=1)
    line = stop_message(signal.SIGINT, counters, RESUME_NOTE)
    assert line == (
        "stratflow: SIGINT, stopped after 1,234 messages, 5 bars, 2 decisions, 1 dead letters; "
        "the next run resumes from the last snapshot"
    )
    assert stop_message(signal.SIGTERM, None, "n") == "stratflow: SIGTERM, stopped; n"


# ------------------------------------------------------------------------------ report


def _summary(**kw: object) -> RunSummary:
    base: dict[str, object] = {
        "counts": {"dead_letters": 0},
        "decisions": [],
        "positions": [],
        "cash": None,
        "equity": None,
        "dead_letter_reasons": [],
        "alerts": [],
    }
    base.update(kw)
    return RunSummary(**base)  # type: ignore[arg-type]


def test_report_without_snapshots_says_n_a_not_none(tmp_path: Path) -> None:
    html = write_report(_summary(), tmp_path, "t").read_text(encoding="utf-8")
    assert "Final cash <b>n/a</b>, equity <b>n/a</b>" in html
    assert "None" not in html


def test_report_headline_money_as_the_console_prints_it(tmp_path: Path) -> None:
    from decimal import Decimal

    s = _summary(cash=Decimal("44293.47733162"), equity=Decimal("118631.58733162"))
    html = write_report(s, tmp_path, "t").read_text(encoding="utf-8")
    assert "Final cash <b>44,293.48</b>, equity <b>118,631.59</b>" in html
