"""The stratflow dataflow: wiring only. Every decision is made by a `models/` object.

    source (Kafka market/news/social, or any source of (partition key, RawBatch))
      ──► ingest (keyed by partition: parse → dead letters | bars → features → triggers → router)
      ──┬─ desk inputs ──► desk (one key: merge → desk ⇄ driver: GPT, orders, reports)
        │                    └─ rows ─┐
        └─ rows ─────────────────────┴─► keyed by table ──► ClickHouse (batched per table)
                                                        ├─► Kafka output topics
                                                        └─► notifier (alerts)

Live and backtest build this same flow; they differ only in `tail` (follow the topic, or stop at
its end), whether commands are answered inline, and the exchange behind the desk. The stateful
steps are `dataflows.adapters`; the lanes' predicates and keyed helpers are `dataflows.lanes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import Source
from bytewax.outputs import Sink

from connectors.exchange.gateway import ExecutionGateway
from connectors.kafka.sink import LaneKafkaSink
from connectors.kafka.source import KeyedRaw, RawKafkaSource, partition_key
from connectors.notify.notifier import Notifier
from connectors.store.sink import ClickHouseSink, NotifierSink
from dataflows.adapters import DeskLanes, DeskLogic, IngestLanes, IngestLogic, RowBatchLogic
from dataflows.driver import GptLine
from dataflows.lanes import (
    DeskInput,
    RowLane,
    alerts_of,
    count_rows,
    is_desk_lane,
    lane_messages,
)
from dataflows.progress import FlowCounters
from models.config.settings import Settings

BOUNDED_WRITE_EVERY = timedelta(seconds=2)
"""A bounded run (a backtest) writes each table at most this often: nobody watches its rows
arrive, and fewer, larger inserts cost the engine less (its fixed cost per insert, and the
merges of the parts each insert makes: ~0.25 s of engine CPU less on 200,000 bars than at
500 ms)."""


@dataclass(frozen=True)
class FlowSpec:
    """What differs between runs: where the data comes from and whether to follow it."""

    bootstrap: str
    tail: bool
    batch_size: int = 5000
    kafka_out: bool = True
    write_every: timedelta = timedelta(milliseconds=500)
    """How long a table's rows wait for more before they are written (live); a bounded run
    waits at least `BOUNDED_WRITE_EVERY`."""
    write_max_rows: int = 50_000
    gpt_inline: bool | None = None  # answer GPT inline (deterministic); None: when not tailing

    @property
    def inline(self) -> bool:
        return (not self.tail) if self.gpt_inline is None else self.gpt_inline


@dataclass(frozen=True)
class FlowSource:
    """The flow's input: a Bytewax source of `(partition key, RawBatch)` items, and the topic
    partitions `(topic, index)` it delivers (the desk's merge waits for each of them)."""

    source: Source[KeyedRaw]
    partitions: tuple[tuple[str, int], ...]


def kafka_source(settings: Settings, spec: FlowSpec) -> FlowSource:
    """The market, news, social and control topics of `spec.bootstrap` (asks the broker for
    their partitions). Control commands take their place among the bars like news (an empty
    control partition reports its end like any other, so it holds nothing back)."""
    topics = settings.kafka.topics
    source = RawKafkaSource(
        spec.bootstrap,
        [topics.market, topics.news, topics.social, topics.control],
        tail=spec.tail,
        batch_size=spec.batch_size,
    )
    parts = [p.split("-", 1) for p in source.list_parts()]
    return FlowSource(source, tuple((topic, int(index)) for index, topic in parts))


def build_flow(
    settings: Settings,
    spec: FlowSpec,
    store_sink: Sink[Any] | None = None,
    counters: FlowCounters | None = None,
    gateway: GptLine | None = None,
    orders: ExecutionGateway | None = None,
    notifier: Notifier | None = None,
    run_id: str = "",
    source: FlowSource | None = None,
    kafka_sink: Sink[RowLane] | None = None,
) -> Dataflow:
    """The pipeline as a Bytewax dataflow; every row it stores is stamped with `run_id`.
    `source`: None reads the Kafka topics (`kafka_source`); `kafka_sink`: None publishes the
    rows' lanes to `spec.bootstrap` (`LaneKafkaSink` of `lane_messages`)."""
    topics = settings.kafka.topics
    flow = Dataflow("stratflow")
    source = source or kafka_source(settings, spec)
    # Already keyed by topic partition: the unit of order (models/market/ingest.py says why).
    by_partition: Stream[KeyedRaw] = op.input("kafka_in", flow, source.source)
    if counters is not None:
        op.inspect(
            "count_in", by_partition, lambda _s, kb: counters.add(records=len(kb[1].records))
        )
    market_parts = sum(1 for topic, _ in source.partitions if topic == topics.market)
    # Items travel in lanes (`adapters.Lane`: the desk's inputs, or one table's rows, as one
    # list per batch), so the engine's per-item cost is paid per batch, not per row.
    ingested = op.stateful_batch(
        "ingest",
        by_partition,
        lambda resume: IngestLanes(
            IngestLogic(settings, resume, follow=spec.tail, market_partitions=max(1, market_parts))
        ),
    )
    lanes = op.branch("to_desk", op.key_rm("ingest_out", ingested), is_desk_lane)
    # Every input partition takes part in the merge: bars and news meet the desk in one order.
    input_parts = frozenset(partition_key(topic, index) for topic, index in source.partitions)
    desk = op.stateful_batch(
        "desk",
        cast(Stream[tuple[str, list[DeskInput]]], lanes.trues),  # keyed by DESK_KEY already
        lambda resume: DeskLanes(
            DeskLogic(settings, input_parts, resume, gateway, spec.inline, orders)
        ),
    )
    # What is not the desk's lane is one table's rows, keyed by the table already.
    by_table: Stream[RowLane] = op.merge("rows", lanes.falses, op.key_rm("desk_out", desk))
    if counters is not None:
        op.inspect("count_out", by_table, lambda _s, lane: count_rows(counters, lane))
    write_every = spec.write_every if spec.tail else max(spec.write_every, BOUNDED_WRITE_EVERY)
    # A chdb/ClickHouse INSERT has a fixed cost of milliseconds, so rows are gathered per table
    # (in operator state, hence snapshotted: a crash loses none) and written in large batches.
    # The wall clock only decides when a batch is written, never what is in the log.
    batches = op.stateful_batch(
        "write_batches",
        by_table,
        lambda resume: RowBatchLogic(write_every, spec.write_max_rows, resume),
    )
    op.output("clickhouse", batches, store_sink or ClickHouseSink(settings.clickhouse, run_id))
    if notifier is not None:
        op.output("notify", op.flat_map("alerts", by_table, alerts_of), NotifierSink(notifier))
    if spec.kafka_out:
        # One item per lane, its messages produced in a loop (not one engine item each);
        # with recovery every batch is delivered before the flow goes on (at-least-once).
        sink = kafka_sink or LaneKafkaSink(
            [spec.bootstrap],
            lambda lane: lane_messages(topics, lane),
            flush_batches=settings.recovery.enabled,
        )
        op.output("kafka_out", by_table, sink)
    return flow
