"""The `stratflow` command line in-process, as the console script runs it, for error-path tests.

`run_cli(...)` calls `api.cli.main(argv)` (what the console script calls: typer's usage errors,
user errors and bugs are all turned into one line there) inside typer's `CliRunner` isolation,
so stdout and stderr are captured as a subprocess's would be, in milliseconds instead of the
1-2 s of imports a `stratflow` process costs. It leaves nothing behind for the next test: the
environment, the working directory, logging's handlers and levels, the SIGINT/SIGTERM handlers
and the CLI's two rich consoles are put back as they were, whatever the command did.

What only a real process shows (the console-script entry point itself, exit codes as the shell
sees them, signals) stays in a few subprocess smoke tests (tests/e2e/test_cli_smoke.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from typer.testing import CliRunner

UNSET_PREFIXES = ("STRATFLOW", "OPENAI_")
UNSET = ("KAFKA_BOOTSTRAP", "CLICKHOUSE_URL", "FORCE_COLOR", "COLUMNS")
"""What a developer's shell may set that would change what the CLI does: never seen by a test."""


class Outcome(Protocol):
    """A finished command: an in-process `CliResult` or a `subprocess.CompletedProcess`."""

    @property
    def returncode(self) -> int: ...
    @property
    def stdout(self) -> str: ...
    @property
    def stderr(self) -> str: ...


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def clean_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without anything that would change what the CLI does, with
    NO_COLOR set and `extra` on top (for in-process runs and subprocesses alike)."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(UNSET_PREFIXES) and k not in UNSET
    }
    env["NO_COLOR"] = "1"
    env.update(extra or {})
    return env


def run_cli(*args: str, cwd: Path, env: Mapping[str, str] | None = None) -> CliResult:
    """`stratflow ARGS...` in `cwd` with a clean environment plus `env`. A bug that main()
    re-raises (STRATFLOW_DEBUG=1) propagates to the caller, as it would end the process."""
    from rich.console import Console

    import api.cli as cli

    runner = CliRunner()
    code = 0
    with (
        _restored_state(cli),
        _environ(clean_environ(env)),
        _cwd(cwd),
        runner.isolation(color=False) as (out, err, _),
    ):
        # Fresh consoles inside the isolation: they write to the captured streams and, like
        # the console script's, decide on colour and width from this (clean) environment.
        cli.console = Console(soft_wrap=True)
        cli.err_console = Console(stderr=True, soft_wrap=True, highlight=False)
        try:
            cli.main(list(args))
        except SystemExit as exit_:
            code = _exit_code(exit_.code)
        stdout = out.getvalue().decode("utf-8", "replace")
        stderr = err.getvalue().decode("utf-8", "replace")
    return CliResult(code, stdout, stderr)


def _exit_code(code: Any) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    return 1  # sys.exit("message"): Python prints it and exits 1


@contextlib.contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    saved = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(saved)


@contextlib.contextmanager
def _restored_state(cli: Any) -> Iterator[None]:
    """Logging, signal handlers and the CLI's consoles as they were before the command.

    Every module a user-error path imports is imported first (`_user_errors()` is what such a
    path calls), so a handler a module installs when it is imported is kept; what the command
    itself does to a logger that existed before it (main() quiets clickhouse_connect) is undone.
    """
    cli._user_errors()
    consoles = (cli.console, cli.err_console)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    saved = [(lg, list(lg.handlers), lg.level, lg.propagate, lg.disabled) for lg in loggers]
    try:
        yield
    finally:
        cli.console, cli.err_console = consoles
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)
        for lg, hs, level, propagate, disabled in saved:
            lg.handlers[:] = hs
            lg.setLevel(level)
            lg.propagate = propagate
            lg.disabled = disabled


# ------------------------------------------------------------------------------ assertions


def lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def assert_no_traceback(result: Outcome) -> None:
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    assert "panicked" not in result.stderr, result.stderr


def assert_user_error(result: Outcome, *needles: str) -> str:
    """Exit 2, exactly one line on stderr, starting `error:` and naming what went wrong."""
    assert_no_traceback(result)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    err = lines(result.stderr)
    assert len(err) == 1, result.stderr
    assert err[0].startswith("error: "), err[0]
    for needle in needles:
        assert needle in err[0], (needle, err[0])
    return err[0]
