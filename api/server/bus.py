"""How the API's commands reach the flow and how it learns they were applied.

A command is one record on the Kafka control topic (`kafka.topics.control`), keyed by its id,
so it reaches every worker of a distributed run; the flow applies it at its record time and
answers on the acks topic (`kafka.topics.control_acks`) and in the `control_log` table.
`KafkaCommandBus` publishes and keeps one reader of the acks topic on a thread, positioned at
the topic's end when the bus starts, so every acknowledgement of a command sent since is seen
as it arrives; `wait_ack` waits for one id, bounded. An acknowledgement from before the bus
started (a command re-sent after the API restarted) is found in `control_log` by the caller.

`CommandBus` is the protocol the routes use, so the in-process tests give a bus of their own.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from typing import Protocol

from confluent_kafka import TopicPartition

from models.config.settings import TopicsConfig
from models.control.commands import ControlCommand
from models.control.plane import ControlAck

__all__ = ["BusError", "CommandBus", "KafkaCommandBus"]

KEEP_ACKS = 10_000
"""Acknowledgements remembered by the reader (the oldest forgotten first)."""


class BusError(RuntimeError):
    """A command could not be sent (no broker, a refused delivery): one line."""


class CommandBus(Protocol):
    def send(self, command: ControlCommand) -> None:
        """Publish `command`; `BusError` when it is not delivered."""

    def wait_ack(self, command_id: str, timeout_s: float) -> ControlAck | None:
        """The acknowledgement of `command_id` once it arrives, None after `timeout_s`."""

    def close(self) -> None: ...


class AckBook:
    """Acknowledgements seen, by command id; waiters are woken as they arrive."""

    def __init__(self, keep: int = KEEP_ACKS) -> None:
        self._acks: OrderedDict[str, ControlAck] = OrderedDict()
        self._keep = keep
        self._changed = threading.Condition()

    def add(self, ack: ControlAck) -> None:
        with self._changed:
            self._acks[ack.command_id] = ack
            while len(self._acks) > self._keep:
                self._acks.popitem(last=False)
            self._changed.notify_all()

    def wait(self, command_id: str, timeout_s: float) -> ControlAck | None:
        with self._changed:
            self._changed.wait_for(lambda: command_id in self._acks, timeout=max(0.0, timeout_s))
            return self._acks.get(command_id)


class KafkaCommandBus:
    """Commands to `topics.control` of `bootstrap`; acknowledgements from `topics.control_acks`."""

    def __init__(self, bootstrap: str, topics: TopicsConfig, send_timeout_s: float = 10.0) -> None:
        from connectors.kafka.io import make_consumer, make_producer, topic_end_offsets

        self.bootstrap = bootstrap
        self._topics = topics
        self._send_timeout_s = send_timeout_s
        self._acks = AckBook()
        self._stop = threading.Event()
        self._producer = make_producer(bootstrap, **{"linger.ms": 0})
        ends = topic_end_offsets(bootstrap, topics.control_acks, timeout_s=10.0)
        self._consumer = make_consumer(bootstrap)
        self._consumer.assign(
            [TopicPartition(topics.control_acks, p, off) for p, off in sorted(ends.items())]
        )
        self._reader = threading.Thread(target=self._read, name="control-acks", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            while not self._stop.is_set():
                for msg in self._consumer.consume(100, 0.2):
                    if msg.error() is not None:
                        continue  # end of a partition, or a hiccup the client retries
                    value = msg.value()
                    if not isinstance(value, bytes):
                        continue
                    with contextlib.suppress(ValueError):  # not an ack: not ours to judge
                        self._acks.add(ControlAck.model_validate_json(value))
        finally:
            self._consumer.close()

    def send(self, command: ControlCommand) -> None:
        from connectors.kafka.io import publish

        failed: list[str] = []

        def delivered(err: object, _msg: object) -> None:
            if err is not None:
                failed.append(str(err))

        publish(
            self._producer,
            self._topics.control,
            command.command_id.encode(),
            command.model_dump_json().encode(),
            on_delivery=delivered,
        )
        if self._producer.flush(self._send_timeout_s) or failed:
            why = failed[0] if failed else f"not delivered within {self._send_timeout_s:g} s"
            raise BusError(f"control command not sent to {self._topics.control}: {why}")

    def wait_ack(self, command_id: str, timeout_s: float) -> ControlAck | None:
        return self._acks.wait(command_id, timeout_s)

    def close(self) -> None:
        self._stop.set()
        self._reader.join(timeout=5)
