"""A Bytewax Kafka sink whose items are lanes (one table's rows), each produced as its messages.

`bytewax.connectors.kafka.KafkaSink` takes one `KafkaSinkMessage` per item, so every message
the flow publishes was an item of its own through a `flat_map` and the output step (the
engine's per-item cost, a wrapper object, a `poll(0)` each): ~10 µs a message in a backtest
that publishes ~66,000. Here an item is whatever `messages` turns into `(topic, keys, values)`
(for the flow: a `dataflows.lanes.RowLane`), produced in a loop without a wrapper.

Same contract as `KafkaSink` (bytewax 0.21): the same producer configuration (the brokers,
librdkafka's defaults, so the same partitioner puts a key on the same partition), the messages
produced in item order and in each item's order, the producer flushed at `close` and, with
`flush_batches` (a run with recovery), at the end of every `write_batch`, so a batch's
messages are delivered before the engine goes on and before its epoch can be committed
(at-least-once: a resumed epoch's messages are produced again). What differs: no empty
`headers` list and no `timestamp=0` (librdkafka's defaults, the same record), one `poll(0)`
per item instead of per message (it only serves delivery reports, of which there are none),
and a full local queue waits for room instead of raising `BufferError`.

Without recovery nothing is resumed, so nothing waits on a batch's delivery: librdkafka sends
in the background as it always does, and `close` (the end of a bounded run) waits for the
rest. A flush waits for the broker's answer (~5-10 ms on a loaded machine), and a backtest's
sink is called ~80 times.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import Producer

T = TypeVar("T")

Messages = tuple[str, Sequence[bytes | None], Sequence[bytes | None]]
"""(topic, keys, values) of one item: the i-th message is (keys[i], values[i]) on `topic`."""

QUEUE_FULL_WAIT_S = 0.05
"""How long a produce waits for deliveries when librdkafka's local queue is full."""


def produce_all(producer: Any, topic: str, keys: Sequence[Any], values: Sequence[Any]) -> None:
    """Produce `values[i]` keyed `keys[i]` on `topic`, in order; a full local queue (the broker
    slower than the flow) waits for deliveries and tries the same message again."""
    produce = producer.produce
    for key, value in zip(keys, values, strict=True):
        try:
            produce(topic, value, key)
        except BufferError:
            while True:
                producer.poll(QUEUE_FULL_WAIT_S)
                try:
                    produce(topic, value, key)
                    break
                except BufferError:
                    continue
    producer.poll(0)


class _LanePartition(StatelessSinkPartition[T], Generic[T]):
    def __init__(
        self, producer: Any, messages: Callable[[T], Messages | None], flush_batches: bool
    ) -> None:
        self._producer = producer
        self._messages = messages
        self._flush_batches = flush_batches

    def write_batch(self, items: list[T]) -> None:
        producer, messages = self._producer, self._messages
        for item in items:
            got = messages(item)
            if got is not None:
                produce_all(producer, *got)
        if self._flush_batches:
            producer.flush()

    def close(self) -> None:
        self._producer.flush()


class LaneKafkaSink(DynamicSink[T], Generic[T]):
    """Every item's messages (`messages(item)`: `(topic, keys, values)`, or None for an item
    with none) produced to Kafka, with `KafkaSink`'s producer and delivery guarantees;
    `flush_batches=False` (no recovery) waits for deliveries only at the end."""

    def __init__(
        self,
        brokers: Iterable[str],
        messages: Callable[[T], Messages | None],
        add_config: dict[str, str] | None = None,
        *,
        flush_batches: bool = True,
    ) -> None:
        self._brokers = list(brokers)
        self._messages = messages
        self._add_config = dict(add_config or {})
        self._flush_batches = flush_batches

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _LanePartition[T]:
        config = {"bootstrap.servers": ",".join(self._brokers), **self._add_config}
        return _LanePartition(Producer(config), self._messages, self._flush_batches)
