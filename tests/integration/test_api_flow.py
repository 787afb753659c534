"""The control API served from a running flow's own process (`stratflow run --api`) on the real
broker (issue 13): while the flow follows its topics, the API reads the decision log the run
holds (one process per chdb directory: served from inside it, nothing is locked out), a pause
sent through the API travels the control topic, is applied by the flow and acknowledged back
to the request, and the status shows it; `stratflow serve` on the same directory says in one
line where the API is."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx2
import pytest

from connectors.files.replay import replay
from connectors.sim.scenario import generate_scenario
from tests.support.api import AUTH, TOKEN
from tests.support.cli import run_cli
from tests.support.flowkit import ROOT, create_topics, make_settings, write_config

pytestmark = pytest.mark.kafka

START = int(datetime(2025, 3, 3, 14, 0, tzinfo=UTC).timestamp() * 1000)
FEATURES = {
    "sma_fast": 3, "sma_slow": 8, "ema": 5, "rsi": 5, "volatility": 5, "vwap": 5,
    "volume_z": 5, "breakout": 5,
}  # fmt: skip
GUARD_S = 120  # a hang guard, never a bound on how fast it must be


def _lines(stream: IO[str], out: queue.Queue[str], kept: list[str]) -> None:
    for line in stream:
        kept.append(line)
        out.put(line)


def _until(what: str, check: Any, proc: subprocess.Popen[str], err: list[str]) -> Any:
    deadline = time.monotonic() + GUARD_S
    while True:
        found = check()
        if found:
            return found
        assert proc.poll() is None, "".join(err)[-3000:]
        assert time.monotonic() < deadline, f"{what}: {''.join(err)[-2000:]}"
        time.sleep(0.2)


def test_a_pause_sent_through_the_api_is_acknowledged_by_the_running_flow(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, {"SIMA": {}}, features=FEATURES)
    create_topics(kafka_bootstrap, settings)
    replay(
        kafka_bootstrap,
        settings.kafka.topics.market,
        generate_scenario(["SIMA"], START, 40 * 60, 3.0, seed=5),
    )
    cfg = write_config(settings, tmp_path / "cfg.yaml")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "STRATFLOW_API_TOKEN": TOKEN,
    }
    proc = subprocess.Popen(
        [
            *(sys.executable, "-c", "from api.cli import main; main()", "run", "-c", str(cfg)),
            *("--bootstrap", kafka_bootstrap, "--api", "127.0.0.1:0"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    out: list[str] = []
    err: list[str] = []
    assert proc.stdout is not None and proc.stderr is not None
    threading.Thread(target=_lines, args=(proc.stdout, lines, out), daemon=True).start()
    threading.Thread(target=_lines, args=(proc.stderr, queue.Queue(), err), daemon=True).start()
    try:

        def url() -> str | None:
            m = re.search(r"control API on (http://127\.0\.0\.1:\d+)", "".join(out))
            return m.group(1) if m else None

        base = _until("the API never started", url, proc, err)
        with httpx2.Client(base_url=base, headers=AUTH, timeout=60) as http:
            assert http.get("/api/status", headers={"Authorization": "Bearer x"}).status_code == 403
            decisions = _until(
                "the flow decided nothing",
                lambda: http.get("/api/decisions").json()["items"],
                proc,
                err,
            )
            r = http.post("/api/control/state", json={"state": "paused", "by": "it", "wait_s": 30})
            assert r.status_code == 200, r.text
            ack = r.json()["ack"]
            assert (ack["outcome"], ack["state_before"], ack["state_after"]) == (
                "applied",
                "active",
                "paused",
            )
            assert ack["issued_by"] == "it" and ack["command_id"] == r.json()["command_id"]
            # The control_log row lands with the flow's next write of the log.
            status = _until(
                "the status never showed the pause",
                lambda: (s := http.get("/api/status").json())["trading_state"] == "paused" and s,
                proc,
                err,
            )
            assert status["served_from_run"] and status["mode"] == "simulated"
            lag = status["consumer_lag"]
            assert isinstance(lag["messages"], int) and lag["end_offsets"] >= lag["read"] > 0
            story = http.get(f"/api/decisions/{decisions[0]['decision_id']}")
            assert story.status_code == 200
            assert story.json()["decision_id"] == decisions[0]["decision_id"]
        # The directory is the run's: serving the API beside it says where the API is.
        beside = run_cli(
            "serve", "--no-auth", "--listen", "127.0.0.1:0", "-c", str(cfg), cwd=tmp_path
        )
        assert beside.returncode == 2 and beside.stderr.count("\n") == 1, beside.stderr
        assert "in use by pid" in beside.stderr and "run --api" in beside.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert TOKEN not in "".join(out) + "".join(err)
