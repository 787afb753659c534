"""What a GPT call costs, how much may be spent per day, and when an answer may be reused.

Every call to a paid endpoint is money, so the controller has to know (1) what a call cost, to
log it next to the answer, (2) whether today's budget still allows another call, and (3)
whether the same question was already answered a moment ago. All three are pure arithmetic
here (no clock, no I/O), so they are exact, deterministic under test and in a replay, and can
live in snapshotted operator state.

Money is `Decimal` end to end: prices are USD per one million tokens and a call's cost is
`(prompt_tokens * input + completion_tokens * output) / 1e6`, computed exactly (no binary
float, no rounding). The budget compares those exact sums against the cap, so "spent exactly the
cap" is a well-defined state rather than an accident of float rounding.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Context, Decimal, InvalidOperation, localcontext
from typing import Final, Generic, NamedTuple, TypeVar

__all__ = [
    "DEFAULT_PRICE",
    "DEFAULT_PRICES",
    "DEFAULT_PRICE_TABLE",
    "KNOWLEDGE_CUTOFFS",
    "AnswerCacheKey",
    "CallCost",
    "DailyBudget",
    "ModelPrice",
    "PriceTable",
    "WindowCache",
    "budget_allows",
    "call_cost",
    "knowledge_cutoff",
    "utc_day",
    "window_key",
]

TOKENS_PER_UNIT: Final = 1_000_000
"""Prices are quoted per this many tokens (OpenAI's "per 1M tokens")."""

# Wide enough that token counts times prices never round: exactness is the point of Decimal here.
_EXACT: Final = Context(prec=80)

# A dated snapshot of a model ("gpt-4o-mini-2024-07-18") costs what its alias costs.
_SNAPSHOT_SUFFIX: Final = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def _money(value: Decimal | int | str, what: str) -> Decimal:
    """A finite, non-negative Decimal, or ValueError naming `what`.

    Floats are refused on purpose: `Decimal(0.1)` is not 0.1, and a price table is exactly the
    place where such a silent error would compound over every call."""
    if isinstance(value, float | bool):
        raise TypeError(f"{what} must be a Decimal, int or str, not {type(value).__name__}")
    try:
        d = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not d.is_finite() or d < 0:
        raise ValueError(f"{what} must be a finite amount >= 0, got {value}")
    return d


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per one million input (prompt) and output (completion) tokens."""

    input_per_m: Decimal
    output_per_m: Decimal

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_per_m", _money(self.input_per_m, "input price"))
        object.__setattr__(self, "output_per_m", _money(self.output_per_m, "output price"))


def _p(inp: str, out: str) -> ModelPrice:
    return ModelPrice(Decimal(inp), Decimal(out))


DEFAULT_PRICES: Final[Mapping[str, ModelPrice]] = {
    "gpt-4o": _p("2.50", "10.00"),
    "gpt-4o-mini": _p("0.15", "0.60"),
    "gpt-4.1": _p("2.00", "8.00"),
    "gpt-4.1-mini": _p("0.40", "1.60"),
    "gpt-4.1-nano": _p("0.10", "0.40"),
    "o3": _p("2.00", "8.00"),
    "o4-mini": _p("1.10", "4.40"),
    "gpt-5": _p("1.25", "10.00"),
    "gpt-5-mini": _p("0.25", "2.00"),
    "gpt-5-nano": _p("0.05", "0.40"),
}
"""OpenAI's list prices (standard tier, USD per 1M tokens) when this table was written. Prices
change: a deployment passes its own table (`PriceTable(prices=..., default=...)`)."""

DEFAULT_PRICE: Final = ModelPrice(
    max(p.input_per_m for p in DEFAULT_PRICES.values()),
    max(p.output_per_m for p in DEFAULT_PRICES.values()),
)
"""What an unknown model is charged: the dearest input and output price of the table, so a
model missing from the table can make the budget too strict, never too lax."""


@dataclass(frozen=True, slots=True)
class CallCost:
    """The cost of one call, and whether the model's price was known (False: the default price
    was used, which the call log flags so a missing table entry is noticed)."""

    usd: Decimal
    price_known: bool


@dataclass(frozen=True, slots=True)
class PriceTable:
    """Model name -> price, with a default for names it does not know.

    Lookup is exact on the name, then on the name without a dated snapshot suffix
    (`gpt-4o-2024-08-06` -> `gpt-4o`), which is how OpenAI reports the model that answered.
    No other prefix matching: `gpt-4o-mini` must never be billed as `gpt-4o`.
    """

    prices: Mapping[str, ModelPrice] = field(
        default_factory=lambda: dict(DEFAULT_PRICES), hash=False
    )
    default: ModelPrice = DEFAULT_PRICE

    def __post_init__(self) -> None:
        # A private copy: the table must not change under a running budget.
        object.__setattr__(self, "prices", dict(self.prices))

    @classmethod
    def from_mapping(
        cls,
        prices: Mapping[str, Mapping[str, Decimal | int | str]],
        default: Mapping[str, Decimal | int | str] | None = None,
    ) -> PriceTable:
        """Build from plain data, e.g. a config section: `{"gpt-4o": {"input": "2.5",
        "output": "10"}}`; `default` likewise (else `DEFAULT_PRICE`)."""

        def price(name: str, doc: Mapping[str, Decimal | int | str]) -> ModelPrice:
            unknown = set(doc) - {"input", "output"}
            if unknown or "input" not in doc or "output" not in doc:
                raise ValueError(f"price of {name} needs exactly the keys input and output")
            return ModelPrice(
                _money(doc["input"], f"{name} input price"),
                _money(doc["output"], f"{name} output price"),
            )

        return cls(
            prices={name: price(name, doc) for name, doc in prices.items()},
            default=price("default", default) if default is not None else DEFAULT_PRICE,
        )

    def lookup(self, model: str) -> tuple[ModelPrice, bool]:
        """(price, known): the model's price, or the default price and False."""
        found = self.prices.get(model)
        if found is None:
            found = self.prices.get(_SNAPSHOT_SUFFIX.sub("", model))
        if found is None:
            return self.default, False
        return found, True

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> CallCost:
        """The exact cost of one call; negative token counts are a bug (ValueError)."""
        for what, n in (("prompt_tokens", prompt_tokens), ("completion_tokens", completion_tokens)):
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ValueError(f"{what} must be an int >= 0, got {n!r}")
        price, known = self.lookup(model)
        with localcontext(_EXACT):
            amount = prompt_tokens * price.input_per_m + completion_tokens * price.output_per_m
            usd = amount.scaleb(-6)  # / 1_000_000, exact in decimal
        return CallCost(usd=usd, price_known=known)


DEFAULT_PRICE_TABLE: Final = PriceTable()


def call_cost(
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    table: PriceTable = DEFAULT_PRICE_TABLE,
) -> Decimal:
    """USD cost of one call, exact. An unknown model costs the table's default price (use
    `PriceTable.cost` to learn whether the price was known)."""
    return table.cost(model, prompt_tokens, completion_tokens).usd


# --------------------------------------------------------------------------------------------
# Knowledge cutoffs: what the model may remember of the market
# --------------------------------------------------------------------------------------------

KNOWLEDGE_CUTOFFS: Final[Mapping[str, date]] = {
    # Each date is the "knowledge cutoff" OpenAI publishes on the model's page,
    # https://platform.openai.com/docs/models/<model> (read for this table in Dec 2026).
    "gpt-4o": date(2023, 10, 1),  # platform.openai.com/docs/models/gpt-4o: Oct 01, 2023
    "gpt-4o-mini": date(2023, 10, 1),  # .../models/gpt-4o-mini: Oct 01, 2023
    "gpt-4.1": date(2024, 6, 1),  # .../models/gpt-4.1: Jun 01, 2024
    "gpt-4.1-mini": date(2024, 6, 1),  # .../models/gpt-4.1-mini: Jun 01, 2024
    "gpt-4.1-nano": date(2024, 6, 1),  # .../models/gpt-4.1-nano: Jun 01, 2024
    "o3": date(2024, 6, 1),  # .../models/o3: Jun 01, 2024
    "o4-mini": date(2024, 6, 1),  # .../models/o4-mini: Jun 01, 2024
    "gpt-5": date(2024, 9, 30),  # .../models/gpt-5: Sep 30, 2024
    "gpt-5-mini": date(2024, 5, 31),  # .../models/gpt-5-mini: May 31, 2024
    "gpt-5-nano": date(2024, 5, 31),  # .../models/gpt-5-nano: May 31, 2024
}
"""The last day each model of the price table may have read about (its training data's end).
A decision GPT takes on bars up to that day may come from memory of what followed, not from
the bars (`models.validation.cutoff`). A model not listed has an unknown cutoff: its every
decision is possibly in-sample, and said so."""


def knowledge_cutoff(model: str, cutoffs: Mapping[str, date] = KNOWLEDGE_CUTOFFS) -> date | None:
    """The model's knowledge cutoff, or None when unknown. Looked up like a price: exactly,
    then without a dated snapshot suffix (`gpt-4o-2024-08-06` -> `gpt-4o`), never by prefix."""
    found = cutoffs.get(model)
    if found is None:
        found = cutoffs.get(_SNAPSHOT_SUFFIX.sub("", model))
    return found


# --------------------------------------------------------------------------------------------
# Daily budget
# --------------------------------------------------------------------------------------------


def utc_day(ts_ms: int) -> date:
    """The UTC calendar day of an epoch-milliseconds timestamp (event time, not wall time, so a
    backtest's budget follows the replayed days)."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).date()


def budget_allows(spent: Decimal, cap: Decimal, estimate: Decimal = Decimal(0)) -> bool:
    """The budget rule: a call estimated at `estimate` may be made while the day's spending is
    under the cap and the estimate still fits (`spent < cap and spent + estimate <= cap`).

    The GPT seam has two budgets and this one rule. The desk's (`DailyBudget`, by event day,
    in snapshotted state, estimates reserved for calls in flight) decides whether to ask, and
    is what keeps a backtest deterministic; the gateway's spend guard
    (`connectors.gpt.spend.SpendGuard`, by wall-clock day, from the spend ledger every run
    shares, no estimate) stops real money beyond the cap whatever the event days. Both
    refusals are the outcome `budget_exhausted`, and the desk decides what follows."""
    return spent < cap and spent + estimate <= cap


def _as_day(day: date) -> date:
    # datetime is a date subclass: take its UTC day, not its local one.
    if isinstance(day, datetime):
        return (day if day.tzinfo is None else day.astimezone(UTC)).date()
    return day


@dataclass(slots=True)
class DailyBudget:
    """A spending cap per UTC day, in USD, with one alert per day when it is reached.

    `can_spend(day, estimate)` says whether a call estimated at `estimate` still fits in the
    day's cap (`budget_allows`: spent < cap and spent + estimate <= cap); when it does not,
    the caller uses the local engine instead. `record(day, cost)` adds what a call really cost
    (a call may cost more than estimated and end above the cap: it was already made). Each
    day has its own total, so the budget rolls over at the UTC day boundary by itself, and a
    late event of yesterday is charged to yesterday. Only the last `keep_days` days are kept.

    `crossed_now` is True after exactly one call per day: the first `can_spend` that refuses or
    the first `record` that brings the total to the cap or beyond, whichever comes first. That
    is the moment to raise the single "budget exhausted" alert; every other call sets it False.

    Plain data: picklable for snapshotted state. Not thread-safe: a shared caller holds a lock.
    """

    cap: Decimal
    keep_days: int = 7
    spent_by_day: dict[date, Decimal] = field(default_factory=dict)
    alerted_days: set[date] = field(default_factory=set)
    crossed_now: bool = False

    def __post_init__(self) -> None:
        self.cap = _money(self.cap, "daily budget cap")
        if self.keep_days < 1:
            raise ValueError(f"keep_days must be >= 1, got {self.keep_days}")

    def spent(self, day: date) -> Decimal:
        """What `day` (UTC) has spent so far."""
        return self.spent_by_day.get(_as_day(day), Decimal(0))

    def remaining(self, day: date) -> Decimal:
        """What is left of `day`'s cap (0 once reached or exceeded)."""
        return max(self.cap - self.spent(day), Decimal(0))

    def exhausted(self, day: date) -> bool:
        return self.spent(day) >= self.cap

    def can_spend(self, day: date, estimate: Decimal = Decimal(0)) -> bool:
        """Whether a call estimated at `estimate` fits in `day`'s budget. A refusal is the
        first of the day to set `crossed_now` (unless the day already alerted)."""
        d = _as_day(day)
        est = _money(estimate, "estimate")
        allowed = budget_allows(self.spent(d), self.cap, est)
        self._mark(d, crossed=not allowed)
        return allowed

    def record(self, day: date, cost: Decimal) -> bool:
        """Charge `cost` to `day`; returns `crossed_now` (True if this call is the day's alert)."""
        d = _as_day(day)
        amount = _money(cost, "cost")
        with localcontext(_EXACT):
            total = self.spent(d) + amount
        self.spent_by_day[d] = total
        self._prune(d)
        self._mark(d, crossed=total >= self.cap)
        return self.crossed_now

    def _mark(self, day: date, *, crossed: bool) -> None:
        self.crossed_now = crossed and day not in self.alerted_days
        if self.crossed_now:
            self.alerted_days.add(day)
            self._prune(day)

    def _prune(self, day: date) -> None:
        newest = max([day, *self.spent_by_day, *self.alerted_days])
        horizon = newest.toordinal() - self.keep_days
        for old in [d for d in self.spent_by_day if d.toordinal() <= horizon]:
            del self.spent_by_day[old]
        self.alerted_days = {d for d in self.alerted_days if d.toordinal() > horizon}


# --------------------------------------------------------------------------------------------
# Answer reuse inside a time window
# --------------------------------------------------------------------------------------------


class AnswerCacheKey(NamedTuple):
    """Identifies "the same question in the same window": the prompt hash and the start (epoch
    ms) of the tumbling window the question was asked in."""

    prompt_hash: str
    window_start_ms: int

    def __str__(self) -> str:
        return f"{self.prompt_hash}@{self.window_start_ms}"


def window_key(prompt_hash: str, ts_ms: int, window_ms: int) -> AnswerCacheKey:
    """The cache key of a question asked at `ts_ms` (event time): tumbling windows of
    `window_ms` aligned on the epoch.

    Tumbling, not sliding, so the key depends only on the question and its time, never on which
    calls happened before: a replay reuses exactly the same answers as the original run. The
    price is that identical questions on both sides of a window boundary are asked twice.
    """
    if not prompt_hash:
        raise ValueError("prompt_hash must not be empty")
    if isinstance(window_ms, bool) or window_ms <= 0:
        raise ValueError(f"window_ms must be > 0, got {window_ms}")
    return AnswerCacheKey(prompt_hash, (ts_ms // window_ms) * window_ms)


V = TypeVar("V")


@dataclass(slots=True)
class WindowCache(Generic[V]):
    """Answers by `window_key`, forgetting windows that can no longer be hit.

    Only the newest window seen and the one before it are kept (a slightly late event may
    still land in the previous window), so memory stays bounded by the number of distinct
    questions in two windows. Plain data: picklable for snapshotted state.
    """

    window_ms: int
    entries: dict[AnswerCacheKey, V] = field(default_factory=dict)
    newest_start_ms: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.window_ms, bool) or self.window_ms <= 0:
            raise ValueError(f"window_ms must be > 0, got {self.window_ms}")

    def get(self, prompt_hash: str, ts_ms: int) -> V | None:
        return self.entries.get(window_key(prompt_hash, ts_ms, self.window_ms))

    def put(self, prompt_hash: str, ts_ms: int, value: V) -> AnswerCacheKey:
        key = window_key(prompt_hash, ts_ms, self.window_ms)
        self.entries[key] = value
        if self.newest_start_ms is None or key.window_start_ms > self.newest_start_ms:
            self.newest_start_ms = key.window_start_ms
            oldest = self.newest_start_ms - self.window_ms
            self.entries = {k: v for k, v in self.entries.items() if k.window_start_ms >= oldest}
        return key

    def __len__(self) -> int:
        return len(self.entries)
