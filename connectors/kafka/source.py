"""A lean Bytewax Kafka source that emits `(partition key, RawBatch)`: one item per poll.

Same contract as `bytewax.connectors.kafka.KafkaSource` (partitions assigned, no consumer-group
join; the next offset is the partition's recovery state, so a resumed run continues exactly where
the last snapshot was taken; `tail=False` ends at the current end of each partition), minus its
per-message wrapper object: on the per-tick path that wrapper and the re-keying step after it
cost as much as parsing the message, and the benchmark showed it.

Each batch says whether its record times are the broker's (`LogAppendTime`) or a producer's
(`CreateTime`): only the broker's are trusted by ingest's clock guard
(models/market/time_guard.py). A
poll that mixes both (a topic whose config changed) becomes one batch per run of one kind.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaError,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from models.market.ingest import RawBatch, Record

KeyedRaw = tuple[str, RawBatch]

# A live partition with nothing for this long stops holding back the desk's merge of partitions.
IDLE_AFTER_S = 1.0

# Without a short fetch wait the local Tansu broker answers fetches late and a replay idles.
# librdkafka prefetches until its local queue holds `queued.min.messages` (default 100,000)
# or `queued.max.messages.kbytes` (default 64 MiB, kept): with the default count it stops
# fetching while the flow works through a backlog, and a backtest's consumer waited on the
# broker (measured on 300k bars from the bundled Tansu broker: 6.3 -> 3.2 µs a message).
# Live, the queue never fills, so nothing changes there; memory stays under the byte bound.
CONSUMER_TUNING = {
    "statistics.interval.ms": "0",
    "fetch.wait.max.ms": "10",
    "queued.min.messages": "1000000",
}


def partition_key(topic: str, partition: int) -> str:
    return f"{topic}#{partition}"


class _Partition(StatefulSourcePartition[KeyedRaw, int]):
    def __init__(
        self,
        config: dict[str, Any],
        topic: str,
        index: int,
        offset: int,
        batch_size: int,
        idle_after_s: float = IDLE_AFTER_S,
    ) -> None:
        self._consumer = Consumer(config)
        self._consumer.assign([TopicPartition(topic, index, offset)])
        self._topic = topic
        self._index = index
        self._key = partition_key(topic, index)
        self._offset = offset
        self._batch_size = batch_size
        self._eof = False
        self._idle_after_s = idle_after_s
        self._last_data = time.monotonic()
        self._idle_sent = False
        self._broker_time = False  # the time kind of the latest record (LogAppendTime?)

    def next_batch(self) -> list[KeyedRaw]:
        if self._eof:
            raise StopIteration()
        records: list[Record] = []
        append = records.append
        done: list[KeyedRaw] = []  # earlier runs of records whose time kind differed
        broker = self._broker_time
        for msg in self._consumer.consume(self._batch_size, 0.001):
            error = msg.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    self._eof = True
                    break
                # A client error becomes a record too, so it reaches the dead letters.
                offset = msg.offset()
                where = offset if offset is not None and offset >= 0 else self._offset
                append((where, 0, None, f"kafka error: {error}"))
                continue
            offset = msg.offset() or 0
            kind, ts = msg.timestamp()
            if (kind == TIMESTAMP_LOG_APPEND_TIME) is not broker:
                if records:
                    done.append(self._batch(records, broker))
                    records = []
                    append = records.append
                broker = self._broker_time = not broker
            append((offset, ts if ts > 0 else 0, msg.value(), None))
            self._offset = offset + 1
        if self._eof:  # the end is news too: the desk's merge stops waiting for this partition
            return [*done, self._batch(records, broker, end="final")]
        now = time.monotonic()
        if not records and not done:
            if not self._idle_sent and now - self._last_data >= self._idle_after_s:
                self._idle_sent = True
                return [self._batch([], broker, end="idle")]
            return []
        self._last_data, self._idle_sent = now, False
        return [*done, self._batch(records, broker)] if records else done

    def _batch(
        self,
        records: list[Record],
        broker_time: bool,
        end: Literal["final", "idle"] | None = None,
    ) -> KeyedRaw:
        return (self._key, RawBatch(self._topic, self._index, records, end, broker_time))

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        self._consumer.close()


class RawKafkaSource(FixedPartitionedSource[KeyedRaw, int]):
    def __init__(
        self,
        bootstrap: str,
        topics: list[str],
        *,
        tail: bool,
        starting_offset: int = OFFSET_BEGINNING,
        batch_size: int = 5000,
    ) -> None:
        self._bootstrap = bootstrap
        self._topics = topics
        self._tail = tail
        self._starting_offset = starting_offset
        self._batch_size = batch_size

    def list_parts(self) -> list[str]:
        admin = AdminClient({"bootstrap.servers": self._bootstrap})
        meta = admin.list_topics(timeout=10)
        parts: list[str] = []
        for topic in self._topics:
            info = meta.topics.get(topic)
            if info is None or info.error is not None:
                raise RuntimeError(f"Kafka topic {topic!r} does not exist at {self._bootstrap}")
            parts.extend(f"{index}-{topic}" for index in info.partitions)
        return parts

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Partition:
        index, topic = for_part.split("-", 1)
        config = {
            "group.id": "STRATFLOW_ASSIGNED",  # never joined: partitions are assigned
            "enable.auto.commit": "false",
            "bootstrap.servers": self._bootstrap,
            "enable.partition.eof": str(not self._tail).lower(),
            # A resume offset that retention has deleted restarts at the oldest message still
            # there, never silently at the end of the partition (librdkafka's default).
            "auto.offset.reset": "earliest",
            **CONSUMER_TUNING,
        }
        offset = self._starting_offset if resume_state is None else resume_state
        return _Partition(config, topic, int(index), offset, self._batch_size)
