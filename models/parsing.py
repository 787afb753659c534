"""Turn raw topic bytes into validated messages, or into a dead letter that says why not.

Pure: the only clock is the Kafka record timestamp that came with the message, so the same input
always gives the same verdict (which the crash/restart guarantee depends on). A message whose event
time is far ahead of the time the broker received it is a producer bug or an attack, not data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection

from pydantic import TypeAdapter, ValidationError

from models.messages import BarIn, DeadLetter, MarketMessage, NewsItem, SocialPost, Tick, to_ms

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
) -> tuple[Tick | BarIn, int] | DeadLetter:
    """Validate one market message against the schema, the symbol list and the record clock.

    Returns the message with its event time in epoch ms (computed once here, used downstream).
    """
    if not value:
        return dead_letter(topic, partition, offset, record_ms, value, "empty message")
    try:
        msg = _MARKET_VALIDATOR.validate_json(value)
    except ValidationError as err:
        return dead_letter(
            topic, partition, offset, record_ms, value, describe_validation_error(err)
        )
    if msg.symbol not in symbols:
        return dead_letter(
            topic, partition, offset, record_ms, value, f"unknown symbol {msg.symbol!r}"
        )
    ts = msg.ts
    ts_ms = int(ts.timestamp() * 1000) if ts.tzinfo is not None else to_ms(ts)
    if record_ms > 0 and ts_ms > record_ms + max_future_skew_ms:
        return dead_letter(
            topic,
            partition,
            offset,
            record_ms,
            value,
            f"event time {msg.ts.isoformat()} is more than {max_future_skew_ms // 1000}s "
            "ahead of the broker's record time",
        )
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
) -> NewsItem | SocialPost | DeadLetter:
    """Validate a news or social message; its text stays untrusted data, never instructions."""
    if not value:
        return dead_letter(topic, partition, offset, record_ms, value, "empty message")
    adapter: TypeAdapter[NewsItem] | TypeAdapter[SocialPost] = _NEWS if kind == "news" else _SOCIAL
    try:
        item = adapter.validate_json(value)
    except ValidationError as err:
        return dead_letter(
            topic, partition, offset, record_ms, value, describe_validation_error(err)
        )
    ts_ms = to_ms(item.ts)
    if record_ms > 0 and ts_ms > record_ms + max_future_skew_ms:
        return dead_letter(
            topic, partition, offset, record_ms, value, "event time is ahead of the record time"
        )
    if (problem := event_time_problem(ts_ms)) is not None:
        return dead_letter(
            topic, partition, offset, record_ms, value, f"{problem}: {item.ts.isoformat()}"
        )
    return item
