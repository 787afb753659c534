"""Small Kafka helpers shared by the replay publisher, the scenario tools, reports and tests.

Reading is always done with `assign()` and explicit partitions, never `subscribe()`: a
consumer-group join costs ~20 s on Tansu and buys nothing for "read this topic once".

Tansu 0.6 answers a ListOffsets(latest) request with the base offset of the partition's last
record *batch* plus one, not with the high watermark, so with batched producers it under-reports
the end of a partition. Fetch responses carry the correct high watermark, which is what
`topic_end_offsets` relies on; on Apache Kafka both agree and the extra fetch is cheap.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec  # admin does not re-export it

from connectors.kafka.broker import BrokerError
from models.market.partitioning import home_partition

__all__ = [
    "DeliveryCounter",
    "KeyedProducer",
    "Record",
    "make_consumer",
    "make_producer",
    "publish",
    "read_topic",
    "topic_end_offsets",
    "topic_partitions",
]

_KAFKA_LOG = logging.getLogger("stratflow.kafka")

DeliveryCallback = Callable[[KafkaError | None, Message], None]

# Throughput-oriented defaults. Ordering matters more than the last 10 % of speed: the pipeline
# reads per-symbol event-time order from the partition, so at most one request is in flight per
# connection (a retried batch can never overtake a later one). Idempotence would also give that,
# but costs ~3x throughput on Tansu; the pipeline dedupes on message id anyway, so a retry
# duplicate is harmless. murmur2 is the Java client's partitioner: a symbol lands in the same
# partition whichever language produced it. `publish` does not rely on it: it names the
# partition itself (`models.market.partitioning.home_partition`, the same function), so an override
# of
# `partitioner` cannot split a symbol across partitions.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "linger.ms": 20,
    "batch.size": 1_000_000,
    "batch.num.messages": 100_000,
    "compression.type": "none",
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "max.in.flight.requests.per.connection": 1,
    "enable.idempotence": False,
    "partitioner": "murmur2_random",
    "log.connection.close": False,
}


class Record(NamedTuple):
    """One consumed record; a null value (tombstone) reads as b"" since our topics have none."""

    key: bytes | None
    value: bytes
    timestamp_ms: int
    partition: int
    offset: int


class KeyedProducer(Producer):
    """A producer that knows each topic's partition count, so `publish` can put a keyed record
    on its key's home partition (`models.market.partitioning.home_partition`) by name."""

    def __init__(self, conf: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(conf, **kwargs)
        self._partitions: dict[str, int] = {}
        self._homes: dict[tuple[str, bytes], int] = {}  # symbols are few: murmur2 once each
        # A broker that did not answer for a topic's metadata is not asked again for as long as
        # that ask waited: a page of records for a dead broker costs one wait, not one per record.
        self._unanswered: dict[str, float] = {}

    def partition_for(self, topic: str, key: bytes, timeout_s: float = 10.0) -> int | None:
        """The home partition of `key` in `topic`; None when the topic's metadata is not
        available (the record then goes to the broker's default partitioner, also murmur2)."""
        home = self._homes.get((topic, key))
        if home is not None:
            return home
        count = self._partitions.get(topic)
        if count is None:
            if self._unanswered.get(topic, 0.0) > time.monotonic():
                return None
            try:
                md = self.list_topics(topic, timeout=timeout_s).topics.get(topic)
            except KafkaException:
                self._unanswered[topic] = time.monotonic() + timeout_s
                return None
            if md is None or md.error is not None or not md.partitions:
                return None
            count = self._partitions[topic] = len(md.partitions)
        if len(self._homes) >= 100_000:  # keys that are not symbols: do not grow without end
            self._homes.clear()
        home = self._homes[(topic, key)] = home_partition(key, count)
        return home


def make_producer(bootstrap: str, **overrides: Any) -> KeyedProducer:
    """A producer tuned for bulk publishing; override librdkafka keys, `**{"linger.ms": 5}`."""
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap, **PRODUCER_DEFAULTS, **overrides}
    return KeyedProducer(conf, logger=_KAFKA_LOG)


def make_consumer(bootstrap: str, **overrides: Any) -> Consumer:
    """A consumer meant for assign(): a throwaway group id, no offset commits."""
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "group.id": f"stratflow-reader-{uuid.uuid4().hex[:12]}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "log.connection.close": False,
        **overrides,
    }
    return Consumer(conf, logger=_KAFKA_LOG)


def publish(
    producer: Producer,
    topic: str,
    key: bytes | None,
    value: bytes,
    timestamp_ms: int | None = None,
    *,
    on_delivery: DeliveryCallback | None = None,
) -> None:
    """Enqueue one record, waiting for room instead of failing when the local queue is full.

    A keyed record goes to its key's home partition (`models.market.partitioning.home_partition`):
    market records are keyed by their symbol, and ingest refuses a symbol that arrives on any
    other partition. A full queue only means we outran the broker; blocking briefly is the
    right back-pressure for a publisher. Delivery results arrive via `on_delivery` on a later
    poll()/flush().
    """
    kwargs: dict[str, Any] = {"key": key, "value": value}
    if key is not None and isinstance(producer, KeyedProducer):
        partition = producer.partition_for(topic, key)
        if partition is not None:
            kwargs["partition"] = partition
    if timestamp_ms is not None:
        kwargs["timestamp"] = timestamp_ms
    if on_delivery is not None:
        kwargs["on_delivery"] = on_delivery
    while True:
        try:
            producer.produce(topic, **kwargs)
            break
        except BufferError:
            producer.poll(0.01)
    producer.poll(0)


class DeliveryCounter:
    """An `on_delivery` callback that counts outcomes and keeps the first few errors."""

    def __init__(self, keep_errors: int = 5) -> None:
        self.delivered = 0
        self.failed = 0
        self.errors: list[str] = []
        self._keep = keep_errors

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            self.delivered += 1
            return
        self.failed += 1
        if len(self.errors) < self._keep:
            self.errors.append(f"{msg.topic()}: {err.str()}")


def topic_partitions(bootstrap: str, topic: str, timeout_s: float = 10.0) -> list[int]:
    """Partition ids of an existing topic (metadata of all topics: never auto-creates it)."""
    admin = AdminClient({"bootstrap.servers": bootstrap}, logger=_KAFKA_LOG)
    try:
        md = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise BrokerError(f"cannot read metadata from {bootstrap}: {exc}") from None
    tmd = md.topics.get(topic)
    if tmd is None or not tmd.partitions:
        raise BrokerError(f"topic {topic!r} does not exist at {bootstrap}")
    return sorted(int(p) for p in tmd.partitions)


def _fetch_high_watermarks(
    bootstrap: str, topic: str, listed: dict[int, int], timeout_s: float
) -> dict[int, int]:
    """High watermarks as seen in Fetch responses, starting just before the listed offsets.

    Falls back to the listed offset for a partition that gives no answer in time (on Apache
    Kafka the listed offset is already exact; there the last offset may also be a transaction
    marker that is never delivered, hence the end-of-partition events).
    """
    ends = dict(listed)
    probe = {p: off for p, off in listed.items() if off > 0}
    if not probe:
        return ends
    consumer = make_consumer(bootstrap, **{"enable.partition.eof": True})
    try:
        consumer.assign([TopicPartition(topic, p, off - 1) for p, off in probe.items()])
        pending = set(probe)
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.1):
                part = msg.partition()
                if part is None or part not in pending:
                    continue
                err = msg.error()
                if err is not None and err.code() != KafkaError._PARTITION_EOF:
                    continue
                _, high = consumer.get_watermark_offsets(TopicPartition(topic, part), cached=True)
                seen = (msg.offset() or 0) + (1 if err is None else 0)
                ends[part] = max(ends[part], seen, int(high))
                pending.discard(part)
    finally:
        consumer.close()
    return ends


def topic_end_offsets(bootstrap: str, topic: str, timeout_s: float = 10.0) -> dict[int, int]:
    """Partition -> next offset to be written (the high watermark), for every partition."""
    parts = topic_partitions(bootstrap, topic, timeout_s)
    admin = AdminClient({"bootstrap.servers": bootstrap}, logger=_KAFKA_LOG)
    futures = admin.list_offsets(
        {TopicPartition(topic, p): OffsetSpec.latest() for p in parts},  # type: ignore[no-untyped-call]
        request_timeout=timeout_s,
    )
    listed: dict[int, int] = {}
    for tp, fut in futures.items():
        try:
            listed[tp.partition] = int(fut.result(timeout=timeout_s).offset)
        except KafkaException as exc:
            raise BrokerError(f"cannot list offsets of {topic!r}: {exc}") from None
    return _fetch_high_watermarks(bootstrap, topic, listed, timeout_s)


def read_topic(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[Record]:
    """Every record from the beginning to the end as of the call, ordered by (partition, offset).

    The end is fixed up front so that a concurrent producer cannot make this run forever;
    running out of `timeout_s` before reaching it is an error, not a silently short list.
    """
    deadline = time.monotonic() + timeout_s
    ends = topic_end_offsets(bootstrap, topic, timeout_s)
    pending = {p: end for p, end in ends.items() if end > 0}
    out: list[Record] = []
    if not pending:
        return out
    consumer = make_consumer(bootstrap, **{"fetch.max.bytes": 52_428_800})
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        while pending:
            if time.monotonic() > deadline:
                want = sum(ends[p] for p in ends)
                raise BrokerError(
                    f"read {len(out)} of {want} records of {topic!r} within {timeout_s:g} s"
                )
            for msg in consumer.consume(10_000, 0.2):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    raise BrokerError(f"error reading {topic!r}: {err.str()}")
                part, offset = msg.partition(), msg.offset()
                if part is None or offset is None or part not in pending:
                    continue
                if offset >= ends[part]:
                    continue
                _, ts = msg.timestamp()
                value = msg.value()
                out.append(
                    Record(
                        key=_as_bytes(msg.key()),
                        value=_as_bytes(value) or b"",
                        timestamp_ms=int(ts),
                        partition=part,
                        offset=offset,
                    )
                )
                if offset + 1 >= ends[part]:
                    del pending[part]
    finally:
        consumer.close()
    out.sort(key=lambda r: (r.partition, r.offset))
    return out


def _as_bytes(data: object) -> bytes | None:
    if data is None:
        return None
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    raise TypeError(f"unexpected record payload type {type(data).__name__}")
