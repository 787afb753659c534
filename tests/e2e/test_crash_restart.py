"""Kill -9 the flow mid-stream, restart it: nothing lost, nothing ordered twice, same book.

Run A processes the topic uninterrupted. Run B reads the same market topic (its own output
topics, store and recovery directory), is killed once it has written a third of A's decisions,
then restarted until the end. Both must end with identical orders, fills and portfolio.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.files.replay import replay
from connectors.kafka.io import topic_end_offsets
from connectors.sim.openai_server import LocalOpenAIServer, Scenario
from connectors.sim.scenario import generate_scenario
from models.config.settings import Settings
from models.core.messages import Tick
from tests.support.flowkit import (
    ROOT,
    create_topics,
    final_book,
    flow_command,
    make_settings,
    query,
    run_flow_subprocess,
    write_config,
)
from tests.support.golden import check_golden, result_tables

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

START = int(datetime(2025, 6, 2, 13, 30, tzinfo=UTC).timestamp() * 1000)
SYMBOLS = {"SIMA": {}, "SIMB": {}, "SIMC": {}, "SIMD": {}}
FEATURES = {
    "sma_fast": 3,
    "sma_slow": 8,
    "ema": 5,
    "rsi": 5,
    "volatility": 5,
    "vwap": 5,
    "volume_z": 5,
    "breakout": 5,
}


def run_settings(tmp: Path, market_topic: str | None, partitions: int) -> Settings:
    return make_settings(
        tmp,
        SYMBOLS,
        market_topic,
        features=FEATURES,
        bars={"interval": "10s"},
        kafka={"partitions": partitions},
        # each run records its own answers: a restarted run must not ask the endpoint again
        # for what it had already been told before the kill
        gpt={"model": "stratflow-local", "cache_dir": str(tmp / "answers"), "cooldown": "1m"},
    )


GPT_ANSWER = {
    "action": "create",
    "strategy": {
        "name": "crash-trend",
        "version": 1,
        "universe": list(SYMBOLS),
        "entry": {"left": "sma_fast", "op": ">", "right": "sma_slow"},
        "exit": {"left": "sma_fast", "op": "crosses_below", "right": "sma_slow"},
        "position_fraction": 0.1,
        "stop_loss_pct": 0.02,
        "take_profit_pct": None,
        "target_weights": [],
        "horizon_bars": 90,
        "rationale": "trend",
        "confidence": 0.5,
    },
    "rationale": "trend",
    "confidence": 0.5,
}


@functools.cache
def scenario_ticks() -> tuple[Tick, ...]:
    """Three hours of four symbols, the same for every case (generated once per session)."""
    return tuple(generate_scenario(list(SYMBOLS), START, 3 * 3600, 4.0, seed=5))


def decisions_written(bootstrap: str, s: Settings) -> int:
    return sum(topic_end_offsets(bootstrap, s.kafka.topics.decisions).values())


def snapshot(s: Settings) -> dict[str, Any]:
    return {
        "book": final_book(s),
        "orders": {
            (r["client_order_id"], r["side"], r["quantity"], r["status"])
            for r in query(s, "SELECT * FROM orders FINAL")
        },
        "fills": {
            (r["fill_id"], r["price"], r["quantity"], r["fee"])
            for r in query(s, "SELECT * FROM fills FINAL")
        },
        "decisions": {
            (r["decision_id"], r["status"], r["version"])
            for r in query(s, "SELECT * FROM decisions FINAL")
        },
        "bars": query(s, "SELECT count() AS n FROM bars FINAL")[0]["n"],
    }


@pytest.mark.parametrize(("partitions", "gpt"), [(1, False), (3, False), (1, True)])
def test_kill_and_restart_equals_uninterrupted_run(
    kafka_bootstrap: str, tmp_path: Path, partitions: int, gpt: bool
) -> None:
    """With several partitions the desk's merge (models/market/merge.py) keeps the order canonical;
    with GPT, questions pending at the kill are asked again and answers already recorded are
    not paid for twice."""
    with contextlib.ExitStack() as stack:
        gpt_env: dict[str, str] = {}
        server: LocalOpenAIServer | None = None
        if gpt:
            server = stack.enter_context(
                LocalOpenAIServer(api_key="sk-crash", default=Scenario.answer(GPT_ANSWER))
            )
            gpt_env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-crash"}
        _kill_and_restart(kafka_bootstrap, tmp_path, partitions, gpt_env, server)


def _kill_and_restart(
    kafka_bootstrap: str,
    tmp_path: Path,
    partitions: int,
    gpt_env: dict[str, str],
    server: LocalOpenAIServer | None,
) -> None:
    a = run_settings(tmp_path / "a", None, partitions)
    create_topics(kafka_bootstrap, a)
    replay(kafka_bootstrap, a.kafka.topics.market, scenario_ticks())

    run_flow_subprocess(a, kafka_bootstrap, tmp_path, env=gpt_env)
    asked_a = len(server.chat_requests) if server is not None else 0
    total = decisions_written(kafka_bootstrap, a)
    assert total > 50, "the scenario should make plenty of decisions"
    golden = f"crash_restart_{partitions}p" + ("_gpt" if server is not None else "")
    check_golden(golden, result_tables(query, a))

    b = run_settings(tmp_path / "b", a.kafka.topics.market, partitions)
    create_topics(kafka_bootstrap, b)
    cfg = write_config(b, tmp_path / "b.yaml")
    env = {**os.environ, "PYTHONPATH": str(ROOT), **gpt_env}
    proc = subprocess.Popen(
        flow_command(cfg, kafka_bootstrap),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while decisions_written(kafka_bootstrap, b) < total // 3:
        assert proc.poll() is None, "flow ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    partial = decisions_written(kafka_bootstrap, b)
    assert partial < total, "killed too late to test anything"

    run_flow_subprocess(b, kafka_bootstrap, tmp_path, env=gpt_env)
    if server is not None:
        assert asked_a > 5, "the scenario should ask GPT several times"
        asked_b = len(server.chat_requests) - asked_a
        # Inline, at most the one question in flight at the kill is asked twice.
        assert asked_a <= asked_b <= asked_a + 1, (asked_a, asked_b)
        gpt_rows = query(b, "SELECT count() AS n FROM strategies FINAL")[0]["n"]
        assert gpt_rows == query(a, "SELECT count() AS n FROM strategies FINAL")[0]["n"] > 0
    # It resumed from its snapshot rather than from the start of the topic: only the epoch in
    # flight at the kill is emitted twice (downstream rows are idempotent by id).
    emitted = decisions_written(kafka_bootstrap, b)
    assert total <= emitted < total + partial // 2, (total, partial, emitted)

    want, got = snapshot(a), snapshot(b)
    assert got["bars"] == want["bars"]
    assert got["decisions"] == want["decisions"]
    assert got["orders"] == want["orders"]
    assert got["fills"] == want["fills"]
    assert got["book"] == want["book"]
    # no client order id may have been placed with two different contents
    ids = [o[0] for o in got["orders"]]
    assert len(ids) == len(set(ids))
