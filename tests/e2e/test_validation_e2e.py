"""The validation gate end to end: replay -> Tansu -> the Bytewax flow (its own process) -> the
real openai SDK -> the project's OpenAI-compatible server -> the decision log in chdb.

GPT's first answer is a strategy that would have lost ~40 % in the flash-crash scenario (all the
equity, always long, no stop): it is sent back with that number and never trades; the answer
after it (a fifth of the equity) passes and trades. Every later question gets the same careful
answer."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.files.replay import replay
from connectors.sim.openai_server import LocalOpenAIServer, Scenario
from connectors.sim.scenario import generate_scenario
from tests.support.flowkit import create_topics, make_settings, query, run_flow_subprocess
from tests.support.gpt import decision
from tests.support.validation import ALWAYS, NEVER

pytestmark = pytest.mark.kafka

START = int(datetime(2025, 3, 3, 14, 0, tzinfo=UTC).timestamp() * 1000)
MODEL = "stratflow-local"


def answer(fraction: float) -> dict[str, Any]:
    doc = decision(entry=ALWAYS, exit=NEVER, position_fraction=fraction, stop_loss_pct=None)
    doc["strategy"]["universe"] = ["SIMA"]
    doc["strategy"]["name"] = f"always-long-{fraction:g}"
    return doc


def test_a_gpt_strategy_losing_40pct_in_a_flash_crash_never_trades_and_the_next_one_does(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path,
        {"SIMA": {}},
        features={"sma_fast": 5, "sma_slow": 15, "rsi": 14, "volume_z": 10, "breakout": 10},
        strategy={"target_fraction": "0.1", "strategic_fraction": "1.0"},
        risk={
            "max_order_notional": "1000000",
            "max_position_notional": "1000000",
            "max_fee_per_order": "10000",
            "daily_loss_limit": "1000000",
        },
        gpt={"model": MODEL, "cache_dir": str(tmp_path / "answers"), "cooldown": "1h"},
        validation={
            # An always-long strategy needs no warm-up: judged from the first question on.
            "thresholds": {"min_history_bars": 2, "min_trades": 0},
            "scenarios": {"flash_crash_pct": 0.4, "shocks": 1},
        },
    )
    create_topics(kafka_bootstrap, settings)
    ticks = generate_scenario(["SIMA"], START, 180 * 60, 2.0, seed=7)
    replay(kafka_bootstrap, settings.kafka.topics.market, ticks)
    careful = Scenario.answer(answer(0.2))
    with LocalOpenAIServer(api_key="sk-gate", default=careful) as server:
        server.script(Scenario.answer(answer(1.0)))
        env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-gate"}
        run_flow_subprocess(settings, kafka_bootstrap, tmp_path, env=env)
        bodies = [r.body for r in server.chat_requests]

    rows = query(
        settings,
        "SELECT decision_id, status, rounds, orders FROM decisions FINAL "
        "WHERE branch = 'strategic' ORDER BY decision_id",
    )
    judged = [r for r in rows if "validation:SIMA:flash_crash_loss" in str(r["rounds"])]
    assert judged, "no GPT strategy was judged"
    first = judged[0]
    rounds = json.loads(first["rounds"]) if isinstance(first["rounds"], str) else first["rounds"]
    refused, passed = rounds[0], rounds[1]
    crash = next(
        c for c in refused["verdict"]["checks"] if c["name"] == "validation:SIMA:flash_crash_loss"
    )
    assert not refused["verdict"]["approved"] and not crash["passed"]
    assert 0.39 <= float(crash["value"]) <= 0.41 and float(crash["limit"]) == 0.25
    assert passed["verdict"]["approved"] and passed["proposal"]["strategy"].startswith(
        "always-long-0.2"
    )
    # GPT was told the number and the limit, after its own answer.
    follow_up = bodies[1]["messages"][-1]["content"]
    lost = f"{float(crash['value']) * 100:.1f}".rstrip("0").rstrip(".")
    assert f"lost {lost}% in the flash_crash scenario" in follow_up and "limit 25%" in follow_up
    # The reckless strategy never ran and never traded: every order is the careful one's.
    strategies = query(settings, "SELECT spec FROM strategies FINAL")
    names = {json.loads(s["spec"])["name"] for s in strategies}
    assert names == {"always-long-0.2"}
    orders = query(settings, "SELECT decision_id, reason FROM orders FINAL")
    assert orders and not any("always-long-1" in (o["reason"] or "") for o in orders)
