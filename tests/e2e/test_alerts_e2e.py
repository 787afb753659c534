"""End to end: the flow's alerts reach the user through apprise (a local webhook), and the
webhook URL's secrets never show in the run's output."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.files.replay import replay
from connectors.sim.scenario import generate_scenario
from tests.support.flowkit import create_topics, make_settings, query, run_flow_subprocess
from tests.support.webhook import PASSWORD, TOKEN, Receiver

pytestmark = pytest.mark.kafka

START = int(datetime(2025, 4, 1, 9, 0, tzinfo=UTC).timestamp() * 1000)


def test_flow_alerts_reach_the_webhook(
    kafka_bootstrap: str, tmp_path: Path, webhook: Receiver
) -> None:
    settings = make_settings(
        tmp_path,
        {"SIMA": {}, "SIMB": {}},
        features={"sma_fast": 3, "sma_slow": 8, "rsi": 5, "volume_z": 5, "breakout": 5},
        # tight limits: the risk gate refuses and warns
        risk={"max_order_notional": "3000", "max_adjust_rounds": "1"},
        notify={"min_severity": "warning", "max_per_minute": 1000},
    )
    create_topics(kafka_bootstrap, settings)
    replay(
        kafka_bootstrap,
        settings.kafka.topics.market,
        generate_scenario(["SIMA", "SIMB"], START, 60 * 60, 2.0, seed=4),
    )
    # The URL carries secrets: it comes from the environment, never from a config file.
    env = {"STRATFLOW__NOTIFY__URLS": json.dumps([webhook.url()])}
    stderr = run_flow_subprocess(settings, kafka_bootstrap, tmp_path, env=env)
    assert "alerts: json://127.0.0.1" in stderr
    assert TOKEN not in stderr and PASSWORD not in stderr
    stored = query(
        settings,
        "SELECT alert_id, message FROM alerts FINAL WHERE severity IN ('warning', 'critical')",
    )
    assert stored, "the scenario should raise warnings"
    deadline = time.monotonic() + 10
    while len(webhook.payloads()) < len(stored) and time.monotonic() < deadline:
        time.sleep(0.05)
    bodies = [p["message"] for p in webhook.payloads()]
    assert len(bodies) == len(stored), stderr[-2000:]
    assert {r["message"] for r in stored} == {b.split("\n")[0] for b in bodies}
