"""Calendar months end to end (issue 11, item 7): the shipped BTCUSD monthly history, stamped
on each month's last day, replayed through Kafka and the Bytewax flow with `bar_interval: 1mo`
gives all 156 months as bars, each exactly its calendar month, and no dead letter (with 31-day
windows three months were merged into their neighbours; before the realignment, two were
`late`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.files.datasets import BTCUSD, dataset_info, dataset_path
from connectors.files.replay import load_market_file, replay
from models.market.interval import BarInterval
from tests.support.flowkit import create_topics, make_settings, query, run_flow_subprocess


@pytest.mark.kafka
def test_btcusd_monthly_history_gives_every_month_and_nothing_late(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    loaded = load_market_file(dataset_path(BTCUSD), symbol=BTCUSD, interval=None)
    assert loaded.intervals == {BTCUSD: BarInterval.months_of(1)}  # inferred, not declared
    assert dataset_info(BTCUSD).interval == "1mo"
    cfg = make_settings(tmp_path, {BTCUSD: {"bar_interval": "1mo"}})
    create_topics(kafka_bootstrap, cfg)
    stats = replay(kafka_bootstrap, cfg.kafka.topics.market, loaded.messages)
    assert stats.failed == 0 and stats.sent == len(loaded.messages) == 156
    run_flow_subprocess(cfg, kafka_bootstrap, tmp_path)
    bars = query(cfg, "SELECT start_ms, end_ms, close FROM bars FINAL ORDER BY start_ms")
    dead = query(cfg, "SELECT reason FROM dead_letters FINAL")
    assert dead == []
    assert len(bars) == 156
    month = BarInterval.months_of(1)
    for bar, msg in zip(bars, loaded.messages, strict=True):
        stamp = datetime.fromtimestamp(int(bar["start_ms"]) / 1000, tz=UTC)
        assert stamp.day == 1 and stamp.hour == 0  # a calendar month, from its first instant
        assert int(bar["end_ms"]) == month.window_end(int(bar["start_ms"]))
        assert month.window_start(int(msg.ts.timestamp() * 1000)) == int(bar["start_ms"])
        assert bar["close"] == msg.close
