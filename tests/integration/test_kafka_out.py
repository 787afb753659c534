"""The flow's Kafka output (connectors/kafka/sink.py `LaneKafkaSink`: one item per lane of
rows, its messages produced in a loop) against what the flow did before: Bytewax's own
`KafkaSink` fed one `KafkaSinkMessage` per item (`dataflows.lanes.kafka_messages`). The same
trading stream goes through the whole flow once with each, into topics of their own with three
partitions: every output topic must hold the same messages (key and value bytes), partition by
partition, in the same order. Then the sink alone: lanes of many messages against a full local
queue, and an item without messages."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.connectors.kafka import KafkaSink
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSink, TestingSource, run_main

from connectors.kafka.broker import ensure_topics
from connectors.kafka.io import read_topic
from connectors.kafka.sink import LaneKafkaSink, Messages
from dataflows.lanes import KAFKA_TABLES, TOPIC_OF, RowLane, kafka_messages
from dataflows.pipeline import FlowSource, FlowSpec, build_flow
from models.config.settings import Settings, TopicsConfig
from tests.integration.test_flow_wiring import market_batches
from tests.unit.test_strategy_parity import CROSS, settings

pytestmark = pytest.mark.kafka

OUTPUT_TOPICS = tuple(TOPIC_OF.get(t, t) for t in KAFKA_TABLES)
"""`TopicsConfig` keys of the flow's output topics."""


class MessagePerItem(DynamicSink[RowLane]):
    """The flow's Kafka output before the lane sink: every lane's messages as Bytewax
    `KafkaSinkMessage`s, written by Bytewax's `KafkaSink` partition in their order."""

    def __init__(self, bootstrap: str, topics: TopicsConfig) -> None:
        self.sink = KafkaSink([bootstrap], topic=None)
        self.topics = topics

    def build(self, step_id: str, worker_index: int, worker_count: int) -> Any:
        part = self.sink.build(step_id, worker_index, worker_count)
        topics = self.topics

        class Partition(StatelessSinkPartition[RowLane]):
            def write_batch(self, items: list[RowLane]) -> None:
                part.write_batch([m for lane in items for m in kafka_messages(topics, lane)])

            def close(self) -> None:
                part.close()

        return Partition()


def own_topics(cfg: Settings, bootstrap: str, tag: str) -> Settings:
    """`cfg` with output topics of its own (three partitions each)."""
    uid = uuid.uuid4().hex[:8]
    names = {key: f"test.{tag}.{key}.{uid}" for key in OUTPUT_TOPICS}
    ensure_topics(bootstrap, list(names.values()), 3)
    topics = cfg.kafka.topics.model_copy(update=names)
    return cfg.model_copy(update={"kafka": cfg.kafka.model_copy(update={"topics": topics})})


def published(bootstrap: str, cfg: Settings) -> dict[str, list[tuple[int, bytes | None, bytes]]]:
    """Each output topic's records as (partition, key, value), by partition and offset."""
    topics = cfg.kafka.topics
    return {
        key: [(r.partition, r.key, r.value) for r in read_topic(bootstrap, getattr(topics, key))]
        for key in OUTPUT_TOPICS
    }


def run(cfg: Settings, bootstrap: str, batches: list[Any], kafka_sink: Any = None) -> None:
    flow = build_flow(
        cfg,
        FlowSpec(bootstrap=bootstrap, tail=False),
        store_sink=TestingSink([]),
        source=FlowSource(TestingSource(batches), ((cfg.kafka.topics.market, 0),)),
        kafka_sink=kafka_sink,
    )
    run_main(flow)


@pytest.mark.parametrize("recovery", [False, True])
def test_the_lane_sink_publishes_what_the_message_sink_published(
    kafka_bootstrap: str, tmp_path: Path, recovery: bool
) -> None:
    base = settings(tmp_path, [CROSS], "local", "0s")
    # Whether each batch is flushed (with recovery) changes when, never what, is published.
    base = base.model_copy(
        update={"recovery": base.recovery.model_copy(update={"enabled": recovery})}
    )
    batches = market_batches(base, 1)
    before = own_topics(base, kafka_bootstrap, "before")
    run(before, kafka_bootstrap, batches, MessagePerItem(kafka_bootstrap, before.kafka.topics))
    after = own_topics(base, kafka_bootstrap, "after")
    run(after, kafka_bootstrap, batches)
    want, got = published(kafka_bootstrap, before), published(kafka_bootstrap, after)
    assert len(want["decisions"]) >= 10 and want["orders"] and want["fills"]  # it traded
    assert len({p for p, _, _ in want["decisions"]}) > 1  # keys spread over partitions
    assert got == want


def test_the_sink_waits_for_room_and_skips_items_without_messages(
    kafka_bootstrap: str, fresh_topics: Any
) -> None:
    """A local queue of 100 messages and lanes of 700: every message is published, in order;
    an item whose `messages` is None publishes nothing."""
    topic = fresh_topics("lanes", partitions=2)
    lanes = [(topic, list(range(k * 700, (k + 1) * 700))) for k in range(3)]

    def messages(item: tuple[str, list[int]]) -> Messages | None:
        name, numbers = item
        if not numbers:
            return None
        return name, [b"k%d" % (n % 7) for n in numbers], [b"%d" % n for n in numbers]

    flow_items = [lanes[0], (topic, []), lanes[1], lanes[2]]
    flow = Dataflow("lanes")
    sink = LaneKafkaSink(
        [kafka_bootstrap],
        messages,
        {"queue.buffering.max.messages": "100"},
        flush_batches=False,
    )
    op.output("out", op.input("in", flow, TestingSource(flow_items)), sink)
    run_main(flow)
    records = read_topic(kafka_bootstrap, topic)
    assert len(records) == 2100
    for part in (0, 1):
        keyed = [(r.key, int(r.value)) for r in records if r.partition == part]
        assert keyed == sorted(keyed, key=lambda kv: kv[1])  # each partition in order
    assert sorted(int(r.value) for r in records) == list(range(2100))
