"""`stratflow` command line. A user mistake gets one clear line and exit code 2, never a traceback."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml
from rich.console import Console
from rich.table import Table

from models.config import ConfigError, Settings, env_overrides, load_settings

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="stratflow: market data -> features -> triggers -> strategy -> risk gate -> orders -> decision log.",
)
config_app = typer.Typer(no_args_is_help=True, help="Inspect the configuration.")
app.add_typer(config_app, name="config")

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML config (default: ./stratflow.yaml, else the built-in one)"
    ),
]


class UserError(Exception):
    """Something the user can fix; printed as one line."""


def default_config_path() -> Path:
    local = Path("stratflow.yaml")
    if local.is_file():
        return local
    return Path(str(files("api").joinpath("stratflow.yaml")))


def settings_from(path: Path | None) -> Settings:
    return load_settings(path or default_config_path(), os.environ)


def _user_errors() -> tuple[type[BaseException], ...]:
    from connectors.broker import BrokerError
    from connectors.clickhouse_store import ClickHouseUnavailable
    from connectors.replay import ReplayError

    return (
        UserError,
        ConfigError,
        BrokerError,
        ClickHouseUnavailable,
        ReplayError,
        FileNotFoundError,
    )


def guarded(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/yellow]")
        raise typer.Exit(130) from None
    except _user_errors() as err:
        first, *rest = str(err).strip().splitlines() or [type(err).__name__]
        err_console.print(f"[red]error:[/red] {first}")
        for line in rest:
            err_console.print(f"       {line}")
        raise typer.Exit(2) from None


# ----------------------------------------------------------------------------- config
@config_app.command("check")
def config_check(config: ConfigOpt = None) -> None:
    """Validate the config and print every value in force (with its source)."""

    def go() -> None:
        path = config or default_config_path()
        settings = settings_from(path)
        console.print(f"[green]config OK[/green]: {path}")
        for path_parts, _value, name in env_overrides(os.environ):
            console.print(f"  overridden by {name}: {'.'.join(path_parts)}")
        console.print(yaml.safe_dump(json.loads(settings.model_dump_json()), sort_keys=False))

    guarded(go)


# ----------------------------------------------------------------------------- broker
@app.command()
def broker(
    config: ConfigOpt = None,
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 = a free one)")] = 0,
) -> None:
    """Run the bundled Tansu broker (memory only) with the pipeline's topics, until Ctrl-C."""
    from connectors.broker import LocalBroker, ensure_topics

    def go() -> None:
        settings = settings_from(config)
        with LocalBroker(port=port or None, log_dir=Path("var")) as b:
            ensure_topics(b.bootstrap, settings.kafka.topics.all(), settings.kafka.partitions)
            console.print(
                f"broker ready: [bold]KAFKA_BOOTSTRAP={b.bootstrap}[/bold] (Ctrl-C stops it)"
            )
            signal.sigwait({signal.SIGINT, signal.SIGTERM})

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    guarded(go)


# ----------------------------------------------------------------------------- replay
@app.command()
def replay(
    source: Annotated[
        str, typer.Argument(help="CSV/Parquet file, or a shipped dataset: GOOG, EURUSD, BTCUSD")
    ],
    symbol: Annotated[
        str | None, typer.Option(help="Symbol for a bar file (default: file name)")
    ] = None,
    speed: Annotated[
        float | None, typer.Option(help="Multiple of real time; default: as fast as possible")
    ] = None,
    bootstrap: Annotated[
        str | None, typer.Option(envvar="KAFKA_BOOTSTRAP", help="Kafka host:port")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Publish market data to the market topic, with a progress bar."""
    from connectors.broker import ensure_topics
    from connectors.datasets import dataset_path, list_datasets
    from connectors.replay import load_market_file
    from connectors.replay import replay as do_replay

    def go() -> None:
        settings = settings_from(config)
        if not bootstrap:
            raise UserError(
                "no broker: set KAFKA_BOOTSTRAP or --bootstrap (e.g. start one with `stratflow broker`)"
            )
        if speed is not None and speed <= 0:
            raise UserError("--speed must be > 0")
        path = dataset_path(source) if source.upper() in list_datasets() else Path(source)
        if not path.is_file():
            raise UserError(
                f"no such file or dataset: {source} (datasets: {', '.join(list_datasets())})"
            )
        loaded = load_market_file(
            path,
            symbol=(symbol or (source.upper() if source.upper() in list_datasets() else None)),
            interval=None,
        )
        unknown = sorted({m.symbol for m in loaded.messages} - set(settings.symbols))
        if unknown:
            raise UserError(
                f"symbol(s) {', '.join(unknown)} not in the config's symbols ({', '.join(settings.symbols)})"
            )
        for row, reason in loaded.problems[:10]:
            err_console.print(f"[yellow]skipped row {row}:[/yellow] {reason}")
        ensure_topics(bootstrap, settings.kafka.topics.all(), settings.kafka.partitions)
        stats = do_replay(
            bootstrap, settings.kafka.topics.market, loaded.messages, speed=speed, progress=True
        )
        console.print(
            f"published {stats.published:,} messages in {stats.elapsed_s:.2f}s ({stats.msgs_per_s:,.0f}/s)"
        )

    guarded(go)


# ----------------------------------------------------------------------------- run
@app.command()
def run(
    config: ConfigOpt = None,
    bootstrap: Annotated[
        str | None, typer.Option(envvar="KAFKA_BOOTSTRAP", help="Kafka host:port")
    ] = None,
    follow: Annotated[
        bool, typer.Option(help="Keep consuming new messages (live); --no-follow stops at the end")
    ] = True,
) -> None:
    """Run the pipeline on the Kafka topics (resumes from its recovery state after a crash)."""
    from dataflows.pipeline import FlowSpec
    from dataflows.run import run_pipeline

    def go() -> None:
        settings = settings_from(config)
        bs = bootstrap or settings.kafka.bootstrap
        if not bs:
            raise UserError(
                "no broker: set KAFKA_BOOTSTRAP or --bootstrap (or use `stratflow demo`)"
            )
        console.print("controller: local strategy engine (no GPT endpoint configured)")
        run_pipeline(settings, FlowSpec(bootstrap=bs, tail=follow))

    guarded(go)


# ----------------------------------------------------------------------------- demo
@app.command()
def demo(
    config: ConfigOpt = None,
    dataset: Annotated[
        list[str] | None, typer.Option("--dataset", "-d", help="Shipped dataset(s) to replay")
    ] = None,
    scenario_minutes: Annotated[
        int, typer.Option(help="Minutes of generated ticks for the SIM* symbols")
    ] = 240,
    seed: Annotated[int, typer.Option(help="Scenario seed")] = 7,
) -> None:
    """The main job on embedded defaults: local broker, chdb, shipped data; prints a summary and a report path."""
    from api.demo import default_run_root, run_demo
    from connectors.datasets import list_datasets

    def go() -> None:
        settings = settings_from(config)
        names = [d.upper() for d in (dataset or ["GOOG", "EURUSD"])]
        bad = [d for d in names if d not in list_datasets()]
        if bad:
            raise UserError(
                f"unknown dataset {', '.join(bad)} (available: {', '.join(list_datasets())})"
            )
        if scenario_minutes < 0:
            raise UserError("--scenario-minutes must be >= 0")
        missing = [d for d in names if d not in settings.symbols]
        if missing:
            raise UserError(f"dataset symbol(s) {', '.join(missing)} not in the config's symbols")
        result = run_demo(
            settings,
            run_root=default_run_root(),
            datasets=names,
            scenario_minutes=scenario_minutes,
            seed=seed,
            console=console,
        )
        print_summary(result.summary.counts, result.summary, result.flow_seconds)
        console.print(f"report: [bold]{result.report}[/bold]")

    guarded(go)


def print_summary(counts: dict[str, int], summary: Any, seconds: float) -> None:
    t = Table(title=f"decision log ({seconds:.1f}s in the flow)")
    t.add_column("table")
    t.add_column("rows", justify="right")
    for k, v in counts.items():
        t.add_row(k, f"{v:,}")
    console.print(t)
    d = Table(title="decisions")
    for col in ("branch", "status", "n"):
        d.add_column(col)
    for row in summary.decisions:
        d.add_row(str(row["branch"]), str(row["status"]), str(row["n"]))
    console.print(d)
    console.print(f"final cash {summary.cash}  equity {summary.equity}")


def main() -> None:
    try:
        app()
    except SystemExit:
        raise
    except BaseException as err:  # last resort: a bug, not a user error -> still no wall of text
        if os.environ.get("STRATFLOW_DEBUG"):
            raise
        err_console.print(
            f"[red]internal error:[/red] {type(err).__name__}: {err} (STRATFLOW_DEBUG=1 shows the traceback)"
        )
        sys.exit(1)
