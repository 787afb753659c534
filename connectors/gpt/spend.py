"""Money actually paid to the GPT endpoint per calendar day, across every run.

The desk's budget (`models.desk.gpt_session`) counts by event time, so a backtest is
deterministic and a live run's day is the market's day. But a backtest over two years of
history has 730 event days, and real money is spent today: without a guard on the wall clock,
one backtest with a key could spend 730 daily budgets. `SpendLedger` records what each call to
the endpoint cost under the UTC day it was paid (an append-only JSONL file beside the answer
store, so every run on the same machine and store counts, also runs in parallel), and
`SpendGuard` refuses to call once today's total no longer passes the budget rule. Answers from
the recording cost nothing and are never refused (the answer path asks the store first).

Two budgets, one rule: both apply `models.gpt.cost.budget_allows`, with their own clock and
ledger, and both refusals are the one outcome `budget_exhausted`, on which the desk decides
(local engine, one alert).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Final

from models.gpt.cost import budget_allows

__all__ = ["SPEND_FILE", "SpendGuard", "SpendLedger"]

SPEND_FILE: Final = "spend.jsonl"


def utc_today(now_s: float) -> str:
    return dt.datetime.fromtimestamp(now_s, dt.UTC).date().isoformat()


class SpendLedger:
    """Per-day totals of what was paid, read back from the file before every decision so that
    other processes' spending counts too. Thread-safe. A line that does not parse (a torn
    write, a hand edit) is skipped, never fatal: the ledger only ever under-counts by it."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / SPEND_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._totals: dict[str, Decimal] = {}
        self._offset = 0

    def _refresh(self) -> None:
        """Take in the lines other writers appended since the last read (whole lines only)."""
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n")
        if end < 0:
            return
        self._offset += end + 1
        for line in chunk[: end + 1].splitlines():
            try:
                doc = json.loads(line)
                day, usd = str(doc["day"]), Decimal(str(doc["usd"]))
            except (ValueError, KeyError, TypeError, InvalidOperation):
                continue
            if usd.is_finite() and usd > 0:
                self._totals[day] = self._totals.get(day, Decimal(0)) + usd

    def spent(self, day: str) -> Decimal:
        with self._lock:
            self._refresh()
            return self._totals.get(day, Decimal(0))

    def record(self, day: str, usd: Decimal, model: str) -> None:
        """Append one paid call (fsynced: money spent must not be forgotten by a crash)."""
        if usd <= 0:
            return
        line = json.dumps({"day": day, "usd": str(usd), "model": model}) + "\n"
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)  # closing releases the lock
            self._refresh()


class SpendGuard:
    """The wall-clock half of the GPT budget: a step of the gateway's one answer path
    (`connectors.gpt.gateway.AnswerPath`), between the answer store and the endpoint.

    `refusal(day)` says why a call must not be made: today's spending (UTC, every run on the
    ledger) no longer passes the budget rule (`models.gpt.cost.budget_allows`, the one rule the
    desk's event-day budget applies too); `book(day, usd, model)` records what a made call cost
    under the day it was started. No estimate is reserved: other processes' calls in flight
    cannot be seen, and the desk already reserves its own (`GptSession.affordable`)."""

    def __init__(
        self, ledger: SpendLedger, cap_usd: Decimal, clock: Callable[[], float] = time.time
    ) -> None:
        self.ledger = ledger
        self.cap_usd = cap_usd
        self.clock = clock

    def today(self) -> str:
        return utc_today(self.clock())

    def refusal(self, day: str) -> str | None:
        """None while `day`'s spending passes the budget rule, else the one-line detail of the
        `budget_exhausted` outcome (the desk's spend alert takes its id from it)."""
        spent = self.ledger.spent(day)
        if budget_allows(spent, self.cap_usd):
            return None
        return (
            f"GPT spending on {day} (UTC, every run on {self.ledger.path}) reached the "
            f"daily budget {self.cap_usd} USD ({spent.normalize():f} spent): not called"
        )

    def book(self, day: str, usd: Decimal, model: str) -> None:
        self.ledger.record(day, usd, model)
