"""Progress of a running flow, for people: a bar for bounded runs, a status line for live ones.

The flow only counts (an `inspect` step adds to these counters); a daemon thread renders them,
so the engine never waits on the terminal. Counts are of this process's run: after a resume they
start again at zero while the topics' totals do not, which the bar shows as a quick finish.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


@dataclass
class FlowCounters:
    records: int = 0
    bars: int = 0
    decisions: int = 0
    dead_letters: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    orders: set[str] = field(default_factory=set)
    """Client order ids placed (not rejected) in this process."""
    fills: set[str] = field(default_factory=set)
    pnl: dict[str, Decimal] = field(default_factory=dict)
    """Per symbol, realised (after fees) + unrealised P&L at its latest snapshot."""
    trading: str | None = None
    """What this run's orders are ("paper orders on the local emulator", ...); None: not
    trading on an exchange, so no trading line."""
    currency: str = ""
    run_id: str = ""

    def trade(
        self,
        order_id: str | None = None,
        fill_id: str | None = None,
        symbol: str | None = None,
        pnl: Decimal | None = None,
    ) -> None:
        with self.lock:
            if order_id is not None:
                self.orders.add(order_id)
            if fill_id is not None:
                self.fills.add(fill_id)
            if symbol is not None and pnl is not None:
                self.pnl[symbol] = pnl

    def trades(
        self,
        order_ids: Iterable[str] = (),
        fill_ids: Iterable[str] = (),
        pnl: Mapping[str, Decimal] | None = None,
    ) -> None:
        """`trade` for many at once (one lock): the orders and fills, and each symbol's
        latest P&L."""
        with self.lock:
            self.orders.update(order_ids)
            self.fills.update(fill_ids)
            if pnl:
                self.pnl.update(pnl)

    def trading_line(self) -> str | None:
        """After a paper or exchange run: orders placed, fills and P&L, in one line."""
        if self.trading is None:
            return None
        with self.lock:
            n_orders, n_fills, pnl = len(self.orders), len(self.fills), sum(self.pnl.values())
        run = f" (run {self.run_id})" if self.run_id else ""
        return (
            f"{self.trading}: {n_orders} order{'' if n_orders == 1 else 's'} placed, "
            f"{n_fills} fill{'' if n_fills == 1 else 's'}, P&L {Decimal(pnl):+,.2f} "
            f"{self.currency}{run}"
        )

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
