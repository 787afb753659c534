"""`stratflow run`: the pipeline on the Kafka topics, resuming its recovery state.

A run has an id (UTC start time and a short random part, printed at start) stamped on every row
it writes; a resumed run keeps its id (the recovery manifest holds it), so the summary at the
end, like the report, shows this run's rows only. Recovery state written under other settings
that change results (`models.config.settings.result_settings`) is refused with what changed;
`--fresh`
discards it and the rows of the run it belonged to. Paper and exchange runs (live: they end
with Ctrl-C or SIGTERM) end with a line of their orders placed, fills and P&L.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from models.config.settings import Settings

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML config (default: ./stratflow.yaml, else the built-in one)"
    ),
]


@contextlib.contextmanager
def _exchange(
    settings: Settings,
    name: str,
    paper: bool,
    sandbox: bool,
    bootstrap: str,
    say: Any,
    store: Any = None,
) -> Iterator[Any]:
    """`api.exchange_run.exchange_session`, with its setup mistakes as one `error:` line.
    Real orders need the setup's promotion, read from `store` (`api.promotion_steps`)."""
    from api.cli import UserError
    from api.exchange_run import ExchangeSetupError, exchange_session
    from api.promotion_steps import live_refusal

    try:
        with exchange_session(
            settings,
            name=name,
            paper=paper,
            sandbox=sandbox,
            bootstrap=bootstrap,
            state_dir=Path(settings.recovery.dir).parent / "feeds",
            say=say,
            gate=(lambda: live_refusal(store, settings)) if store is not None else None,
        ) as gateway:
            yield gateway
    except ExchangeSetupError as err:  # raised before the flow starts
        raise UserError(str(err)) from None


def run(
    ctx: typer.Context,
    config: ConfigOpt = None,
    bootstrap: Annotated[
        str | None,
        typer.Option(envvar="KAFKA_BOOTSTRAP", help="Kafka host:port (default: kafka.bootstrap)"),
    ] = None,
    follow: Annotated[
        bool, typer.Option(help="Keep consuming new messages (live); --no-follow stops at the end")
    ] = True,
    exchange: Annotated[
        str | None,
        typer.Option(
            help="Trade on this ccxt exchange (e.g. binance): its trades feed the market "
            "topic, orders go to it; keys from STRATFLOW_<NAME>_API_KEY/_SECRET or the secrets file"
        ),
    ] = None,
    paper: Annotated[
        bool,
        typer.Option(
            help="With --exchange binance (the default then): the project's exchange "
            "emulator on 127.0.0.1 instead, no account or money"
        ),
    ] = False,
    sandbox: Annotated[
        bool, typer.Option(help="With --exchange: the exchange's test network (if ccxt has one)")
    ] = False,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            help="Start afresh: discard the recovery state (and the rows of the run it "
            "belonged to) instead of resuming it",
        ),
    ] = False,
    api: Annotated[
        str | None,
        typer.Option(
            "--api",
            metavar="HOST:PORT",
            help="Also serve the control API from this process (token from "
            "STRATFLOW_API_TOKEN or STRATFLOW_API_TOKEN_FILE)",
        ),
    ] = None,
    no_auth: Annotated[
        bool,
        typer.Option("--no-auth", help="With --api: no token, on a loopback address only"),
    ] = False,
    processes: Annotated[
        int,
        typer.Option(
            help="Run the flow as this many processes on this machine (the desk and the store "
            "in the first, ingest in the others); a run resumes on as many as it started on"
        ),
    ] = 1,
) -> None:
    """Run the pipeline on the Kafka topics (resumes from its recovery state after a crash)."""
    from rich.markup import escape

    from api.cli import (
        UserError,
        _bootstrap_label,
        _check_broker,
        _open_store,
        console,
        guarded,
        print_summary,
        redact_url,
        settings_from,
    )
    from api.exchange_run import order_kind
    from api.report import summarize
    from connectors.kafka.broker import ensure_topics
    from dataflows.cluster import MAX_PROCESSES
    from dataflows.pipeline import FlowSpec
    from dataflows.run import open_run_state, run_pipeline

    def go() -> None:
        if not 1 <= processes <= MAX_PROCESSES:
            raise UserError(f"--processes: 1 to {MAX_PROCESSES}, got {processes}")
        settings = settings_from(config)
        listen = _api_listen(api, no_auth)
        trading = exchange is not None or paper
        if trading and not follow:
            raise UserError("an exchange run is live: leave out --no-follow")
        if sandbox and paper:
            raise UserError("--sandbox and --paper exclude each other")
        if sandbox and exchange is None:
            raise UserError("--sandbox needs --exchange NAME")
        if trading:
            # Before a broker or a run directory is made for nothing.
            from api.exchange_run import ExchangeSetupError
            from api.exchange_run import _pairs as exchange_pairs

            try:
                exchange_pairs(settings)
            except ExchangeSetupError as err:
                hint = " (paper trading: --config deploy/paper.yaml)" if paper else ""
                raise UserError(f"{err}{hint}") from None
        if exchange is not None and not paper and not sandbox:
            # Real orders: the desk watches the drawdown and the fills' divergence from the
            # simulator, and demotes the setup past either limit.
            watch = settings.promotion.model_copy(update={"watch": True})
            settings = settings.model_copy(update={"promotion": watch})
        bs = bootstrap or settings.kafka.bootstrap

        def say(line: str) -> None:
            console.print(escape(line))

        stop_note: str | None = None  # run_pipeline's default: the next run resumes
        with contextlib.ExitStack() as stack:
            if not bs and paper:
                # Paper trading needs no Kafka of its own: the bundled broker (memory only),
                # with recovery and feed state of this run beside it.
                from connectors.kafka.broker import LocalBroker

                run_dir = Path("var/paper") / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
                run_dir.mkdir(parents=True, exist_ok=True)
                bs = stack.enter_context(LocalBroker(log_dir=run_dir)).bootstrap
                recovery = settings.recovery.model_copy(update={"dir": str(run_dir / "recovery")})
                settings = settings.model_copy(update={"recovery": recovery})
                say(f"local Kafka broker (Tansu) at {bs}; run state in {run_dir}")
                # The broker's topics die with this process, so nothing resumes this run.
                stop_note = (
                    "the bundled broker's topics were in memory: the next --paper run starts afresh"
                )
            if not bs:
                raise UserError(
                    "no broker: set KAFKA_BOOTSTRAP or --bootstrap (or use `stratflow demo`)"
                )
            label = _bootstrap_label(ctx) if bootstrap else "kafka.bootstrap"
            store = stack.enter_context(_open_store(settings))
            _check_broker(bs, label)
            ensure_topics(bs, settings.kafka.topics.all(), settings.kafka.partitions)
            # Before the flow starts (and only once it can): recovery state written under
            # other result settings is refused here; --fresh discards it and its run's rows.
            state = open_run_state(settings, fresh=fresh, processes=processes)
            if state.discarded_run_id:
                store.delete_run(state.discarded_run_id)
            say(_start_line(state.run_id, state.resumed, state.discarded_run_id, fresh))
            if paper:  # measured by `stratflow approve` (this process ends at Ctrl-C)
                from api.promotion_steps import paper_start

                setup = paper_start(store, settings, state.run_id)
                say(f"promotion: paper run of setup {setup} (stratflow approve measures it)")
            counters = None
            if listen is not None:
                counters = _serve_api(
                    stack, settings, store, listen, bs, state, _mode(exchange, paper, sandbox), say
                )
            t0 = time.perf_counter()
            orders = None
            if trading:
                orders = stack.enter_context(
                    _exchange(settings, exchange or "binance", paper, sandbox, bs, say, store)
                )
                if exchange is not None and not paper and not sandbox:  # real, past the gate
                    from api.promotion_steps import paper_start
                    from models.validation.promotion import Step

                    paper_start(store, settings, state.run_id, step=Step.LIVE_START)
            run_pipeline(
                settings,
                FlowSpec(bootstrap=bs, tail=follow),
                progress=True,
                say=say,
                orders=orders,
                stop_note=stop_note,
                run_state=state,
                trading=order_kind(paper, sandbox) if trading else None,
                counters=counters,
                processes=processes,
            )
            summary = summarize(store, state.run_id)
        print_summary(summary.counts, summary, time.perf_counter() - t0)
        where = redact_url(settings.clickhouse.url) if settings.clickhouse.url else None
        where = where or settings.clickhouse.path
        console.print(
            f"decision log: {escape(str(where))} (database {settings.clickhouse.database},"
            f" run {state.run_id})"
        )

    guarded(go)


def _api_listen(api: str | None, no_auth: bool) -> Any:
    """The checked `--api` address and token (before anything starts), None without --api."""
    from api.cli import UserError
    from api.server.launch import LaunchError, check_listen

    if api is None:
        if no_auth:
            raise UserError("--no-auth goes with --api HOST:PORT")
        return None
    try:
        return check_listen(api, no_auth)
    except LaunchError as err:
        raise UserError(str(err)) from None


def _mode(exchange: str | None, paper: bool, sandbox: bool) -> str:
    if paper:
        return "paper"
    if sandbox:
        return "sandbox"
    return "live" if exchange is not None else "simulated"


def _serve_api(
    stack: contextlib.ExitStack,
    settings: Settings,
    store: Any,
    listen: Any,
    bootstrap: str,
    state: Any,
    mode: str,
    say: Any,
) -> Any:
    """The control API on a thread of this process, on the run's own store (the chdb session
    of the process is shared: api/server/context.py); returns the flow's counters it reads."""
    from api.cli import UserError
    from api.server.app import create_app
    from api.server.context import RunInfo
    from api.server.launch import build, close_context
    from api.server.runs import ThisRun
    from api.server.serve import ApiServer, ListenError
    from dataflows.progress import FlowCounters

    counters = FlowCounters()
    run = RunInfo(state.run_id, mode, state.resumed, counters)
    ctx = build(settings, store, listen, bootstrap, run)
    ctx.runs = ThisRun(state.run_id, ctx.clock(), ctx.clock)  # POST /api/run/stop ends this run
    stack.callback(close_context, ctx)
    try:
        server = ApiServer(create_app(ctx), listen.host, listen.port)
        server.start()
    except ListenError as err:
        raise UserError(str(err)) from None
    stack.callback(server.stop)
    say(f"control API on {server.url} ({listen.auth_line})")
    return counters


def _start_line(run_id: str, resumed: bool, discarded: str | None, fresh: bool) -> str:
    if resumed:
        return f"run {run_id} (resumed from its recovery state)"
    if discarded:
        return f"run {run_id} (afresh: run {discarded} and its rows discarded)"
    return f"run {run_id}" + (" (afresh)" if fresh else "")


__all__ = ["run"]
