"""Turn raw topic bytes into validated messages, or into a dead letter that says why not.

Pure: the clock an event is judged against is passed in (`now_ms`), so the same input and clock
always give the same verdict (which the crash/restart guarantee depends on). The caller
(models/market/ingest.py, models/market/time_guard.py says which clock) never passes a producer-set
`CreateTime`: the producer that writes the event time also writes that one. A message whose
event time is far ahead of that clock is a producer bug or an attack, not data.

Parsing is as strict as the GPT answer's (models/strategy/spec.py): the models refuse
non-ASCII digits, `_` in numbers, booleans for numbers (models/core/messages.py), and a key written
twice in one object is refused here, since parsers disagree on which copy wins.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection

import jiter
from pydantic import TypeAdapter, ValidationError

from models.core.messages import (
    BarIn,
    DeadLetter,
    MarketMessage,
    NewsItem,
    SocialPost,
    Tick,
    ms_to_datetime,
    to_ms,
)
from models.market.fast_bar import fast_bar
from models.strategy.spec import duplicate_key

_MARKET = TypeAdapter(MarketMessage)
# The bare core validator skips TypeAdapter's per-call Python wrapper on the per-tick path.
_MARKET_VALIDATOR = _MARKET.validator
_NEWS = TypeAdapter(NewsItem)
_SOCIAL = TypeAdapter(SocialPost)

MAX_PAYLOAD_CHARS = 4000

# Plausible event times, fixed so the verdict stays pure. Outside them a timestamp is a sentinel
# or a unit mix-up, not market history: 0001-01-01 (.NET's DateTime.MinValue), year 9999, a
# microsecond epoch read as ms. Accepted once, such an event would open a window decades away
# from the real data and, as a symbol's first event, be emitted as a bogus bar; a far-future one
# that slips past the record-time check (record time unknown) would push the watermark so far
# ahead that every later event of the symbol is "late".
MIN_EVENT_MS = -2_208_988_800_000  # 1900-01-01T00:00:00Z
MAX_EVENT_MS = 7_258_118_400_000  # 2200-01-01T00:00:00Z (exclusive)
# Within a day of the Unix epoch: a zero or -1 timestamp (an unset field), never a trade; the
# markets were closed on 1970-01-01.
EPOCH_SENTINEL_MS = 86_400_000


def repeated_key(value: bytes) -> str | None:
    """The first key written twice in one JSON object of `value`, or None (also for invalid
    JSON: validation already said why). The check runs in jiter (Rust, ~1 µs a tick); only a
    message that has a repeated key pays for `duplicate_key`, which names it."""
    try:
        jiter.from_json(value, catch_duplicate_keys=True, cache_mode="keys")
    except ValueError as err:
        if "duplicate key" not in str(err):
            return None
        return duplicate_key(value) or str(err)
    return None


CLOCK_REFUSAL = "ahead of "
"""In the reason of every event refused by the clock guard (and no other), for the alarm."""


def clock_problem(ts_ms: int, now_ms: int | None, skew_ms: int, clock: str) -> str | None:
    """Why an event time cannot be accepted at `now_ms` on `clock` (None: no trusted clock)."""
    if now_ms is None or ts_ms <= now_ms + skew_ms:
        return None
    try:
        when = to_iso(ts_ms)
    except (OverflowError, OSError, ValueError):
        when = f"{ts_ms} ms"
    return f"event time {when} is more than {skew_ms // 1000}s {CLOCK_REFUSAL}{clock}"


def to_iso(ts_ms: int) -> str:
    return ms_to_datetime(ts_ms).isoformat().replace("+00:00", "Z")


def event_time_problem(ts_ms: int) -> str | None:
    """Why an event time (epoch ms) cannot be market data, or None when it is plausible."""
    if -EPOCH_SENTINEL_MS < ts_ms < EPOCH_SENTINEL_MS:
        return "event time is within a day of 1970-01-01 (a zero or unset timestamp)"
    if not MIN_EVENT_MS <= ts_ms < MAX_EVENT_MS:
        return "event time is outside 1900-01-01 .. 2200-01-01"
    return None


def describe_validation_error(err: ValidationError) -> str:
    """One line naming each failing field, the way a producer's developer wants to read it."""
    parts = []
    for e in err.errors()[:5]:
        loc = ".".join(str(p) for p in e["loc"] if p not in ("tick", "bar"))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "json_invalid":
            return f"not valid JSON: {e.get('ctx', {}).get('error', msg)}"
        if e["type"] in ("model_attributes_type", "model_type", "dict_type") and not loc:
            return "not a JSON object"
        if e["type"] in ("union_tag_not_found", "union_tag_invalid"):
            return "missing or unknown 'type' (expected 'tick' or 'bar')"
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = len(err.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def dead_letter(
    topic: str, partition: int, offset: int, record_ms: int, value: bytes | None, reason: str
) -> DeadLetter:
    """The id is derived from the message's position, so a replayed message is the same row."""
    ident = hashlib.sha256(f"{topic}:{partition}:{offset}".encode()).hexdigest()[:32]
    payload = "" if value is None else value[: MAX_PAYLOAD_CHARS * 4].decode("utf-8", "replace")
    return DeadLetter(
        dead_letter_id=ident,
        topic=topic,
        partition=partition,
        offset=offset,
        record_ms=record_ms,
        reason=reason,
        payload=payload[:MAX_PAYLOAD_CHARS],
    )


def parse_market(
    value: bytes | None,
    *,
    topic: str,
    partition: int,
    offset: int,
    record_ms: int,
    symbols: Collection[str],
    max_future_skew_ms: int,
    now_ms: int | None = None,
    clock: str = "the ingest clock",
) -> tuple[Tick | BarIn, int] | DeadLetter:
    """Validate one market message against the schema, the symbol list and the clock.

    `now_ms` is the trusted clock on `clock` (named in the reason); None: no clock check.
    Returns the message with its event time in epoch ms (computed once here, used downstream).
    """
    # Replay's bar layout: accepted without pydantic when every check passes, else the full
    # validation gives the verdict (models/market/fast_bar.py).
    if (
        value
        and value.startswith(b'{"type":"bar",')
        and (
            fast := fast_bar(
                value, symbols, now_ms, max_future_skew_ms, EPOCH_SENTINEL_MS, MAX_EVENT_MS
            )
        )
    ):
        return fast
    return validate_market(
        value,
        topic=topic,
        partition=partition,
        offset=offset,
        record_ms=record_ms,
        symbols=symbols,
        max_future_skew_ms=max_future_skew_ms,
        now_ms=now_ms,
        clock=clock,
    )


def validate_market(
    value: bytes | None,
    *,
    topic: str,
    partition: int,
    offset: int,
    record_ms: int,
    symbols: Collection[str],
    max_future_skew_ms: int,
    now_ms: int | None = None,
    clock: str = "the ingest clock",
) -> tuple[Tick | BarIn, int] | DeadLetter:
    """`parse_market` without its fast path: pydantic and the duplicate-key scan on every
    message (what the fast path is tested against)."""
    if not value:
        return dead_letter(topic, partition, offset, record_ms, value, "empty message")
    try:
        msg = _MARKET_VALIDATOR.validate_json(value)
    except ValidationError as err:
        return dead_letter(
            topic, partition, offset, record_ms, value, describe_validation_error(err)
        )
    if (repeated := repeated_key(value)) is not None:
        reason = f"key {repeated[:40]!r} is written twice in one object"
        return dead_letter(topic, partition, offset, record_ms, value, reason)
    if msg.symbol not in symbols:
        return dead_letter(
            topic, partition, offset, record_ms, value, f"unknown symbol {msg.symbol!r}"
        )
    ts = msg.ts
    ts_ms = int(ts.timestamp() * 1000) if ts.tzinfo is not None else to_ms(ts)
    if now_ms is not None and (late := clock_problem(ts_ms, now_ms, max_future_skew_ms, clock)):
        return dead_letter(topic, partition, offset, record_ms, value, late)
    # Fast path first: one chained comparison for any event since 1970-01-02.
    if not EPOCH_SENTINEL_MS <= ts_ms < MAX_EVENT_MS and (problem := event_time_problem(ts_ms)):
        return dead_letter(
            topic, partition, offset, record_ms, value, f"{problem}: {ts.isoformat()}"
        )
    return msg, ts_ms


def parse_text_item(
    value: bytes | None,
    *,
    kind: str,
    topic: str,
    partition: int,
    offset: int,
    record_ms: int,
    max_future_skew_ms: int,
    now_ms: int | None = None,
    clock: str = "the ingest clock",
) -> NewsItem | SocialPost | DeadLetter:
    """Validate a news or social message; its text stays untrusted data, never instructions.
    `now_ms` and `clock` as for `parse_market`."""
    if not value:
        return dead_letter(topic, partition, offset, record_ms, value, "empty message")
    adapter: TypeAdapter[NewsItem] | TypeAdapter[SocialPost] = _NEWS if kind == "news" else _SOCIAL
    try:
        item = adapter.validate_json(value)
    except ValidationError as err:
        return dead_letter(
            topic, partition, offset, record_ms, value, describe_validation_error(err)
        )
    if (repeated := repeated_key(value)) is not None:
        reason = f"key {repeated[:40]!r} is written twice in one object"
        return dead_letter(topic, partition, offset, record_ms, value, reason)
    ts_ms = to_ms(item.ts)
    if (late := clock_problem(ts_ms, now_ms, max_future_skew_ms, clock)) is not None:
        return dead_letter(topic, partition, offset, record_ms, value, late)
    if (problem := event_time_problem(ts_ms)) is not None:
        return dead_letter(
            topic, partition, offset, record_ms, value, f"{problem}: {item.ts.isoformat()}"
        )
    return item
