"""Live mode: the flow follows the topic while data arrives, is stopped with Ctrl-C and SIGTERM,
restarted, and ends with the same bars, decisions and orders as a backtest of the same topic."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.files.replay import replay
from connectors.kafka.io import read_topic
from connectors.sim.scenario import generate_scenario
from models.config.settings import Settings
from models.core.messages import Tick, to_ms
from tests.support.flowkit import (
    ROOT,
    create_topics,
    flow_command,
    make_settings,
    query,
    run_flow_subprocess,
    write_config,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

START = int(datetime(2025, 9, 1, 9, 0, tzinfo=UTC).timestamp() * 1000)
SYMBOLS = {"SIMA": {}, "SIMB": {}}
FEATURES = {
    "sma_fast": 3, "sma_slow": 8, "ema": 5, "rsi": 5, "volatility": 5, "vwap": 5,
    "volume_z": 5, "breakout": 5,
}  # fmt: skip


def settings_for(tmp: Path, market: str | None) -> Settings:
    return make_settings(tmp, SYMBOLS, market, features=FEATURES, bars={"interval": "10s"})


def decision_ids(bootstrap: str, s: Settings) -> set[str]:
    return {
        json.loads(r.value)["decision_id"]
        for r in read_topic(bootstrap, s.kafka.topics.decisions, 10)
        if r.value
    }


def start_live(cfg: Path, bootstrap: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*flow_command(cfg, bootstrap), "--tail"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen[str], sig: int) -> str:
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == (130 if sig == signal.SIGINT else 143), err[-2000:]
    assert "resumes from the last snapshot" in err and "panicked" not in err
    return err


def wait_until_deciding(bootstrap: str, s: Settings, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 90  # a hang guard, not a bound
    while not decision_ids(bootstrap, s):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the live flow decided nothing"
        time.sleep(0.2)


def wait_for(bootstrap: str, s: Settings, want: set[str], proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 90
    while not want <= decision_ids(bootstrap, s):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, sorted(want - decision_ids(bootstrap, s))[:5]
        time.sleep(0.2)


def test_follow_stop_restart_matches_the_backtest(kafka_bootstrap: str, tmp_path: Path) -> None:
    ticks = generate_scenario(list(SYMBOLS), START, 40 * 60, 3.0, seed=21)
    last = max(to_ms(t.ts) for t in ticks)
    # One tick per symbol an hour later closes every real window in live mode too.
    sentinels = [
        t.model_copy(
            update={
                "ts": datetime.fromtimestamp((last + 3_600_000) / 1000, tz=UTC),
                "id": f"sentinel-{t.symbol}",
            }
        )
        for t in (next(x for x in reversed(ticks) if x.symbol == s) for s in SYMBOLS)
    ]
    half = len(ticks) // 2

    live = settings_for(tmp_path / "live", None)
    create_topics(kafka_bootstrap, live)
    cfg = write_config(live, tmp_path / "live.yaml")

    proc = start_live(cfg, kafka_bootstrap)
    replay(kafka_bootstrap, live.kafka.topics.market, ticks[:half])
    # Stopped while it follows: once it has decided something (a fixed delay may end on a
    # loaded machine before the flow has even started, and the signal then stops its imports).
    wait_until_deciding(kafka_bootstrap, live, proc)
    stop(proc, signal.SIGINT)
    replay(kafka_bootstrap, live.kafka.topics.market, ticks[half:])
    proc = start_live(cfg, kafka_bootstrap)
    replay(kafka_bootstrap, live.kafka.topics.market, sentinels)

    # The backtest of the same topic (its own outputs and store) says what live must reach.
    ref = settings_for(tmp_path / "ref", live.kafka.topics.market)
    create_topics(kafka_bootstrap, ref)
    run_flow_subprocess(ref, kafka_bootstrap, tmp_path)
    sentinel_end = {s: 0 for s in SYMBOLS}
    for row in query(ref, "SELECT symbol, max(end_ms) AS e FROM bars FINAL GROUP BY symbol"):
        sentinel_end[row["symbol"]] = row["e"]
    ref_decisions = {
        r["decision_id"]: r["status"]
        for r in query(ref, "SELECT decision_id, status, symbol, ts_ms FROM decisions FINAL")
        if r["ts_ms"] != sentinel_end[r["symbol"]]
    }
    assert len(ref_decisions) > 5

    wait_for(kafka_bootstrap, live, set(ref_decisions), proc)
    time.sleep(1)  # let the last batch of rows reach the store (the flow holds it: no query)
    stop(proc, signal.SIGTERM)

    def bars(s: Settings) -> set[tuple[Any, ...]]:
        rows = query(s, "SELECT symbol, start_ms, open, high, low, close, volume FROM bars FINAL")
        return {
            tuple(r.values()) for r in rows if r["start_ms"] + 10_000 != sentinel_end[r["symbol"]]
        }

    assert bars(live) == bars(ref)
    live_decisions = {
        r["decision_id"]: r["status"]
        for r in query(live, "SELECT decision_id, status FROM decisions FINAL")
    }
    assert live_decisions == ref_decisions
    orders = "SELECT client_order_id, side, quantity FROM orders FINAL"
    assert {tuple(r.values()) for r in query(live, orders)} == {
        tuple(r.values()) for r in query(ref, orders)
    }
    assert isinstance(ticks[0], Tick)
