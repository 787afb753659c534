"""Replaying market data through a real broker: a shipped dataset round trip, several symbols
in time order at a pace, and the synthetic scenario."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from connectors.files.datasets import GOOG, dataset_path
from connectors.files.replay import load_market_file, replay
from connectors.kafka.broker import BrokerError
from connectors.kafka.io import read_topic
from connectors.sim.scenario import generate_scenario
from models.core.messages import BarIn, Tick
from tests.unit.test_scenario import START, SYMBOLS

T0 = datetime(2024, 1, 2, 9, 30, tzinfo=UTC)


@pytest.mark.kafka
def test_replay_goog_roundtrip(kafka_bootstrap: str, fresh_topics: Callable[..., str]) -> None:
    topic = fresh_topics("replay", partitions=3)
    loaded = load_market_file(dataset_path(GOOG))
    stats = replay(kafka_bootstrap, topic, loaded.messages, speed=None, progress=False)
    assert stats.published == stats.sent == len(loaded.messages) == 2148
    assert stats.failed == 0 and stats.per_symbol == {GOOG: 2148}
    assert stats.msgs_per_s > 0 and "published 2148 of 2148" in stats.summary()

    records = read_topic(kafka_bootstrap, topic)
    assert len(records) == 2148
    assert {r.key for r in records} == {b"GOOG"}
    assert len({r.partition for r in records}) == 1
    bars = [BarIn.model_validate_json(r.value) for r in records]
    assert bars == loaded.messages  # exact Decimals, same order
    assert json.loads(records[1].value)["close"] == "108.31"
    # Record time is the wall clock at publishing, not the 2004 event time.
    assert abs(records[0].timestamp_ms - datetime.now(UTC).timestamp() * 1000) < 120_000


@pytest.mark.kafka
def test_replay_orders_across_symbols_and_paces(
    kafka_bootstrap: str, fresh_topics: Callable[..., str]
) -> None:
    topic = fresh_topics("paced", partitions=1)
    # 21 ticks per symbol, 100 ms apart: 2 s of event time, interleaved out of order.
    msgs = [
        Tick(symbol=sym, ts=T0 + timedelta(milliseconds=100 * i + off), price=Decimal("10.5"))
        for sym, off in (("BBB", 1), ("AAA", 0))
        for i in range(21)
    ]
    stats = replay(kafka_bootstrap, topic, msgs, speed=10.0, progress=True)
    assert stats.published == 42
    assert stats.elapsed_s >= 0.18  # 2 s of event time at 10x; only a lower bound is stable
    values = [Tick.model_validate_json(r.value) for r in read_topic(kafka_bootstrap, topic)]
    assert [t.ts for t in values] == sorted(t.ts for t in msgs)
    assert values[0].symbol == "AAA"

    with pytest.raises(ValueError, match="speed"):
        replay(kafka_bootstrap, topic, msgs, speed=0)
    with pytest.raises(
        BrokerError, match=r"not reachable at bootstrap=127\.0\.0\.1:9: connection refused"
    ):
        replay("127.0.0.1:9", topic, msgs, connect_timeout_s=0.3)


@pytest.mark.kafka
def test_scenario_replays_through_kafka(
    kafka_bootstrap: str, fresh_topics: Callable[..., str]
) -> None:
    topic = fresh_topics("scenario", partitions=3)
    ticks = generate_scenario(SYMBOLS, START, 120, 10.0, seed=3)
    stats = replay(kafka_bootstrap, topic, ticks)
    assert stats.published == len(ticks) == 3600
    got = [Tick.model_validate_json(r.value) for r in read_topic(kafka_bootstrap, topic)]
    for sym in SYMBOLS:
        assert [t for t in got if t.symbol == sym] == [t for t in ticks if t.symbol == sym]
