"""Regressions from walking through the README as a new user: every mistake one clear line,
Ctrl-C leaves a summary, the report says when it leaves something out, no secret is printed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer

from api import cli
from api.demo import RunDirError, new_run_dir
from api.report import RunSummary, summarize, write_report
from connectors.store.clickhouse import Store
from dataflows.progress import FlowCounters
from dataflows.run import RESUME_NOTE, RecoveryDirError, recovery_config, stop_message
from models.config.settings import ClickHouseConfig, load_settings
from models.core.messages import DeadLetter
from tests.test_cli import assert_no_traceback, assert_user_error, clean_env
from tests.test_cli import cli as run_cli

ROOT = Path(__file__).resolve().parent.parent
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
    env = clean_env(CLICKHOUSE_URL="http://reader:s3cret-pw@db.example:8123/?password=s3cret-pw")
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
    env = clean_env(STRATFLOW_RUNS=str(tmp_path / "afile" / "runs"))
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


def test_stop_handler_prints_the_summary_and_exits_130() -> None:
    script = (
        "import os, signal, time\n"
        "from dataflows.progress import FlowCounters\n"
        "from dataflows.run import _stop_handler\n"
        "c = FlowCounters(); c.add(records=7, bars=3)\n"
        "signal.signal(signal.SIGINT, _stop_handler(c, 'no report'))\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "time.sleep(10)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip() == (
        "stratflow: SIGINT, stopped after 7 messages, 3 bars, 0 decisions, 0 dead letters; "
        "no report"
    )


@pytest.mark.slow
def test_ctrl_c_in_the_demo_flow_says_no_report(tmp_path: Path) -> None:
    from tests.test_cli import STRATFLOW

    assert STRATFLOW is not None
    proc = subprocess.Popen(
        [STRATFLOW, "demo"],
        cwd=tmp_path,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # SIGINT as a terminal would send it, even if this test runs in the background.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    out: list[str] = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        out.append(line)
        if line.startswith("strategies:") or time.monotonic() > deadline:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, rest, err)
    assert "Traceback" not in err and "panicked" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("stratflow: SIGINT, stopped after "), err
    assert "no report; the partial decision log is in var/runs/" in last, last
    assert "resumes" not in err


@pytest.mark.kafka
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_in_a_paced_replay_says_how_far_it_got(
    kafka_bootstrap: str, tmp_path: Path, sig: signal.Signals
) -> None:
    from tests.test_cli import STRATFLOW

    assert STRATFLOW is not None
    topic = f"test.walk.{os.getpid()}.{time.time_ns()}"
    env = clean_env(KAFKA_BOOTSTRAP=kafka_bootstrap, STRATFLOW__KAFKA__TOPICS__MARKET=topic)
    proc = subprocess.Popen(
        [STRATFLOW, "replay", "GOOG", "--speed", "86400"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(6)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted: "), last
    assert f"of 2,148 messages published to {topic}" in last, last


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


def test_report_says_when_dead_letter_groups_are_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import api.report

    monkeypatch.setattr(api.report, "REASON_GROUPS", 3)
    cfg = ClickHouseConfig(path=str(tmp_path / "ch"), database="walk")
    rows = [
        DeadLetter(
            dead_letter_id=f"{topic}-{i}",
            topic=topic,
            partition=0,
            offset=i,
            record_ms=1_700_000_000_000 + i,
            reason=f"reason {i % 3}: detail",
            payload="{}",
        )
        for topic in ("market.ticks", "social.posts")
        for i in range(3 if topic == "market.ticks" else 2)
    ]
    with Store.open(cfg) as store:
        store.apply_schema()
        store.insert("dead_letters", rows)
        summary = summarize(store)
    shown = summary.dead_letter_reasons
    assert len(shown) == 3
    assert [r["topic"] for r in shown] == ["market.ticks"] * 3  # grouped by topic
    assert summary.dead_letter_reasons_cut == 2  # social.posts' two groups, one letter each
    html = write_report(summary, tmp_path, "t").read_text(encoding="utf-8")
    assert "... and 2 more dead letters in further groups" in html


def test_report_groups_each_guard_refusal_by_its_kind(tmp_path: Path) -> None:
    """Every kind of time or partition refusal ingest writes (models.market.parsing,
    models.market.time_guard,
    models.market.ingest) gets a group of its own, whatever times and symbols its reason names."""
    from models.market.parsing import clock_problem, event_time_problem
    from models.market.time_guard import JumpGuard

    day = 86_400_000
    t0 = 1_767_623_400_000
    clock = [clock_problem(t0 + k * day, t0, 300_000, "the ingest clock") for k in (1, 9000)]
    jumped: JumpGuard[int] = JumpGuard(confirm=3, clock_ms=t0)
    jumped.admit(t0 + 30 * day, 7 * day, 0)
    jump = [r for _, r in jumped.admit(t0 + 1000, 7 * day, 1).refuse]
    first: JumpGuard[int] = JumpGuard(confirm=3)
    first.admit(t0, 7 * day, 0)
    first.admit(t0 + 90 * day, 7 * day, 1)
    start = [r for _, r in first.finish().refuse]
    odd = [f"{event_time_problem(ms)}: x" for ms in (0, 8_000_000_000_000)]
    home = [f"symbol {s} belongs to partition 2 of m (...), arrived on 0: key" for s in "AB"]
    kinds = {"clock": clock, "jump": jump, "start": start, "odd": odd, "home": home}
    rows = [
        DeadLetter(
            dead_letter_id=f"{kind}-{i}",
            topic="market.ticks",
            partition=0,
            offset=i,
            record_ms=t0,
            reason=str(reason),
            payload="{}",
        )
        for kind, reasons in kinds.items()
        for i, reason in enumerate(reasons)
    ]
    assert all(r.reason and r.reason != "None" for r in rows)
    cfg = ClickHouseConfig(path=str(tmp_path / "ch"), database="guards")
    with Store.open(cfg) as store:
        store.apply_schema()
        store.insert("dead_letters", rows)
        shown = summarize(store).dead_letter_reasons
    groups = {r["reason"]: r["n"] for r in shown}
    assert len(groups) == len(kinds), groups
    assert sorted(groups.values()) == sorted(len(v) for v in kinds.values())
