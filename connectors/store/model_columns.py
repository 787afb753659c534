"""The decision log's tables written from their models as Arrow tables (pure: no I/O): the
engine parses no JSON (a decision's ~3 KB of nested parts, an order's line) and Python builds
no text per value.

`MODEL_TABLES` maps a model type to the builder of its table from a batch of such models, and
the fewest rows the builder is worth it for (an Arrow insert costs ~0.8 ms more than a JSON
one). The values are exactly the row path's (`connectors.store.rows.model_to_row`): strings
as they are (a `StrEnum` member is the str of its value), decimals through `decimal_array`
(exact, or rounded half-even to the scale as the row path's text is), nested parts as their
JSON text (a decision's from `decision_parts`, shared with its Kafka message; an alert's
context and a signal's detail as `json_text`), a signal's strength as its double. A batch a
builder cannot write (a value Arrow cannot carry, one the rows refuse) gives None: the caller
writes its lines or rows, which store it or refuse it with the row path's own error, in the
row path's order. tests/integration/test_store_lines.py compares both with the rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from typing import Any, Final

import pyarrow as pa

from connectors.store.columns import DECIMAL_TYPE, decimal_array
from connectors.store.rows import DECIMAL_SCALE, DECISION_NESTED, decision_parts, json_text
from models.core.messages import Alert, DecisionRecord, Fill, Order, Signal

DECISION_FIELDS: Final = (
    "decision_id",
    "ts_ms",
    "symbol",
    "branch",
    "status",
    "trigger_names",
    "n_rounds",
    "n_orders",
    "n_fills",
    "note",
    "version",
    *DECISION_NESTED,
    "run_id",
)
"""The decisions table's stored columns."""


_QUANTUM: Final = Decimal(1).scaleb(-DECIMAL_SCALE)
_ROUND_CTX: Final = Context(prec=100, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation])
"""Rounding to the column scale as the row path's text rounds (`decimal_array` too)."""


def _run_column(run_id: str, n: int) -> Any:
    return pa.repeat(pa.scalar(run_id, pa.string()), n)


def _optional_decimals(values: Sequence[Decimal | None]) -> Any:
    """`decimal_array` of a Nullable column (None stays NULL)."""
    try:
        return pa.array(values, DECIMAL_TYPE)
    except (pa.ArrowException, TypeError, OverflowError):
        pass
    quantum, ctx = _QUANTUM, _ROUND_CTX
    return pa.array(
        [None if v is None else v.quantize(quantum, context=ctx) for v in values], DECIMAL_TYPE
    )


def _from_rows(rows: list[tuple[Any, ...]], kinds: Sequence[Any], run_id: str) -> list[Any]:
    """Row tuples (one pass over the models, no `.value` per enum: a `StrEnum` member is the
    str of its value) as Arrow arrays, one per `kinds` entry (an Arrow type, or a function of
    the column's values such as `decimal_array`), and the run id's column."""
    arrays = [
        pa.array(column, kind) if isinstance(kind, pa.DataType) else kind(column)
        for column, kind in zip(zip(*rows, strict=True), kinds, strict=True)
    ]
    return [*arrays, _run_column(run_id, len(rows))]


_S: Final = pa.string()
_DECISION_KINDS: Final = (
    _S,
    pa.int64(),
    _S,
    _S,
    _S,
    pa.list_(_S),
    pa.uint32(),
    pa.uint32(),
    pa.uint32(),
    _S,
    pa.uint64(),
    *(pa.binary() for _ in DECISION_NESTED),
)
_BINARY: Final = pa.binary()


def decisions_table(
    models: Sequence[DecisionRecord], run_id: str, *, as_merged: bool = False
) -> Any:
    """The Arrow table of decisions' rows, the values `model_to_row` gives: the nested parts
    their JSON text (as bytes: the UTF-8 the engine stores; `decision_parts`, shared with
    the Kafka message), the rest as they are. None when a decision's parts are not to be had
    (the caller writes lines) or a value does not fit its column's Arrow type (the lines
    refuse it as the row path does).

    `as_merged`: only the rows the engine keeps of this batch as one insert (`merged_rows`):
    every row's values are still converted (a value one of them cannot hold refuses the batch
    as before), but the ~3 KB of nested JSON of a decision's earlier versions is neither copied
    nor sent for the engine to parse and drop."""
    if not models:
        return None
    rows: list[tuple[Any, ...]] = []
    parts: list[tuple[bytes, ...]] = []
    for m in models:
        got = decision_parts(m)
        if got is None:
            return None
        parts.append(got)
        triggers = m.triggers
        rows.append(
            (
                m.decision_id,
                m.ts_ms,
                m.symbol,
                m.branch,
                m.status,
                [s.trigger for s in triggers] if triggers else [],
                len(m.rounds),
                len(m.orders),
                len(m.fills),
                m.note,
                m.version,
            )
        )
    try:
        flat = _from_rows(rows, _DECISION_KINDS[: len(rows[0])], run_id)
        kept = merged_rows(models) if as_merged else None  # every version an int of UInt64
        if kept is not None:
            index = pa.array(kept, pa.int64())
            flat = [column.take(index) for column in flat]
            parts = [parts[i] for i in kept]
        nested = [pa.array(column, _BINARY) for column in zip(*parts, strict=True)]
    except (pa.ArrowException, OverflowError, TypeError, UnicodeError):
        return None
    arrays = [*flat[:-1], *nested, flat[-1]]
    return pa.Table.from_arrays(arrays, names=list(DECISION_FIELDS))


def merged_rows(models: Sequence[DecisionRecord]) -> list[int] | None:
    """The rows of `models` that a `ReplacingMergeTree(version)` table ordered by
    `decision_id` (the decisions table, within one run) keeps of them inserted as one block:
    of the rows with the same id, the highest version, the last of equal ones (the engine's
    merge on insert, `optimize_on_insert`). Their indices in order, or None when it keeps
    every row. tests/integration/test_store_lines.py checks it against the engine."""
    latest: dict[str, int] = {}
    for i, m in enumerate(models):
        j = latest.get(m.decision_id)
        if j is None or m.version >= models[j].version:
            latest[m.decision_id] = i
    if len(latest) == len(models):
        return None
    return sorted(latest.values())


_ARROW_REFUSALS: Final = (pa.ArrowException, OverflowError, TypeError, UnicodeError, ValueError)
"""What a builder below takes as "not as columns": the caller writes the batch's lines, which
store what the rows store or refuse it with the row path's own error, in the row path's order
(a column-wise refusal could name another value first)."""


ORDER_FIELDS: Final = (
    "client_order_id",
    "decision_id",
    "symbol",
    "side",
    "quantity",
    "order_type",
    "status",
    "placed_ms",
    "updated_ms",
    "reason",
    "version",
    "size_fraction",
    "run_id",
)
_ORDER_KINDS: Final = (
    *(_S, _S, _S, _S, decimal_array, _S, _S),
    *(pa.int64(), pa.int64(), _S, pa.uint64(), _optional_decimals),
)


def orders_table(models: Sequence[Order], run_id: str) -> Any:
    """The Arrow table of orders' rows (`model_to_row`'s values), or None (`_ARROW_REFUSALS`)."""
    rows = [
        (
            m.client_order_id,
            m.decision_id,
            m.symbol,
            m.side,
            m.quantity,
            m.order_type,
            m.status,
            m.placed_ms,
            m.updated_ms,
            m.reason,
            m.version,
            m.size_fraction,
        )
        for m in models
    ]
    return _table(rows, _ORDER_KINDS, ORDER_FIELDS, run_id)


def _table(rows: list[tuple[Any, ...]], kinds: Any, names: Sequence[str], run_id: str) -> Any:
    if not rows:
        return None
    try:
        return pa.Table.from_arrays(_from_rows(rows, kinds, run_id), names=list(names))
    except _ARROW_REFUSALS:
        return None


FILL_FIELDS: Final = (
    "fill_id",
    "client_order_id",
    "decision_id",
    "symbol",
    "side",
    "quantity",
    "price",
    "fee",
    "ts_ms",
    "run_id",
)
_FILL_KINDS: Final = (_S, _S, _S, _S, _S, decimal_array, decimal_array, decimal_array, pa.int64())


def fills_table(models: Sequence[Fill], run_id: str) -> Any:
    """The Arrow table of fills' rows, or None (`_ARROW_REFUSALS`)."""
    rows = [
        (
            m.fill_id,
            m.client_order_id,
            m.decision_id,
            m.symbol,
            m.side,
            m.quantity,
            m.price,
            m.fee,
            m.ts_ms,
        )
        for m in models
    ]
    return _table(rows, _FILL_KINDS, FILL_FIELDS, run_id)


ALERT_FIELDS: Final = ("alert_id", "ts_ms", "severity", "source", "message", "context", "run_id")
_ALERT_KINDS: Final = (_S, pa.int64(), _S, _S, _S, _S)


def alerts_table(models: Sequence[Alert], run_id: str) -> Any:
    """The Arrow table of alerts' rows (the context as `json_text`), or None."""
    try:
        rows = [
            (m.alert_id, m.ts_ms, m.severity, m.source, m.message, json_text(m.context))
            for m in models
        ]
    except _ARROW_REFUSALS:
        return None
    return _table(rows, _ALERT_KINDS, ALERT_FIELDS, run_id)


SIGNAL_FIELDS: Final = (
    "symbol",
    "ts_ms",
    "trigger",
    "kind",
    "direction",
    "strength",
    "strategic",
    "detail",
    "run_id",
)
_SIGNAL_KINDS: Final = (_S, pa.int64(), _S, _S, _S, pa.float64(), pa.bool_(), _S)


def signals_table(models: Sequence[Signal], run_id: str) -> Any:
    """The Arrow table of signals' rows (the strength as the double it is, NaN and infinities
    included, which the row path writes as the text the engine parses back to them; the
    detail as `json_text`), or None."""
    try:
        rows = [
            (
                m.symbol,
                m.ts_ms,
                m.trigger,
                m.kind,
                m.direction,
                m.strength,
                m.strategic,
                json_text(m.detail),
            )
            for m in models
        ]
    except _ARROW_REFUSALS:
        return None
    return _table(rows, _SIGNAL_KINDS, SIGNAL_FIELDS, run_id)


MODEL_TABLES: Final[dict[type, tuple[Any, int]]] = {
    DecisionRecord: (decisions_table, 1),
    Order: (orders_table, 200),
    Fill: (fills_table, 200),
    Alert: (alerts_table, 200),
    Signal: (signals_table, 200),
}
"""Model type -> (builder of its table's Arrow table from a batch of such models, the fewest
rows it is used for). An Arrow insert costs ~0.8 ms more than a JSON one (chdb's streaming
insert), and saves ~4 µs a row (the engine's JSON parse, the line's text), a decision's ~15:
a smaller batch goes as lines (or rows); so does one a builder refuses (None)."""
