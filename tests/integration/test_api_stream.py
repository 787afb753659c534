"""The WebSocket stream in-process (issue 13): starlette's TestClient against the app, the
output topics stood in for by `tests.support.stream.MemoryEventLog` (a log the producer
appends to without waiting, read by the hub's own thread, as Kafka is).

- The token is asked for before anything is sent: none is 4401, a wrong one 4403, one in the
  URL 4400 even when right; a header, the browser's subprotocol or a first message let in.
- A client that reconnects with the cursor of the last message it got receives exactly the
  messages it missed, then a `live` marker, then the live messages, none twice.
- A client that does not read is dropped with 4429 and the reason, by queue size or, on an
  injected clock, by the age of its oldest waiting message, while the producer goes on at
  its own pace and a client that reads gets every message; a stalled event loop holds back
  the hub's reader, never the producer.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from api.server.hub import (
    CLOSE_TOO_SLOW,
    MAX_PENDING_BATCHES,
    StreamClient,
    StreamHub,
    StreamService,
)
from api.server.stream import (
    CLOSE_BAD_REQUEST,
    CLOSE_FORBIDDEN,
    CLOSE_NOT_AUTHENTICATED,
    PROTOCOL,
    token_protocol,
)
from api.server.stream_log import Cursor, Event
from models.config.settings import Settings
from tests.support.api import AUTH, TOKEN, Clock, api_client
from tests.support.stream import KINDS, MemoryEventLog, row

GUARD_S = 60  # a hang guard, never a bound on how fast anything must be


@pytest.fixture
def log() -> MemoryEventLog:
    return MemoryEventLog()


@pytest.fixture
def client(log: MemoryEventLog) -> Iterator[TestClient]:
    settings = Settings.model_validate({"symbols": {"ABC": {}}})
    service = StreamService(log, Clock(), auth_wait_s=2.0)
    with api_client(settings, None, stream=service) as (http, _ctx):
        yield http
    service.close()


def _refusal(http: TestClient, path: str = "/api/stream", **kw: Any) -> tuple[int, str]:
    with pytest.raises(WebSocketDisconnect) as closed, http.websocket_connect(path, **kw) as ws:
        ws.receive_text()
    return closed.value.code, closed.value.reason


_pending: dict[int, list[str]] = {}


def _next(ws: Any) -> dict[str, Any]:
    """The next message: a frame holds one or more, one a line."""
    lines = _pending.setdefault(id(ws), [])
    if not lines:
        lines.extend(ws.receive_text().split("\n"))
    msg: dict[str, Any] = json.loads(lines.pop(0))
    return msg


def _live(ws: Any) -> dict[str, Any]:
    """Messages up to the `live` marker are returned by `_replayed`; this reads the marker."""
    msg = _next(ws)
    assert msg["kind"] == "live", msg
    return msg


def _replayed(ws: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    out = []
    while (msg := _next(ws))["kind"] != "live":
        out.append(msg)
    return out, msg


def _messages(frames: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for frame in frames for line in frame.split("\n")]


def test_no_wrong_or_url_token_is_refused_before_anything_is_sent(
    client: TestClient, log: MemoryEventLog
) -> None:
    log.append("decision", row("decision", 0))
    assert _refusal(client, "/api/stream?from=earliest") == (
        CLOSE_NOT_AUTHENTICATED,
        "not authenticated",
    )
    wrong = {"Authorization": "Bearer wrong-token-000000000"}
    assert _refusal(client, "/api/stream?from=earliest", headers=wrong) == (
        CLOSE_FORBIDDEN,
        "forbidden",
    )
    assert _refusal(client, headers={"Authorization": f"Basic {TOKEN}"})[0] == 4401
    code, reason = _refusal(client, f"/api/stream?token={TOKEN}")
    assert code == CLOSE_BAD_REQUEST and "never in the URL" in reason
    code, _ = _refusal(client, subprotocols=[PROTOCOL, token_protocol(TOKEN + "x")])
    assert code == CLOSE_FORBIDDEN
    # A first message that is not the token, or not JSON.
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect("/api/stream") as ws,
    ):
        ws.send_text("hello")
        ws.receive_text()
    assert closed.value.code == CLOSE_NOT_AUTHENTICATED
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect("/api/stream") as ws,
    ):
        ws.send_text(json.dumps({"token": "wrong-token-000000000"}))
        ws.receive_text()
    assert closed.value.code == CLOSE_FORBIDDEN
    # A page of another origin.
    other = {**AUTH, "Origin": "https://evil.example"}
    assert _refusal(client, headers=other) == (CLOSE_FORBIDDEN, "origin not allowed")


def test_a_header_a_subprotocol_or_a_first_message_let_the_client_in(
    client: TestClient, log: MemoryEventLog
) -> None:
    log.append("fill", row("fill", 0))
    with client.websocket_connect("/api/stream?from=earliest", headers=AUTH) as ws:
        replayed, live = _replayed(ws)
        assert [m["data"]["id"] for m in replayed] == ["fill-0"] and live["replayed"] == 1
    browser = [PROTOCOL, token_protocol(TOKEN)]
    origin = {"Origin": "http://testserver"}
    with client.websocket_connect("/api/stream", subprotocols=browser, headers=origin) as ws:
        assert ws.accepted_subprotocol == PROTOCOL  # never the token's
        assert _live(ws)["replayed"] == 0
    with client.websocket_connect("/api/stream") as ws:
        ws.send_text(json.dumps({"token": TOKEN, "from": "earliest", "kinds": ["fill"]}))
        replayed, _ = _replayed(ws)
        assert [m["kind"] for m in replayed] == ["fill"]


def test_resume_from_a_cursor_gives_exactly_the_missed_messages_then_the_live_ones(
    client: TestClient, log: MemoryEventLog
) -> None:
    kinds = sorted(KINDS.values())
    for n in range(6):
        log.append(kinds[n % len(kinds)], row(kinds[n % len(kinds)], n))
    with client.websocket_connect("/api/stream?from=earliest", headers=AUTH) as ws:
        first, live = _replayed(ws)
        assert sorted(m["data"]["n"] for m in first) == list(range(6))
        log.append("order", row("order", 6))
        got = _next(ws)  # live
        assert (got["kind"], got["data"]["n"]) == ("order", 6)
        kept = first[2]["cursor"]  # the client goes away having seen up to first[2] in order
        seen = {(m["topic"], m["offset"]) for m in first[:3]}
    for n in range(7, 12):
        log.append(kinds[n % len(kinds)], row(kinds[n % len(kinds)], n))
    with client.websocket_connect(f"/api/stream?from={kept}", headers=AUTH) as ws:
        missed, live = _replayed(ws)
        want = {
            (e.topic, e.offset)
            for part in log.parts()
            for e in log.held(part)
            if (e.topic, e.offset) not in seen and e.offset >= _cursor_offset(kept, log, part)
        }
        got_positions = [(m["topic"], m["offset"]) for m in missed]
        assert len(got_positions) == len(set(got_positions)) == live["replayed"]
        assert set(got_positions) == want and len(want) == 12 - 3
        for n in (12, 13):
            log.append("alert", row("alert", n))
        after = [_next(ws) for _ in range(2)]
        assert [m["data"]["n"] for m in after] == [12, 13]
    # The last cursor resumes to nothing missed.
    with client.websocket_connect(f"/api/stream?from={after[-1]['cursor']}", headers=AUTH) as ws:
        assert _live(ws)["replayed"] == 0


def _cursor_offset(cursor: str, log: MemoryEventLog, part: tuple[str, int]) -> int:
    offsets = [int(x) for x in cursor.split(".")[2:]]
    return dict(zip(log.parts(), offsets, strict=True))[part]


def test_a_bad_cursor_and_a_lost_range_are_said(client: TestClient, log: MemoryEventLog) -> None:
    for n in range(4):
        log.append("decision", row("decision", n))
    code, reason = _refusal(client, "/api/stream?from=c1.0000000000.1.2", headers=AUTH)
    assert code == CLOSE_BAD_REQUEST and "not a cursor of this stream" in reason
    code, reason = _refusal(client, "/api/stream?kinds=order,trade", headers=AUTH)
    assert code == CLOSE_BAD_REQUEST and "trade" in reason
    start = Cursor(log.parts()).encode(dict.fromkeys(log.parts(), 0))
    log.trim(("decisions", 0), 2)
    with client.websocket_connect(f"/api/stream?from={start}", headers=AUTH) as ws:
        gap = _next(ws)
        assert gap == {"kind": "gap", "topic": "decisions", "partition": 0, "from": 0, "to": 2}
        replayed, _ = _replayed(ws)
        assert [m["data"]["n"] for m in replayed] == [2, 3]


# ---------------------------------------------------------------------------- back-pressure
class Loop:
    """An event loop on a thread of its own, as uvicorn's is."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(GUARD_S)

    def close(self) -> None:
        async def cancel_all() -> None:
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        self.call(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(GUARD_S)


@pytest.fixture
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.close()


def _hub(log: MemoryEventLog, loop: Loop, clock: Clock) -> StreamHub:
    hub = StreamHub(log, loop.loop, log.bounds()[1], clock)
    hub.start()
    return hub


async def _attach(hub: StreamHub, client: StreamClient, send: Any) -> asyncio.Task[None]:
    hub.attach(client)
    return asyncio.create_task(client.pump(send))


def _produce(log: MemoryEventLog, clock: Clock, n: int, step_ms: int) -> threading.Thread:
    """The flow's stand-in: `n` messages, one every `step_ms` of the injected clock."""

    def run() -> None:
        for i in range(n):
            clock.ms += step_ms
            log.append("decision", row("decision", i))

    producer = threading.Thread(target=run)
    producer.start()
    return producer


def _wait(what: str, check: Any) -> None:
    done = threading.Event()
    for _ in range(GUARD_S * 100):
        if check():
            return
        done.wait(0.01)
    raise AssertionError(what)


def test_a_slow_client_is_dropped_while_the_producer_keeps_its_rate(
    log: MemoryEventLog, loop: Loop
) -> None:
    clock = Clock(0)
    hub = _hub(log, loop, clock)
    stuck = asyncio.Event()  # the slow client's first send never returns
    received: list[str] = []

    async def fast_send(text: str) -> None:
        received.append(text)

    async def slow_send(_text: str) -> None:
        await stuck.wait()

    slow = StreamClient(queue_size=64, max_lag_ms=10**9)
    fast = StreamClient(queue_size=10**6, max_lag_ms=10**9)
    loop.call(_attach(hub, slow, slow_send))
    loop.call(_attach(hub, fast, fast_send))
    n = 2_000
    producer = _produce(log, clock, n, step_ms=10)
    producer.join(GUARD_S)
    assert not producer.is_alive() and log.appended == n
    # The producer's schedule on its clock was its own: 10 ms a message, n messages.
    assert clock.ms == n * 10
    _wait("the fast client got everything", lambda: len(_messages(received)) == n)
    assert [m["data"]["n"] for m in _messages(received)] == list(range(n))
    assert slow.dropped is not None
    code, reason = slow.dropped
    assert (code, reason) == (CLOSE_TOO_SLOW, "too slow: 64 messages waiting")
    assert slow.sent == 0 and fast.dropped is None and hub.stats.dropped == 1
    hub.close()


def test_a_client_whose_oldest_message_waits_too_long_is_dropped_by_the_hubs_clock(
    log: MemoryEventLog, loop: Loop
) -> None:
    clock = Clock(0)
    hub = StreamHub(log, loop.loop, log.bounds()[1], clock)  # fed by the test, no reader
    stuck = asyncio.Event()

    async def slow_send(_text: str) -> None:
        await stuck.wait()

    async def settled() -> None:
        await asyncio.sleep(0)

    slow = StreamClient(queue_size=10**6, max_lag_ms=1_000)
    loop.call(_attach(hub, slow, slow_send))
    for i in range(200):
        clock.ms += 10
        hub.publish([Event("decisions", 0, i, json.dumps(row("decision", i)).encode())])
        loop.call(settled())
        if slow.dropped is not None:
            break
    # The first message went out at 10 ms and never finished: at 1,020 ms it is over 1 s old.
    assert (clock.ms, slow.dropped) == (
        1_020,
        (CLOSE_TOO_SLOW, "too slow: a message waiting for 1.01 s"),
    )
    assert hub.stats.published == 102


def test_a_stalled_event_loop_holds_back_the_hubs_reader_never_the_producer(
    log: MemoryEventLog, loop: Loop
) -> None:
    clock = Clock(0)
    hub = _hub(log, loop, clock)
    received: list[str] = []

    async def send(text: str) -> None:
        received.append(text)

    loop.call(_attach(hub, StreamClient(queue_size=10**6, max_lag_ms=10**9), send))
    release = threading.Event()
    loop.loop.call_soon_threadsafe(release.wait)  # the loop does nothing else until released
    n = 20_000
    producer = _produce(log, clock, n, step_ms=1)
    producer.join(GUARD_S)
    assert not producer.is_alive() and log.appended == n
    # The hub's reader stopped at its bound of batches waiting for the loop, behind the log.
    _wait("the reader reached its bound", lambda: hub.pending > MAX_PENDING_BATCHES)
    assert hub.stats.published < n
    release.set()
    _wait("everything arrived once the loop ran", lambda: len(_messages(received)) == n)
    assert len(received) < n  # in frames of several messages
    assert hub.stats.published == n
    hub.close()
