"""Progress of a running flow, for people: a bar for bounded runs, a status line for live ones.

The flow only counts (an `inspect` step adds to these counters); a daemon thread renders them,
so the engine never waits on the terminal. Counts are of this process's run: after a resume they
start again at zero while the topics' totals do not, which the bar shows as a quick finish.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@dataclass
class FlowCounters:
    records: int = 0
    bars: int = 0
    decisions: int = 0
    dead_letters: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, records: int = 0, bars: int = 0, decisions: int = 0, dead: int = 0) -> None:
        with self.lock:
            self.records += records
            self.bars += bars
            self.decisions += decisions
            self.dead_letters += dead

    def line(self) -> str:
        return (
            f"{self.records:,} messages, {self.bars:,} bars, {self.decisions:,} decisions, "
            f"{self.dead_letters:,} dead letters"
        )


class ProgressDisplay:
    """A rich progress bar when the total is known (bounded run), else a line every `every_s`."""

    def __init__(self, counters: FlowCounters, total: int | None, every_s: float = 10.0) -> None:
        self.counters = counters
        self.total = total
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flow-progress", daemon=True)
        self._console = Console(stderr=True)

    def __enter__(self) -> ProgressDisplay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        if self.total is not None and self._console.is_terminal:
            self._bar()
        else:
            while not self._stop.wait(self.every_s):
                print(f"stratflow: {self.counters.line()}", file=sys.stderr, flush=True)

    def _bar(self) -> None:
        columns = (
            TextColumn("dataflow"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self._console, transient=False) as bar:
            task = bar.add_task("flow", total=self.total, detail="")
            while not self._stop.is_set():
                c = self.counters
                detail = f"{c.bars:,} bars · {c.decisions:,} decisions"
                bar.update(task, completed=min(c.records, self.total or 0), detail=detail)
                time.sleep(0.1)
            c = self.counters
            bar.update(
                task, completed=self.total, detail=f"{c.bars:,} bars · {c.decisions:,} decisions"
            )
