"""What every response of the control API shares: a request body limit (413), headers that
keep answers out of caches and browsers' guesses, and CORS closed unless origins are named.

`BodyLimit` is plain ASGI, outermost: a declared `Content-Length` above the limit is refused
before anything reads the body, and a body sent without one (chunked) is counted as it is read,
so neither can make the server hold more than the limit. The request bodies of this API are a
few hundred bytes (a state, a few settings), so the default is small.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY: Final = 16 * 1024

SECURITY_HEADERS: Final = (
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)

__all__ = ["DEFAULT_MAX_BODY", "BodyLimit", "BodyTooLarge", "cors_options"]


class BodyTooLarge(HTTPException):
    """Raised while the body is read: an HTTPException, so FastAPI's body parsing passes it on
    as it is (it turns other errors into a 400) and its handler answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"request body larger than {limit} bytes")


def _json_response(status: int, detail: str) -> tuple[Message, Message]:
    body = json.dumps({"detail": detail}).encode()
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *SECURITY_HEADERS,
        ],
    }
    return start, {"type": "http.response.body", "body": body}


class BodyLimit:
    """Refuse request bodies above `max_bytes` with 413; add `SECURITY_HEADERS` to every
    response."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = [v for k, v in scope.get("headers", []) if k == b"content-length"]
        if declared:
            try:
                size = int(declared[0])
            except ValueError:
                size = -1
            if size < 0 or len(declared) > 1:
                for message in _json_response(400, "invalid Content-Length"):
                    await send(message)
                return
            if size > self.max_bytes:
                for message in _json_response(413, BodyTooLarge(self.max_bytes).detail):
                    await send(message)
                return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, counted, with_headers)
        except BodyTooLarge:
            if started:
                raise
            for message in _json_response(413, BodyTooLarge(self.max_bytes).detail):
                await send(message)


def cors_options(origins: Sequence[str]) -> dict[str, object] | None:
    """CORSMiddleware's options for these exact origins, or None (the default: no CORS
    header at all, so no other site's page can read an answer). `*` is refused: a browser
    page of any site holding a token would do."""
    if not origins:
        return None
    bad = [o for o in origins if o == "*" or not o.startswith(("http://", "https://"))]
    if bad:
        raise ValueError(f"CORS origins are exact http(s) origins, not {bad[0]!r}")
    return {
        "allow_origins": list(origins),
        "allow_methods": ["GET", "POST", "PATCH"],
        "allow_headers": ["Authorization", "Content-Type"],
        "allow_credentials": False,
    }
