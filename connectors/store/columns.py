"""The per-bar tables (bars, positions) written from column sets as Arrow tables, with no row
per bar, and read back as columns (pure: no I/O).

A backtest writes a bar row and a position row per bar. As JSONEachRow text each costs ~10 µs
of Python (decimal text, string building) and the engine parses it back; from `BarColumns` /
`PositionColumns` the same values go as Arrow columns (`Decimal128(38, 12)`, `Int64`,
dictionary strings) in ~1-2 µs a row, the engine reading them without a parse.

The stored values are exactly the row path's (`connectors.store.rows`): a decimal column is
converted at once when every value is exact at the column scale and fits it (Arrow refuses
anything else rather than rounding), else value by value through the row path's own text
(`decimal_text`: rounded half-even, refused with `ValueError` when it does not fit), so a
value the log cannot hold fails the batch as it does on the row path and the sink's
row-by-row fallback replaces it with an alert. Plain `Bar` / `PositionSnapshot` rows mixed in
a batch with column sets go as one-row sets, in their place: the rows reach the engine in the
order the row path would send them.

Reading back (`python_columns`), the columns of an Arrow answer become lists of the values
`Store.query` returns (decimals at the column scale), without a dict per row.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from typing import Any, Final

import numpy as np
import pyarrow as pa

from connectors.store.rows import DECIMAL_SCALE, decimal_text
from models.core.blocks import COLUMN_TABLES, BarColumns, PositionColumns
from models.core.messages import Bar, PositionSnapshot
from models.core.packed import PRICE_FIELDS

DECIMAL_TYPE: Final = pa.decimal128(38, DECIMAL_SCALE)
"""Arrow's type of the `Decimal(38, 12)` columns: the engine takes it as it is."""

BAR_FIELDS: Final = (
    "symbol",
    "start_ms",
    "end_ms",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "trades",
    "vwap",
    "run_id",
)
"""The bars table's stored columns, in DDL order (the `ts` alias is computed)."""

POSITION_FIELDS: Final = (
    "ts_ms",
    "symbol",
    "quantity",
    "avg_cost",
    "mark_price",
    "realized_pnl",
    "unrealized_pnl",
    "cash",
    "equity",
    "run_id",
)
"""The positions table's stored columns, in DDL order."""


def decimal_array(values: Sequence[Decimal]) -> Any:
    """`values` as a `Decimal128(38, 12)` array holding what the row path stores.

    Arrow converts exactly or not at all (more places than the scale, too many digits, NaN or
    infinity raise), so the fast conversion is taken only when it is exact. Otherwise (a
    computed VWAP or P&L with more places) the values are rounded half-even to the scale
    first, as the row path's text is (`decimal_text`: the same quantize), which Arrow then
    takes exactly (~0.5 µs a value; the text costs ~5); a value that still does not fit (too
    many integer digits, NaN, infinity) sends the column through that text, which refuses it
    with the row path's `ValueError`."""
    try:
        return pa.array(values, DECIMAL_TYPE)
    except (pa.ArrowException, TypeError, OverflowError):
        pass
    try:
        quantum, ctx = _QUANTUM, _ROUND_CTX
        return pa.array([v.quantize(quantum, context=ctx) for v in values], DECIMAL_TYPE)
    except (pa.ArrowException, TypeError, OverflowError, ArithmeticError):
        texts = [decimal_text(v) for v in values]  # raises ValueError as the row path does
        return pa.array(texts, pa.string()).cast(DECIMAL_TYPE)


_QUANTUM: Final = Decimal(1).scaleb(-DECIMAL_SCALE)
_ROUND_CTX: Final = Context(prec=100, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation])
"""Rounding to the column scale as `rows._dec_quantized` rounds (wide enough never to round a
38-digit value otherwise); an invalid operation (NaN, infinity) raises."""


def _int_array(values: Sequence[int]) -> Any:
    return pa.array(values, pa.int64())


def _symbols(symbols: Sequence[str], lengths: Sequence[int]) -> Any:
    """One symbol per set, repeated over its rows, as a dictionary array."""
    names = list(dict.fromkeys(symbols))
    code = {s: i for i, s in enumerate(names)}
    indices = np.repeat(np.fromiter((code[s] for s in symbols), np.int32, len(symbols)), lengths)
    return pa.DictionaryArray.from_arrays(pa.array(indices, pa.int32()), pa.array(names))


def _run_column(run_id: str, n: int) -> Any:
    return pa.repeat(pa.scalar(run_id, pa.string()), n)


def _bar_sets(items: Sequence[Any]) -> list[BarColumns]:
    """The items as column sets: a run of plain bars of one symbol becomes one set."""
    sets: list[BarColumns] = []
    pending: list[Bar] = []
    for item in items:
        if type(item) is BarColumns:
            if pending:
                sets.append(BarColumns.of_bars(pending))
                pending = []
            if len(item):
                sets.append(item)
        elif isinstance(item, Bar):
            if pending and pending[0].symbol != item.symbol:
                sets.append(BarColumns.of_bars(pending))
                pending = []
            pending.append(item)
        else:
            raise TypeError(f"{type(item).__name__} belongs in another table than 'bars'")
    if pending:
        sets.append(BarColumns.of_bars(pending))
    return sets


def bars_table(items: Sequence[Any], run_id: str) -> Any:
    """The Arrow table of `items` (`BarColumns` and `Bar`s, in order) for the bars table.

    A set read from a batch (`BarColumns.packed`) gives its decimal128 and int64 columns as
    they are and its vwap as `vwap_columns` computes it (the Decimal steps rounded as the row
    path rounds them, proven equal there); a set of lists is converted value by value."""
    sets = _bar_sets(items)
    parts: dict[str, list[Any]] = {name: [] for name in BAR_FIELDS[1:-1]}
    pending: list[BarColumns] = []  # consecutive list sets: converted together

    def flush() -> None:
        if not pending:
            return
        parts["start_ms"].append(_int_array([t for s in pending for t in s.start_ms]))
        parts["end_ms"].append(_int_array([t for s in pending for t in s.end_ms]))
        parts["trades"].append(_int_array([t for s in pending for t in s.trades]))
        for name in ("open", "high", "low", "close", "volume", "vwap"):
            parts[name].append(decimal_array([v for s in pending for v in getattr(s, name)]))
        pending.clear()

    for s in sets:
        packed = s.packed
        if packed is None:
            pending.append(s)
            continue
        flush()
        parts["start_ms"].append(pa.array(packed.start_ms, pa.int64()))
        parts["end_ms"].append(pa.array(packed.end_ms, pa.int64()))
        parts["trades"].append(pa.repeat(pa.scalar(1, pa.int64()), len(packed)))
        for k, name in enumerate(PRICE_FIELDS):
            parts[name].append(packed.dec[k])
        vwap = s.vwap_arrays()
        parts["vwap"].append(decimal_array(s.vwap) if vwap is None else vwap[0])
    flush()
    n = sum(len(s) for s in sets)
    arrays = [
        _symbols([s.symbol for s in sets], [len(s) for s in sets]),
        *(_concat(parts[name], name) for name in BAR_FIELDS[1:-1]),
        _run_column(run_id, n),
    ]
    return pa.Table.from_arrays(arrays, names=list(BAR_FIELDS))


def _concat(arrays: list[Any], name: str) -> Any:
    if not arrays:
        return pa.array([], DECIMAL_TYPE if name not in _INT_FIELDS else pa.int64())
    return arrays[0] if len(arrays) == 1 else pa.concat_arrays(arrays)


_INT_FIELDS: Final = frozenset(("start_ms", "end_ms", "trades"))


def positions_table(items: Sequence[Any], run_id: str) -> Any:
    """The Arrow table of `items` (`PositionColumns` and `PositionSnapshot`s, in order) for the
    positions table. A set's constant columns are converted once and repeated; so are its
    unrealised P&L and equity when they do not move over it (a flat book: every bar's equity
    is the cash), each value converted once. A snapshot is a set of one row (its values taken
    as they are, no set built)."""
    symbols: list[str] = []
    quantity: list[Decimal] = []
    avg_cost: list[Decimal] = []
    realized: list[Decimal] = []
    cash: list[Decimal] = []
    lengths: list[int] = []
    ts: list[int] = []
    mark: list[Decimal] = []
    unrealized = _Spread()
    equity = _Spread()
    for item in items:
        if type(item) is PositionColumns:
            n = len(item)
            if not n:
                continue
            lengths.append(n)
            ts += item.ts_ms
            mark += item.mark_price
            unrealized.add(item.unrealized_pnl, n)
            equity.add(item.equity, n)
        elif isinstance(item, PositionSnapshot):
            lengths.append(1)
            ts.append(item.ts_ms)
            mark.append(item.mark_price)
            unrealized.one(item.unrealized_pnl)
            equity.one(item.equity)
        else:
            raise TypeError(f"{type(item).__name__} belongs in another table than 'positions'")
        symbols.append(item.symbol)
        quantity.append(item.quantity)
        avg_cost.append(item.avg_cost)
        realized.append(item.realized_pnl)
        cash.append(item.cash)
    spread = pa.array(np.repeat(np.arange(len(lengths), dtype=np.int32), lengths), pa.int32())

    def constant(values: list[Decimal]) -> Any:
        return decimal_array(values).take(spread)

    arrays = [
        _int_array(ts),
        _symbols(symbols, lengths),
        constant(quantity),
        constant(avg_cost),
        decimal_array(mark),
        constant(realized),
        unrealized.array(lengths),
        constant(cash),
        equity.array(lengths),
        _run_column(run_id, len(ts)),
    ]
    return pa.Table.from_arrays(arrays, names=list(POSITION_FIELDS))


class _Spread:
    """A per-row decimal column made of sets' runs, a run that holds one value throughout kept
    as that value once (converted once, repeated by `take`): the same values as converting
    every row's, since equal decimals are stored alike (and an unstorable value is kept, so
    it is refused all the same)."""

    __slots__ = ("steps", "values")

    _SHORTEST = 8
    """Runs shorter than this are kept whole (comparing them costs about what it saves)."""

    def __init__(self) -> None:
        self.values: list[Decimal] = []
        self.steps: list[int] = []  # per run: 1, its values are the next ones; 0, one value

    def add(self, run: list[Decimal], n: int) -> None:
        if n >= self._SHORTEST and run.count(run[0]) == n:
            self.values.append(run[0])
            self.steps.append(0)
        else:
            self.values += run
            self.steps.append(1)

    def one(self, value: Decimal) -> None:
        self.values.append(value)
        self.steps.append(1)

    def array(self, lengths: list[int]) -> Any:
        converted = decimal_array(self.values)
        if len(converted) == sum(lengths):  # every run whole
            return converted
        steps = np.array(self.steps, np.int64)
        counts = np.array(lengths, np.int64)
        taken = np.where(steps == 1, counts, 1)  # values each run took
        first = np.cumsum(taken) - taken  # its first value's index
        starts = np.cumsum(counts) - counts  # its first row
        rows = np.arange(int(counts.sum()), dtype=np.int64)
        index = np.repeat(first, counts) + (rows - np.repeat(starts, counts)) * np.repeat(
            steps, counts
        )
        return converted.take(pa.array(index, pa.int64()))


TABLE_BUILDERS: Final = {"bars": bars_table, "positions": positions_table}
"""Table -> builder of its Arrow table from column sets and rows."""


def has_columns(rows: Sequence[Any]) -> bool:
    """Whether `rows` hold a column set (then the columnar path writes them): the rows' few
    types, gathered in C, not a test per row."""
    return not COLUMN_TABLES.keys().isdisjoint(set(map(type, rows)))


def arrow_stream(table: Any) -> bytes:
    """The table as Arrow IPC stream bytes (`FORMAT ArrowStream`)."""
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


# --------------------------------------------------------------------------------------------
# Reading back: Arrow columns as the Python values `Store.query` gives
# --------------------------------------------------------------------------------------------

_SCALE_CTX: Final = Context(prec=100)


def decimal_values(column: Any) -> list[Decimal]:
    """A decimal Arrow column as `Decimal`s at the column's scale, the values (and exponents)
    `Store.query` returns. pyarrow's own conversion costs ~4 µs a value; here each distinct
    unscaled integer that fits 64 bits is made a `Decimal` once (prices repeat), anything else
    takes pyarrow's conversion."""
    scale = -int(column.type.scale)
    out: list[Decimal] = []
    for chunk in column.chunks if isinstance(column, pa.ChunkedArray) else [column]:
        n, offset = len(chunk), chunk.offset
        if not n:
            continue
        if chunk.null_count or chunk.type.byte_width != 16:
            out += chunk.to_pylist()
            continue
        words = np.frombuffer(chunk.buffers()[1], np.int64, 2 * (offset + n))[2 * offset :]
        low, high = words[0::2], words[1::2]
        if not np.array_equal(high, low >> 63):  # beyond 64 bits
            out += chunk.to_pylist()
            continue
        distinct, index = np.unique(low, return_inverse=True)
        values = [Decimal(int(u)).scaleb(scale, _SCALE_CTX) for u in distinct.tolist()]
        out += [values[i] for i in index.tolist()]
    return out


def read_arrow(body: bytes) -> Any:
    """The Arrow table of a `FORMAT Arrow` answer (an Arrow IPC file)."""
    return pa.ipc.open_file(pa.py_buffer(body)).read_all()


def python_columns(table: Any) -> dict[str, list[Any]]:
    """An Arrow table's columns as lists of Python values (`Decimal`, int, str, ...)."""
    return {
        name: decimal_values(col) if pa.types.is_decimal(col.type) else col.to_pylist()
        for name, col in zip(table.column_names, table.columns, strict=True)
    }


__all__ = [
    "BAR_FIELDS",
    "DECIMAL_TYPE",
    "POSITION_FIELDS",
    "TABLE_BUILDERS",
    "arrow_stream",
    "bars_table",
    "decimal_array",
    "decimal_values",
    "has_columns",
    "positions_table",
    "python_columns",
    "read_arrow",
]
