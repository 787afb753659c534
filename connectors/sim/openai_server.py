"""A small OpenAI-compatible HTTP server on 127.0.0.1, scripted per test.

The GPT client must be tested through the real `openai` SDK (its retry policy, timeouts, error
classes and structured-output parsing are part of what we rely on), yet the test-suite must not
need a network, a key or money. This server speaks just enough of the OpenAI REST API for that:
`POST /v1/chat/completions` (non-streaming) and `GET /v1/models`, with the bearer key checked
and OpenAI-shaped JSON bodies, errors included.

What each chat request gets is scripted through a queue of `Scenario`s (a good answer, a slow
one, 429 with Retry-After, 500/503, malformed JSON content, content that violates the schema,
a refusal, a dropped connection); every request is recorded (body and headers) so a test can
assert what the SDK really sent and how often. It runs on the stdlib `http.server` in a
background thread: no extra dependency, starts in milliseconds, and nothing listens beyond
127.0.0.1.

Run `python -m connectors.sim.openai_server --port 8089 --key sk-local` to keep one running by hand
(it answers every chat request with `--answer`).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any

__all__ = [
    "LocalOpenAIServer",
    "OpenAIServerError",
    "RecordedRequest",
    "Scenario",
    "ScenarioKind",
]

HOST = "127.0.0.1"
DEFAULT_MODEL = "stratflow-local"


class OpenAIServerError(RuntimeError):
    """A server problem phrased as one line the user can act on (no traceback needed)."""


class ScenarioKind(StrEnum):
    ANSWER = "answer"
    SLOW = "slow"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    MALFORMED = "malformed"
    SCHEMA_VIOLATION = "schema_violation"
    REFUSAL = "refusal"
    DROP = "drop"


def _as_text(content: str | Mapping[str, Any]) -> str:
    return content if isinstance(content, str) else json.dumps(content)


@dataclass(frozen=True, slots=True)
class Scenario:
    """What the server does with one chat request. Build it with the class methods."""

    kind: ScenarioKind
    content: str | None = None
    delay_s: float = 0.0
    status: int = 200
    retry_after_s: float | None = None
    refusal: str | None = None
    finish_reason: str = "stop"
    usage: tuple[int, int] | None = None
    """(prompt_tokens, completion_tokens); None: a deterministic estimate from the text."""

    @classmethod
    def answer(
        cls, content: str | Mapping[str, Any], *, usage: tuple[int, int] | None = None
    ) -> Scenario:
        """A normal answer whose message content is `content` (a mapping is JSON-encoded)."""
        return cls(ScenarioKind.ANSWER, content=_as_text(content), usage=usage)

    @classmethod
    def slow(cls, content: str | Mapping[str, Any], delay_s: float) -> Scenario:
        """The same answer, sent after `delay_s` seconds (to drive client timeouts)."""
        return cls(ScenarioKind.SLOW, content=_as_text(content), delay_s=delay_s)

    @classmethod
    def rate_limited(cls, retry_after_s: float = 0.05) -> Scenario:
        """HTTP 429 with `Retry-After` (whole seconds, rounded up) and `retry-after-ms`."""
        return cls(ScenarioKind.RATE_LIMITED, status=429, retry_after_s=retry_after_s)

    @classmethod
    def server_error(cls, status: int = 500) -> Scenario:
        """HTTP 5xx with an OpenAI-shaped error body."""
        if not 500 <= status <= 599:
            raise ValueError(f"server_error needs a 5xx status, got {status}")
        return cls(ScenarioKind.SERVER_ERROR, status=status)

    @classmethod
    def malformed(cls, content: str = '{"strategy": "trend", "weight": 0.5') -> Scenario:
        """A 200 answer whose content is not valid JSON (here: truncated)."""
        return cls(ScenarioKind.MALFORMED, content=content)

    @classmethod
    def schema_violation(cls, content: str | Mapping[str, Any]) -> Scenario:
        """A 200 answer with valid JSON content that does not fit the requested schema."""
        return cls(ScenarioKind.SCHEMA_VIOLATION, content=_as_text(content))

    @classmethod
    def refused(cls, refusal: str = "I'm sorry, I can't help with that request.") -> Scenario:
        """A structured-output refusal: `content` null, `message.refusal` set."""
        return cls(ScenarioKind.REFUSAL, refusal=refusal)

    @classmethod
    def drop(cls) -> Scenario:
        """Read the request, then close the connection without a response."""
        return cls(ScenarioKind.DROP)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the server saw it. Header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    """The decoded JSON body (None for a GET or a body that is not JSON)."""
    raw_body: bytes
    status: int
    """The HTTP status answered; 0 when the connection was dropped."""
    scenario: ScenarioKind | None
    """The scenario that answered it; None when it never reached the queue (auth, 404...)."""
    received_at: float = field(default=0.0)


def _estimate_tokens(text: str) -> int:
    """About four characters a token, like OpenAI's rule of thumb; deterministic for tests."""
    return max(1, math.ceil(len(text) / 4))


def _error_body(message: str, err_type: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": err_type, "param": None, "code": code}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler still sleeping in a slow scenario never blocks exit
    owner: LocalOpenAIServer


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so no idle keep-alive thread can outlive stop().
    protocol_version = "HTTP/1.0"
    server_version = "stratflow-openai-local/1"
    timeout = 30  # a client that connects and sends nothing cannot pin a thread forever
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests and the CLI report what matters themselves."""

    def do_GET(self) -> None:
        self.server.owner._handle(self, "GET")

    def do_POST(self) -> None:
        self.server.owner._handle(self, "POST")

    def send_json(self, status: int, doc: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(doc).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class LocalOpenAIServer:
    """An OpenAI-compatible server in a background thread on 127.0.0.1.

    `with LocalOpenAIServer(api_key="sk-test") as server:` then point the SDK at
    `server.base_url` ("http://127.0.0.1:PORT/v1"). Queue behaviour with `script(...)`; with an
    empty queue a chat request gets `default` when set, else HTTP 400 "no scenario queued" (not
    retried by the SDK, so a test that forgot to script shows up as one clear failure).
    `api_key=None` accepts any (or no) bearer key.
    """

    def __init__(
        self,
        api_key: str | None = "sk-local-test",
        *,
        port: int | None = None,
        models: Sequence[str] = (DEFAULT_MODEL,),
        default: Scenario | None = None,
    ) -> None:
        self.api_key = api_key
        self.models = tuple(models)
        self.default = default
        self._requested_port = port or 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._queue: collections.deque[Scenario] = collections.deque()
        self._requests: list[RecordedRequest] = []
        self._stopping = threading.Event()
        self._wake = threading.Event()  # set by stop() and release_slow(): slow answers go now
        self._counter = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        if self._server is None:
            raise OpenAIServerError("server is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> LocalOpenAIServer:
        if self._server is not None:
            return self
        try:
            server = _Server((HOST, self._requested_port), _Handler)
        except OSError as exc:
            if self._requested_port:
                raise OpenAIServerError(
                    f"cannot listen on {HOST}:{self._requested_port}: {exc.strerror}"
                ) from None
            raise OpenAIServerError(f"cannot listen on {HOST}: {exc.strerror}") from None
        server.owner = self
        self._stopping.clear()
        self._wake.clear()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},  # how fast stop() returns
            name=f"openai-local-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving; slow scenarios in progress are woken and answer nothing."""
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        if server is None:
            return
        self._stopping.set()
        self._wake.set()
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout_s)

    def release_slow(self) -> None:
        """Send the slow answers in progress now, and later ones without delay: a test holds
        an answer with a delay no test outlives and releases it when it chooses, so nothing
        depends on how fast the machine is."""
        self._wake.set()

    def __enter__(self) -> LocalOpenAIServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.base_url if self._server is not None else "stopped"
        return f"LocalOpenAIServer({where}, queued={len(self._queue)})"

    # ------------------------------------------------------------------ scripting

    def script(self, *scenarios: Scenario) -> None:
        """Append scenarios; each chat request consumes the next one."""
        with self._lock:
            self._queue.extend(scenarios)

    def reset(self) -> None:
        """Forget queued scenarios and recorded requests (the default scenario stays)."""
        with self._lock:
            self._queue.clear()
            self._requests.clear()
            if not self._stopping.is_set():
                self._wake.clear()  # slow answers are slow again

    @property
    def pending(self) -> int:
        """Scenarios not consumed yet."""
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    # ------------------------------------------------------------------ serving

    def _record(self, rec: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(rec)

    def _next_scenario(self) -> Scenario | None:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            return self.default

    def _next_id(self) -> str:
        with self._lock:
            self._counter += 1
            return f"chatcmpl-local{self._counter:06d}"

    def _handle(self, h: _Handler, method: str) -> None:
        received = time.time()
        path = h.path.split("?", 1)[0].rstrip("/")
        headers = {k.lower(): v for k, v in h.headers.items()}
        raw = b""
        if method == "POST":
            length = int(headers.get("content-length", "0") or 0)
            raw = h.rfile.read(length) if length > 0 else b""
        body: Any = None
        if raw:
            with contextlib.suppress(ValueError):
                body = json.loads(raw)

        def finish(status: int, scenario: ScenarioKind | None) -> None:
            self._record(
                RecordedRequest(method, path, headers, body, raw, status, scenario, received)
            )

        try:
            if not self._authorised(headers.get("authorization")):
                finish(401, None)
                h.send_json(
                    401,
                    _error_body(
                        "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
                    ),
                )
                return
            if method == "GET" and path == "/v1/models":
                finish(200, None)
                h.send_json(200, self._models_body())
                return
            if method == "POST" and path == "/v1/chat/completions":
                self._chat(h, body, finish)
                return
            finish(404, None)
            h.send_json(
                404, _error_body(f"Unknown request URL: {method} {path}", "invalid_request_error")
            )
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. its timeout fired): nothing left to answer

    def _authorised(self, header: str | None) -> bool:
        if self.api_key is None:
            return True
        return header == f"Bearer {self.api_key}"

    def _models_body(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "stratflow"}
                for m in self.models
            ],
        }

    def _chat(
        self, h: _Handler, body: Any, finish: Callable[[int, ScenarioKind | None], None]
    ) -> None:
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("model"), str)
            or not isinstance(body.get("messages"), list)
        ):
            finish(400, None)
            h.send_json(
                400,
                _error_body(
                    "Request body must be JSON with 'model' and 'messages'.",
                    "invalid_request_error",
                ),
            )
            return
        if body.get("stream"):
            finish(400, None)
            h.send_json(
                400, _error_body("Streaming is not supported here.", "invalid_request_error")
            )
            return
        scenario = self._next_scenario()
        if scenario is None:
            finish(400, None)
            h.send_json(
                400,
                _error_body(
                    "stratflow test server: no scenario queued for this request.",
                    "invalid_request_error",
                    "no_scenario",
                ),
            )
            return
        kind = scenario.kind
        if kind is ScenarioKind.DROP:
            finish(0, kind)
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)
            return
        if kind is ScenarioKind.RATE_LIMITED:
            finish(429, kind)
            wait = scenario.retry_after_s if scenario.retry_after_s is not None else 1.0
            h.send_json(
                429,
                _error_body("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
                {"Retry-After": str(math.ceil(wait)), "retry-after-ms": str(round(wait * 1000))},
            )
            return
        if kind is ScenarioKind.SERVER_ERROR:
            finish(scenario.status, kind)
            h.send_json(
                scenario.status,
                _error_body(
                    "The server had an error while processing your request.", "server_error"
                ),
            )
            return
        if kind is ScenarioKind.SLOW:
            self._wake.wait(scenario.delay_s)
            if self._stopping.is_set():
                finish(0, kind)
                return  # stopping: answer nothing
        finish(200, kind)
        h.send_json(200, self._completion(body, scenario), {"x-request-id": self._next_id()})

    def _completion(self, body: dict[str, Any], scenario: Scenario) -> dict[str, Any]:
        content = scenario.content
        if scenario.usage is not None:
            prompt_tokens, completion_tokens = scenario.usage
        else:
            prompt_tokens = _estimate_tokens(json.dumps(body.get("messages")))
            completion_tokens = _estimate_tokens(content or scenario.refusal or "")
        return {
            "id": self._next_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": "fp_stratflow_local",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": content,
                        "refusal": scenario.refusal,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": scenario.finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m connectors.sim.openai_server",
        description="Run a local OpenAI-compatible server on 127.0.0.1 until Ctrl-C.",
    )
    parser.add_argument("--port", type=int, default=8089, help="0 picks a free port")
    parser.add_argument(
        "--key", default=None, help="bearer key to require (default: accept any key)"
    )
    parser.add_argument(
        "--answer", default="{}", help="message content of every chat answer (default: {})"
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model id listed by /v1/models")
    args = parser.parse_args(argv)
    server = LocalOpenAIServer(
        args.key, port=args.port or None, models=[args.model], default=Scenario.answer(args.answer)
    )
    try:
        server.start()
    except OpenAIServerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        print(server.base_url, flush=True)
        auth = "any key" if args.key is None else "the --key given"
        print(f"OpenAI-compatible server ready (accepts {auth}); Ctrl-C to stop", file=sys.stderr)
        while server.running:
            time.sleep(0.5)
        print("error: server thread exited unexpectedly", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
