"""Ctrl-C and SIGTERM in real `stratflow` processes (a walkthrough of the README as a new user):
the flow's stop handler prints its summary and exits 130, an interrupted demo says there is no
report, an interrupted replay says how far it got."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.test_cli_smoke import STRATFLOW
from tests.support.cli import clean_environ
from tests.support.flowkit import ROOT


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
    assert STRATFLOW is not None
    proc = subprocess.Popen(
        [STRATFLOW, "demo"],
        cwd=tmp_path,
        env=clean_environ(),
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


def _published(bootstrap: str, topic: str) -> int:
    """Messages in `topic` now; 0 while the replay has not created it yet."""
    from connectors.kafka.io import topic_end_offsets

    try:
        return sum(topic_end_offsets(bootstrap, topic, timeout_s=5.0).values())
    except Exception:  # no such topic yet
        return 0


@pytest.mark.kafka
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_in_a_paced_replay_says_how_far_it_got(
    kafka_bootstrap: str, tmp_path: Path, sig: signal.Signals
) -> None:
    assert STRATFLOW is not None
    topic = f"test.walk.{os.getpid()}.{time.time_ns()}"
    env = clean_environ(
        {"KAFKA_BOOTSTRAP": kafka_bootstrap, "STRATFLOW__KAFKA__TOPICS__MARKET": topic}
    )
    proc = subprocess.Popen(
        [STRATFLOW, "replay", "GOOG", "--speed", "86400"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # Interrupted once it is publishing (not at a fixed delay, which a loaded machine may spend
    # importing: the signal would then stop the start-up, not the replay).
    deadline = time.monotonic() + 120  # a hang guard, not a bound
    while _published(kafka_bootstrap, topic) == 0:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the replay never published"
        time.sleep(0.1)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted: "), last
    assert f"of 2,148 messages published to {topic}" in last, last
