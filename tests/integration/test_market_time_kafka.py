"""Issue 9, items 1 and 3 on the real broker: topic time config, home partitions end to end."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from connectors.kafka.broker import ensure_topics
from connectors.kafka.io import make_producer, publish, read_topic
from connectors.sim.scenario import generate_scenario
from models.market.partitioning import home_partition
from tests.support.flowkit import create_topics, make_settings, query, run_flow_subprocess

pytestmark = pytest.mark.kafka

SYMBOLS = [f"S{i}X" for i in range(40)] + ["SIMA", "SIMB", "SIMC", "SIMD", "BTC/USDT", "EURUSD"]


def test_topics_are_created_with_the_brokers_clock(kafka_bootstrap: str) -> None:
    topic = f"test.lat.{uuid.uuid4().hex[:10]}"
    ensure_topics(kafka_bootstrap, [topic], 1)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    (fut,) = admin.describe_configs([ConfigResource("topic", topic)]).values()
    assert fut.result(timeout=10)["message.timestamp.type"].value == "LogAppendTime"


@pytest.mark.parametrize("partitions", [2, 3, 7])
def test_publish_puts_every_symbol_on_its_home_partition(
    kafka_bootstrap: str, fresh_topics: Callable[..., str], partitions: int
) -> None:
    topic = fresh_topics("home", partitions=partitions)
    # Also with a producer told to use another partitioner: the choice is ours, by name.
    producer = make_producer(kafka_bootstrap, partitioner="consistent_random")
    for sym in SYMBOLS:
        publish(producer, topic, sym.encode(), json.dumps({"symbol": sym}).encode())
    assert producer.flush(30) == 0
    got = {json.loads(r.value)["symbol"]: r.partition for r in read_topic(kafka_bootstrap, topic)}
    assert got == {s: home_partition(s.encode(), partitions) for s in SYMBOLS}


def test_librdkafka_murmur2_agrees_with_the_home_partition(
    kafka_bootstrap: str, fresh_topics: Callable[..., str]
) -> None:
    # A third-party producer keyed by symbol with Kafka's Java default (murmur2) agrees too.
    from confluent_kafka import Producer

    topic = fresh_topics("murmur", partitions=5)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": "murmur2"})
    for sym in SYMBOLS:
        producer.produce(topic, key=sym.encode(), value=sym.encode())
    assert producer.flush(30) == 0
    got = {r.value.decode(): r.partition for r in read_topic(kafka_bootstrap, topic)}
    assert got == {s: home_partition(s.encode(), 5) for s in SYMBOLS}


@pytest.mark.slow
def test_misrouted_and_forged_ticks_are_dead_letters_with_an_alert(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # The case: 1 tick in 10 keyed as another symbol on a 3-partition topic lost 1,784
    # of 2,000 SIMA trades without a word; and one tick dated 2199 froze the symbol.
    symbols = ["SIMA", "SIMB", "SIMC"]
    settings = make_settings(
        tmp_path, {s: {} for s in symbols}, kafka={"partitions": 3}, storage={"ticks": True}
    )
    create_topics(kafka_bootstrap, settings)
    topic = settings.kafka.topics.market
    ticks = generate_scenario(
        ["SIMA"], start_ms=1_767_623_400_000, duration_s=1000, ticks_per_second_per_symbol=2, seed=5
    )
    producer = make_producer(kafka_bootstrap)
    homes = {s: home_partition(s.encode(), 3) for s in symbols}
    wrong_key = next(s for s in symbols if homes[s] != homes["SIMA"]).encode()
    misrouted = 0
    for i, t in enumerate(ticks):
        key = wrong_key if i % 10 == 5 else b"SIMA"
        misrouted += key != b"SIMA"
        publish(producer, topic, key, t.model_dump_json().encode())
        if i == 500:
            forged = t.model_copy(update={"ts": t.ts.replace(year=2199), "price": Decimal("0.01")})
            publish(producer, topic, b"SIMA", forged.model_dump_json().encode(), 7_200_000_000_000)
    assert producer.flush(30) == 0
    run_flow_subprocess(settings, kafka_bootstrap, tmp_path)

    dead = query(settings, "SELECT reason, partition FROM dead_letters FINAL")
    wrong = [d for d in dead if "belongs to partition" in d["reason"]]
    assert len(wrong) == misrouted and {d["partition"] for d in wrong} == {
        homes[wrong_key.decode()]
    }
    ahead = [d for d in dead if "ahead of the" in d["reason"]]
    assert len(ahead) == 1 and len(dead) == misrouted + 1  # nothing "late": not frozen
    stored = query(settings, "SELECT count() AS n FROM ticks FINAL WHERE symbol = 'SIMA'")
    assert stored[0]["n"] == len(ticks) - misrouted
    trades = query(settings, "SELECT sum(trades) AS n FROM bars FINAL WHERE symbol = 'SIMA'")
    assert trades[0]["n"] == len(ticks) - misrouted
    alerts = query(settings, "SELECT source, message FROM alerts FINAL WHERE source = 'ingest'")
    assert alerts and all("refused for their time or partition" in a["message"] for a in alerts)
