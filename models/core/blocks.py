"""Runs of bars as columns: how a backtest's million bars cross the flow without a million
objects each way.

Per bar, the flow used to build a `Bar`, a `FeatureVector`, a `BarEvent` and a
`PositionSnapshot`, and to pass each through every step; at ~100 µs a bar that caps a backtest
near 10,000 bars/s, however fast each step is. A block carries a run of consecutive closed bars
of one symbol, from one partition, as columns, and every step handles the run at once where it
can prove the result is the same as bar by bar:
- `BarColumns`: the closed bars themselves (what `Bar` holds), for the bars table and the desk;
- `FeatureColumns`: the features at each bar's close (what `FeatureVector.values` holds, None
  as NaN: a feature value is never NaN or inf, `models.signals.features` makes those None);
- `BarBlock`: both, with the few bars that fired a trigger (their signals and branch) and each
  bar's place in the desk's merge (`clock_ms`, `seq`), as `BarEvent` has them;
- `PositionColumns`: the position snapshots of a run of bars in which the book did not move
  (quantity, cost, realised P&L and cash the same; only the mark changes).

The contract, stated once: a block is exactly the sequence of per-bar items it stands for.
`BarBlock.events()`, `BarColumns.bars()` and `PositionColumns.rows()` give those items, equal
(field for field, type for type) to what the per-bar path makes, so any step that cannot use
the columns expands them and runs as before. Tests compare the two paths on generated input.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from operator import itemgetter
from typing import Any, Final

import numpy as np

from models.core.events import BarEvent
from models.core.messages import Bar, Branch, FeatureVector, PositionSnapshot, Signal
from models.core.packed import (
    CLOSE,
    HIGH,
    LOW,
    OPEN,
    PRICE_FIELDS,
    VOLUME,
    BarFloats,
    Floats,
    PackedBars,
    vwap_columns,
    vwap_decimal,
    vwap_decimals,
)
from models.core.trusted import frozen_maker, trusted

_bar_event = frozen_maker(BarEvent)  # `BarEvent(...)`, its fields in order


_COLUMNS: Final = (
    "start_ms",
    "end_ms",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "trades",
    "vwap",
)
"""`Bar`'s fields after the symbol, in order: the columns of a `BarColumns`."""
_TEXT_KEYS: Final = tuple(f"text:{k}" for k in range(len(PRICE_FIELDS)))


class BarColumns:
    """Consecutive closed bars of one symbol, oldest first, as columns of `Bar`'s fields.

    Two forms with one interface. Built from lists (`BarColumns(symbol, start_ms, ...)`,
    `of_bars`), it holds them. Built by ingest from a batch (`packed`: `PackedBars`, Arrow
    and numpy columns), it makes each list the first time it is read (`close` for the desk's
    marks, all of them for `bars()`) and `bar(i)` makes only bar i's values; the store and
    the kernels read the packed columns themselves (`packed`, `floats`, `vwap_floats()`).
    Either way the lists are those of the per-bar path's `Bar`s, Decimal digits included.

    `floats`, when given, holds the float of some columns (`BarFloats`): derived data, so it
    takes no part in equality or repr, and it is left out of a pickle of the list form (a
    reader converts). Equality and repr are those of the lists (a dataclass's)."""

    __slots__ = ("_lists", "_vwap", "floats", "packed", "symbol")

    symbol: str
    packed: PackedBars | None
    floats: BarFloats | None
    _lists: dict[str, list[Any]]
    _vwap: tuple[Any, Floats] | bool | None  # `vwap_columns`' answer; False: not asked yet

    def __init__(
        self,
        symbol: str,
        start_ms: list[int],
        end_ms: list[int],
        open: list[Decimal],
        high: list[Decimal],
        low: list[Decimal],
        close: list[Decimal],
        volume: list[Decimal],
        trades: list[int],
        vwap: list[Decimal],
        floats: BarFloats | None = None,
    ) -> None:
        self.symbol = symbol
        self.packed = None
        self.floats = floats
        self._vwap = False
        values = (start_ms, end_ms, open, high, low, close, volume, trades, vwap)
        self._lists = dict(zip(_COLUMNS, values, strict=True))

    @classmethod
    def of_packed(cls, symbol: str, packed: PackedBars) -> BarColumns:
        """The bars of `packed` (ingest's columns of a batch), lists made when read."""
        cols = cls.__new__(cls)
        cols.symbol = symbol
        cols.packed = packed
        cols.floats = packed.floats
        cols._vwap = False
        cols._lists = {}
        return cols

    def _list(self, name: str) -> list[Any]:
        got = self._lists.get(name)
        if got is None:
            got = self._lists[name] = self._make(name)
        return got

    def _make(self, name: str) -> list[Any]:
        """A column of the packed form as the list form holds it."""
        packed = self.packed
        assert packed is not None  # the list form has every list
        if name == "start_ms":
            return packed.start_ms.tolist()  # type: ignore[no-any-return]
        if name == "end_ms":
            return packed.end_ms.tolist()  # type: ignore[no-any-return]
        if name == "trades":
            return [1] * len(packed)
        if name == "vwap":
            return vwap_decimals(self.high, self.low, self.close, self.volume)
        return list(map(Decimal, self._texts(PRICE_FIELDS.index(name))))

    def _texts(self, k: int) -> list[str]:
        key = _TEXT_KEYS[k]
        got = self._lists.get(key)
        if got is None:
            assert self.packed is not None
            got = self._lists[key] = self.packed.texts(k)
        return got

    @property
    def start_ms(self) -> list[int]:
        return self._list("start_ms")

    @property
    def end_ms(self) -> list[int]:
        return self._list("end_ms")

    @property
    def open(self) -> list[Decimal]:
        return self._list("open")

    @property
    def high(self) -> list[Decimal]:
        return self._list("high")

    @property
    def low(self) -> list[Decimal]:
        return self._list("low")

    @property
    def close(self) -> list[Decimal]:
        return self._list("close")

    @property
    def volume(self) -> list[Decimal]:
        return self._list("volume")

    @property
    def trades(self) -> list[int]:
        return self._list("trades")

    @property
    def vwap(self) -> list[Decimal]:
        return self._list("vwap")

    def __len__(self) -> int:
        packed = self.packed
        return len(packed) if packed is not None else len(self._lists["end_ms"])

    def _fields(self) -> tuple[Any, ...]:
        return (self.symbol, *(self._list(name) for name in _COLUMNS))

    def __eq__(self, other: object) -> bool:
        if type(other) is not BarColumns:
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None  # type: ignore[assignment]  # mutable lists inside, as the dataclass was

    def __repr__(self) -> str:
        names = ("symbol", *_COLUMNS)
        body = ", ".join(f"{n}={v!r}" for n, v in zip(names, self._fields(), strict=True))
        return f"BarColumns({body})"

    def __getstate__(self) -> list[Any]:
        """The list form as the dataclass pickled it, without the derived `floats`; the packed
        form as its columns (buffers: no object per bar)."""
        if self.packed is not None:
            return [self.symbol, self.packed]
        return [self.symbol, *(self._lists[name] for name in _COLUMNS), None]

    def __setstate__(self, state: list[Any]) -> None:
        self.symbol = state[0]
        self._vwap = False
        self.floats = None
        if len(state) == 2:
            self.packed = state[1]
            self.floats = state[1].floats
            self._lists = {}
        else:
            self.packed = None
            self._lists = dict(zip(_COLUMNS, state[1:10], strict=True))

    def bar(self, i: int) -> Bar:
        """Bar `i` as the per-bar path builds it (unvalidated: every value is the flow's own).
        Of the packed form, only this bar's values are made when a list is not there yet
        (an acting bar among quiet ones)."""
        lists = self._lists
        packed = self.packed
        if packed is None:
            return trusted(
                Bar,
                {
                    "symbol": self.symbol,
                    "start_ms": lists["start_ms"][i],
                    "end_ms": lists["end_ms"][i],
                    "open": lists["open"][i],
                    "high": lists["high"][i],
                    "low": lists["low"][i],
                    "close": lists["close"][i],
                    "volume": lists["volume"][i],
                    "trades": lists["trades"][i],
                    "vwap": lists["vwap"][i],
                },
            )
        # Only this bar's Decimals, from the texts, where a list is not made yet.
        texts = self._texts
        made = lists.get("open")
        o = made[i] if made is not None else Decimal(texts(OPEN)[i])
        made = lists.get("high")
        h = made[i] if made is not None else Decimal(texts(HIGH)[i])
        made = lists.get("low")
        lo = made[i] if made is not None else Decimal(texts(LOW)[i])
        made = lists.get("close")
        c = made[i] if made is not None else Decimal(texts(CLOSE)[i])
        made = lists.get("volume")
        v = made[i] if made is not None else Decimal(texts(VOLUME)[i])
        made = lists.get("vwap")
        ends = lists.get("end_ms")
        starts = lists.get("start_ms")
        return trusted(
            Bar,
            {
                "symbol": self.symbol,
                "start_ms": starts[i] if starts is not None else int(packed.start_ms[i]),
                "end_ms": ends[i] if ends is not None else int(packed.end_ms[i]),
                "open": o,
                "high": h,
                "low": lo,
                "close": c,
                "volume": v,
                "trades": 1,
                "vwap": made[i] if made is not None else vwap_decimal(h, lo, c, v),
            },
        )

    def bars(self) -> list[Bar]:
        for name in _COLUMNS:  # every list at once: cheaper than bar by bar
            self._list(name)
        return [self.bar(i) for i in range(len(self))]

    def vwap_floats(self) -> Floats:
        """`float()` of each vwap, bit for bit (`models.core.packed.vwap_columns`)."""
        arrays = self.vwap_arrays()
        if arrays is not None:
            return arrays[1]
        return np.fromiter(map(float, self.vwap), np.float64, len(self))

    def vwap_arrays(self) -> tuple[Any, Floats] | None:
        """The packed form's vwap as the bars table stores it and as floats
        (`vwap_columns`), or None: read the Decimals (`vwap`)."""
        got = self._vwap
        if got is False:
            got = self._vwap = None if self.packed is None else vwap_columns(self.packed)
        return got  # type: ignore[return-value]

    def slice(self, lo: int, hi: int) -> BarColumns:
        packed = self.packed
        if packed is None:
            lists = self._lists
            return BarColumns(
                self.symbol,
                lists["start_ms"][lo:hi],
                lists["end_ms"][lo:hi],
                lists["open"][lo:hi],
                lists["high"][lo:hi],
                lists["low"][lo:hi],
                lists["close"][lo:hi],
                lists["volume"][lo:hi],
                lists["trades"][lo:hi],
                lists["vwap"][lo:hi],
                None if self.floats is None else self.floats.slice(lo, hi),
            )
        part = BarColumns.of_packed(self.symbol, packed.slice(lo, hi))
        for name, values in self._lists.items():  # what was made already stays made
            part._lists[name] = values[lo:hi]
        got = self._vwap
        if got is not False:
            part._vwap = None if got is None else (got[0][lo:hi], got[1][lo:hi])  # type: ignore[index]
        return part

    @classmethod
    def of_bars(cls, bars: Sequence[Bar]) -> BarColumns:
        """The columns of `bars` (one symbol, at least one bar)."""
        return cls(
            bars[0].symbol,
            [b.start_ms for b in bars],
            [b.end_ms for b in bars],
            [b.open for b in bars],
            [b.high for b in bars],
            [b.low for b in bars],
            [b.close for b in bars],
            [b.volume for b in bars],
            [b.trades for b in bars],
            [b.vwap for b in bars],
        )


class FeatureColumns:
    """The features of consecutive bars: `rows[i][j]` is feature `names[j]` at bar i's close,
    NaN where the per-bar vector has None. Rows are tuples of floats (cheap to index one at a
    time, which is how the desk reads them).

    Built by the feature kernels from a matrix (`of_matrix`: one float64 row per bar), it
    keeps the matrix, makes the rows when first read, gives a feature's column without them
    (`column`) and pickles as the matrix. Equality and repr are the rows' (a dataclass's)."""

    __slots__ = ("_matrix", "_rows", "names")

    names: tuple[str, ...]
    _rows: list[tuple[float, ...]] | None
    _matrix: Floats | None

    def __init__(self, names: tuple[str, ...], rows: list[tuple[float, ...]]) -> None:
        self.names = names
        self._rows = rows
        self._matrix = None

    @classmethod
    def of_matrix(cls, names: tuple[str, ...], matrix: Floats) -> FeatureColumns:
        """`matrix[i, j]`: feature `names[j]` at bar i (NaN where None)."""
        cols = cls.__new__(cls)
        cols.names = names
        cols._rows = None
        cols._matrix = matrix
        return cols

    @property
    def rows(self) -> list[tuple[float, ...]]:
        rows = self._rows
        if rows is None:
            assert self._matrix is not None
            rows = self._rows = list(map(tuple, self._matrix.tolist()))
        return rows

    @property
    def matrix(self) -> Floats | None:
        """The matrix the kernels made, if the columns came from them."""
        return self._matrix

    def __len__(self) -> int:
        matrix = self._matrix
        return len(matrix) if matrix is not None else len(self.rows)

    def column(self, j: int) -> Floats:
        """Feature `names[j]` at every bar (NaN where None)."""
        matrix = self._matrix
        if matrix is not None:
            return matrix[:, j]
        return np.fromiter(map(itemgetter(j), self.rows), np.float64, len(self))

    def value(self, i: int, j: int) -> float:
        """`rows[i][j]`, without making the rows."""
        rows = self._rows
        if rows is not None:
            return rows[i][j]
        assert self._matrix is not None
        return float(self._matrix[i, j])

    def values(self, i: int) -> dict[str, float | None]:
        """Row `i` as `FeatureVector.values` (NaN back to None: a float unequal to itself)."""
        rows = self._rows
        row = rows[i] if rows is not None else self._matrix[i].tolist()  # type: ignore[index]
        names = self.names  # every row has a value of each
        return {name: (None if v != v else v) for name, v in zip(names, row, strict=True)}

    def vector(self, i: int, symbol: str, ts_ms: int, close: float) -> FeatureVector:
        return trusted(
            FeatureVector,
            {"symbol": symbol, "ts_ms": ts_ms, "close": close, "values": self.values(i)},
        )

    def slice(self, lo: int, hi: int) -> FeatureColumns:
        matrix = self._matrix
        if matrix is None:
            return FeatureColumns(self.names, self.rows[lo:hi])
        part = FeatureColumns.of_matrix(self.names, matrix[lo:hi])
        if self._rows is not None:
            part._rows = self._rows[lo:hi]
        return part

    def __eq__(self, other: object) -> bool:
        if type(other) is not FeatureColumns:
            return NotImplemented
        return (self.names, self.rows) == (other.names, other.rows)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FeatureColumns(names={self.names!r}, rows={self.rows!r})"

    def __getstate__(self) -> tuple[Any, ...]:
        """The matrix when there is one (one buffer), else the rows."""
        matrix = self._matrix
        if matrix is not None:
            return (self.names, None, np.ascontiguousarray(matrix))
        return (self.names, self._rows, None)

    def __setstate__(self, state: Sequence[Any]) -> None:
        if len(state) == 2:  # pickled as the dataclass it was: (names, rows)
            state = (*state, None)
        self.names, self._rows, self._matrix = state

    @classmethod
    def of_vectors(cls, names: tuple[str, ...], vectors: Sequence[FeatureVector]) -> FeatureColumns:
        nan = math.nan
        return cls(
            names,
            [tuple(nan if (v := fv.values[n]) is None else v for n in names) for fv in vectors],
        )


_SIGNAL_FIELDS: Final = tuple(Signal.model_fields)


def _signal_state(signal: Signal) -> tuple[Any, ...] | Signal:
    """A signal's field values in order, when it holds all of them as set (as triggers make
    them); else the signal itself."""
    if len(signal.__pydantic_fields_set__) != len(_SIGNAL_FIELDS):  # a default left unset
        return signal
    return tuple(map(signal.__dict__.__getitem__, _SIGNAL_FIELDS))


def _signal_of(state: tuple[Any, ...] | Signal) -> Signal:
    if type(state) is not tuple:
        return state  # type: ignore[return-value]
    return trusted(Signal, dict(zip(_SIGNAL_FIELDS, state, strict=True)))


@dataclass(frozen=True, slots=True)
class BarBlock:
    """Consecutive closed bars of one symbol from one partition, with what ingest made of each:
    the per-bar `BarEvent`s as columns. Bar i's place in the desk's merge is
    `(clock_ms[i], partition, first_seq + i)`; `signals` and `branches` hold only the bars that
    fired a trigger (most bars fire none)."""

    bars: BarColumns
    features: FeatureColumns
    signals: dict[int, list[Signal]]
    branches: dict[int, Branch]
    partition: str
    clock_ms: list[int]
    first_seq: int

    def __len__(self) -> int:
        return len(self.bars)

    def __getstate__(self) -> tuple[Any, ...]:
        """The fields, with the clock as one int64 buffer and each signal as its field values
        (a pydantic model pickles as several dicts and sets: ~3 µs a signal); a block crosses
        to the desk's process this way (dataflows on two processes)."""
        return (
            self.bars,
            self.features,
            [(i, [_signal_state(s) for s in sigs]) for i, sigs in self.signals.items()],
            self.branches,
            self.partition,
            np.array(self.clock_ms, np.int64),
            self.first_seq,
        )

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        bars, features, signals, branches, partition, clock_ms, first_seq = state
        for name, value in (
            ("bars", bars),
            ("features", features),
            ("signals", {i: [_signal_of(s) for s in sigs] for i, sigs in signals}),
            ("branches", branches),
            ("partition", partition),
            ("clock_ms", clock_ms.tolist()),
            ("first_seq", first_seq),
        ):
            object.__setattr__(self, name, value)

    @property
    def symbol(self) -> str:
        return self.bars.symbol

    def seq(self, i: int) -> int:
        return self.first_seq + i

    def event(self, i: int) -> BarEvent:
        """Bar i's event, equal to the one the per-bar path emits."""
        bar = self.bars.bar(i)
        signals = self.signals.get(i)
        return _bar_event(
            bar,
            self.features.vector(i, bar.symbol, bar.end_ms, float(bar.close)),
            [] if signals is None else list(signals),
            self.branches.get(i),
            self.partition,
            self.clock_ms[i],
            self.first_seq + i,
        )

    def events(self) -> list[BarEvent]:
        return [self.event(i) for i in range(len(self))]

    def slice(self, lo: int, hi: int) -> BarBlock:
        """Bars `lo..hi-1` as a block of their own."""
        return BarBlock(
            self.bars.slice(lo, hi),
            self.features.slice(lo, hi),
            {i - lo: s for i, s in self.signals.items() if lo <= i < hi},
            {i - lo: b for i, b in self.branches.items() if lo <= i < hi},
            self.partition,
            self.clock_ms[lo:hi],
            self.first_seq + lo,
        )

    @classmethod
    def of_events(cls, names: tuple[str, ...], events: Sequence[BarEvent]) -> BarBlock:
        """The block of consecutive events of one symbol and partition (seq consecutive)."""
        first = events[0]
        return cls(
            BarColumns.of_bars([e.bar for e in events]),
            FeatureColumns.of_vectors(names, [e.features for e in events]),
            {i: list(e.signals) for i, e in enumerate(events) if e.signals},
            {i: e.branch for i, e in enumerate(events) if e.branch is not None},
            first.partition,
            [e.clock_ms for e in events],
            first.seq,
        )


@dataclass(frozen=True, slots=True)
class PositionColumns:
    """The position snapshots of one symbol over bars in which the book did not move: quantity,
    average cost, realised P&L and cash are the run's; the mark, unrealised P&L and equity are
    per bar."""

    symbol: str
    quantity: Decimal
    avg_cost: Decimal
    realized_pnl: Decimal
    cash: Decimal
    ts_ms: list[int]
    mark_price: list[Decimal]
    unrealized_pnl: list[Decimal]
    equity: list[Decimal]

    def __len__(self) -> int:
        return len(self.ts_ms)

    def row(self, i: int) -> PositionSnapshot:
        return trusted(
            PositionSnapshot,
            {
                "ts_ms": self.ts_ms[i],
                "symbol": self.symbol,
                "quantity": self.quantity,
                "avg_cost": self.avg_cost,
                "mark_price": self.mark_price[i],
                "realized_pnl": self.realized_pnl,
                "unrealized_pnl": self.unrealized_pnl[i],
                "cash": self.cash,
                "equity": self.equity[i],
            },
        )

    def rows(self) -> list[PositionSnapshot]:
        return [self.row(i) for i in range(len(self))]


Columns = BarColumns | PositionColumns
"""Rows of one table as columns (the bars table, the positions table)."""

COLUMN_TABLES: dict[type, str] = {BarColumns: "bars", PositionColumns: "positions"}


def expand_rows(rows: Sequence[Any]) -> Iterator[Any]:
    """`rows` with every column set replaced by the rows it stands for, in order."""
    for row in rows:
        if type(row) in COLUMN_TABLES:
            yield from row.rows() if type(row) is PositionColumns else row.bars()
        else:
            yield row


def count_of(rows: Sequence[Any]) -> int:
    """How many rows `rows` stands for (a column set counts its length)."""
    return sum(len(r) if type(r) in COLUMN_TABLES else 1 for r in rows)
