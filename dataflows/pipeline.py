"""The stratflow dataflow: wiring only. Every decision is made by a `models/` object.

    source (Kafka market/news/social, or any source of (partition key, RawBatch))
      ──► ingest (keyed by partition: parse → dead letters | bars → features → triggers → router)
      ──┬─ desk inputs ──► desk (one key: merge → desk ⇄ driver: GPT, orders, reports)
        │                    └─ rows ─┐
        └─ rows ─────────────────────┴─► keyed by table ──► ClickHouse (batched per table)
                                                        ├─► Kafka output topics
                                                        └─► notifier (alerts)

On a cluster of processes every process builds this same flow, and `dataflows.placement` decides
where each keyed step and sink partition lives (the desk and the store in process 0, ingest in the
others); keys are pinned to their process there, never in one process.

Live and backtest build this same flow; they differ only in `tail` (follow the topic, or stop at
its end), whether commands are answered inline, and the exchange behind the desk. The stateful
steps are `dataflows.adapters`; the lanes' predicates and keyed helpers are `dataflows.lanes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar, cast

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.inputs import FixedPartitionedSource, Source, StatefulSourcePartition
from bytewax.outputs import Sink

from connectors.exchange.gateway import ExecutionGateway
from connectors.kafka.sink import LaneKafkaSink
from connectors.kafka.source import KeyedRaw, RawKafkaSource, partition_key
from connectors.notify.notifier import Notifier
from connectors.store.sink import ClickHouseSink, NotifierSink, keep_thread_state, prepared_rows
from dataflows.adapters import DeskLanes, DeskLogic, IngestLanes, IngestLogic, RowBatchLogic
from dataflows.driver import GptLine
from dataflows.lanes import (
    DESK_KEY,
    DeskInput,
    RowLane,
    alerts_of,
    count_rows,
    is_desk_lane,
    lane_messages,
)
from dataflows.pacing import Lag, Paced
from dataflows.placement import Placement
from dataflows.progress import FlowCounters
from dataflows.wire import shipped
from models.config.settings import Settings

BOUNDED_WRITE_EVERY = timedelta(seconds=2)
"""A bounded run (a backtest) writes each table at most this often: nobody watches its rows
arrive, and fewer, larger inserts cost the engine less (its fixed cost per insert, and the
merges of the parts each insert makes: ~0.25 s of engine CPU less on 200,000 bars than at
500 ms)."""

T = TypeVar("T")


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


def kafka_source(
    settings: Settings, spec: FlowSpec, partitions: tuple[tuple[str, int], ...] | None = None
) -> FlowSource:
    """The market, news, social and control topics of `spec.bootstrap` (asks the broker for
    their partitions unless given: every process of a cluster builds the flow of the same
    ones). Control commands take their place among the bars like news (an empty
    control partition reports its end like any other, so it holds nothing back)."""
    topics = settings.kafka.topics
    source = RawKafkaSource(
        spec.bootstrap,
        [topics.market, topics.news, topics.social, topics.control],
        tail=spec.tail,
        batch_size=spec.batch_size,
    )
    if partitions is not None:
        return FlowSource(source, partitions)
    parts = [p.split("-", 1) for p in source.list_parts()]
    return FlowSource(source, tuple((topic, int(index)) for index, topic in parts))


class LocalPartitions(FixedPartitionedSource[Any, Any]):
    """A fixed-partitioned source that lists only the partitions `keep` accepts here: on a
    cluster each input partition is read by the process that ingests it (`Placement`)."""

    def __init__(
        self, inner: FixedPartitionedSource[Any, Any], keep: set[str], lag: Lag | None = None
    ) -> None:
        self.inner = inner
        self.keep = keep
        self.lag = lag

    def list_parts(self) -> list[str]:
        return [p for p in self.inner.list_parts() if _source_key(p) in self.keep]

    def build_part(
        self, step_id: str, for_part: str, resume_state: Any
    ) -> StatefulSourcePartition[Any, Any]:
        keep_thread_state()  # the worker's thread: one thread state, not one per call
        part = self.inner.build_part(step_id, for_part, resume_state)
        return part if self.lag is None else Paced(part, self.lag)


def _source_key(part: str) -> str:
    """`RawKafkaSource`'s partition name ("3-market") as the flow's partition key."""
    index, topic = part.split("-", 1)
    return partition_key(topic, int(index))


def _placed_source(source: FlowSource, placement: Placement, lag: Lag | None) -> Source[KeyedRaw]:
    if placement.processes == 1:
        return source.source
    if not isinstance(source.source, FixedPartitionedSource):
        raise TypeError("a flow on several processes needs a fixed-partitioned source")
    parts = [partition_key(topic, index) for topic, index in source.partitions]
    return LocalPartitions(source.source, set(placement.local_parts(parts)), lag)


def _as_is(item: T) -> T:
    return item


class _NotHere:
    """What a step placed in another process gets instead of its object: building it here
    would mean the keys were misplaced, so it fails loudly instead of running a desk without
    its gateways."""

    def __init__(self, what: str, placement: Placement) -> None:
        self.message = (
            f"{what} asked of process {placement.process} of {placement.processes}: it lives "
            f"in process {placement.desk_process}"
        )

    def __call__(self, _resume: object) -> Any:
        raise RuntimeError(self.message)


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
    placement: Placement | None = None,
    notify: bool | None = None,
    lag: Lag | None = None,
) -> Dataflow:
    """The pipeline as a Bytewax dataflow; every row it stores is stamped with `run_id`.
    `source`: None reads the Kafka topics (`kafka_source`); `kafka_sink`: None publishes the
    rows' lanes to `spec.bootstrap` (`LaneKafkaSink` of `lane_messages`).

    `placement`: this process's place in a cluster (default: the only process). Every process
    of a cluster builds the same steps; one that is not the desk's process gets no gateways
    and no notifier (they live in the desk's), so `notify` says whether the flow has a notify
    step at all (default: whether `notifier` is given). `lag`: the cluster's count of the
    desk's lanes in flight, which paces the ingest processes' reading (`dataflows.pacing`)."""
    placement = placement or Placement()
    many = placement.processes > 1
    topics = settings.kafka.topics
    flow = Dataflow("stratflow")
    source = source or kafka_source(settings, spec)
    # Already keyed by topic partition: the unit of order (models/market/ingest.py says why).
    by_partition: Stream[KeyedRaw] = op.input(
        "kafka_in", flow, _placed_source(source, placement, lag)
    )
    if counters is not None:
        op.inspect(
            "count_in", by_partition, lambda _s, kb: counters.add(records=len(kb[1].records))
        )
    market_parts = sum(1 for topic, _ in source.partitions if topic == topics.market)
    if many:  # each partition's ingest where it is read (`Placement.ingest_keys`)
        keys = placement.ingest_keys([partition_key(t, i) for t, i in source.partitions])
        by_partition = op.map("place_ingest", by_partition, lambda kb: (keys[kb[0]], kb[1]))
    # Items travel in lanes (`adapters.Lane`: the desk's inputs, or one table's rows, as one
    # list per batch), so the engine's per-item cost is paid per batch, not per row. On a
    # cluster whose rows are all written in the desk's process, ingest's rows ride with the
    # desk's inputs: one crossing, the bars' columns packed once (`IngestLanes`).
    # (the same in every process)
    together = placement.together
    ingested = op.stateful_batch(
        "ingest",
        by_partition,
        lambda resume: IngestLanes(
            IngestLogic(settings, resume, follow=spec.tail, market_partitions=max(1, market_parts)),
            together=together,
        ),
    )
    lanes = op.branch("to_desk", op.key_rm("ingest_out", ingested), is_desk_lane)
    # Every input partition takes part in the merge: bars and news meet the desk in one order.
    input_parts = frozenset(partition_key(topic, index) for topic, index in source.partitions)
    to_desk = cast(Stream[tuple[str, list[DeskInput]]], lanes.trues)  # keyed by DESK_KEY already
    desk_here = placement.process == placement.desk_process
    if many:  # to the desk's process; packed when it is another (`dataflows.wire`)
        desk_key = placement.desk_key(DESK_KEY)
        ship = _as_is if desk_here else shipped
        here = placement.process

        def send(lane: tuple[str, list[DeskInput]]) -> tuple[str, list[DeskInput]]:
            if lag is not None and not desk_here:
                lag.sent(here)
            return desk_key, ship(lane[1])

        to_desk = op.map("place_desk", to_desk, send)
    desk = op.stateful_batch(
        "desk",
        to_desk,
        (
            lambda resume: DeskLanes(
                DeskLogic(settings, input_parts, resume, gateway, spec.inline, orders),
                rows_through=together,
                taken=None if lag is None else lag.taken,
            )
        )
        if desk_here
        else _NotHere("the desk", placement),
    )
    # What is not the desk's lane is one table's rows, keyed by the table already.
    by_table: Stream[RowLane] = op.merge("rows", lanes.falses, op.key_rm("desk_out", desk))
    if counters is not None:
        op.inspect("count_out", by_table, lambda _s, lane: count_rows(counters, lane))
    write_every = spec.write_every if spec.tail else max(spec.write_every, BOUNDED_WRITE_EVERY)
    # A chdb/ClickHouse INSERT has a fixed cost of milliseconds, so rows are gathered per table
    # (in operator state, hence snapshotted: a crash loses none) and written in large batches.
    # The wall clock only decides when a batch is written, never what is in the log.
    # On a cluster, gathered where they are written (`Placement.table_key`).
    gather: Stream[RowLane] = by_table
    if many:
        ship_rows = _as_is if placement.gather_process == placement.process else shipped
        gather = op.map(
            "place_rows", by_table, lambda lane: (placement.table_key(lane[0]), ship_rows(lane[1]))
        )
    batches = op.stateful_batch(
        "write_batches",
        gather,
        lambda resume: RowBatchLogic(write_every, spec.write_max_rows, resume),
    )
    if many and placement.rows_apart:  # converted here; only the INSERTs cross
        ship_batch = _as_is if placement.store_process == placement.process else shipped
        embedded = not settings.clickhouse.url
        batches = op.map(
            "prepare_rows",
            batches,
            lambda kv: (kv[0], ship_batch(prepared_rows(kv[1], run_id, embedded=embedded))),
        )
    op.output("clickhouse", batches, store_sink or _store_sink(settings, run_id, placement))
    if notifier is not None if notify is None else notify:
        alerts = op.flat_map(
            "alerts", by_table, lambda lane: [("alerts", a) for a in alerts_of(lane)]
        )
        op.output("notify", alerts, NotifierSink(notifier if placement.notifier_here else None))
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


def _store_sink(settings: Settings, run_id: str, placement: Placement) -> ClickHouseSink:
    """The store where `placement` puts it: with a server every process writes its own rows;
    embedded chdb only in process 0, which every row travels to."""
    if placement.processes == 1:
        return ClickHouseSink(settings.clickhouse, run_id)
    return ClickHouseSink(
        settings.clickhouse,
        run_id,
        parts=placement.store_parts(),
        part_of=placement.store_part_of,
    )
