"""Starting the control API from the command line: what `stratflow run --api` and `stratflow
serve` share.

`check_listen` runs first, before anything else starts: the address, the token (or `--no-auth`
on a loopback address) and the CORS origins, each mistake one line (`LaunchError`). `build`
then makes the context around an open store and, with a broker, a command bus on it and the
WebSocket stream's source (the control topic and the stream's topics created if missing), and
`ApiServer` binds the address. `close_context` closes what `build` opened.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from api.server.auth import ApiToken, AuthSetupError, check_exposure, load_token
from api.server.bus import KafkaCommandBus
from api.server.context import ApiContext, RunInfo, StoreAccess, wall_ms
from api.server.hub import StreamService
from api.server.limits import cors_options
from api.server.serve import ListenError, parse_listen
from api.server.stream_log import KafkaEventLog, stream_topics
from models.config.settings import Settings

if TYPE_CHECKING:
    from connectors.store.clickhouse import Store

__all__ = ["LaunchError", "Listen", "build", "check_listen", "close_context", "locked_store_hint"]


class LaunchError(ValueError):
    """The API cannot start as asked: one line."""


@dataclass(frozen=True)
class Listen:
    host: str
    port: int
    token: ApiToken | None
    cors_origins: tuple[str, ...] = ()

    @property
    def auth_line(self) -> str:
        if self.token is None:
            return "no token (--no-auth, loopback only)"
        return "bearer token from STRATFLOW_API_TOKEN(_FILE)"


def check_listen(
    listen: str,
    no_auth: bool,
    cors_origins: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> Listen:
    """The checked address, token and CORS origins; `LaunchError` on a mistake."""
    try:
        host, port = parse_listen(listen)
        token = load_token(os.environ if environ is None else environ)
        check_exposure(host, token, no_auth)
        cors_options(cors_origins)
    except (ListenError, AuthSetupError, ValueError) as err:
        raise LaunchError(str(err)) from None
    return Listen(host, port, token, tuple(cors_origins))


def build(
    settings: Settings,
    store: Store | None,
    listen: Listen,
    bootstrap: str | None,
    run: RunInfo | None = None,
    store_why_not: str = "no decision log",
) -> ApiContext:
    """The API's context; with `bootstrap`, a command bus on the control topics."""
    bus = stream = None
    clock = wall_ms
    if bootstrap:
        from connectors.kafka.broker import ensure_topics

        topics = settings.kafka.topics
        needed = [topics.control, *stream_topics(topics)]  # the stream's include control.acks
        ensure_topics(bootstrap, needed, settings.kafka.partitions)
        bus = KafkaCommandBus(bootstrap, topics)
        stream = StreamService(KafkaEventLog(bootstrap, topics), clock)
    return ApiContext(
        settings=settings,
        store=StoreAccess(store, store_why_not),
        bus=bus,
        token=listen.token,
        run=run,
        bootstrap=bootstrap,
        cors_origins=listen.cors_origins,
        clock=clock,
        stream=stream,
    )


def close_context(ctx: ApiContext) -> None:
    """Stop the stream's reader and the command bus of `ctx`."""
    if ctx.stream is not None:
        ctx.stream.close()
    if ctx.bus is not None:
        ctx.bus.close()


def locked_store_hint(message: str) -> str:
    """The store's 'in use by' line, with the two ways to serve the API beside a run."""
    return (
        f"{message}; a running flow serves the API itself (`stratflow run --api HOST:PORT`), "
        "or point CLICKHOUSE_URL at a ClickHouse server both can use"
    )
