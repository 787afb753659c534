"""No look-ahead across bar intervals through Kafka and the Bytewax flow: the case of
tests/unit/test_bar_time.py end to end, two runs that differ only in one daily close."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors.files.replay import replay
from tests.support.flowkit import create_topics, make_settings, query, run_flow_subprocess
from tests.unit.test_bar_time import DAY, HOUR, T0, flow_settings, leaky_day, walk, with_close


@pytest.mark.kafka
def test_through_kafka_and_the_flow_a_daily_close_changes_no_earlier_decision(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The issue's case end to end: `replay` to a 3-partition topic, the Bytewax flow, the
    decision log. Two runs differ only in one daily close (one that leaks when published at its
    open); the decisions (with their risk checks, which see cash held for pending orders) and
    orders of the hours before that day ends are the same rows."""
    daily = walk("DAILY", DAY, 24, 1, start=200.0)
    hourly = walk("HOURLY", HOUR, 24 * 24, 101)
    index = leaky_day(daily, hourly)
    cutoff = T0 + (index + 1) * DAY
    sections = flow_settings({"HOURLY": HOUR, "DAILY": DAY}, 3).model_dump(
        mode="json", include={"features", "strategy", "execution", "risk"}
    )
    seen: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []
    for bars in (daily, with_close(daily, index, "1.5")):
        work = tmp_path / f"run{len(seen)}"
        work.mkdir()
        cfg = make_settings(
            work,
            {"HOURLY": {"bar_interval": "1h"}, "DAILY": {"bar_interval": "1d"}},
            kafka={"partitions": 3},
            **sections,
        )
        create_topics(kafka_bootstrap, cfg)
        stats = replay(kafka_bootstrap, cfg.kafka.topics.market, [*bars, *hourly])
        assert stats.failed == 0
        run_flow_subprocess(cfg, kafka_bootstrap, work)
        decisions = query(
            cfg,
            "SELECT decision_id, status, rounds, orders, portfolio_before FROM decisions FINAL "
            f"WHERE ts_ms < {cutoff} ORDER BY decision_id",
        )
        orders = query(
            cfg,
            "SELECT client_order_id, side, quantity FROM orders FINAL "
            f"WHERE placed_ms < {cutoff} ORDER BY client_order_id",
        )
        assert any(d["decision_id"].startswith("HOURLY@") for d in decisions)
        seen.append((decisions, orders))
    assert seen[0] == seen[1]
