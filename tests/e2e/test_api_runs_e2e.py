"""Runs started and stopped over the API as a user does it (issue 13): `stratflow serve` on a
real broker and the embedded decision log; `POST /api/run/start` runs the flow to the end of
its input, the log comes back to the API with the run's decisions; a following run is stopped
by the two-call stop and the next start resumes it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx2 as httpx
import pytest

from connectors.files.replay import replay
from connectors.sim.scenario import generate_scenario
from tests.support.api import AUTH, TOKEN
from tests.support.flowkit import ROOT, create_topics, make_settings, write_config

pytestmark = pytest.mark.kafka

GUARD_S = 240  # a hang guard, never a bound on how fast anything must be
START = int(datetime(2025, 3, 3, 14, 0, tzinfo=UTC).timestamp() * 1000)
FEATURES = {"sma_fast": 5, "sma_slow": 15, "ema": 10, "rsi": 14, "volatility": 10, "vwap": 10,
            "volume_z": 10, "breakout": 10}  # fmt: skip


def _lines(stream: IO[str], kept: list[str]) -> None:
    for line in stream:
        kept.append(line)


def _until(what: str, check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + GUARD_S
    while not (value := check()):
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.25)
    return value


@pytest.fixture
def server(kafka_bootstrap: str, tmp_path: Path) -> Iterator[httpx.Client]:
    settings = make_settings(
        tmp_path,
        {"SIMA": {}},
        features=FEATURES,
        execution={"initial_cash": "100000", "fee_bps": "10", "slippage_bps": "5"},
    )
    create_topics(kafka_bootstrap, settings)
    replay(
        kafka_bootstrap,
        settings.kafka.topics.market,
        generate_scenario(["SIMA"], START, 60 * 60, 2.0, seed=5),
    )
    cfg = write_config(settings, tmp_path / "cfg.yaml")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    env["STRATFLOW_API_TOKEN"] = TOKEN
    proc = subprocess.Popen(
        [sys.executable, "-m", "api", "serve", "-c", str(cfg), "--listen", "127.0.0.1:0"],
        cwd=tmp_path,
        env={**env, "KAFKA_BOOTSTRAP": kafka_bootstrap},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out: list[str] = []
    err: list[str] = []
    assert proc.stdout is not None and proc.stderr is not None
    threading.Thread(target=_lines, args=(proc.stdout, out), daemon=True).start()
    threading.Thread(target=_lines, args=(proc.stderr, err), daemon=True).start()
    try:
        deadline = time.monotonic() + GUARD_S
        while not (m := re.search(r"control API on (http://127\.0\.0\.1:\d+)", "".join(out))):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(err)[-3000:]
            time.sleep(0.2)
        with httpx.Client(base_url=m.group(1), headers=AUTH, timeout=GUARD_S) as client:
            yield client
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    assert TOKEN not in "".join(out) + "".join(err)


def _ended(client: httpx.Client) -> dict[str, Any]:
    return _until(
        "the run's end",
        lambda: (v := client.get("/api/run").json())["exit_code"] is not None and v,
    )


def test_a_run_started_stopped_and_resumed_over_http(server: httpx.Client) -> None:
    client = server
    assert client.get("/api/run").json()["can_start"] is True
    # 1. To the end of its input: the run ends by itself and the API reads its decisions.
    r = client.post("/api/run/start", json={"follow": False, "fresh": True, "by": "e2e"})
    assert r.status_code == 201, r.text
    ended = _ended(client)
    assert ended["exit_code"] == 0 and ended["stopped_by"] == "", ended["log_tail"]
    first = _until("the log back", lambda: client.get("/api/decisions").status_code == 200)
    assert first
    page = client.get("/api/decisions", params={"limit": 500}).json()
    assert page["items"], "the run decided nothing on an hour of bars"
    run_id = page["run_id"]
    assert any(f"run {run_id}" in line for line in ended["log_head"]), ended["log_head"]
    # 2. Following: it runs until stopped; the stop takes two calls.
    assert client.post("/api/run/start", json={"follow": True}).status_code == 201
    _until(
        "the run under way",
        lambda: any("run " in x for x in client.get("/api/run").json()["log_tail"]),
    )
    assert client.get("/api/decisions").status_code == 503  # the run holds the embedded log
    nonce = client.post("/api/run/stop", json={}).json()["confirm"]
    stopped = client.post("/api/run/stop", json={"confirm": nonce, "by": "e2e"}).json()
    assert stopped["exit_code"] == 143 and stopped["stopped_by"] == "e2e"
    # 3. The next start resumes the stopped run (same id), from its recovery state.
    assert client.post("/api/run/start", json={"follow": False}).status_code == 201
    resumed = _ended(client)
    assert resumed["exit_code"] == 0, resumed["log_tail"]
    assert any(f"run {run_id} (resumed" in x for x in resumed["log_head"]), resumed["log_head"]
