"""`stratflow` command line.

A user mistake (bad path, unknown symbol, bad config, bad option value, unreachable broker, a
locked ClickHouse directory) gets one `error:` line on stderr and exit code 2, never a traceback.
A bug gets one `internal error:` line and exit code 1, unless STRATFLOW_DEBUG=1.
"""

from __future__ import annotations

import contextlib
import logging
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
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
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


# ----------------------------------------------------------------------------- commands
# One module per command (or command group); each imports what it shares from here when it
# runs (the consoles above are swapped by the tests, so they are looked up then, not now).
from api.approve_cmd import approve  # noqa: E402  (promotion: issue 12, part 5)
from api.audit_cmd import audit  # noqa: E402  (audit export: issue 15)
from api.backtest_cmd import backtest  # noqa: E402
from api.broker_cmd import broker  # noqa: E402
from api.config_cmd import config_app  # noqa: E402
from api.control_cmd import control  # noqa: E402  (control plane: issue 13)
from api.demo_cmd import demo  # noqa: E402
from api.exchange_cmd import exchange  # noqa: E402
from api.gpt_check_cmd import gpt_check  # noqa: E402
from api.news_cmd import news_app  # noqa: E402
from api.replay_cmd import replay  # noqa: E402
from api.run_cmd import run  # noqa: E402
from api.schemas_cmd import schemas  # noqa: E402
from api.serve_cmd import serve  # noqa: E402  (the control API: issue 13)
from api.tax_cmd import tax  # noqa: E402  (tax lots: issue 15)
from api.validate_cmd import validate  # noqa: E402

app.command("broker")(broker)
app.command("replay")(replay)
app.command("gpt-check")(gpt_check)
app.command("demo")(demo)
app.command("schemas")(schemas)
app.add_typer(config_app, name="config")
app.add_typer(news_app, name="news")
app.command("exchange")(exchange)
app.command("run")(run)
app.command("backtest")(backtest)
app.command("validate")(validate)
app.command("approve")(approve)
app.command("control")(control)
app.command("serve")(serve)
app.command("tax")(tax)
app.command("audit")(audit)


def _money(value: Any) -> str:
    return "n/a" if value is None else f"{value:,.2f}"


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
