"""Starting and stopping the flow over the API (`GET /api/run`, `POST /api/run/start`,
`POST /api/run/stop`: api/server/run_routes.py).

The API is served from one of two places, and each controls its run its own way:

- `stratflow serve` supervises the runs it starts (`ChildRuns`). `start` launches
  `stratflow run` as a child process with the server's config and broker (a run on another
  broker would never hear the API's commands), its output into a log file whose last lines
  the view shows. `stop` sends SIGTERM: the flow stops at once, everything up to its last
  snapshot is written, and the next run resumes from there (dataflows/run.py); the server waits
  for the exit. One run at a time. With the embedded decision log (chdb: one process per
  directory), the server hands the log to the run while it runs (reads answer 503 saying so)
  and takes it back when the run has ended. When the server stops, so does its run.
- `stratflow run --api` serves the run it is in (`ThisRun`): nothing to start (409), and
  `stop` ends this process as Ctrl-C would, once the answer is sent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.control.commands import RunMode

__all__ = [
    "ChildRuns",
    "NoRun",
    "RunConflict",
    "RunControl",
    "RunOptions",
    "RunView",
    "ThisRun",
    "log_head",
    "log_tail",
]

TAIL_LINES = 20
"""Last lines of the run's output the view shows (its end: the summary, or why it failed)."""
HEAD_LINES = 5
"""First lines the view shows (the run's id, whether it resumed, where it reads)."""


class RunConflict(RuntimeError):
    """A start that cannot happen here or now (409), one line."""


class NoRun(RuntimeError):
    """A stop with no run to stop (409), one line."""


class RunOptions(BaseModel):
    """How to start a run: what `stratflow run` is given besides the server's config and
    broker."""

    model_config = ConfigDict(extra="forbid")

    processes: Annotated[int, Field(ge=1, le=16)] = 1
    follow: bool = True
    """Keep consuming new messages (a live or paper flow); false: stop at the input's end."""
    fresh: bool = False
    """Discard the recovery state and start a new run instead of resuming the last one."""
    mode: RunMode = RunMode.BACKTEST
    """Where the orders go: the simulated venue (backtest), the exchange emulator (paper,
    `--exchange NAME --paper`) or the exchange itself (live, `--exchange NAME`: the route
    asks for the setup's promotion record and a confirmation first)."""
    exchange: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")] = "binance"
    """The ccxt exchange of a paper or live run."""

    @model_validator(mode="after")
    def _exchange_runs_follow(self) -> RunOptions:
        if self.mode is not RunMode.BACKTEST and not self.follow:
            raise ValueError("a paper or live run follows its exchange: leave follow true")
        return self

    def args(self) -> list[str]:
        """The `stratflow run` options these stand for."""
        out = [] if self.follow else ["--no-follow"]
        if self.mode is not RunMode.BACKTEST:
            out += ["--exchange", self.exchange]
        if self.mode is RunMode.PAPER:
            out.append("--paper")
        if self.fresh:
            out.append("--fresh")
        if self.processes != 1:
            out += ["--processes", str(self.processes)]
        return out


class RunView(BaseModel):
    """What the API knows about the run it controls."""

    can_start: bool
    """Whether this API starts runs (`stratflow serve`: yes; `run --api`: its own run only)."""
    running: bool
    pid: int | None = None
    run_id: str = ""
    """The run's id when the API is served from it (a started run names its id in its log)."""
    started_ms: int | None = None
    started_by: str = ""
    options: RunOptions | None = None
    stopped_ms: int | None = None
    stopped_by: str = ""
    """Who asked for the stop; empty when the run ended by itself."""
    exit_code: int | None = None
    """0: ended at its input's end; 143: stopped (SIGTERM), resumable; other: failed."""
    log_head: list[str] = Field(default_factory=list)
    log_tail: list[str] = Field(default_factory=list)


class RunControl(Protocol):
    def view(self) -> RunView: ...

    def start(self, options: RunOptions, by: str) -> RunView: ...

    def stop(self, by: str) -> RunView: ...

    def close(self) -> None: ...


def log_head(path: Path | None, lines: int = HEAD_LINES) -> list[str]:
    """The first `lines` lines of a log file; [] when none."""
    if path is None or not path.exists():
        return []
    with path.open("rb") as f:
        text = f.read(16 * 1024).decode("utf-8", errors="replace")
    return [line.rstrip("\r") for line in text.splitlines()[:lines]]


def log_tail(path: Path | None, lines: int = TAIL_LINES) -> list[str]:
    """The last `lines` lines of a log file (undecodable bytes replaced); [] when none."""
    if path is None or not path.exists():
        return []
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 64 * 1024))
        text = f.read().decode("utf-8", errors="replace")
    return [line.rstrip("\r") for line in text.splitlines()[-lines:]]


@dataclass
class _Started:
    process: subprocess.Popen[bytes]
    log: Path
    started_ms: int
    started_by: str
    options: RunOptions
    stopped_ms: int | None = None
    stopped_by: str = ""
    exit_code: int | None = None


class ChildRuns:
    """`stratflow serve`'s runs: one child `stratflow run` at a time (module docstring).

    `command` starts the CLI (`[python, "-m", "api"]`), `env` is the child's environment,
    `release` / `reclaim` hand the embedded decision log to the run and take it back (None:
    a ClickHouse server, nothing to hand over). `clock` gives wall ms."""

    def __init__(
        self,
        command: Sequence[str],
        config: Path | None,
        env: Mapping[str, str],
        log_dir: Path,
        clock: Callable[[], int],
        *,
        release: Callable[[], None] | None = None,
        reclaim: Callable[[], None] | None = None,
        stop_wait_s: float = 60.0,
    ) -> None:
        self.command = list(command)
        self.config = config
        self.env = dict(env)
        self.log_dir = log_dir
        self.clock = clock
        self.release = release
        self.reclaim = reclaim
        self.stop_wait_s = stop_wait_s
        self._lock = threading.Lock()
        self._run: _Started | None = None
        self._watcher: threading.Thread | None = None

    def _argv(self, options: RunOptions) -> list[str]:
        config = [] if self.config is None else ["--config", str(self.config)]
        return [*self.command, "run", *config, *options.args()]

    def view(self) -> RunView:
        with self._lock:
            run = self._run
            if run is None:
                return RunView(can_start=True, running=False)
            return RunView(
                can_start=True,
                running=run.exit_code is None,
                pid=run.process.pid,
                started_ms=run.started_ms,
                started_by=run.started_by,
                options=run.options,
                stopped_ms=run.stopped_ms,
                stopped_by=run.stopped_by,
                exit_code=run.exit_code,
                log_head=log_head(run.log),
                log_tail=log_tail(run.log),
            )

    def start(self, options: RunOptions, by: str) -> RunView:
        with self._lock:
            if self._run is not None and self._run.exit_code is None:
                raise RunConflict(
                    f"a run started by {self._run.started_by} is running "
                    f"(pid {self._run.process.pid}): stop it first"
                )
            self.log_dir.mkdir(parents=True, exist_ok=True)
            now = self.clock()
            log = self.log_dir / f"run-{now}.log"
            if self.release is not None:
                self.release()
            try:
                with log.open("wb") as out:
                    process = subprocess.Popen(
                        self._argv(options),
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=self.env,
                        start_new_session=True,  # the server's Ctrl-C is not the run's
                    )
            except OSError as err:
                if self.reclaim is not None:
                    self.reclaim()
                raise RunConflict(f"the run could not start: {err}") from None
            self._run = _Started(process, log, now, by, options)
            self._watcher = threading.Thread(
                target=self._watch, args=(self._run,), name="stratflow-run-watch", daemon=True
            )
            self._watcher.start()
        return self.view()

    def _watch(self, run: _Started) -> None:
        """Wait for the run's end; record it, then take the decision log back."""
        code = run.process.wait()
        if code < 0:  # ended by a signal before the run had its handler: as a shell says it
            code = 128 - code
        with self._lock:
            run.exit_code = code
            run.stopped_ms = self.clock()
        if self.reclaim is not None:
            self.reclaim()

    def stop(self, by: str) -> RunView:
        with self._lock:
            run = self._run
            if run is None or run.exit_code is not None:
                raise NoRun("no run started by this API is running")
            run.stopped_by = by
            run.process.send_signal(signal.SIGTERM)
        try:
            run.process.wait(timeout=self.stop_wait_s)
        except subprocess.TimeoutExpired:  # a flow that ignores SIGTERM is a bug; end it
            run.process.kill()
            run.process.wait()
        watcher = self._watcher
        if watcher is not None:
            watcher.join()
        return self.view()

    def close(self) -> None:
        """The server stops: so does its run (resumable, as any stop)."""
        with self._lock:
            running = self._run is not None and self._run.exit_code is None
        if running:
            self.stop("the API server stopping")


class ThisRun:
    """`stratflow run --api`: the run the API is served from. `stop` ends this process as
    Ctrl-C would (dataflows/run.py's handler), `delay_s` after it answers."""

    def __init__(
        self,
        run_id: str,
        started_ms: int,
        clock: Callable[[], int],
        *,
        kill: Callable[[int, int], None] = os.kill,
        delay_s: float = 0.5,
    ) -> None:
        self.run_id = run_id
        self.started_ms = started_ms
        self.clock = clock
        self.kill = kill
        self.delay_s = delay_s
        self._stopping: tuple[str, int] | None = None
        self._lock = threading.Lock()

    def view(self) -> RunView:
        with self._lock:
            stopping = self._stopping
        return RunView(
            can_start=False,
            running=True,
            pid=os.getpid(),
            run_id=self.run_id,
            started_ms=self.started_ms,
            stopped_by=stopping[0] if stopping else "",
            stopped_ms=stopping[1] if stopping else None,
        )

    def start(self, options: RunOptions, by: str) -> RunView:
        raise RunConflict(
            f"this API is served by run {self.run_id}, which is running; "
            "`stratflow serve` starts runs"
        )

    def stop(self, by: str) -> RunView:
        with self._lock:
            if self._stopping is not None:
                raise NoRun(f"run {self.run_id} is already stopping")
            self._stopping = (by, self.clock())
        pid = os.getpid()
        timer = threading.Timer(self.delay_s, self.kill, args=(pid, signal.SIGTERM))
        timer.daemon = True
        timer.start()
        return self.view()

    def close(self) -> None:
        return None
