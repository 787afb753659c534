"""A webhook receiver on 127.0.0.1 that stands in for the user's phone in notifier tests."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

TOKEN = "tok-7Qx9ZfLr2Vb"
PASSWORD = "pw-Hk3Ts8Wq"
WAIT_S = 10.0


@dataclass
class Receiver:
    """What the webhook got: (path, JSON payload) per request, in arrival order."""

    port: int
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)
    """Requests to a path starting with /slow wait for this before answering."""
    slow_started: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str = f"/hook/{TOKEN}", scheme: str = "json") -> str:
        return f"{scheme}://alerts:{PASSWORD}@127.0.0.1:{self.port}{path}"

    def payloads(self) -> list[dict[str, Any]]:
        with self.lock:
            return [payload for _, payload in self.received]


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    receiver = Receiver(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            payload = json.loads(self.rfile.read(length) or b"{}")
            if self.path.startswith("/slow"):
                receiver.slow_started.set()
                receiver.release.wait(WAIT_S)
            with receiver.lock:
                receiver.received.append((self.path, payload))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()
        thread.join(WAIT_S)
