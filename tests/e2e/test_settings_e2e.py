"""A settings change through the real broker (issue 13): a `ChangeSettings` command on the
control topic of a bounded run is in force from its Kafka record time on (the risk gate checks
every later order against the new limit, every earlier one against the configured), it is
acknowledged in `control_log`, and the same topics replayed give the same rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.files.replay import replay
from connectors.kafka.io import make_producer, publish
from connectors.sim.scenario import generate_scenario
from models.config.settings import Settings
from models.control.commands import ChangeSettings, ControlCommand
from tests.support.flowkit import create_topics, make_settings, query, run_flow_subprocess

pytestmark = pytest.mark.kafka

MIN = 60_000
START = int(datetime(2025, 3, 3, 14, 0, tzinfo=UTC).timestamp() * 1000)
CHANGE_MS = START + 45 * MIN + 30_000
CONFIGURED, CHANGED = Decimal(50_000), Decimal(3_000)
FEATURES = {"sma_fast": 5, "sma_slow": 15, "ema": 10, "rsi": 14, "volatility": 10, "vwap": 10,
            "volume_z": 10, "breakout": 10}  # fmt: skip


def _settings(tmp: Path) -> Settings:
    return make_settings(
        tmp,
        {"SIMA": {}},
        features=FEATURES,
        execution={"initial_cash": "100000", "fee_bps": "10", "slippage_bps": "5"},
        risk={"max_order_notional": str(CONFIGURED), "max_position_notional": "1000000"},
    )


def _elsewhere(settings: Settings, tmp: Path) -> Settings:
    doc = settings.model_dump(mode="json")
    doc["clickhouse"]["path"] = str(tmp / "clickhouse")
    doc["recovery"]["dir"] = str(tmp / "recovery")
    return Settings.model_validate(doc)


ROWS = {
    "control_log": "SELECT * EXCEPT run_id FROM control_log FINAL ORDER BY command_id",
    "decisions": "SELECT decision_id, ts_ms, rounds FROM decisions FINAL ORDER BY decision_id",
    "orders": "SELECT client_order_id, placed_ms, side, quantity FROM orders FINAL "
    "ORDER BY client_order_id",
}


@pytest.fixture(scope="module")
def runs(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("settings")
    settings = _settings(tmp / "first")
    create_topics(kafka_bootstrap, settings)
    replay(
        kafka_bootstrap,
        settings.kafka.topics.market,
        generate_scenario(["SIMA"], START, 90 * 60, 2.0, seed=11),
    )
    change = ControlCommand(
        command_id="limit-1",
        action=ChangeSettings(values={"risk.max_order_notional": str(CHANGED)}),
        issued_by="e2e",
        issued_ms=CHANGE_MS,
    )
    producer = make_producer(kafka_bootstrap)
    publish(
        producer, settings.kafka.topics.control, None, change.model_dump_json().encode(), CHANGE_MS
    )
    producer.flush(30)
    run_flow_subprocess(settings, kafka_bootstrap, tmp)
    first = {name: query(settings, sql) for name, sql in ROWS.items()}
    again = _elsewhere(settings, tmp / "again")
    run_flow_subprocess(again, kafka_bootstrap, tmp)
    second = {name: query(again, sql) for name, sql in ROWS.items()}
    return {"first": first, "second": second}


def _order_limits(decision: dict[str, Any]) -> set[Decimal]:
    """The per-order limits the risk gate held this decision's proposals to."""
    return {
        Decimal(check["limit"])
        for r in json.loads(decision["rounds"])
        if r.get("verdict")
        for check in r["verdict"]["checks"]
        if check["name"].startswith("order_notional:")
    }


def test_the_new_limit_binds_from_the_commands_place_on(runs: dict[str, Any]) -> None:
    decisions = runs["first"]["decisions"]
    before = [d for d in decisions if d["ts_ms"] < CHANGE_MS and _order_limits(d)]
    after = [d for d in decisions if d["ts_ms"] > CHANGE_MS and _order_limits(d)]
    assert before and after, "the scenario must trade on both sides of the change"
    assert all(_order_limits(d) == {CONFIGURED} for d in before)
    assert all(_order_limits(d) == {CHANGED} for d in after)
    (row,) = runs["first"]["control_log"]
    assert row["action"] == "change_settings:risk.max_order_notional"
    assert row["outcome"] == "applied" and row["applied_ms"] == CHANGE_MS


def test_the_same_run_replayed_gives_the_same_rows(runs: dict[str, Any]) -> None:
    assert runs["second"] == runs["first"]
