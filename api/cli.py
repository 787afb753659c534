"""`stratflow` command line.

A user mistake (bad path, unknown symbol, bad config, bad option value, unreachable broker, a
locked ClickHouse directory) gets one `error:` line on stderr and exit code 2, never a traceback.
A bug gets one `internal error:` line and exit code 1, unless STRATFLOW_DEBUG=1.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from connectors.files.replay import MarketStream, ReplayStats
    from connectors.store.clickhouse import Store

from api.config_cmd import explain_config_error
from models.config.settings import ConfigError, Settings, load_settings

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help=(
        "stratflow: market data -> features -> triggers -> strategy -> risk gate -> orders"
        " -> decision log."
    ),
)

# soft_wrap: a line is never broken at the terminal width (80 columns when piped), so an error
# stays one line and a printed path stays whole.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True, highlight=False)
T = TypeVar("T")

# How long `replay` and `run` wait for an unreachable --bootstrap before giving up.
BROKER_WAIT_S = 10.0

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML config (default: ./stratflow.yaml, else the built-in one)"
    ),
]


class UserError(Exception):
    """Something the user can fix; printed as one line."""


def redact_url(url: str) -> str:
    """A server URL without its credentials: `http://user:pw@host:8123/?password=x` ->
    `http://user:***@host:8123/?***` (what `config check` and `run` print)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a URL at all: show none of it
        return "***"
    if ":" in host:
        host = f"[{host}]"
    user = (
        f"{parts.username}:***@"
        if parts.password
        else (f"{parts.username}@" if parts.username else "")
    )
    return urlunsplit(
        (parts.scheme, user + host + port, parts.path, "***" if parts.query else "", "")
    )


def default_config_path() -> Path:
    local = Path("stratflow.yaml")
    if local.is_file():
        return local
    return Path(str(files("api").joinpath("stratflow.yaml")))


def settings_from(path: Path | None) -> Settings:
    try:
        return load_settings(path or default_config_path(), os.environ)
    except ConfigError as err:
        raise ConfigError(explain_config_error(str(err))) from None


def _user_errors() -> tuple[type[BaseException], ...]:
    from api.demo import RunDirError
    from connectors.exchange.secrets import SecretsError
    from connectors.files.replay import ReplayError
    from connectors.kafka.broker import BrokerError
    from connectors.notify.notifier import NotifierError
    from connectors.store.clickhouse import ClickHouseUnavailable
    from dataflows.cluster import ClusterFailed
    from dataflows.run import RecoveryDirError, RecoveryMismatch

    return (
        UserError,
        ClusterFailed,
        RecoveryMismatch,
        RecoveryDirError,
        RunDirError,
        ConfigError,
        BrokerError,
        ClickHouseUnavailable,
        ReplayError,
        FileNotFoundError,
        NotifierError,
        SecretsError,
    )


def _user_error_in(err: BaseException) -> BaseException | None:
    """`err` or the user error it was raised from (Bytewax wraps what a sink raises)."""
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, _user_errors()):
            return cur
        # A path the file system refuses (missing parent, a file in the way, read-only, no
        # permission) is the user's to fix, whichever part of the program tried it.
        if isinstance(cur, OSError) and cur.filename is not None and cur.strerror:
            return cur
        seen.add(id(cur))
        cur = cur.__cause__
    return None


def describe_user_error(err: BaseException) -> str:
    """The message of a user error; a file-system error as `PATH: reason`, not `[Errno N] ...`."""
    if isinstance(err, OSError) and err.strerror:
        return f"{err.filename}: {err.strerror}" if err.filename is not None else err.strerror
    return str(err) or type(err).__name__


def print_error(message: str, label: str = "error") -> None:
    """`label: first line` (plus indented further lines) on stderr, never wrapped or marked up."""
    lines = [ln.rstrip() for ln in message.strip().splitlines() if ln.strip()] or ["(no details)"]
    err_console.print(Text.assemble((f"{label}:", "bold red"), " ", lines[0]))
    for line in lines[1:]:
        err_console.print(Text(" " * (len(label) + 2) + line.strip()))


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a service manager, `kill`) ends the block like Ctrl-C: what was sent is
    flushed and the user is told how far it got, instead of dying mid-line."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def guarded(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/yellow]")
        raise typer.Exit(130) from None
    except Exception as err:
        user = _user_error_in(err)
        if user is None:
            raise
        print_error(describe_user_error(user))
        raise typer.Exit(2) from None


def _bootstrap_label(ctx: typer.Context) -> str:
    """How the user gave --bootstrap, for the 'not reachable' message."""
    source = ctx.get_parameter_source("bootstrap")
    return (
        "KAFKA_BOOTSTRAP" if source is not None and source.name == "ENVIRONMENT" else "--bootstrap"
    )


def _check_broker(bootstrap: str, label: str) -> None:
    from connectors.kafka.broker import wait_for_broker

    wait_for_broker(bootstrap, BROKER_WAIT_S, label=label)


@contextmanager
def _open_store(settings: Settings) -> Iterator[Store]:
    """Open the decision log up front, so a locked chdb directory or an unreachable server is
    one line here rather than a failure inside the dataflow. Held open for the run: the
    pipeline's sink shares the same chdb session."""
    from connectors.store.clickhouse import Store

    try:
        store = Store.open(settings.clickhouse)
    except ValueError as err:  # e.g. an invalid clickhouse.database name
        raise UserError(f"clickhouse: {err}") from None
    try:
        store.apply_schema()
        yield store
    finally:
        store.close()


# ----------------------------------------------------------------------------- broker
@app.command()
def broker(
    config: ConfigOpt = None,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1 (0 = a free one)")
    ] = 0,
) -> None:
    """Run the bundled Tansu broker (memory only) with the pipeline's topics, until Ctrl-C."""
    from connectors.kafka.broker import LocalBroker, ensure_topics

    def go() -> None:
        settings = settings_from(config)
        with LocalBroker(port=port or None, log_dir=Path("var")) as b:
            ensure_topics(b.bootstrap, settings.kafka.topics.all(), settings.kafka.partitions)
            console.print(
                f"broker ready: [bold]KAFKA_BOOTSTRAP={b.bootstrap}[/bold] (Ctrl-C stops it)"
            )
            # Block the signals only now: the broker process must not inherit a blocked mask,
            # or stop() could not terminate it.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            try:
                signal.sigwait({signal.SIGINT, signal.SIGTERM})
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
        console.print("broker stopped")

    guarded(go)


# ----------------------------------------------------------------------------- replay
@app.command()
def replay(
    ctx: typer.Context,
    sources: Annotated[
        list[str],
        typer.Argument(
            help="CSV/Parquet files, or shipped datasets: GOOG, EURUSD, BTCUSD; several are"
            " merged by time",
            show_default=False,
        ),
    ],
    symbol: Annotated[
        str | None,
        typer.Option(help="Symbol for a file without a symbol column (default: the file name)"),
    ] = None,
    speed: Annotated[
        float | None,
        typer.Option(help="Multiple of real time, > 0 (default: as fast as possible)"),
    ] = None,
    interval: Annotated[
        str | None,
        typer.Option(
            help="Bar interval of a bar file, e.g. 1h, 1d, 1w (ISO weeks), 1mo (calendar"
            " months) (default: inferred from the bar times)"
        ),
    ] = None,
    bootstrap: Annotated[
        str | None, typer.Option(envvar="KAFKA_BOOTSTRAP", help="Kafka host:port")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Publish market data to the market topic, with a progress bar.

    Messages go out in the order a live feed delivers them: a trade at its time, a bar at its
    end. Several sources are merged by that time, so give related files in one replay.
    """
    from connectors.files.replay import open_market_file

    def go() -> None:
        settings = settings_from(config)
        if not bootstrap:
            raise UserError(
                "no broker: set KAFKA_BOOTSTRAP or --bootstrap"
                " (e.g. start one with `stratflow broker`)"
            )
        if speed is not None and not (math.isfinite(speed) and speed > 0):
            raise UserError(f"--speed must be a number > 0, got {speed:g}")
        if symbol is not None and len(sources) > 1:
            raise UserError(
                "--symbol names the symbol of one file; with several sources each takes its"
                " symbol column or its file name"
            )
        paths = [_replay_source(source, symbol, interval) for source in sources]
        # Read in bounded memory: each file is scanned (every bad row known before anything is
        # sent), then published as it is read back, by end time (connectors/files/market_file.py).
        with contextlib.ExitStack() as stack:
            loaded = [
                (path, stack.enter_context(open_market_file(path, symbol=sym, interval=every)))
                for path, sym, every in paths
            ]
            stats = _replay_stream(ctx, settings, bootstrap, loaded, speed)
        if stats.failed:
            raise UserError(
                f"{stats.failed} of {stats.sent} messages not delivered to {bootstrap}:"
                f" {'; '.join(stats.errors[:3])}"
            )
        console.print(
            f"published {stats.published:,} messages to {escape(stats.topic)}"
            f" in {stats.elapsed_s:.2f}s ({stats.msgs_per_s:,.0f}/s)"
        )

    guarded(go)


def _replay_source(
    source: str, symbol: str | None, interval: str | None
) -> tuple[Path, str | None, str | None]:
    """(path, default symbol, bar interval) of a replay argument: a local file wins over a
    dataset of the same name; a dataset's interval is its own unless --interval says."""
    from connectors.files.datasets import dataset_info, dataset_path, list_datasets

    try:
        exists = Path(source).exists()
    except OSError as err:  # e.g. a name too long for the file system
        raise UserError(f"cannot open {source[:200]!r}: {err.strerror or err}") from None
    if exists:
        return Path(source), symbol, interval
    if source.strip().upper() in list_datasets():
        name = source.strip()
        return dataset_path(name), symbol or name.upper(), interval or dataset_info(name).interval
    raise UserError(f"no such file or dataset: {source} (datasets: {', '.join(list_datasets())})")


def _replay_stream(
    ctx: typer.Context,
    settings: Settings,
    bootstrap: str,
    files: list[tuple[Path, MarketStream]],
    speed: float | None,
) -> ReplayStats:
    """Check scanned files against the config, then publish them, merged by end time, as they
    are read back; one `error:` line on a mistake."""
    from connectors.files.replay import MergedStreams
    from connectors.files.replay import replay as do_replay
    from connectors.kafka.broker import ensure_topics

    merged = MergedStreams([stream for _, stream in files])
    unknown = sorted(set(merged.symbols) - set(settings.symbols))
    if unknown:
        example = (
            f" (e.g. STRATFLOW__SYMBOLS__{unknown[0]}='{{bar_interval: 1h}}')"
            if "/" not in unknown[0]
            else ""
        )
        raise UserError(
            f"symbol(s) {', '.join(unknown)} not in the config's symbols"
            f" ({', '.join(settings.symbols)}); add them to `symbols:`{example} or pass "
            "--symbol with a configured one"
        )
    for path, loaded in files:
        if loaded.rows == 0:
            raise UserError(f"{path}: no data rows (the file has only a header)")
        if not loaded.count:
            first = f"; first: {loaded.problems[0].describe()}" if loaded.problems else ""
            raise UserError(
                f"{path}: no valid rows to publish ({loaded.problem_count} rejected{first})"
            )
    for path, loaded in files:
        where = f" {path.name}" if len(files) > 1 else ""
        for row, reason in loaded.problems[:10]:
            err_console.print(Text(f"skipped{where} row {row}: {reason}", style="yellow"))
        if loaded.problem_count > 10:
            more = loaded.problem_count - 10
            err_console.print(Text(f"... and {more} more skipped rows{where}", style="yellow"))
        if loaded.kind == "bars":
            _warn_unfit_bars(settings, loaded)
    _check_broker(bootstrap, _bootstrap_label(ctx))
    topic = settings.kafka.topics.market
    ensure_topics(bootstrap, settings.kafka.topics.all(), settings.kafka.partitions)
    before = _topic_size(bootstrap, topic)
    try:
        with _terminate_as_interrupt():
            stats = do_replay(bootstrap, topic, merged, speed=speed, progress=True)
    except KeyboardInterrupt:
        # What was sent is flushed and stays in the topic; say how far the replay got.
        after = _topic_size(bootstrap, topic)
        done = (
            f"{after - before:,} of {merged.count:,} messages published to {topic}"
            if before is not None and after is not None
            else f"messages published so far stay in {topic}"
        )
        err_console.print(Text(f"interrupted: {done}", style="yellow"))
        raise typer.Exit(130) from None
    return stats


def _warn_unfit_bars(settings: Settings, loaded: MarketStream) -> None:
    """Bars the pipeline will refuse (`models.market.bars.input_bar_problem`: coarser than the
    window)
    or realign (`models.market.bars.off_grid_note`: across a window boundary), said per symbol
    before
    anything is sent."""
    from collections import Counter

    from models.core.messages import BarIn
    from models.market.bars import input_bar_problem, off_grid_note

    unfit: Counter[str] = Counter()
    moved: Counter[str] = Counter()
    total: Counter[str] = Counter()
    first: dict[tuple[str, str], str] = {}
    for msg in loaded.messages():
        total[msg.symbol] += 1
        if isinstance(msg, BarIn):
            window = settings.bar_interval(msg.symbol)
            if (why := input_bar_problem(msg, window)) is not None:
                unfit[msg.symbol] += 1
                first.setdefault((msg.symbol, "unfit"), why)
            elif (how := off_grid_note(msg, window)) is not None:
                moved[msg.symbol] += 1
                first.setdefault((msg.symbol, "moved"), how)
    for sym, n in sorted(unfit.items()):
        err_console.print(
            Text(
                f"warning: {n:,} of {total[sym]:,} {sym} bars will be dead-lettered by the "
                f"pipeline; first: {first[sym, 'unfit']}",
                style="yellow",
            )
        )
    for sym, n in sorted(moved.items()):
        err_console.print(
            Text(
                f"note: {n:,} of {total[sym]:,} {sym} bars lie across the window grid and are "
                f"realigned (up to one window late, never early); first: {first[sym, 'moved']}",
                style="yellow",
            )
        )


def _topic_size(bootstrap: str, topic: str) -> int | None:
    """Messages in `topic` now (sum of its end offsets), None if the broker cannot say."""
    from connectors.kafka.io import topic_end_offsets

    try:
        return sum(topic_end_offsets(bootstrap, topic, timeout_s=5.0).values())
    except Exception:  # a courtesy count only
        return None


# ----------------------------------------------------------------------------- gpt-check
@app.command("gpt-check")
def gpt_check(config: ConfigOpt = None) -> None:
    """Ask the configured GPT endpoint one tiny structured question; print latency, tokens, cost."""
    from pydantic import BaseModel, ConfigDict

    from connectors.gpt.client import GptClient
    from models.core.messages import ChatTurn
    from models.gpt.cost import call_cost

    class Pong(BaseModel):
        model_config = ConfigDict(extra="forbid")
        ok: bool

    def go() -> None:
        gpt = settings_from(config).gpt
        client = GptClient.from_env(gpt.model, timeout_s=gpt.timeout_s, max_retries=gpt.max_retries)
        if not client.enabled:
            console.print(
                "no GPT endpoint configured (OPENAI_API_KEY / OPENAI_BASE_URL): "
                "the pipeline runs on the local strategy engine"
            )
            return
        console.print(escape(client.describe()))
        with client:
            result = client.ask(
                [
                    ChatTurn(role="system", content="Answer with the JSON schema only."),
                    ChatTurn(role="user", content='Reply {"ok": true}.'),
                ],
                Pong,
            )
        if not result.ok:
            kind = result.failure.value if result.failure else "no answer"
            raise UserError(f"gpt endpoint: {kind}: {result.detail or 'no detail'}")
        cost = call_cost(result.model, result.usage.prompt_tokens, result.usage.completion_tokens)
        console.print(
            f"gpt OK: model {escape(result.model)}, {result.latency_s * 1000:.0f} ms, "
            f"{result.usage.prompt_tokens}+{result.usage.completion_tokens} tokens, "
            f"cost ${cost:.6f}"
        )

    guarded(go)


# ----------------------------------------------------------------------------- demo
@app.command()
def demo(
    config: ConfigOpt = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            "--dataset",
            "-d",
            help="Shipped dataset(s) to replay: repeat the option or separate names by commas"
            " (default: GOOG,EURUSD)",
        ),
    ] = None,
    scenario_minutes: Annotated[
        int, typer.Option(help="Minutes of generated ticks for the SIM* symbols (0 = none)")
    ] = 240,
    seed: Annotated[int, typer.Option(help="Scenario seed")] = 7,
    clean_input: Annotated[
        bool,
        typer.Option(
            "--clean-input",
            help="Skip the sample feeds of malformed market messages and hostile news/posts",
        ),
    ] = False,
) -> None:
    """The end-to-end job on embedded defaults (local broker, chdb, shipped data) with a report."""
    from api.demo import default_run_root, run_demo
    from connectors.files.datasets import dataset_path, list_datasets

    def go() -> None:
        settings = settings_from(config)
        # `-d GOOG -d EURUSD` or `-d GOOG,EURUSD`; each dataset once (a second copy would
        # only be dead-lettered as duplicates).
        given = [p.strip().upper() for d in (dataset or ["GOOG,EURUSD"]) for p in d.split(",")]
        names = list(dict.fromkeys(p for p in given if p))
        if not names:
            raise UserError("--dataset is empty; give one of " + ", ".join(list_datasets()))
        bad = [d for d in names if d not in list_datasets()]
        if bad:
            raise UserError(
                f"unknown dataset {', '.join(bad)} (available: {', '.join(list_datasets())})"
            )
        if scenario_minutes < 0:
            raise UserError(f"--scenario-minutes must be >= 0, got {scenario_minutes}")
        for name in names:
            # Before anything starts: without the optional extra, one line on how to get it.
            dataset_path(name)
        missing = [d for d in names if d not in settings.symbols]
        if missing:
            raise UserError(f"dataset symbol(s) {', '.join(missing)} not in the config's symbols")
        if settings.clickhouse.url:
            # A server is checked up front (a chdb directory is new for every demo run).
            with _open_store(settings):
                pass
        result = run_demo(
            settings,
            run_root=default_run_root(),
            datasets=names,
            scenario_minutes=scenario_minutes,
            seed=seed,
            hostile_samples=not clean_input,
            console=console,
        )
        print_summary(result.summary.counts, result.summary, result.flow_seconds, portfolio=False)
        print_backtests(result.backtests)
        console.print(f"report: [bold]{escape(str(result.report))}[/bold]")
        if result.decision_log is not None:
            console.print(f"decision log: {escape(str(result.decision_log))}")

    guarded(go)


# ----------------------------------------------------------------------------- schemas
@app.command()
def schemas(
    check: Annotated[
        bool, typer.Option("--check", help="Only list drifted, missing or extra files (exit 1)")
    ] = False,
    schema_dir: Annotated[
        Path | None,
        typer.Option("--dir", help="Schema directory (default: specs/schemas of the checkout)"),
    ] = None,
) -> None:
    """Regenerate specs/schemas/*.json from the pydantic models, or check them."""
    from api.schemas_cmd import NoCheckoutError, check_schemas, default_schema_dir, write_schemas

    def go() -> None:
        try:
            out_dir = schema_dir or default_schema_dir()
        except NoCheckoutError as err:
            raise UserError(str(err)) from None
        try:
            if check:
                problems = check_schemas(out_dir)
                if problems:
                    print_error(
                        f"{len(problems)} schema file(s) out of date in {out_dir}:"
                        f" {', '.join(problems)}; run `stratflow schemas`"
                    )
                    raise typer.Exit(1)
                console.print(f"schemas up to date: {escape(str(out_dir))}")
                return
            changed = write_schemas(out_dir)
        except OSError as err:
            raise UserError(f"{out_dir}: {err.strerror or err}") from None
        for path in changed:
            console.print(f"{'wrote' if path.exists() else 'deleted'} {escape(str(path))}")
        if not changed:
            console.print(f"schemas up to date: {escape(str(out_dir))}")

    guarded(go)


from api.backtest_cmd import backtest  # noqa: E402
from api.config_cmd import config_app  # noqa: E402
from api.exchange_cmd import exchange  # noqa: E402
from api.run_cmd import run  # noqa: E402
from api.validate_cmd import validate  # noqa: E402

app.add_typer(config_app, name="config")
app.command("exchange")(exchange)
app.command("run")(run)
app.command("backtest")(backtest)
app.command("validate")(validate)

from api.approve_cmd import approve  # noqa: E402  (promotion: issue 12, part 5)

app.command("approve")(approve)

from api.control_cmd import control  # noqa: E402  (control plane: issue 13)

app.command("control")(control)


def _money(value: Any) -> str:
    return "n/a" if value is None else f"{value:,.2f}"


def print_backtests(backtests: list[Any]) -> None:
    """One line per backtest of the demo: its key figures side by side."""
    from models.performance.stats import format_value

    keys = ("return", "buy_and_hold_return", "sharpe_ratio", "max_drawdown", "trades")
    t = Table(title="backtests (each its own era, portfolio and clock)", min_width=30)
    t.add_column("backtest")
    t.add_column("period (UTC)", no_wrap=True)
    rows = [{s.key: s for s in b.performance.statistics} for b in backtests]
    for key in keys:
        label = next((r[key].label for r in rows if key in r), key)
        t.add_column(label.replace(" Return", "").replace("Ratio", "").strip(), justify="right")
    for b, stats in zip(backtests, rows, strict=True):
        period = "-".join(format_value(stats[k])[:10] for k in ("start", "end") if k in stats)
        t.add_row(
            escape(b.name),
            period,
            *(format_value(stats[k]) if k in stats else "n/a" for k in keys),
        )
    console.print(t)


def print_summary(
    counts: dict[str, int], summary: Any, seconds: float, *, portfolio: bool = True
) -> None:
    t = Table(title=f"decision log ({seconds:.1f}s in the flow)", min_width=30)
    t.add_column("table")
    t.add_column("rows", justify="right")
    for k, v in counts.items():
        t.add_row(k, f"{v:,}")
    console.print(t)
    d = Table(title="decisions", min_width=30)
    for col in ("branch", "status", "n"):
        d.add_column(col)
    for row in summary.decisions:
        d.add_row(str(row["branch"]), str(row["status"]), str(row["n"]))
    console.print(d)
    if portfolio:
        console.print(f"final cash {_money(summary.cash)}  equity {_money(summary.equity)}")


def _debug() -> bool:
    return os.environ.get("STRATFLOW_DEBUG", "").strip().lower() in ("1", "true", "yes")


def _quiet_libraries() -> None:
    """Keep client libraries from logging through Python's last-resort handler: their failure
    is reported as our one `error:` line (clickhouse-connect logs a whole traceback first)."""
    if _debug():
        return
    for name in ("clickhouse_connect",):
        logger = logging.getLogger(name)
        logger.addHandler(logging.NullHandler())
        logger.propagate = False


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: exit 0 on success, 2 on a user mistake, 1 on a bug."""
    _quiet_libraries()
    command = typer.main.get_command(app)
    try:
        # Not standalone, so typer's usage errors come here and are printed as one line too.
        # The program is `stratflow` however it was started (the console script, or main()
        # called in-process by the tests), so usage lines and hints name it the same way.
        rv = command.main(args=argv, prog_name="stratflow", standalone_mode=False)
    except typer.TyperException as err:  # bad option, missing argument, bad value, ...
        if type(err).__name__ == "NoArgsIsHelpError":
            sys.exit(err.exit_code)  # the help is already on the screen
        ctx = getattr(err, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        print_error(" ".join(err.format_message().split()) + hint)
        sys.exit(err.exit_code)
    except typer.Abort:
        print_error("aborted")
        sys.exit(1)
    except SystemExit:
        raise
    except BaseException as err:  # last resort: a bug, not a user error -> still no wall of text
        if _debug():
            raise
        detail = (str(err).strip().splitlines() or [""])[0]
        print_error(
            f"{type(err).__name__}: {detail} (STRATFLOW_DEBUG=1 shows the traceback)",
            label="internal error",
        )
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)
