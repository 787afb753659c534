"""The live side of the WebSocket stream: one reader of the output topics, fanned out to every
attached client through a bounded queue of its own.

Why it is built this way: the pipeline must never wait for a browser. The flow writes its
events to Kafka and goes on; the hub reads them back on a thread of its own (`log.follow`),
renders each message once (`render`: the row's JSON as it is on the topic, wrapped with its
kind, position and cursor) and offers it to every client without waiting (`StreamClient.offer`
on the event loop). A client whose queue is full (`queue_size` messages), or whose oldest
waiting message is older than `max_lag_ms` by the hub's clock, is dropped with close code
`CLOSE_TOO_SLOW` and a reason; the others never notice. Between the reader thread and the
event loop at most `MAX_PENDING_BATCHES` batches wait: past that the reader waits (it lags
the topic, never the flow).

Exactness of a resume (`api.server.stream`): the hub's positions advance and the clients it
fans a batch out to are chosen under one lock, and `attach(client, at)` only succeeds when
`at` is the hub's position, so a client that caught up to exactly there gets every later
message once, and none twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

import jiter

from api.server.stream_log import Cursor, Event, EventLog, Part

__all__ = [
    "CLOSE_TOO_SLOW",
    "CLOSE_UNAVAILABLE",
    "MAX_FRAME_MESSAGES",
    "HubStats",
    "StreamClient",
    "StreamHub",
    "StreamService",
]

_LOG = logging.getLogger("stratflow.api.stream")

CLOSE_TOO_SLOW: Final = 4429
"""A client that did not keep up was dropped (the reason says by how much)."""
CLOSE_UNAVAILABLE: Final = 4503
"""The stream cannot be served: no broker, or the topics' reader stopped."""

DEFAULT_QUEUE: Final = 1024
DEFAULT_MAX_LAG_MS: Final = 10_000
MAX_PENDING_BATCHES: Final = 64
MAX_FRAME_MESSAGES: Final = 256
"""Messages sent in one WebSocket frame at most (one a line)."""


class StreamClient:
    """One attached client: its bounded queue of rendered messages, the kinds it asked for,
    and, once dropped, the close code and reason."""

    def __init__(
        self,
        queue_size: int = DEFAULT_QUEUE,
        max_lag_ms: int = DEFAULT_MAX_LAG_MS,
        kinds: frozenset[str] | None = None,
    ) -> None:
        self.kinds = kinds
        self.queue_size = queue_size
        self.max_lag_ms = max_lag_ms
        self.sent = 0
        self.dropped: tuple[int, str] | None = None
        self._queue: deque[tuple[int, str]] = deque()
        self._ready = asyncio.Event()
        self.done = asyncio.Event()
        """Set when the client is dropped: its connection is to be closed."""

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def offer(self, now_ms: int, text: str) -> str | None:
        """Queue `text`; the reason to drop the client instead when it is too far behind.
        Never waits (runs on the event loop, for every client, for every message)."""
        queue = self._queue
        if len(queue) >= self.queue_size:
            return f"too slow: {len(queue)} messages waiting"
        if queue and now_ms - queue[0][0] > self.max_lag_ms:
            return f"too slow: a message waiting for {(now_ms - queue[0][0]) / 1000:g} s"
        queue.append((now_ms, text))
        self._ready.set()
        return None

    def drop(self, code: int, reason: str) -> None:
        if self.dropped is None:
            self.dropped = (code, reason)
            self.done.set()

    async def pump(self, send: Callable[[str], Awaitable[None]]) -> None:
        """Hand the queued messages to `send`, in order, at the client's own pace: all that
        wait (up to `MAX_FRAME_MESSAGES`) in one frame, one message a line, so a burst
        costs a few frames, not one per message."""
        queue = self._queue
        while self.dropped is None:
            if not queue:
                self._ready.clear()
                await self._ready.wait()
                continue
            n = min(len(queue), MAX_FRAME_MESSAGES)
            await send("\n".join(queue[i][1] for i in range(n)))
            for _ in range(n):
                queue.popleft()
            self.sent += n


@dataclass
class HubStats:
    published: int = 0
    skipped: int = 0
    """Messages that were not a JSON object (not the flow's): never sent."""
    dropped: int = 0
    attached: int = 0


def render(kind: str, topic_json: str, ev: Event, cursor: str) -> str | None:
    """The message a client receives for `ev`; None when its value is not a JSON object
    (validated, so a frame is always valid JSON; its text is sent as it is on the topic)."""
    value = ev.value
    if value[:1] != b"{":
        return None
    try:
        jiter.from_json(value)
        text = value.decode()
    except ValueError:
        return None
    return (
        f'{{"kind":"{kind}","topic":{topic_json},"partition":{ev.partition},'
        f'"offset":{ev.offset},"cursor":"{cursor}","data":{text}}}'
    )


class StreamHub:
    """The live fan-out (see the module's docstring). `publish` may be called from any
    thread; `attach`, `detach` and the fan-out run on `loop`."""

    def __init__(
        self,
        log: EventLog,
        loop: asyncio.AbstractEventLoop,
        start: Mapping[Part, int],
        clock: Callable[[], int],
    ) -> None:
        self.log = log
        self.cursor = Cursor(list(start))
        self.stats = HubStats()
        self.failed: str | None = None
        self._loop = loop
        self._clock = clock
        self._kinds = log.kinds()
        self._topic_json = {t: json.dumps(t) for t in self._kinds}
        self._pos = dict(start)
        self._clients: set[StreamClient] = set()
        self._lock = threading.Lock()
        self._pending = 0
        self._drained = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ positions
    def positions(self) -> dict[Part, int]:
        with self._lock:
            return dict(self._pos)

    def render(self, ev: Event, cursor: str) -> str | None:
        return render(self._kinds[ev.topic], self._topic_json[ev.topic], ev, cursor)

    def kind_of(self, topic: str) -> str:
        return self._kinds[topic]

    # ------------------------------------------------------------------ clients
    def attach(self, client: StreamClient, at: Mapping[Part, int] | None = None) -> str | None:
        """Attach `client` at the hub's position; with `at`, only when that is the hub's
        position. The cursor attached at, or None (the hub moved on: catch up further)."""
        with self._lock:
            if at is not None and dict(at) != self._pos:
                return None
            if self.failed is not None:
                client.drop(CLOSE_UNAVAILABLE, self.failed)
            self._clients.add(client)
            self.stats.attached += 1
            return self.cursor.encode(self._pos)

    def detach(self, client: StreamClient) -> None:
        with self._lock:
            self._clients.discard(client)

    @property
    def clients(self) -> int:
        return len(self._clients)

    @property
    def pending(self) -> int:
        """Batches handed to the event loop and not fanned out yet."""
        return self._pending

    # ------------------------------------------------------------------ the live side
    def publish(self, events: list[Event]) -> int:
        """Advance past `events` and offer them to every attached client; never waits for a
        client. Returns the messages rendered."""
        frames: list[tuple[str, str]] = []
        with self._lock:
            pos = self._pos
            for ev in events:
                part = (ev.topic, ev.partition)
                at = pos.get(part)
                if at is None or ev.offset < at:
                    continue  # not ours, or seen already
                pos[part] = ev.offset + 1
                text = self.render(ev, self.cursor.encode(pos))
                if text is None:
                    self.stats.skipped += 1
                    continue
                frames.append((self._kinds[ev.topic], text))
            self.stats.published += len(frames)
            clients = tuple(self._clients)
            if not (frames and clients):
                return len(frames)
            self._pending += 1
        self._loop.call_soon_threadsafe(self._fan_out, frames, clients)
        return len(frames)

    def _fan_out(self, frames: list[tuple[str, str]], clients: tuple[StreamClient, ...]) -> None:
        try:
            now = self._clock()
            for client in clients:
                if client.dropped is not None:
                    continue
                kinds = client.kinds
                for kind, text in frames:
                    if kinds is not None and kind not in kinds:
                        continue
                    why = client.offer(now, text)
                    if why is not None:
                        client.drop(CLOSE_TOO_SLOW, why)
                        self.stats.dropped += 1
                        break
        finally:
            with self._drained:
                self._pending -= 1
                self._drained.notify_all()

    def wait_drained(self, limit: int = MAX_PENDING_BATCHES) -> None:
        """Wait (on the reader's thread) while more than `limit` batches wait for the loop."""
        with self._drained:
            self._drained.wait_for(lambda: self._pending <= limit or self._stop.is_set())

    def start(self) -> None:
        """Follow the topics from the hub's position on a thread of its own."""
        start = self.positions()

        def deliver(batch: list[Event]) -> None:
            self.publish(batch)
            self.wait_drained()

        def follow() -> None:
            try:
                self.log.follow(start, deliver, self._stop)
            except Exception as err:  # the broker's trouble ends the stream, said to clients
                _LOG.warning("the stream's reader stopped: %s", err)
                self._fail(f"the stream's reader stopped: {type(err).__name__}")

        self._thread = threading.Thread(target=follow, name="api-stream", daemon=True)
        self._thread.start()

    def _fail(self, why: str) -> None:
        with self._lock:
            self.failed = why
            clients = tuple(self._clients)
        for client in clients:
            self._loop.call_soon_threadsafe(client.drop, CLOSE_UNAVAILABLE, why)

    def close(self) -> None:
        self._stop.set()
        with self._drained:
            self._drained.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)


@dataclass
class StreamService:
    """The stream of one API: its event log and the hub, started by the first client (on the
    server's event loop, from the topics' ends then)."""

    log: EventLog
    clock: Callable[[], int]
    queue_size: int = DEFAULT_QUEUE
    max_lag_ms: int = DEFAULT_MAX_LAG_MS
    auth_wait_s: float = 10.0
    """How long a client may take to send its token as the first message."""
    _hub: StreamHub | None = None
    _starting: asyncio.Lock | None = field(default=None, repr=False)

    async def hub(self) -> StreamHub:
        if self._hub is not None:
            return self._hub
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._hub is None:
                _, ends = await asyncio.to_thread(self.log.bounds)
                hub = StreamHub(self.log, asyncio.get_running_loop(), ends, self.clock)
                hub.start()
                self._hub = hub
        return self._hub

    def client(self, kinds: frozenset[str] | None = None) -> StreamClient:
        return StreamClient(self.queue_size, self.max_lag_ms, kinds)

    @property
    def started(self) -> StreamHub | None:
        return self._hub

    def close(self) -> None:
        if self._hub is not None:
            self._hub.close()
        self.log.close()
