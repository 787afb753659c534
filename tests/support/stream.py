"""The WebSocket stream's test kit: an in-memory stand-in for the output topics
(`MemoryEventLog`, the `api.server.stream_log.EventLog` protocol) and a few rows to put on it.

Like Kafka, it decouples the producer from the reader: `append` stores a message and wakes the
followers, it never waits for them; `follow` runs on the hub's thread and reads at its own
pace. `trim` drops a partition's oldest messages (retention), for the gap message.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

from api.server.stream_log import Event, Part, stream_topics
from models.config.settings import TopicsConfig

TOPICS = TopicsConfig()
KINDS = stream_topics(TOPICS)  # topic -> kind
TOPIC_OF_KIND = {kind: topic for topic, kind in KINDS.items()}


class MemoryReader:
    def __init__(self, log: MemoryEventLog, start: Mapping[Part, int]) -> None:
        self._log = log
        self._pos = dict(start)

    def next_batch(self, until: Mapping[Part, int], max_events: int) -> list[Event]:
        out: list[Event] = []
        with self._log.changed:
            for part, at in self._pos.items():
                held = self._log.held(part)
                while at < until[part] and at < len(held) and len(out) < max_events:
                    out.append(held[at])
                    at += 1
                self._pos[part] = at
        return out

    def position(self) -> dict[Part, int]:
        return dict(self._pos)

    def close(self) -> None:
        pass


class MemoryEventLog:
    def __init__(self, partitions: int = 1) -> None:
        self._parts = [(topic, p) for topic in KINDS for p in range(partitions)]
        self._messages: dict[Part, list[Event]] = {part: [] for part in self._parts}
        self._low: dict[Part, int] = dict.fromkeys(self._parts, 0)
        self.changed = threading.Condition()
        self.appended = 0

    def held(self, part: Part) -> list[Event]:
        return self._messages[part]

    def append(self, kind: str, row: dict[str, Any], partition: int = 0) -> Event:
        part = (TOPIC_OF_KIND[kind], partition)
        with self.changed:
            held = self._messages[part]
            ev = Event(part[0], partition, len(held), json.dumps(row).encode())
            held.append(ev)
            self.appended += 1
            self.changed.notify_all()
        return ev

    def append_raw(self, topic: str, value: bytes) -> None:
        with self.changed:
            held = self._messages[(topic, 0)]
            held.append(Event(topic, 0, len(held), value))
            self.changed.notify_all()

    def trim(self, part: Part, before: int) -> None:
        with self.changed:
            self._low[part] = before

    # ------------------------------------------------------------------ EventLog
    def parts(self) -> list[Part]:
        return list(self._parts)

    def kinds(self) -> dict[str, str]:
        return dict(KINDS)

    def bounds(self) -> tuple[dict[Part, int], dict[Part, int]]:
        with self.changed:
            return dict(self._low), {p: len(m) for p, m in self._messages.items()}

    def reader(self, start: Mapping[Part, int]) -> MemoryReader:
        return MemoryReader(self, start)

    def follow(
        self,
        start: Mapping[Part, int],
        deliver: Callable[[list[Event]], None],
        stop: threading.Event,
    ) -> None:
        pos = dict(start)
        while not stop.is_set():
            with self.changed:
                self.changed.wait_for(
                    lambda: (
                        stop.is_set() or any(len(self._messages[p]) > at for p, at in pos.items())
                    ),
                    timeout=0.5,
                )
                batch = []
                for part, at in pos.items():
                    batch.extend(self._messages[part][at : at + 200])
                    pos[part] = at + len(self._messages[part][at : at + 200])
            if batch:
                deliver(batch)

    def close(self) -> None:
        with self.changed:
            self.changed.notify_all()


def row(kind: str, n: int) -> dict[str, Any]:
    """A small row of `kind` numbered `n` (the stream passes rows on as they are)."""
    return {"kind_of_row": kind, "n": n, "id": f"{kind}-{n}"}
