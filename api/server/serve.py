"""Serving the control API with uvicorn: on a thread of the run's own process (`stratflow run
--api`), or in the foreground (`stratflow serve`).

The socket is bound here, before uvicorn starts, so an address in use or not ours is one line
for the user (`ListenError`) instead of a log record and a dead thread; port 0 takes a free one
(`ApiServer.url` says which). uvicorn logs warnings only and no access lines: a request line is
not needed to run the API, and the run's progress display shares the terminal. On a thread,
signals stay with the run (uvicorn installs handlers only on the main thread): Ctrl-C stops the
run, and the API with it.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Final

import uvicorn
from fastapi import FastAPI

__all__ = ["ApiServer", "ListenError", "parse_listen"]

START_TIMEOUT_S: Final = 10.0
WS_MAX_SIZE: Final = 64 * 1024
"""The largest WebSocket message a client may send (the stream reads one: the token)."""


class ListenError(ValueError):
    """A listen address that cannot be used: one line."""


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`127.0.0.1:8080`, `[::1]:8080`, `0.0.0.0:0`) as (host, port)."""
    host, sep, port_text = text.strip().rpartition(":")
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ListenError(f"listen address {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port_text)


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as err:
        raise ListenError(f"listen address {host}:{port}: {err.strerror}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    return sock


class ApiServer:
    """The app on a bound socket; `start()` serves it on a thread, `serve()` in the
    foreground."""

    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        self._sock = _bind(host, port)
        self.host = host
        self.port = int(self._sock.getsockname()[1])
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            server_header=False,
            # The stream's frames are compressed per client, per frame: CPU in the run's own
            # process for every client; on loopback or a LAN it costs more than it saves.
            ws_per_message_deflate=False,
            ws_max_size=WS_MAX_SIZE,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Serve on a daemon thread; returns once the server accepts requests."""
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="api", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ListenError(f"the control API did not start on {self.url}")
            time.sleep(0.01)

    def serve(self) -> None:
        """Serve in this thread until SIGINT or SIGTERM."""
        try:
            self._server.run(sockets=[self._sock])
        finally:
            self._sock.close()

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._sock.close()
