"""The flow as a cluster of processes (dataflows/cluster.py) on a real broker: the same rows as
one worker, a kill and resume, a failed child, Ctrl-C.

The runs read the crash test's scenario (tests/e2e/test_crash_restart.py) with its settings, so
the golden rows that test recorded with one worker are what every cluster run here must write:
issue 13's "the same decisions as one worker", table by table and row by row (decisions,
orders, fills, positions, bars, signals, alerts, GPT calls)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from connectors.files.replay import replay
from connectors.sim.openai_server import LocalOpenAIServer, Scenario
from models.config.settings import Settings
from tests.e2e.test_cli_smoke import STRATFLOW
from tests.e2e.test_crash_restart import (
    GPT_ANSWER,
    decisions_written,
    run_settings,
    scenario_ticks,
)
from tests.support.cli import assert_no_traceback, run_cli
from tests.support.flowkit import (
    ROOT,
    create_topics,
    flow_command,
    query,
    run_flow_subprocess,
    write_config,
)
from tests.support.golden import check_golden, result_tables

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def golden_name(partitions: int, gpt: bool) -> str:
    return f"crash_restart_{partitions}p" + ("_gpt" if gpt else "")


def published(bootstrap: str, tmp: Path, partitions: int) -> Settings:
    s = run_settings(tmp, None, partitions)
    create_topics(bootstrap, s)
    replay(bootstrap, s.kafka.topics.market, scenario_ticks())
    return s


def on(processes: int, *args: str) -> list[str]:
    return [*args, "--processes", str(processes)]


def children_of(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    with contextlib.suppress(OSError):
        return [int(p) for p in path.read_text().split()]
    return []


def alive(pid: int) -> bool:
    """Running (a zombie has ended: only its parent's wait is missing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pids: list[int]) -> None:
    deadline = time.monotonic() + 30  # a hang guard, not a bound
    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, [p for p in pids if alive(p)]
        time.sleep(0.05)


def flow_children(proc: subprocess.Popen[str], want: int) -> list[int]:
    """The flow's other processes (forked by it; the broker is not its child here)."""
    deadline = time.monotonic() + 60
    while len(kids := children_of(proc.pid)) < want:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, kids
        time.sleep(0.05)
    return kids


@pytest.mark.parametrize(
    ("partitions", "processes", "gpt", "apart"),
    [(3, 2, False, False), (3, 3, False, False), (1, 2, True, False), (3, 3, False, True)],
)
def test_a_cluster_writes_the_rows_of_one_worker(
    kafka_bootstrap: str, tmp_path: Path, partitions: int, processes: int, gpt: bool, apart: bool
) -> None:
    """Three partitions spread over the ingest processes; with GPT, the desk's gateway asks
    from process 0 as it does alone; `--rows-apart` (a backtest's layout: the store and the
    desk's rows in process 1, process 2's rows crossing to it) writes the same rows."""
    with contextlib.ExitStack() as stack:
        env: dict[str, str] = {}
        if gpt:
            server = stack.enter_context(
                LocalOpenAIServer(api_key="sk-cluster", default=Scenario.answer(GPT_ANSWER))
            )
            env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-cluster"}
        s = published(kafka_bootstrap, tmp_path, partitions)
        more = ("--rows-apart",) if apart else ()
        run_flow_subprocess(s, kafka_bootstrap, tmp_path, env=env, processes=processes, args=more)
        check_golden(golden_name(partitions, gpt), result_tables(query, s))


def test_kill_and_resume_on_two_processes(kafka_bootstrap: str, tmp_path: Path) -> None:
    """Process 0 killed mid-run takes its child with it; the run then resumes on as many
    processes as it started on (on one it is refused, with the way out) and ends with the
    rows of an uninterrupted run on one worker."""
    a = published(kafka_bootstrap, tmp_path / "a", 3)
    b = run_settings(tmp_path / "b", a.kafka.topics.market, 3)
    create_topics(kafka_bootstrap, b)
    cfg = write_config(b, tmp_path / "b.yaml")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        on(2, *flow_command(cfg, kafka_bootstrap)),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    kids = flow_children(proc, 1)
    deadline = time.monotonic() + 120
    while decisions_written(kafka_bootstrap, b) < 60:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    wait_gone(kids)  # the child died with it

    alone = subprocess.run(
        flow_command(cfg, kafka_bootstrap), cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert alone.returncode == 1
    assert "written by a run on 2 processes: resume it with --processes 2" in alone.stderr
    assert "Traceback" not in alone.stderr

    run_flow_subprocess(b, kafka_bootstrap, tmp_path, processes=2)
    check_golden(golden_name(3, False), result_tables(query, b))


def test_a_failed_child_fails_the_run(kafka_bootstrap: str, tmp_path: Path) -> None:
    s = published(kafka_bootstrap, tmp_path, 1)
    cfg = write_config(s, tmp_path / "live.yaml")
    proc = subprocess.Popen(
        on(2, *flow_command(cfg, kafka_bootstrap), "--tail"),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    (child,) = flow_children(proc, 1)
    deadline = time.monotonic() + 120
    while decisions_written(kafka_bootstrap, s) < 20:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(child, signal.SIGKILL)  # e.g. the kernel's OOM killer
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err[-2000:]
    assert err.strip().splitlines()[-1] == (
        "stratflow: process 1 of the flow failed (exit code -9)"
    )
    assert "Traceback" not in err


@pytest.mark.skipif(STRATFLOW is None, reason="the stratflow console script is absent")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_stops_every_process(kafka_bootstrap: str, tmp_path: Path, sig: int) -> None:
    """Ctrl-C reaches the terminal's whole process group, SIGTERM (a service manager's stop)
    process 0 alone: either way process 0 prints its one line, with the counts of the child's
    ingest (messages and bars are counted there), and nothing of the run is left running."""
    s = published(kafka_bootstrap, tmp_path, 1)
    cfg = write_config(s, tmp_path / "live.yaml")
    assert STRATFLOW is not None
    proc = subprocess.Popen(
        on(2, STRATFLOW, "run", "--config", str(cfg), "--bootstrap", kafka_bootstrap),
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own group, as a terminal's foreground job
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    kids = flow_children(proc, 1)
    deadline = time.monotonic() + 120
    while decisions_written(kafka_bootstrap, s) < 20:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == (130 if sig == signal.SIGINT else 143), err[-2000:]
    wait_gone(kids)
    name = signal.Signals(sig).name
    line = re.search(rf"{name}, stopped after ([\d,]+) messages, ([\d,]+) bars", err)
    assert line, err[-2000:]
    assert int(line.group(1).replace(",", "")) > 0 and int(line.group(2).replace(",", "")) > 0
    assert "Traceback" not in err and "panicked" not in err


@pytest.mark.skipif(STRATFLOW is None, reason="the stratflow console script is absent")
def test_a_backtest_on_two_processes_reports_what_one_reports(tmp_path: Path) -> None:
    """`stratflow backtest --processes 2` as a user runs it (its other process forked before the
    data is published, the store in that process: `rows_apart`), in a process of its own (one
    that has started chdb keeps the store with the desk): the same statistics and trades as on
    one process."""
    strategy = ROOT / "api" / "strategies" / "sma_cross.yaml"
    args = ["backtest", "GOOG", "-s", str(strategy), "--start", "2006-01-01", "--json"]
    one = run_cli(*args, "--processes", "1", cwd=tmp_path)
    assert STRATFLOW is not None
    two = subprocess.run(
        [STRATFLOW, *args, "--processes", "2"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    docs = []
    for result in (one, two):
        assert_no_traceback(result)
        assert result.returncode == 0, result.stderr
        docs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    one, two = docs
    assert one["trades"] > 5
    assert two["run_id"] != one["run_id"]
    for key in ("statistics", "trades", "by_symbol", "by_strategy", "by_controller", "messages"):
        assert two[key] == one[key], key
