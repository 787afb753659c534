"""Money actually paid to the GPT endpoint per calendar day, across every run.

The desk's budget (`models.desk.desk`) counts by event time, so a backtest is deterministic and a
live run's day is the market's day. But a backtest over two years of history has 730 event
days, and real money is spent today: without a guard on the wall clock, one backtest with a
key could spend 730 daily budgets. `SpendLedger` records what each call to the endpoint cost
under the UTC day it was paid (an append-only JSONL file beside the answer store, so every run
on the same machine and store counts, also runs in parallel), and `BudgetedAsker` refuses to
call once today's total reached the cap. Answers from the recording cost nothing and are
never refused.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final, TypeVar

from pydantic import BaseModel

from connectors.gpt.cache import Asker
from connectors.gpt.client import GptResult, prompt_hash
from models.core.messages import ChatTurn, GptOutcome
from models.gpt.cost import DEFAULT_PRICE_TABLE, PriceTable

__all__ = ["SPEND_FILE", "BudgetedAsker", "SpendLedger"]

SPEND_FILE: Final = "spend.jsonl"
T = TypeVar("T", bound=BaseModel)


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


class BudgetedAsker:
    """An `Asker` that calls the endpoint only while today's spending (wall clock, UTC, all
    runs on this ledger) is below `cap_usd`, and books what every call cost."""

    def __init__(
        self,
        client: Asker,
        ledger: SpendLedger,
        cap_usd: Decimal,
        prices: PriceTable = DEFAULT_PRICE_TABLE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.model = client.model
        self.ledger = ledger
        self.cap_usd = cap_usd
        self.prices = prices
        self.clock = clock

    def ask(
        self,
        messages: Sequence[ChatTurn],
        response_model: type[T],
        *,
        schema: Mapping[str, Any] | None = None,
        schema_name: str | None = None,
    ) -> GptResult[T]:
        day = utc_today(self.clock())
        spent = self.ledger.spent(day)
        if spent >= self.cap_usd:
            return GptResult(
                model=self.model,
                prompt_hash=prompt_hash(self.model, messages, response_model, schema, schema_name),
                failure=GptOutcome.BUDGET_EXHAUSTED,
                detail=(
                    f"GPT spending on {day} (UTC, every run on {self.ledger.path}) reached the "
                    f"daily budget {self.cap_usd} USD ({spent.normalize():f} spent): not called"
                ),
            )
        result = self.client.ask(messages, response_model, schema=schema, schema_name=schema_name)
        usage = result.usage
        cost = self.prices.cost(result.model, usage.prompt_tokens, usage.completion_tokens)
        self.ledger.record(day, cost.usd, result.model)
        return result
