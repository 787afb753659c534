"""`stratflow serve`: the control API on its own (api/server), until Ctrl-C.

It reads the configured decision log: a ClickHouse server (`CLICKHOUSE_URL`), or the chdb
directory when no run holds it (chdb lets one process open a directory; while `stratflow run`
holds it, serve the API from that run with `run --api HOST:PORT`: one line says so). With a
broker (`KAFKA_BOOTSTRAP` or `kafka.bootstrap`) its commands reach the flow on the control
topic; without one they answer 503 and the rest works. It needs a token
(`STRATFLOW_API_TOKEN` or `STRATFLOW_API_TOKEN_FILE`), or `--no-auth` on a loopback address.

It starts and stops runs (`POST /api/run/start`, `/api/run/stop`: api/server/runs.py):
`stratflow run` with this server's config and broker, in a child process whose output goes to
`var/api-runs/` beside the recovery directory. With the embedded decision log the server hands
it to the run while the run runs and takes it back after.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML config (default: ./stratflow.yaml, else the built-in one)"
    ),
]
ListenOpt = Annotated[
    str, typer.Option("--listen", help="HOST:PORT to serve on (port 0: a free one)")
]
NoAuthOpt = Annotated[
    bool,
    typer.Option("--no-auth", help="Serve without a token: a loopback address only"),
]
CorsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--cors-origin", help="An origin whose pages may call the API (repeat; default none)"
    ),
]


def serve(
    config: ConfigOpt = None,
    listen: ListenOpt = "127.0.0.1:8080",
    no_auth: NoAuthOpt = False,
    cors_origin: CorsOpt = None,
    bootstrap: Annotated[
        str | None,
        typer.Option(envvar="KAFKA_BOOTSTRAP", help="Kafka host:port (default: kafka.bootstrap)"),
    ] = None,
) -> None:
    """Serve the control API (status, search, a decision's story, trading states, settings)."""
    from api.cli import UserError, _check_broker, console, guarded, settings_from
    from api.server.app import create_app
    from api.server.launch import (
        LaunchError,
        build,
        check_listen,
        close_context,
        locked_store_hint,
    )
    from api.server.serve import ApiServer, ListenError
    from connectors.store.clickhouse import ClickHouseUnavailable, Store

    def go() -> None:
        settings = settings_from(config)
        try:
            checked = check_listen(listen, no_auth, cors_origin or ())
        except LaunchError as err:
            raise UserError(str(err)) from None
        try:
            store = Store.open(settings.clickhouse)
        except ClickHouseUnavailable as err:
            text = str(err)
            raise UserError(locked_store_hint(text) if "in use by" in text else text) from None
        except ValueError as err:  # e.g. an invalid clickhouse.database name
            raise UserError(f"clickhouse: {err}") from None
        ctx = None
        try:
            store.apply_schema()
            bs = bootstrap or settings.kafka.bootstrap
            if bs:
                _check_broker(bs, "--bootstrap")
            ctx = build(settings, store, checked, bs)
            ctx.runs = _child_runs(ctx, settings, config, bs)
            try:
                server = ApiServer(create_app(ctx), checked.host, checked.port)
            except ListenError as err:
                raise UserError(str(err)) from None
            console.print(
                f"control API on [bold]{escape(server.url)}[/bold] ({checked.auth_line}); "
                f"decision log {escape(store.where)}"
            )
            if ctx.bus is None:
                console.print(
                    "no broker: commands answer 503 (set KAFKA_BOOTSTRAP or kafka.bootstrap)"
                )
            server.serve()
        finally:
            if ctx is not None:
                if ctx.runs is not None:
                    ctx.runs.close()
                close_context(ctx)
                current = ctx.store.hand_over("the server stopped")
                if current is not None and current is not store:
                    current.close()
            store.close()

    guarded(go)


HANDED_OVER = (
    "the run started by this API holds the embedded decision log while it runs; reads answer "
    "again when it ends (with a ClickHouse server, CLICKHOUSE_URL, both read it at once)"
)


def _child_runs(ctx: Any, settings: Any, config: Path | None, bootstrap: str | None) -> Any:
    """The runs this server starts: `python -m api run` with its config and broker; with the
    embedded log, handed over while they run."""
    import os
    import sys

    from api.server.runs import ChildRuns
    from connectors.store.clickhouse import ClickHouseUnavailable, Store

    env = dict(os.environ)
    if bootstrap:
        env["KAFKA_BOOTSTRAP"] = bootstrap
    release = reclaim = None
    if not settings.clickhouse.url:

        def release() -> None:
            handed = ctx.store.hand_over(HANDED_OVER)
            if handed is not None:
                handed.close()

        def reclaim() -> None:
            try:
                ctx.store.take_back(Store.open(settings.clickhouse))
            except (ClickHouseUnavailable, ValueError) as err:
                ctx.store.take_back(None, f"the decision log could not be reopened: {err}")

    return ChildRuns(
        [sys.executable, "-m", "api"],
        config,
        env,
        Path(settings.recovery.dir).parent / "api-runs",
        ctx.clock,
        release=release,
        reclaim=reclaim,
    )


__all__ = ["serve"]
