"""`/api/stream`: decisions, orders, fills, alerts and control acknowledgements over a
WebSocket, live, with resume from a position.

Auth (the API's one token, checked before anything is read):
- a header, `Authorization: Bearer <token>` (programs);
- or, for browsers (which cannot set headers on a WebSocket), the subprotocols
  `["stratflow.v1", "bearer.<base64url of the token>"]`: the server answers with
  `stratflow.v1` only, never echoing the token;
- or a first message `{"token": "...", "from": ..., "kinds": [...]}` within
  `StreamService.auth_wait_s`.
Never in the URL: a query holding `token` (or `access_token`) is refused (close 4400), since
URLs end up in logs and histories. A page of another origin than the API's own (or those
given with `--cors-origin`) is refused (4403). No token: 4401; a wrong one: 4403.

Messages (JSON, one a line: a text frame holds one or more, so a burst costs few frames):
`{"kind": "decision"|"order"|"fill"|"alert"|"ack", "topic",
"partition", "offset", "cursor", "data": <the row as on its topic>}`. `cursor` is the client's
place after that message; reconnecting with `from=<cursor>` (query or first message) sends
exactly what came after it (read from the topics), then `{"kind": "live", "cursor",
"replayed"}`, then the live messages. `from=earliest`: everything the topics still hold;
none: live only (the `live` message comes first). Messages the topics no longer hold are
announced as `{"kind": "gap", "topic", "partition", "from", "to"}`.

Back-pressure: each client has a bounded queue (`api.server.hub`); a client that does not
keep up is closed with `CLOSE_TOO_SLOW` (4429) and the reason; the flow never waits for it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from typing import Any, Final
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from api.server.auth import FORBIDDEN, NOT_AUTHENTICATED
from api.server.context import ApiContext
from api.server.hub import (
    CLOSE_UNAVAILABLE,
    MAX_FRAME_MESSAGES,
    StreamClient,
    StreamHub,
    StreamService,
)
from api.server.stream_log import KIND_OF_TABLE, CursorError, Part

__all__ = [
    "CLOSE_BAD_REQUEST",
    "CLOSE_FORBIDDEN",
    "CLOSE_NOT_AUTHENTICATED",
    "PROTOCOL",
    "stream_router",
    "token_protocol",
]

_LOG = logging.getLogger("stratflow.api.stream")

PROTOCOL: Final = "stratflow.v1"
TOKEN_PROTOCOL_PREFIX: Final = "bearer."
CLOSE_BAD_REQUEST: Final = 4400
CLOSE_NOT_AUTHENTICATED: Final = 4401
CLOSE_FORBIDDEN: Final = 4403
CLOSE_ERROR: Final = 1011
URL_SECRETS: Final = ("token", "access_token", "api_key", "authorization")
MAX_FIRST_MESSAGE: Final = 4096
CATCH_UP_BATCH: Final = 500
CATCH_UP_IDLE_TRIES: Final = 30
"""Reads in a row that bring nothing while the topics hold more (about a second each)."""
KINDS: Final = frozenset(KIND_OF_TABLE.values())


def token_protocol(token: str) -> str:
    """The subprotocol that carries `token` (what a browser offers beside `PROTOCOL`)."""
    raw = base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")
    return TOKEN_PROTOCOL_PREFIX + raw


class _Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def _offered_token(ws: WebSocket) -> str | None:
    scheme, _, value = ws.headers.get("authorization", "").partition(" ")
    if scheme:
        if scheme.lower() != "bearer" or not value.strip():
            raise _Refused(CLOSE_NOT_AUTHENTICATED, NOT_AUTHENTICATED)
        return value.strip()
    for proto in ws.scope.get("subprotocols", []):
        if proto.startswith(TOKEN_PROTOCOL_PREFIX):
            raw = proto[len(TOKEN_PROTOCOL_PREFIX) :]
            try:
                return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise _Refused(CLOSE_NOT_AUTHENTICATED, NOT_AUTHENTICATED) from None
    return None


def _origin_allowed(ws: WebSocket, ctx: ApiContext) -> bool:
    """A browser names the page's origin: ours (same host and port) or one given."""
    origin = ws.headers.get("origin")
    if origin is None or origin in ctx.cors_origins:
        return True
    return urlsplit(origin).netloc.lower() == ws.headers.get("host", "").lower()


async def _first_message(ws: WebSocket, wait_s: float) -> dict[str, Any]:
    try:
        text = await asyncio.wait_for(ws.receive_text(), wait_s)
    except (TimeoutError, WebSocketDisconnect, KeyError, RuntimeError):
        raise _Refused(CLOSE_NOT_AUTHENTICATED, NOT_AUTHENTICATED) from None
    try:
        doc = json.loads(text) if len(text) <= MAX_FIRST_MESSAGE else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("token"), str):
        raise _Refused(CLOSE_NOT_AUTHENTICATED, NOT_AUTHENTICATED)
    return doc


def _kinds(value: object) -> frozenset[str] | None:
    if value is None or value == "":
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(k, str) for k in items):
        raise _Refused(CLOSE_BAD_REQUEST, "kinds: a list of " + ", ".join(sorted(KINDS)))
    unknown = sorted(set(items) - KINDS)
    if unknown:
        raise _Refused(CLOSE_BAD_REQUEST, f"kinds: unknown {unknown[0]!r}")
    return frozenset(items)


async def _start_at(ws: WebSocket, hub: StreamHub, given: object) -> dict[Part, int] | None:
    """Where to replay from (None: live only), with a `gap` message for what is gone."""
    if given is None or given in ("", "latest"):
        return None
    if not isinstance(given, str) or len(given) > 2000:
        raise _Refused(CLOSE_BAD_REQUEST, "from: a cursor, earliest or latest")
    low, _ = await asyncio.to_thread(hub.log.bounds)
    if given == "earliest":
        return {p: low.get(p, 0) for p in hub.cursor.parts}
    try:
        start = hub.cursor.decode(given)
    except CursorError as err:
        raise _Refused(CLOSE_BAD_REQUEST, str(err)) from None
    now = hub.positions()
    if any(start[p] > now[p] for p in start):
        raise _Refused(
            CLOSE_BAD_REQUEST,
            "from: ahead of the topics (they were recreated): reconnect without from",
        )
    for (topic, part), first in low.items():
        if start.get((topic, part), first) < first:
            gap = {"kind": "gap", "topic": topic, "partition": part}
            gap.update({"from": start[(topic, part)], "to": first})
            await ws.send_text(json.dumps(gap, separators=(",", ":")))
            start[(topic, part)] = first
    return start


async def _catch_up(
    ws: WebSocket, hub: StreamHub, client: StreamClient, start: dict[Part, int]
) -> tuple[str, int]:
    """Send what came after `start`, read from the topics, then attach to the live side
    exactly there. (The attached cursor, messages sent.)"""
    reader = await asyncio.to_thread(hub.log.reader, start)
    sent = idle = 0
    try:
        pos = dict(start)
        while True:
            target = hub.positions()
            if all(pos[p] >= target[p] for p in target):
                attached = hub.attach(client, pos)
                if attached is not None:
                    return attached, sent
                continue
            batch = await asyncio.to_thread(reader.next_batch, target, CATCH_UP_BATCH)
            idle = 0 if batch else idle + 1
            if idle > CATCH_UP_IDLE_TRIES:
                raise _Refused(CLOSE_ERROR, "the topics did not deliver the missed messages")
            lines = []
            for ev in batch:
                pos[(ev.topic, ev.partition)] = ev.offset + 1
                if client.kinds is not None and hub.kind_of(ev.topic) not in client.kinds:
                    continue
                text = hub.render(ev, hub.cursor.encode(pos))
                if text is not None:
                    lines.append(text)
            for i in range(0, len(lines), MAX_FRAME_MESSAGES):
                await ws.send_text("\n".join(lines[i : i + MAX_FRAME_MESSAGES]))
            sent += len(lines)
            pos = {**pos, **reader.position()}
    finally:
        await asyncio.to_thread(reader.close)


async def _until_closed(ws: WebSocket) -> None:
    """Read (and ignore) what the client sends, until it goes."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    if ws.application_state is WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(code, reason), 5.0)


async def serve_stream(ctx: ApiContext, service: StreamService | None, ws: WebSocket) -> None:
    offered = ws.scope.get("subprotocols", [])
    await ws.accept(subprotocol=PROTOCOL if PROTOCOL in offered else None)
    client: StreamClient | None = None
    hub: StreamHub | None = None
    try:
        if any(k in ws.query_params for k in URL_SECRETS):
            raise _Refused(
                CLOSE_BAD_REQUEST,
                "the token goes in the Authorization header, the subprotocol or the first "
                "message, never in the URL",
            )
        if not _origin_allowed(ws, ctx):
            raise _Refused(CLOSE_FORBIDDEN, "origin not allowed")
        options: dict[str, Any] = {}
        if ctx.token is not None:
            given = _offered_token(ws)
            if given is None:
                wait_s = service.auth_wait_s if service is not None else 10.0
                options = await _first_message(ws, wait_s)
                given = str(options["token"])
            if not ctx.token.matches(given):
                raise _Refused(CLOSE_FORBIDDEN, FORBIDDEN)
        if service is None:
            raise _Refused(CLOSE_UNAVAILABLE, "no broker: the stream reads the flow's topics")
        kinds = _kinds(options.get("kinds", ws.query_params.get("kinds")))
        try:
            hub = await service.hub()
        except Exception as err:
            _LOG.warning("the stream cannot start: %s", err)
            raise _Refused(CLOSE_UNAVAILABLE, "the flow's topics cannot be read") from None
        start = await _start_at(ws, hub, options.get("from", ws.query_params.get("from")))
        client = service.client(kinds)
        if start is None:
            cursor, replayed = hub.attach(client) or "", 0
        else:
            cursor, replayed = await _catch_up(ws, hub, client, start)
        live = {"kind": "live", "cursor": cursor, "replayed": replayed}
        await ws.send_text(json.dumps(live, separators=(",", ":")))
        pump = asyncio.create_task(client.pump(ws.send_text))
        listen = asyncio.create_task(_until_closed(ws))
        dropped = asyncio.create_task(client.done.wait())
        try:
            await asyncio.wait({pump, listen, dropped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, listen, dropped):
                task.cancel()
            for task in (pump, listen):
                failure = task.exception() if task.done() and not task.cancelled() else None
                if failure is not None and not isinstance(failure, WebSocketDisconnect | OSError):
                    _LOG.warning("stream client: %r", failure)
        if client.dropped is not None:
            raise _Refused(*client.dropped)
    except _Refused as refused:
        await _close(ws, refused.code, refused.reason)
    except WebSocketDisconnect:
        pass
    finally:
        if hub is not None and client is not None:
            hub.detach(client)


def stream_router(ctx: ApiContext) -> APIRouter:
    router = APIRouter()

    @router.websocket("/api/stream")
    async def stream(ws: WebSocket) -> None:
        await serve_stream(ctx, ctx.stream, ws)

    return router
