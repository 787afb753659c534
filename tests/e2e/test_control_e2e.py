"""The control plane through the real broker (issue 13): a pause command published into the
control topic of a bounded run takes effect at its Kafka record time, stops new orders after
it, is acknowledged in `control_log` and on the acks topic, is applied once (a re-sent copy
changes nothing), a malformed command is a dead letter, and the same run replayed gives the
same rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors.files.replay import replay
from connectors.kafka.io import make_producer, publish, read_topic
from connectors.sim.scenario import generate_scenario
from models.config.settings import Settings
from models.control.commands import ControlCommand, SetTradingState
from models.control.plane import ControlAck
from models.control.states import TradingState
from tests.support.flowkit import (
    create_topics,
    elsewhere,
    make_settings,
    query,
    run_flow_subprocess,
)

pytestmark = pytest.mark.kafka

MIN = 60_000
START = int(datetime(2025, 3, 3, 14, 0, tzinfo=UTC).timestamp() * 1000)
PAUSE_MS = START + 45 * MIN + 30_000  # mid-bar: bars ending after it meet a paused desk


def _settings(tmp: Path) -> Settings:
    return make_settings(
        tmp,
        {"SIMA": {}},
        features={
            "sma_fast": 5,
            "sma_slow": 15,
            "ema": 10,
            "rsi": 14,
            "volatility": 10,
            "vwap": 10,
            "volume_z": 10,
            "breakout": 10,
        },
        execution={"initial_cash": "100000", "fee_bps": "10", "slippage_bps": "5"},
    )


ROWS = {
    "control_log": "SELECT * EXCEPT run_id FROM control_log FINAL ORDER BY command_id",
    "orders": "SELECT client_order_id, placed_ms, side, quantity, status FROM orders FINAL "
    "ORDER BY client_order_id",
    "decisions": "SELECT decision_id, status, note FROM decisions FINAL ORDER BY decision_id",
}


@pytest.fixture(scope="module")
def runs(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("control")
    settings = _settings(tmp / "first")
    create_topics(kafka_bootstrap, settings)
    replay(
        kafka_bootstrap,
        settings.kafka.topics.market,
        generate_scenario(["SIMA"], START, 90 * 60, 2.0, seed=11),
    )
    pause = ControlCommand(
        command_id="pause-1",
        action=SetTradingState(state=TradingState.PAUSED),
        issued_by="e2e",
        issued_ms=PAUSE_MS,
    )
    producer = make_producer(kafka_bootstrap)
    control = settings.kafka.topics.control
    raw = pause.model_dump_json().encode()
    publish(producer, control, None, raw, PAUSE_MS)
    publish(producer, control, None, raw, PAUSE_MS + 10 * MIN)  # re-sent: applied once
    publish(producer, control, None, b'{"command_id": "x", "action": "sleep"}', PAUSE_MS)
    producer.flush(30)
    run_flow_subprocess(settings, kafka_bootstrap, tmp)
    first = {name: query(settings, sql) for name, sql in ROWS.items()}
    first["dead"] = query(settings, f"SELECT reason FROM dead_letters WHERE topic = '{control}'")
    acks = read_topic(kafka_bootstrap, settings.kafka.topics.control_acks)
    again = elsewhere(settings, tmp / "again")
    run_flow_subprocess(again, kafka_bootstrap, tmp)
    second = {name: query(again, sql) for name, sql in ROWS.items()}
    return {"first": first, "second": second, "acks": acks}


def test_a_pause_stops_new_orders_after_its_place_in_the_stream(runs: dict[str, Any]) -> None:
    orders = runs["first"]["orders"]
    assert any(o["placed_ms"] < PAUSE_MS for o in orders)  # it traded before the pause
    assert not [o for o in orders if o["placed_ms"] > PAUSE_MS]
    # The engine went on deciding after the pause: refused, with the state's reason.
    refused = [
        d
        for d in runs["first"]["decisions"]
        if int(d["decision_id"].split("@")[1].split("/")[0]) > PAUSE_MS
        and "trading_state" in d["note"]
    ]
    assert refused


def test_the_pause_is_acknowledged_once_in_the_log_and_on_the_acks_topic(
    runs: dict[str, Any],
) -> None:
    (row,) = runs["first"]["control_log"]
    assert row["command_id"] == "pause-1" and row["outcome"] == "applied"
    assert (row["state_before"], row["state_after"]) == ("active", "paused")
    assert row["applied_ms"] == PAUSE_MS
    (ack,) = [ControlAck.model_validate(json.loads(r.value)) for r in runs["acks"]]
    assert ack.command_id == "pause-1" and ack.applied_ms == PAUSE_MS
    assert ack.state_after is TradingState.PAUSED
    (dead,) = runs["first"]["dead"]
    assert "invalid control command" in dead["reason"]


def test_the_same_run_replayed_gives_the_same_rows(runs: dict[str, Any]) -> None:
    assert runs["second"] == {k: runs["first"][k] for k in ROWS}
