"""Pipeline models <-> ClickHouse rows: the one place that knows how each message type is laid
out in a table (pure: no I/O).

* `model_to_row(model)` -> (table, row): JSON-ready, Decimals as exact text at the column scale
  (`Decimal(38, 12)`, rounded half-even; too large is refused), non-finite floats as the strings
  ClickHouse parses, nested parts as compact JSON text.
* `row_to_model(table, row)` rebuilds the message from a `SELECT *` row (the run id and the
  `ts` alias dropped).
* `direct_lines(table, rows, run_id)`: JSONEachRow text written directly (`LINE_WRITERS`: bars,
  positions, decisions, orders, fills, alerts), the same JSON objects as `model_to_row`'s rows
  with the run id, nested parts as raw JSON the engine stores as their text.
* `message_json(model)`: a message's JSON, its parts once for its Kafka message and its row.
* `ROW_CONVERTERS` maps each model type to its table and converter; `TABLES` lists the tables in
  DDL order.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from typing import Any, Final, Generic, TypeVar, cast

from pydantic import BaseModel, TypeAdapter
from pydantic_core import PydanticSerializationError, to_json

from models.control.plane import ControlAck
from models.core.messages import (
    Alert,
    Bar,
    DeadLetter,
    DecisionRecord,
    Fill,
    GptCall,
    NewsItem,
    Order,
    PositionSnapshot,
    Signal,
    SocialPost,
    StoredTick,
    StrategyRecord,
    ms_to_datetime,
    to_ms,
)

DECIMAL_SCALE: Final = 12
"""Fractional digits of every money/price/quantity column (`Decimal(38, 12)`)."""

_DECIMAL_MAX_INT_DIGITS: Final = 38 - DECIMAL_SCALE
_DECIMAL_QUANTUM: Final = Decimal(1).scaleb(-DECIMAL_SCALE)
# Wide enough that quantizing a 38-digit value never trips the 28-digit default precision.
_DECIMAL_CTX: Final = Context(prec=100, rounding=ROUND_HALF_EVEN)

Row = dict[str, Any]
V = TypeVar("V")


# --------------------------------------------------------------------------------------------
# Models -> rows (pure; the one place that knows how each message type is laid out in a table)
# --------------------------------------------------------------------------------------------


_DEC_TEXT: dict[Decimal, str] = {}
"""Recent `_dec` results by value. A bar's row and the position row after it repeat most of
their numbers (the close is the mark, the cash and quantity rarely move, the open is the last
close), and a lookup costs a quarter of the quantize-and-format it saves. Equal values have
the same text at the column scale, so keying by value is exact."""
_DEC_TEXT_MAX: Final = 8192


def _dec(value: Decimal) -> str:
    """Exact text of a Decimal at the column scale, so neither JSON nor ClickHouse sees a float.

    ClickHouse would silently truncate extra digits; rounding half-even here makes the stored
    value deterministic and the same on both backends. Values too large for `Decimal(38, 12)`
    are refused rather than wrapped.
    """
    if not value.is_finite():
        raise ValueError(f"cannot store non-finite decimal {value}")
    text = _DEC_TEXT.get(value)
    if text is None:
        text = _dec_text(value)
        if len(_DEC_TEXT) >= _DEC_TEXT_MAX:
            _DEC_TEXT.clear()
        _DEC_TEXT[value] = text
    return text


def _dec_text(value: Decimal) -> str:
    """`_dec_quantized`'s text; most values (no exponent in `str()`, at most 12 places, at most
    26 integer digits) are that text padded with zeros, ~2x quicker than quantizing
    (tests/unit/test_store_rows.py checks the two agree)."""
    text = str(value)
    if "E" not in text:
        point = text.find(".")
        sign = text[0] == "-"
        if point < 0:
            if len(text) - sign <= _DECIMAL_MAX_INT_DIGITS:
                return text + _ZEROS_POINT
        elif point - sign <= _DECIMAL_MAX_INT_DIGITS and (places := len(text) - point - 1) <= (
            DECIMAL_SCALE
        ):
            return text + "0" * (DECIMAL_SCALE - places)
    return _dec_quantized(value)


_ZEROS_POINT: Final = "." + "0" * DECIMAL_SCALE

decimal_text: Final = _dec
"""The exact text a Decimal is stored as (`_dec`), for the columnar writer
(`connectors.store.columns`), which must store the same value."""


def _dec_quantized(value: Decimal) -> str:
    """Rounded half-even to the column scale; refused when it does not fit."""
    try:
        q = value.quantize(_DECIMAL_QUANTUM, context=_DECIMAL_CTX)
    except InvalidOperation:
        q = None
    if q is None or q.adjusted() >= _DECIMAL_MAX_INT_DIGITS:
        raise ValueError(f"decimal {value} does not fit Decimal(38, {DECIMAL_SCALE})")
    return format(q, "f")


def _float(value: float) -> float | str:
    """Non-finite floats as the strings ClickHouse parses, because JSON has no literal for them."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _json_text(value: Any) -> str:
    """Compact JSON text of a nested part; Decimals become strings (exact), NaN/inf become null."""
    return to_json(value, fallback=str, inf_nan_mode="null").decode("utf-8")


json_text: Final = _json_text
"""The text a nested part is stored as (`_json_text`), for the columnar writer."""


def _tick_row(m: StoredTick) -> Row:
    return {
        "symbol": m.symbol,
        "ts_ms": m.ts_ms,
        "price": _dec(m.price),
        "size": _dec(m.size),
        "tick_id": m.tick_id,
    }


def _bar_row(m: Bar) -> Row:
    return {
        "symbol": m.symbol,
        "start_ms": m.start_ms,
        "end_ms": m.end_ms,
        "open": _dec(m.open),
        "high": _dec(m.high),
        "low": _dec(m.low),
        "close": _dec(m.close),
        "volume": _dec(m.volume),
        "trades": m.trades,
        "vwap": _dec(m.vwap),
    }


def _signal_row(m: Signal) -> Row:
    return {
        "symbol": m.symbol,
        "ts_ms": m.ts_ms,
        "trigger": m.trigger,
        "kind": m.kind,
        "direction": m.direction.value,
        "strength": _float(m.strength),
        "strategic": m.strategic,
        "detail": _json_text(m.detail),
    }


def _decision_row(m: DecisionRecord) -> Row:
    return {
        "decision_id": m.decision_id,
        "ts_ms": m.ts_ms,
        "symbol": m.symbol,
        "branch": m.branch.value,
        "status": m.status.value,
        "trigger_names": [s.trigger for s in m.triggers],
        "n_rounds": len(m.rounds),
        "n_orders": len(m.orders),
        "n_fills": len(m.fills),
        "note": m.note,
        "version": m.version,
        "triggers": _json_text(m.triggers),
        "features": _json_text(m.features),
        "rounds": _json_text(m.rounds),
        "orders": _json_text(m.orders),
        "fills": _json_text(m.fills),
        "portfolio_before": _json_text(m.portfolio_before),
    }


def _order_row(m: Order) -> Row:
    return {
        "client_order_id": m.client_order_id,
        "decision_id": m.decision_id,
        "symbol": m.symbol,
        "side": m.side.value,
        "quantity": _dec(m.quantity),
        "order_type": m.order_type,
        "status": m.status.value,
        "placed_ms": m.placed_ms,
        "updated_ms": m.updated_ms,
        "reason": m.reason,
        "version": m.version,
        "size_fraction": None if m.size_fraction is None else _dec(m.size_fraction),
    }


def _fill_row(m: Fill) -> Row:
    return {
        "fill_id": m.fill_id,
        "client_order_id": m.client_order_id,
        "decision_id": m.decision_id,
        "symbol": m.symbol,
        "side": m.side.value,
        "quantity": _dec(m.quantity),
        "price": _dec(m.price),
        "fee": _dec(m.fee),
        "ts_ms": m.ts_ms,
    }


def _position_row(m: PositionSnapshot) -> Row:
    return {
        "ts_ms": m.ts_ms,
        "symbol": m.symbol,
        "quantity": _dec(m.quantity),
        "avg_cost": _dec(m.avg_cost),
        "mark_price": _dec(m.mark_price),
        "realized_pnl": _dec(m.realized_pnl),
        "unrealized_pnl": _dec(m.unrealized_pnl),
        "cash": _dec(m.cash),
        "equity": _dec(m.equity),
    }


def _alert_row(m: Alert) -> Row:
    return {
        "alert_id": m.alert_id,
        "ts_ms": m.ts_ms,
        "severity": m.severity.value,
        "source": m.source,
        "message": m.message,
        "context": _json_text(m.context),
    }


def _dead_letter_row(m: DeadLetter) -> Row:
    return {
        "dead_letter_id": m.dead_letter_id,
        "topic": m.topic,
        "partition": m.partition,
        "offset": m.offset,
        "record_ms": m.record_ms,
        "reason": m.reason,
        "payload": m.payload,
    }


def _control_row(m: ControlAck) -> Row:
    return {
        "command_id": m.command_id,
        "action": m.action,
        "issued_by": m.issued_by,
        "issued_ms": m.issued_ms,
        "applied_ms": m.applied_ms,
        "outcome": m.outcome,
        "state_before": m.state_before.value,
        "state_after": m.state_after.value,
        "reason": m.reason,
    }


def _news_row(m: NewsItem) -> Row:
    return {
        "kind": "news",
        "id": m.id,
        "ts_ms": to_ms(m.ts),
        "symbols": list(m.symbols),
        "headline": m.headline,
        "text": m.body,
        "source": m.source,
    }


def _social_row(m: SocialPost) -> Row:
    return {
        "kind": "social",
        "id": m.id,
        "ts_ms": to_ms(m.ts),
        "symbols": list(m.symbols),
        "headline": "",
        "text": m.text,
        "source": m.author,
    }


def _gpt_call_row(m: GptCall) -> Row:
    return {
        "call_id": m.call_id,
        "ts_ms": m.ts_ms,
        "decision_id": m.decision_id,
        "round": m.round,
        "symbol": m.symbol,
        "model": m.model,
        "prompt_hash": m.prompt_hash,
        "prompt_tokens": m.prompt_tokens,
        "completion_tokens": m.completion_tokens,
        "latency_ms": m.latency_ms,
        "cost": _dec(m.cost),
        "price_known": m.price_known,
        "outcome": m.outcome.value,
        "answer": m.answer,
        "detail": m.detail,
    }


def _strategy_row(m: StrategyRecord) -> Row:
    return {
        "activation_id": m.activation_id,
        "strategy_id": m.strategy_id,
        "version": m.version,
        "decision_id": m.decision_id,
        "symbol": m.symbol,
        "universe": list(m.universe),
        "status": m.status.value,
        "started_ms": m.started_ms,
        "ended_ms": m.ended_ms,
        "bars_active": m.bars_active,
        "trades": m.trades,
        "realized_pnl": _dec(m.realized_pnl),
        "confidence": _float(m.confidence),
        "rationale": m.rationale,
        "spec": m.spec,
    }


# --------------------------------------------------------------------------------------------
# The per-bar tables as JSONEachRow lines directly (no row dict, no encoder call)
# --------------------------------------------------------------------------------------------

_JSON_TEXT: dict[str, str] = {}
"""JSON string literals of the symbols seen (few; cleared if ever large)."""


def _text(value: str) -> str:
    literal = _JSON_TEXT.get(value)
    if literal is None:
        if len(_JSON_TEXT) >= 4096:
            _JSON_TEXT.clear()
        literal = _JSON_TEXT[value] = to_json(value).decode()
    return literal


def _bar_line(m: Bar, tail: str) -> str:
    return (
        f'{{"symbol":{_text(m.symbol)},"start_ms":{m.start_ms:d},"end_ms":{m.end_ms:d},'
        f'"open":"{_dec(m.open)}","high":"{_dec(m.high)}","low":"{_dec(m.low)}",'
        f'"close":"{_dec(m.close)}","volume":"{_dec(m.volume)}","trades":{m.trades:d},'
        f'"vwap":"{_dec(m.vwap)}"{tail}'
    )


def _position_line(m: PositionSnapshot, tail: str) -> str:
    return (
        f'{{"ts_ms":{m.ts_ms:d},"symbol":{_text(m.symbol)},"quantity":"{_dec(m.quantity)}",'
        f'"avg_cost":"{_dec(m.avg_cost)}","mark_price":"{_dec(m.mark_price)}",'
        f'"realized_pnl":"{_dec(m.realized_pnl)}",'
        f'"unrealized_pnl":"{_dec(m.unrealized_pnl)}","cash":"{_dec(m.cash)}",'
        f'"equity":"{_dec(m.equity)}"{tail}'
    )


def _str(value: str) -> str:
    """The JSON string literal of `value`, as pydantic-core's encoder writes it (the row path's
    `to_json`): printable ASCII without a quote or backslash needs no escaping."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    return to_json(value).decode()


def _order_line(m: Order, tail: str) -> str:
    size = "null" if m.size_fraction is None else f'"{_dec(m.size_fraction)}"'
    return (
        f'{{"client_order_id":{_str(m.client_order_id)},"decision_id":{_str(m.decision_id)},'
        f'"symbol":{_text(m.symbol)},"side":{_text(m.side.value)},'
        f'"quantity":"{_dec(m.quantity)}","order_type":{_text(m.order_type)},'
        f'"status":{_text(m.status.value)},"placed_ms":{m.placed_ms:d},'
        f'"updated_ms":{m.updated_ms:d},"reason":{_str(m.reason)},"version":{m.version:d},'
        f'"size_fraction":{size}{tail}'
    )


def _fill_line(m: Fill, tail: str) -> str:
    return (
        f'{{"fill_id":{_str(m.fill_id)},"client_order_id":{_str(m.client_order_id)},'
        f'"decision_id":{_str(m.decision_id)},"symbol":{_text(m.symbol)},'
        f'"side":{_text(m.side.value)},"quantity":"{_dec(m.quantity)}",'
        f'"price":"{_dec(m.price)}","fee":"{_dec(m.fee)}","ts_ms":{m.ts_ms:d}{tail}'
    )


def _alert_line(m: Alert, tail: str) -> str:
    # `context` as the raw JSON object (the engine stores its text: JSON_INSERT_SETTINGS).
    context = to_json(m.context, fallback=str, inf_nan_mode="null").decode()
    return (
        f'{{"alert_id":{_str(m.alert_id)},"ts_ms":{m.ts_ms:d},'
        f'"severity":{_text(m.severity.value)},"source":{_str(m.source)},'
        f'"message":{_str(m.message)},"context":{context}{tail}'
    )


# ---------------------------------------------------------------- a message's JSON, once
class _Recent(Generic[V]):
    """Values (JSON bytes) of recently serialized objects, by identity (the object is held with
    its value, so its id cannot be reused while it is here). Two generations of at most `size`
    entries: when the newer is full it becomes the older and the oldest is dropped, so what was
    used lately stays, at no bookkeeping per hit."""

    __slots__ = ("new", "old", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.new: dict[int, tuple[object, V]] = {}
        self.old: dict[int, tuple[object, V]] = {}

    def get(self, obj: object) -> V | None:
        key = id(obj)
        hit = self.new.get(key) or self.old.get(key)
        return hit[1] if hit is not None and hit[0] is obj else None

    def take(self, obj: object) -> V | None:
        """`get`, and forget it."""
        key = id(obj)
        for generation in (self.new, self.old):
            hit = generation.get(key)
            if hit is not None and hit[0] is obj:
                del generation[key]
                return hit[1]
        return None

    def put(self, obj: object, value: V) -> None:
        if len(self.new) >= self.size:
            self.old, self.new = self.new, {}
        self.new[id(obj)] = (obj, value)

    def clear(self) -> None:
        self.new, self.old = {}, {}


_JSON_OF: Final = _Recent[bytes](4096)
"""Recent JSON of the objects a message is made of: an order's or a fill's message (its Kafka
value, and its element in every version of its decision), a decision's nested parts (the
versions of a decision share its rounds, features, triggers and portfolio objects). Whoever
asks first (the Kafka lane or the store) serializes; the other takes the bytes. Keyed by
identity, so it relies on what the desk emitted never changing after: the models are frozen
and their lists are the records' own copies (models/desk/desk.py), as the Kafka lane's
serializing a record later than it was made always relied on. A part is asked for again soon
(a decision's versions, its orders and fills, are made within a bar or two): 4,096 a
generation serialize each object once in a 200,000-bar run as 16,384 do, and hold fewer
objects for the collector to walk at the end (a larger size cost ~1 s at the process's exit
and ~50 MB)."""

_PARTS_OF: Final = _Recent[tuple[bytes, ...]](8192)
"""Decisions' nested parts' JSON, by decision, between the Kafka lane and the store: the first
to ask keeps them, the second takes them (and they are forgotten), so a decision is held
here only while the other has yet to come (a bounded run writes every 2 s: at ~2,500
decisions a second, ~5,000 wait) and not after: what is held is what the flow still holds
anyway, not a growing heap for the collector to walk at the end. A decision only one of the
two asks for (no Kafka output) stays until two generations have passed."""

DECISION_NESTED: Final = ("triggers", "features", "rounds", "orders", "fills", "portfolio_before")
"""A decision's nested parts, stored as their JSON text."""


_PART_SERIALIZERS: Final = tuple(
    TypeAdapter(cast(Any, DecisionRecord.model_fields[k].annotation)).serializer
    for k in DECISION_NESTED
)
"""The serializers of a decision's nested fields' types: the schema `model_dump_json` uses for
them (no type inference per call, as `to_json` does)."""

_JSON_BYTES: dict[str, bytes] = {}


def _btext(value: str) -> bytes:
    """`_text` as bytes: the JSON literal of a symbol or an enum value (few; cached)."""
    literal = _JSON_BYTES.get(value)
    if literal is None:
        if len(_JSON_BYTES) >= 4096:
            _JSON_BYTES.clear()
        literal = _JSON_BYTES[value] = to_json(value)
    return literal


def _bstr(value: str) -> bytes:
    """`_str` as bytes."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return b'"%s"' % value.encode()
    return to_json(value)


def _part(value: Any, serializer: Any) -> bytes:
    """A nested part's JSON, once per object (`_JSON_OF`)."""
    body = _JSON_OF.get(value)
    if body is None:
        body = serializer.to_json(value)
        _JSON_OF.put(value, body)
    return body


def _listed(items: list[Any], kind: type[BaseModel], serializer: Any) -> bytes:
    """A list of orders or fills as JSON: each element its own message's JSON (once per object,
    shared with its Kafka message), joined as the list's serializer joins them; a list with
    an element of another type goes to the list's serializer."""
    if not items:
        return b"[]"
    parts: list[bytes] = []
    for item in items:
        if type(item) is not kind:
            return cast(bytes, serializer.to_json(items))
        body = _JSON_OF.get(item)
        if body is None:
            body = item.__pydantic_serializer__.to_json(item)
            _JSON_OF.put(item, body)
        parts.append(body)
    return b"[" + b",".join(parts) + b"]"


def _decision_parts(m: DecisionRecord) -> tuple[bytes, ...]:
    """The nested parts' JSON (`DECISION_NESTED` order); raises what the serializer raises."""
    st, sf, sr, so, sfl, spb = _PART_SERIALIZERS
    return (
        _part(m.triggers, st) if m.triggers else b"[]",
        _part(m.features, sf),
        _part(m.rounds, sr),
        _listed(m.orders, Order, so),
        _listed(m.fills, Fill, sfl),
        _part(m.portfolio_before, spb),
    )


def forget_json() -> None:
    """Drop every kept JSON (`_JSON_OF`, `_PARTS_OF`): for tests and benchmarks."""
    _JSON_OF.clear()
    _PARTS_OF.clear()


def _kept_parts(m: DecisionRecord) -> tuple[bytes, ...]:
    """`_decision_parts`, once for the Kafka lane and the store (`_PARTS_OF`)."""
    parts = _PARTS_OF.take(m)
    if parts is None:
        parts = _decision_parts(m)
        _PARTS_OF.put(m, parts)
    return parts


def _decision_json(m: DecisionRecord) -> tuple[bytes, tuple[bytes, ...] | None]:
    """A decision's message JSON and its nested parts' JSON, each part serialized once: the
    message is the parts joined with the flat fields, in the model's field order (what
    `model_dump_json` writes: tests/unit/test_store_lines.py). A part pydantic cannot
    serialize leaves it to `model_dump_json` (no parts: the store writes rows)."""
    try:
        parts = t, f, r, o, fl, pb = _kept_parts(m)
    except PydanticSerializationError:
        return m.__pydantic_serializer__.to_json(m), None
    body = b"".join(
        [
            b'{"decision_id":',
            _bstr(m.decision_id),
            b',"ts_ms":%d,"symbol":' % m.ts_ms,
            _btext(m.symbol),
            b',"branch":',
            _btext(m.branch.value),
            b',"triggers":',
            t,
            b',"features":',
            f,
            b',"rounds":',
            r,
            b',"status":',
            _btext(m.status.value),
            b',"orders":',
            o,
            b',"fills":',
            fl,
            b',"portfolio_before":',
            pb,
            b',"note":',
            _bstr(m.note),
            b',"version":%d}' % m.version,
        ]
    )
    return body, parts


def message_json(model: BaseModel) -> bytes:
    """`model.model_dump_json().encode()`, the bytes of the message's JSON.

    A decision's JSON (~20 µs: its rounds, orders, features) is built from its nested parts'
    (`_decision_json`), each serialized once per object: the versions of a decision share
    most of them, its orders and fills are the orders' and fills' own messages, and the
    store's row (`decision_parts`) takes the same bytes. An order's or a fill's JSON is kept
    for its decision (`_JSON_OF`); the models are frozen, so the bytes are the model's
    whoever asks first."""
    kind = type(model)
    if kind is DecisionRecord and _DECISION_PARTS:
        return _decision_json(cast(DecisionRecord, model))[0]
    if kind is Order or kind is Fill:
        body = _JSON_OF.get(model)
        if body is None:
            body = model.__pydantic_serializer__.to_json(model)
            _JSON_OF.put(model, body)
        return body
    return model.__pydantic_serializer__.to_json(model)


def decision_parts(m: DecisionRecord) -> tuple[bytes, ...] | None:
    """The decision's nested parts' JSON (`DECISION_NESTED` order), from what its Kafka message
    was made of or serialized now; None when the row path must write it."""
    if not _DECISION_PARTS:
        return None
    try:
        return _kept_parts(m)
    except PydanticSerializationError:
        return None


_DECISION_FIELDS: Final = (
    "decision_id",
    "ts_ms",
    "symbol",
    "branch",
    "triggers",
    "features",
    "rounds",
    "status",
    "orders",
    "fills",
    "portfolio_before",
    "note",
    "version",
)
"""DecisionRecord's fields, each a decisions column of the same name and value: the nested
ones (`DECISION_NESTED`) as JSON text, which is their text in the message's JSON."""


def _decision_line(m: DecisionRecord, tail: str) -> str:
    """The message's JSON (`message_json`) with the four derived columns added: the nested
    parts are raw JSON there, which the engine stores as their text (JSON_INSERT_SETTINGS), the
    very text `_json_text` gives them on the row path."""
    body = message_json(m)
    triggers = m.triggers
    names = "[]" if not triggers else to_json([s.trigger for s in triggers]).decode()
    return (
        f'{body[:-1].decode()},"trigger_names":{names},"n_rounds":{len(m.rounds):d},'
        f'"n_orders":{len(m.orders):d},"n_fills":{len(m.fills):d}{tail}'
    )


def _plain_fields(model: type[BaseModel], names: tuple[str, ...]) -> bool:
    """Whether `model` serializes exactly `names`, in order, under their own names."""
    fields = model.model_fields
    return (
        tuple(fields) == names
        and not model.model_computed_fields
        and all(
            f.alias is None and f.serialization_alias is None and not f.exclude
            for f in fields.values()
        )
    )


_DECISION_PARTS: Final = _plain_fields(DecisionRecord, _DECISION_FIELDS)
"""Whether a decision's message JSON is its fields' JSON in `_DECISION_FIELDS` order (then it
is built from its parts, and is its row with four columns added)."""

LINE_WRITERS: Final[Mapping[type[BaseModel], Callable[[Any, str], str]]] = {
    Bar: _bar_line,
    PositionSnapshot: _position_line,
    Order: _order_line,
    Fill: _fill_line,
    Alert: _alert_line,
    # A decision's line is its message JSON: only while the model has exactly its columns.
    **({DecisionRecord: _decision_line} if _DECISION_PARTS else {}),
}
"""`writer(model, tail)` is the model's JSONEachRow line ending in `tail` (`,"run_id":"…"}`
and the newline), without a row dict: the same JSON object as `model_to_row`'s row with the
run id (tests/unit/test_store_rows.py), except that the nested parts (a decision's triggers,
features, rounds, orders, fills, portfolio; an alert's context) are the raw JSON whose text
the row holds, which the engine stores as that text (`input_format_json_read_objects_as_strings`
and `..._arrays_as_strings`, connectors/store/server.py `JSON_INSERT_SETTINGS`;
tests/integration/test_store_lines.py reads every column back). A `Decimal` ends up as the
same exact text (decimal text needs no JSON escaping)."""


def direct_lines(table: str, rows: Sequence[BaseModel], run_id: str) -> str | None:
    """The JSONEachRow text of `rows` (each line ending in a newline) when they are all of one
    model with a `LINE_WRITERS` entry for `table`; else None (the caller builds rows). A value
    a column cannot hold raises `ValueError` as `model_to_row` does."""
    kind = type(rows[0])
    write_line = LINE_WRITERS.get(kind)
    if write_line is None or ROW_CONVERTERS[kind][0] != table:
        return None
    if any(type(r) is not kind for r in rows):
        return None
    tail = f',"run_id":{to_json(run_id).decode()}}}\n'
    return "".join([write_line(r, tail) for r in rows])


ROW_CONVERTERS: Final[Mapping[type[BaseModel], tuple[str, Callable[[Any], Row]]]] = {
    StoredTick: ("ticks", _tick_row),
    Bar: ("bars", _bar_row),
    Signal: ("signals", _signal_row),
    DecisionRecord: ("decisions", _decision_row),
    Order: ("orders", _order_row),
    Fill: ("fills", _fill_row),
    PositionSnapshot: ("positions", _position_row),
    Alert: ("alerts", _alert_row),
    DeadLetter: ("dead_letters", _dead_letter_row),
    NewsItem: ("news", _news_row),
    SocialPost: ("news", _social_row),
    GptCall: ("gpt_calls", _gpt_call_row),
    StrategyRecord: ("strategies", _strategy_row),
    ControlAck: ("control_log", _control_row),
}
"""Model type -> (table, converter). News items and social posts share the `news` table."""

TABLES: Final[tuple[str, ...]] = tuple(dict.fromkeys(t for t, _ in ROW_CONVERTERS.values()))
"""Every table of the schema, in DDL order."""


def table_for(model: BaseModel) -> str:
    """The table a message type is stored in."""
    entry = ROW_CONVERTERS.get(type(model))
    if entry is None:
        raise TypeError(f"{type(model).__name__} has no ClickHouse table")
    return entry[0]


def model_to_row(model: BaseModel) -> tuple[str, Row]:
    """(table, row) for one message; the row is JSON-ready with Decimals as exact strings."""
    entry = ROW_CONVERTERS.get(type(model))
    if entry is None:
        raise TypeError(f"{type(model).__name__} has no ClickHouse table")
    table, convert = entry
    return table, convert(model)


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def row_to_model(table: str, row: Mapping[str, Any]) -> BaseModel:
    """Rebuild the message from a `SELECT *` row of its table (the inverse of `model_to_row`).

    Lets readers (replay, the API, tests) get validated models back instead of re-parsing the
    JSON text columns by hand. Millisecond precision is what the tables keep, so a news `ts`
    with microseconds comes back rounded down to the millisecond.
    """
    r = dict(row)
    r.pop("ts", None)
    r.pop("run_id", None)  # the run that wrote the row, not part of the message
    if table == "decisions":
        for key in ("triggers", "features", "rounds", "orders", "fills", "portfolio_before"):
            r[key] = _loads(r[key])
        for key in ("trigger_names", "n_rounds", "n_orders", "n_fills"):
            r.pop(key, None)
        return DecisionRecord.model_validate(r)
    if table == "gpt_calls":
        # `detail` is plain text here, not the JSON mapping it is in signals.
        return GptCall.model_validate(r)
    if table == "strategies":
        # `spec` stays the JSON text it was written as (the model keeps it as a string).
        return StrategyRecord.model_validate(r)
    if table == "news":
        common = {"id": r["id"], "ts": ms_to_datetime(int(r["ts_ms"])), "symbols": r["symbols"]}
        if r["kind"] == "social":
            return SocialPost.model_validate({**common, "text": r["text"], "author": r["source"]})
        return NewsItem.model_validate(
            {**common, "headline": r["headline"], "body": r["text"], "source": r["source"]}
        )
    simple: dict[str, type[BaseModel]] = {
        "ticks": StoredTick,
        "bars": Bar,
        "signals": Signal,
        "orders": Order,
        "fills": Fill,
        "positions": PositionSnapshot,
        "alerts": Alert,
        "dead_letters": DeadLetter,
        "control_log": ControlAck,
    }
    model = simple.get(table)
    if model is None:
        raise ValueError(f"unknown table {table!r}")
    for key in ("detail", "context"):
        if key in r:
            r[key] = _loads(r[key])
    return model.model_validate(r)
