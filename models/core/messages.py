"""Message and record types that cross a boundary: Kafka topics, ClickHouse rows, the CLI.

Every topic message is a pydantic v2 model so that validation, the JSON Schemas in `specs/` and
the ClickHouse rows all come from one definition. Money and prices are `Decimal` (serialised as
strings in JSON so no binary float ever touches an amount); timestamps inside the pipeline are
integer epoch milliseconds, which makes window arithmetic exact and cheap.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema
from pydantic_core import core_schema as cs

SYMBOL_PATTERN = r"^[A-Z0-9][A-Z0-9._/:-]{0,31}$"
Symbol = Annotated[str, Field(pattern=SYMBOL_PATTERN, description="Upper-case instrument id")]


def _finite_positive(value: Decimal) -> Decimal:
    if not value.is_finite() or value <= 0:
        raise ValueError("must be a finite number > 0")
    return value


def _share(value: Decimal) -> Decimal:
    if not value.is_finite() or not 0 < value <= 1:
        raise ValueError("must be a finite number > 0 and <= 1")
    return value


SizeFraction = Annotated[
    Decimal,
    AfterValidator(_share),
    Field(
        description="A buy sized at its fill: the share of equity the symbol's position should "
        "be worth after it, bought from the cash then available (models.execution.sizing); "
        "`quantity` is then the estimate at the decision's close"
    ),
]


def _finite_non_negative(value: Decimal) -> Decimal:
    if not value.is_finite() or value < 0:
        raise ValueError("must be a finite number >= 0")
    return value


# Constraints expressed as Field metadata run inside pydantic-core (no Python call per value),
# which matters on the per-tick path.
# Bounds: the decision log keeps Decimal(38, 12), so a price or size of 1e30 (or a price of
# 1e-41, which would be stored as 0) is an attack or a bug, not a market: refused here instead of
# breaking the writer downstream. Range checks run inside pydantic-core (~0.1 µs); digits beyond
# the 12th decimal are rounded half-even when stored.
MIN_PRICE = Decimal("1e-12")
MAX_AMOUNT = Decimal("1e15")

# What a topic message may write where a number or a time is expected, as strictly as the GPT
# answer is parsed (models/strategy/spec.py). Python's Decimal() and int() read "1_00" as 100,
# Arabic-Indic "١٢٣" and full-width "１２３" as 123 and strip spaces, and lax pydantic reads
# `true` as 1: none of that is a number a feed means. So a JSON number, or a string of ASCII
# digits (`[0-9]`, never the regex `\d`, which is any script's digit in pydantic-core's Rust
# regex). "Infinity"/"NaN" pass the pattern only to be refused by the finite check with its own
# message. A time is an ISO-8601 date-time (RFC 3339 shape, `T`, space or none between date and
# time) or epoch seconds/milliseconds as a JSON number or a string of ASCII digits.
ASCII_NUMBER_PATTERN = (
    r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
    r"|^[+-]?(?:Infinity|inf|Inf|NaN|nan)$"
)
ISO_TIME_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[Tt ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]{1,9})?)?"
    r"(?:[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?)?$"
    r"|^-?[0-9]+(?:\.[0-9]+)?$"
)
NUMBER_INPUT_ERROR = "number_input"
TIME_INPUT_ERROR = "time_input"


class _StrictJsonInput:
    """Marker: JSON input must have one of a few shapes (checked inside pydantic-core, no Python
    call per value) before the usual validator runs; Python input is left to that validator
    (file loaders check their own text). The JSON Schema keeps the usual shape, with the
    pattern on its string form unless the generator gave it one (models/core/schemas.py does for
    decimals: the ASCII syntax pydantic accepts, sign rules included)."""

    def __init__(self, pattern: str, error: str, message: str) -> None:
        self.pattern, self.error, self.message = pattern, error, message

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        inner = handler(source)
        shape = cs.union_schema(
            [
                cs.str_schema(pattern=self.pattern, strict=True),
                cs.int_schema(strict=True),
                cs.float_schema(strict=True),
            ],
            custom_error_type=self.error,
            custom_error_message=self.message,
        )
        return cs.json_or_python_schema(
            json_schema=cs.chain_schema([shape, inner]), python_schema=inner
        )

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        assert schema["type"] == "json-or-python"
        out = handler(schema["python_schema"])
        for alt in out.get("anyOf", [out]):
            if alt.get("type") == "string":  # a generator's own decimal syntax stays
                alt.setdefault("pattern", self.pattern)
        return out


StrictNumber = _StrictJsonInput(
    ASCII_NUMBER_PATTERN,
    NUMBER_INPUT_ERROR,
    "Decimal input should be a JSON number or a string of ASCII digits "
    "(no '_', spaces or other scripts' digits)",
)
StrictTime = _StrictJsonInput(
    ISO_TIME_PATTERN,
    TIME_INPUT_ERROR,
    "Input should be a valid datetime: ISO-8601, or epoch seconds/milliseconds, in ASCII digits",
)
Price = Annotated[Decimal, Field(ge=MIN_PRICE, lt=MAX_AMOUNT, allow_inf_nan=False), StrictNumber]
Quantity = Annotated[Decimal, Field(ge=0, lt=MAX_AMOUNT, allow_inf_nan=False), StrictNumber]
EventTime = Annotated[datetime, StrictTime]
Money = Decimal


def to_ms(ts: datetime) -> int:
    """Epoch milliseconds of an aware datetime (naive ones are taken as UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return int(ts.timestamp() * 1000)


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class _Message(BaseModel):
    """Strict-ish base: unknown fields are rejected so a producer's typo is caught, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------
# Inbound topics: market, news, social
# --------------------------------------------------------------------------------------------


class Tick(_Message):
    """One trade print on the market topic."""

    type: Literal["tick"] = "tick"
    symbol: Symbol
    ts: EventTime = Field(description="Event time (ISO-8601 or epoch seconds/milliseconds)")
    price: Price
    size: Quantity = Decimal(0)
    id: str | None = Field(default=None, max_length=128, description="Producer id, for dedupe")


CALENDAR_PATTERN = r"^(?:[1-9][0-9]?w|(?:1|2|3|4|6|12)mo)$"
"""The calendar intervals an input bar may name (models/market/interval.py reads them)."""


def _is_none(value: object) -> bool:
    return value is None


class BarIn(_Message):
    """One OHLCV bar on the market topic (e.g. replayed daily or hourly history)."""

    type: Literal["bar"] = "bar"
    symbol: Symbol
    ts: EventTime = Field(description="Bar open time")
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Quantity = Decimal(0)
    interval_s: int | None = Field(
        default=None,
        gt=0,
        le=31 * 86400,
        strict=True,  # no `true`, "60" or 60.0
        exclude_if=_is_none,
        description="Bar length in seconds (the bar is ts .. ts + interval_s), or `calendar`",
    )
    calendar: str | None = Field(
        default=None,
        pattern=CALENDAR_PATTERN,
        exclude_if=_is_none,
        description="Instead of interval_s (give exactly one): the calendar period holding ts, "
        "Nw (N ISO weeks from Monday 00:00 UTC) or Nmo (N calendar months in UTC, N in 1, 2, 3, "
        "4, 6, 12); the bar ends where that period does (models/market/interval.py)",
    )
    id: str | None = Field(default=None, max_length=128)

    @model_validator(mode="after")
    def _ohlc_consistent(self) -> BarIn:
        if (self.interval_s is None) == (self.calendar is None):
            raise ValueError("give exactly one of interval_s (seconds) and calendar (e.g. 1mo)")
        if not (self.low <= self.open <= self.high and self.low <= self.close <= self.high):
            raise ValueError("OHLC inconsistent: need low <= open, close <= high")
        return self


MarketMessage = Annotated[Tick | BarIn, Field(discriminator="type")]


class NewsItem(_Message):
    """A headline from a news feed. Its text is untrusted input."""

    type: Literal["news"] = "news"
    id: str = Field(min_length=1, max_length=128)
    ts: EventTime
    symbols: list[Symbol] = Field(default_factory=list, max_length=64)
    headline: str = Field(min_length=1, max_length=1000)
    body: str = Field(default="", max_length=20000)
    source: str = Field(default="unknown", max_length=200)


class SocialPost(_Message):
    """A post from a social feed. Its text is untrusted input."""

    type: Literal["social"] = "social"
    id: str = Field(min_length=1, max_length=128)
    ts: EventTime
    symbols: list[Symbol] = Field(default_factory=list, max_length=64)
    text: str = Field(min_length=1, max_length=5000)
    author: str = Field(default="unknown", max_length=200)


# --------------------------------------------------------------------------------------------
# Internal stream items (dataclass-light pydantic models, also written to ClickHouse)
# --------------------------------------------------------------------------------------------


class Bar(BaseModel):
    """A closed event-time window of one symbol."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    start_ms: int
    end_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trades: int
    vwap: Decimal


class StoredTick(BaseModel):
    """A validated tick as kept in the `ticks` table; `tick_id` is the producer id, else the
    message's position in its topic, so a replayed message lands on the same row."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    ts_ms: int
    price: Decimal
    size: Decimal
    tick_id: str


class FeatureVector(BaseModel):
    """Indicator values of one symbol at the close of one bar (None until warmed up)."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    ts_ms: int
    close: float
    values: dict[str, float | None]

    @field_validator("values")
    @classmethod
    def _no_nan(cls, v: dict[str, float | None]) -> dict[str, float | None]:
        return {k: (None if x is None or not math.isfinite(x) else x) for k, x in v.items()}


class Direction(StrEnum):
    LONG = "long"
    SHORT = "short"
    FLAT = "flat"


class Signal(BaseModel):
    """One fired trigger."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    ts_ms: int
    trigger: str
    kind: str
    direction: Direction
    strength: float = Field(ge=0)
    strategic: bool
    detail: dict[str, float | str | None] = Field(default_factory=dict)


class Branch(StrEnum):
    STRATEGIC = "strategic"
    ROUTINE = "routine"


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


def _default_on_unpickle(state: dict[Any, Any], **defaults: Any) -> None:
    """Restore a model pickled by a version before `defaults` existed with those defaults (a
    Bytewax snapshot of the desk holds intents and orders)."""
    values = state.get("__dict__", {})
    for name, value in defaults.items():
        values.setdefault(name, value)


class TradeIntent(BaseModel):
    """One order the controller wants: a market order, filled at the next bar. Sized either
    explicitly (`quantity`, what sells and exits always are) or, for a buy, as a fraction of
    equity (`size_fraction`): the simulated venue then sizes it at the fill from the cash then
    available, as backtesting.py sizes a fractional `buy()`, and `quantity` is the estimate at
    the decision's close that the review loop checks and a real exchange is sent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: Symbol
    side: Side
    quantity: Annotated[Decimal, AfterValidator(_finite_positive)]
    reason: str = Field(default="", max_length=500)
    size_fraction: SizeFraction | None = None

    @model_validator(mode="after")
    def _only_buys_by_fraction(self) -> TradeIntent:
        if self.size_fraction is not None and self.side is not Side.BUY:
            raise ValueError("size_fraction: only a buy is sized at its fill; a sell is explicit")
        return self

    def __setstate__(self, state: dict[Any, Any]) -> None:
        _default_on_unpickle(state, size_fraction=None)
        super().__setstate__(state)


class Proposal(BaseModel):
    """What a strategy controller answers for one decision (one adjust round)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    controller: str
    strategy: str
    intents: list[TradeIntent]
    rationale: str = Field(max_length=2000)
    confidence: float = Field(ge=0, le=1)


class RiskCheck(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    passed: bool
    limit: Decimal | None = None
    value: Decimal | None = None
    message: str = ""


class RiskVerdict(BaseModel):
    model_config = ConfigDict(frozen=True)

    approved: bool
    checks: list[RiskCheck]
    fee_estimate: Decimal

    @property
    def failures(self) -> list[RiskCheck]:
        return [c for c in self.checks if not c.passed]


class OrderStatus(StrEnum):
    PENDING = "pending"
    FILLED = "filled"
    PARTIALLY_FILLED = "partially_filled"  # the exchange filled part and closed the rest
    REJECTED = "rejected"
    EXPIRED = "expired"


class Order(BaseModel):
    """An order as placed on an exchange; `client_order_id` is deterministic per decision. A
    real exchange is sent `quantity` also for an order sized at its fill (the estimate at the
    decision's close): sizing at the fill is the simulated venue's (a live market buy's
    analogue would be a quote-amount order, e.g. ccxt's `quoteOrderQty`, not built)."""

    model_config = ConfigDict(frozen=True)

    client_order_id: str
    decision_id: str
    symbol: str
    side: Side
    quantity: Decimal
    order_type: Literal["market"] = "market"
    status: OrderStatus
    placed_ms: int
    updated_ms: int
    reason: str = ""
    version: int = Field(default=1, description="1 when placed, 2 once filled or rejected")
    size_fraction: SizeFraction | None = Field(
        default=None,
        description="Set: a buy sized at its fill (`TradeIntent.size_fraction`); `quantity` is "
        "the estimate until the fill, then what was bought",
    )

    def __setstate__(self, state: dict[Any, Any]) -> None:
        _default_on_unpickle(state, size_fraction=None)
        super().__setstate__(state)


class Fill(BaseModel):
    model_config = ConfigDict(frozen=True)

    fill_id: str
    client_order_id: str
    decision_id: str
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal
    ts_ms: int


class PositionSnapshot(BaseModel):
    model_config = ConfigDict(frozen=True)

    ts_ms: int
    symbol: str
    quantity: Decimal
    avg_cost: Decimal
    mark_price: Decimal
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    cash: Decimal
    equity: Decimal


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Alert(BaseModel):
    model_config = ConfigDict(frozen=True)

    alert_id: str
    ts_ms: int
    severity: Severity
    source: str
    message: str
    context: dict[str, Any] = Field(default_factory=dict)


class DeadLetter(BaseModel):
    """A message the flow could not use, kept with the reason so nothing is silently lost."""

    model_config = ConfigDict(frozen=True)

    dead_letter_id: str
    topic: str
    partition: int
    offset: int
    record_ms: int
    reason: str
    payload: str


class AdjustRound(BaseModel):
    model_config = ConfigDict(frozen=True)

    round: int
    proposal: Proposal
    verdict: RiskVerdict | None
    """The reviewers' verdict; None when there was nothing to review (a GPT answer that
    places no orders is logged all the same, so the log shows what GPT decided)."""


class DecisionStatus(StrEnum):
    PENDING = "pending"  # waiting for a GPT answer; a later version says how it ended
    EXECUTED = "executed"
    NO_ACTION = "no_action"
    REJECTED = "rejected"


class DecisionRecord(BaseModel):
    """Everything that explains one decision, in one row of the decision log."""

    model_config = ConfigDict(frozen=True)

    decision_id: str
    ts_ms: int
    symbol: str
    branch: Branch
    triggers: list[Signal]
    features: FeatureVector
    rounds: list[AdjustRound]
    status: DecisionStatus
    orders: list[Order]
    fills: list[Fill] = Field(default_factory=list)
    portfolio_before: dict[str, str]
    note: str = ""
    version: int = Field(default=1, description="Bumped when fills arrive; the newest row wins")


# --------------------------------------------------------------------------------------------
# GPT call log
# --------------------------------------------------------------------------------------------


class GptOutcome(StrEnum):
    """How a GPT question ended: the GPT seam's one vocabulary. The client's failures, the
    answer path's outcome (endpoint, recording, spend guard), `GptAnswer.failure`, the
    `gpt_calls.outcome` column and the local engine's reason (`Fallback.kind`, the controller
    `local (gpt fallback: <value>)`) all use it. The last three are only ever a fallback's
    reason, never a row's outcome; `timeout` is the endpoint's and the desk's `gpt.max_wait`."""

    OK = "ok"  # answered by the endpoint (or the paid call's own recording, after a restart)
    TIMEOUT = "timeout"  # HTTP timeout on every attempt, or no answer within gpt.max_wait
    RATE_LIMITED = "rate_limited"  # HTTP 429 after the SDK's retries
    SERVER_ERROR = "server_error"  # HTTP 5xx after the SDK's retries
    CLIENT_ERROR = "client_error"  # another HTTP 4xx, or a gateway error
    CONNECTION = "connection"  # refused, reset or dropped before an answer
    MALFORMED = "malformed"  # not JSON, truncated, not a chat completion
    SCHEMA_VIOLATION = "schema_violation"  # JSON the response model rejects
    REFUSAL = "refusal"  # the model refused (or the content filter stopped it)
    CIRCUIT_OPEN = "circuit_open"  # not called: the endpoint failed too often lately
    NO_KEY = "no_key"  # not called: no API key and no base URL
    CACHED = "cached"  # from the answer store (auto): no call, no cost
    REPLAYED = "replayed"  # from the recording (replay): no call, no cost
    REPLAY_MISS = "replay_miss"  # replay, and the recording lacks the question
    BUDGET_EXHAUSTED = "budget_exhausted"  # not called: models.gpt.cost.budget_allows refused
    REJECTED = "rejected"  # fallback: the answer did not compile within the limits
    RISK_REFUSED = "risk_refused"  # fallback: the risk gate refused every round
    NO_ANSWER = "no_answer"  # fallback: nothing parsed and no failure reported

    @property
    def answered(self) -> bool:
        """Whether an answer came back (endpoint, store or recording): not a failure."""
        return self in _ANSWERED


_ANSWERED = frozenset({GptOutcome.OK, GptOutcome.CACHED, GptOutcome.REPLAYED})

GPT_ANSWER_MAX_CHARS = 16_000
GPT_DETAIL_MAX_CHARS = 1_000
_CLIPPED = " …[clipped]"


def _clip(limit: int) -> AfterValidator:
    """Cut text to `limit` characters with a visible marker instead of refusing it: the log
    must keep the row of a call whose answer was absurdly long, not lose it. Idempotent."""

    def clip(text: str) -> str:
        return text if len(text) <= limit else text[: limit - len(_CLIPPED)] + _CLIPPED

    return AfterValidator(clip)


def gpt_call_id(decision_id: str, round_no: int) -> str:
    """The id of the GPT call of one adjust round of one decision: derived, not random, so a
    replayed decision rewrites the same `gpt_calls` row instead of adding one."""
    return f"{decision_id}/gpt{round_no}"


class GptCall(BaseModel):
    """One GPT call (or the decision not to make one), a row of the `gpt_calls` table.

    `cost` is what the endpoint billed at the price table's rate (0 when nothing was called or
    the answer came from a cache or a recording); `price_known` is False when the model was not
    in the price table and the default price was charged. `answer` is the answer text as
    received (clipped to `GPT_ANSWER_MAX_CHARS`), `detail` the one-line reason of a failure.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    call_id: str = Field(min_length=1, max_length=300)
    ts_ms: int
    decision_id: str
    round: int = Field(default=0, ge=0)
    symbol: str
    model: str
    prompt_hash: str
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    latency_ms: int = Field(default=0, ge=0)
    cost: Annotated[Decimal, AfterValidator(_finite_non_negative)] = Decimal(0)
    price_known: bool = True
    outcome: GptOutcome
    answer: Annotated[str, _clip(GPT_ANSWER_MAX_CHARS)] = ""
    detail: Annotated[str, _clip(GPT_DETAIL_MAX_CHARS)] = ""

    @classmethod
    def of_request(cls, request: GptRequest, **fields: Any) -> GptCall:
        """The row of `request`'s call (made or not; `fields`: model, outcome, usage...): id,
        time, decision, round, symbol and the carried prompt hash come from the request."""
        return cls(
            call_id=request.request_id,
            ts_ms=request.ts_ms,
            decision_id=request.decision_id,
            round=request.round,
            symbol=request.symbol,
            prompt_hash=request.prompt_hash,
            **fields,
        )


# --------------------------------------------------------------------------------------------
# GPT requests and the strategies GPT wrote
# --------------------------------------------------------------------------------------------


class ChatTurn(BaseModel):
    """One chat message of a GPT request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str


class GptRequest(BaseModel):
    """A question the desk wants answered; the flow's GPT gateway answers it (inline in a
    backtest, by a worker live). `request_id` is the id of its `gpt_calls` row, so answering a
    request twice (e.g. after a restart) rewrites one row. `prompt_hash` identifies the question:
    computed once, by the desk (`GptSession.request`), and carried; nobody hashes it again."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str
    decision_id: str
    symbol: Symbol
    round: int = Field(ge=0)
    ts_ms: int
    messages: tuple[ChatTurn, ...]
    prompt_hash: str = Field(min_length=1)
    model: str = Field(default="", max_length=100)
    """The model the question is for (`gpt.model` when the desk asked, which a settings change
    may have changed since the gateway started); "": the gateway's configured model."""

    def __setstate__(self, state: dict[Any, Any]) -> None:
        # Pickled by a version before requests carried their hash: restored with an empty one,
        # which the gateway does not ask (the desk falls back to the local engine); before they
        # carried their model: the gateway's.
        state.get("__dict__", {}).setdefault("prompt_hash", "")
        state.get("__dict__", {}).setdefault("model", "")
        super().__setstate__(state)


class StrategyStatus(StrEnum):
    ACTIVE = "active"
    REPLACED = "replaced"  # a newer strategy took over one of its symbols
    EXPIRED = "expired"  # its horizon (in bars of its decision symbol) ran out
    RETIRED = "retired"  # GPT de-risked without giving a new strategy


class StrategyRecord(BaseModel):
    """One activation of a GPT-written strategy: a row of the `strategies` table, written when
    it starts and again (higher `version`) when it ends. `activation_id` is the decision that
    started it, so the same spec activated twice gives two rows; `spec` is its JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    activation_id: str
    strategy_id: str
    version: int = Field(default=1, ge=1)
    decision_id: str
    symbol: Symbol
    universe: list[Symbol]
    status: StrategyStatus
    started_ms: int
    ended_ms: int | None = None
    bars_active: int = Field(default=0, ge=0)
    trades: int = Field(default=0, ge=0)
    realized_pnl: Money = Decimal(0)
    confidence: float = Field(ge=0, le=1)
    rationale: str = Field(default="", max_length=2000)
    spec: str
