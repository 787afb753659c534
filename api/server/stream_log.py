"""Where the WebSocket stream's events come from: the flow's own output topics.

The flow already writes every decision, order, fill and alert, and every control
acknowledgement, to a Kafka topic (`dataflows.lanes.KAFKA_TABLES`). The API reads them back
with a consumer of its own, so the stream works the same served from the run's process
(`run --api`) and on its own (`serve`), and a position in the stream is a position in those
topics: (topic, partition, offset). A client's place is the next offset of every partition
(`Cursor`), which is what it hands back to resume (`from=`): what it missed is read from the
topics (`EventLog.reader`), then the live stream takes over (`api.server.hub`).

`EventLog` is the protocol the hub and the route use; `KafkaEventLog` is the broker's, and the
in-process tests give one of their own (`tests.support.stream.MemoryEventLog`).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from models.config.settings import TopicsConfig

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Message

__all__ = [
    "KIND_OF_TABLE",
    "Cursor",
    "CursorError",
    "Event",
    "EventLog",
    "EventReader",
    "KafkaEventLog",
    "Part",
    "stream_topics",
]

Part = tuple[str, int]
"""(topic, partition)."""

KIND_OF_TABLE: Final = {
    "decisions": "decision",
    "orders": "order",
    "fills": "fill",
    "alerts": "alert",
    "control_acks": "ack",
}
"""The `TopicsConfig` keys the stream carries, and the `kind` each message of one is given."""


def stream_topics(topics: TopicsConfig) -> dict[str, str]:
    """Topic name -> kind, for the topics of `KIND_OF_TABLE`."""
    return {getattr(topics, key): kind for key, kind in KIND_OF_TABLE.items()}


@dataclass(frozen=True, slots=True)
class Event:
    """One message of an output topic: where it is and its value (the row's JSON)."""

    topic: str
    partition: int
    offset: int
    value: bytes


class CursorError(ValueError):
    """A `from=` the stream cannot resume from: one line."""


class Cursor:
    """Where a client is: the next offset of every partition, in the log's fixed order.

    Written `c1.<fingerprint>.<offset>.<offset>...`: the fingerprint (of the topic and
    partition names) refuses a cursor of other topics, e.g. after the config changed."""

    PREFIX: Final = "c1"

    def __init__(self, parts: Sequence[Part]) -> None:
        self.parts: tuple[Part, ...] = tuple(parts)
        names = ",".join(f"{t}:{p}" for t, p in self.parts)
        self.fingerprint = hashlib.sha256(names.encode()).hexdigest()[:10]
        self._head = f"{self.PREFIX}.{self.fingerprint}."

    def encode(self, positions: Mapping[Part, int]) -> str:
        return self._head + ".".join(str(positions[p]) for p in self.parts)

    def decode(self, text: str) -> dict[Part, int]:
        if not text.startswith(self._head):
            raise CursorError(
                "from: not a cursor of this stream (another version, or other topics): "
                "reconnect without from, or with from=earliest"
            )
        fields = text[len(self._head) :].split(".")
        if len(fields) != len(self.parts) or not all(f.isdigit() and len(f) < 19 for f in fields):
            raise CursorError("from: a malformed cursor")
        return {p: int(f) for p, f in zip(self.parts, fields, strict=True)}


class EventReader(Protocol):
    """Reads the topics from given positions, for a client catching up."""

    def next_batch(self, until: Mapping[Part, int], max_events: int) -> list[Event]:
        """The next events before `until` (per partition, exclusive), each partition's in
        order; possibly none while the broker has not answered yet. Blocking: called on a
        worker thread."""

    def position(self) -> dict[Part, int]:
        """The next offset of every partition (past every event handed out)."""

    def close(self) -> None: ...


class EventLog(Protocol):
    """The output topics as the stream reads them."""

    def parts(self) -> list[Part]:
        """Every partition of the stream's topics, in a fixed order."""

    def kinds(self) -> dict[str, str]:
        """Topic -> kind."""

    def bounds(self) -> tuple[dict[Part, int], dict[Part, int]]:
        """(first offset still held, next offset to be written) of every partition."""

    def reader(self, start: Mapping[Part, int]) -> EventReader: ...

    def follow(
        self,
        start: Mapping[Part, int],
        deliver: Callable[[list[Event]], None],
        stop: threading.Event,
    ) -> None:
        """Read from `start` until `stop` is set, handing each batch to `deliver` in order.
        Blocking: the hub runs it on a thread of its own."""

    def close(self) -> None: ...


def _events(messages: Sequence[Message[bytes, bytes]]) -> list[Event]:
    out = []
    for msg in messages:
        if msg.error() is not None:
            continue  # the end of a partition, or a hiccup the client retries
        value = msg.value()
        topic, part, off = msg.topic(), msg.partition(), msg.offset()
        if isinstance(value, bytes) and topic is not None and part is not None and off is not None:
            out.append(Event(topic, part, off, value))
    return out


class _KafkaReader:
    """`EventReader` over one consumer. Messages read past `until` are kept for the next call
    (its `until` is never smaller), so no partition is read twice or skipped."""

    def __init__(self, consumer: Consumer, start: Mapping[Part, int]) -> None:
        from confluent_kafka import TopicPartition

        self._consumer = consumer
        self._pos = dict(start)
        self._ahead: dict[Part, deque[Event]] = {p: deque() for p in start}
        consumer.assign([TopicPartition(t, p, off) for (t, p), off in sorted(start.items())])

    def next_batch(self, until: Mapping[Part, int], max_events: int) -> list[Event]:
        out: list[Event] = []
        for part, kept in self._ahead.items():
            while kept and kept[0].offset < until[part] and len(out) < max_events:
                ev = kept.popleft()
                out.append(ev)
                self._pos[part] = ev.offset + 1
        behind = [p for p in self._pos if self._pos[p] < until[p] and not self._ahead[p]]
        if out or not behind:
            return out
        # Partitions already at `until` keep being fetched; what they bring is kept.
        for ev in _events(self._consumer.consume(max_events, 1.0)):
            part = (ev.topic, ev.partition)
            if part not in self._pos or ev.offset < self._pos[part]:
                continue
            if ev.offset < until[part] and not self._ahead[part]:
                out.append(ev)
                self._pos[part] = ev.offset + 1
            else:
                self._ahead[part].append(ev)
        return out

    def position(self) -> dict[Part, int]:
        return dict(self._pos)

    def close(self) -> None:
        self._consumer.close()


class KafkaEventLog:
    """The stream's topics on the broker at `bootstrap` (one consumer per reader, one for the
    live tail; no consumer group, no commits: positions are the clients')."""

    def __init__(self, bootstrap: str, topics: TopicsConfig, timeout_s: float = 10.0) -> None:
        self.bootstrap = bootstrap
        self._kinds = stream_topics(topics)
        self._timeout_s = timeout_s
        self._parts: list[Part] | None = None

    def kinds(self) -> dict[str, str]:
        return dict(self._kinds)

    def parts(self) -> list[Part]:
        from connectors.kafka.io import topic_partitions

        if self._parts is None:
            self._parts = [
                (topic, p)
                for topic in self._kinds
                for p in sorted(topic_partitions(self.bootstrap, topic, self._timeout_s))
            ]
        return list(self._parts)

    def bounds(self) -> tuple[dict[Part, int], dict[Part, int]]:
        from confluent_kafka import TopicPartition

        consumer = self._consumer()
        try:
            low: dict[Part, int] = {}
            high: dict[Part, int] = {}
            for part in self.parts():
                lo, hi = consumer.get_watermark_offsets(
                    TopicPartition(*part), timeout=self._timeout_s, cached=False
                )
                low[part], high[part] = int(lo), int(hi)
            return low, high
        finally:
            consumer.close()

    def _consumer(self) -> Consumer:
        from connectors.kafka.io import make_consumer

        return make_consumer(self.bootstrap, **{"fetch.wait.max.ms": 50})

    def reader(self, start: Mapping[Part, int]) -> EventReader:
        return _KafkaReader(self._consumer(), start)

    def follow(
        self,
        start: Mapping[Part, int],
        deliver: Callable[[list[Event]], None],
        stop: threading.Event,
    ) -> None:
        from confluent_kafka import TopicPartition

        consumer = self._consumer()
        try:
            consumer.assign([TopicPartition(t, p, off) for (t, p), off in sorted(start.items())])
            while not stop.is_set():
                batch = _events(consumer.consume(500, 0.2))
                if batch:
                    deliver(batch)
        finally:
            with contextlib.suppress(Exception):
                consumer.close()

    def close(self) -> None:
        pass
