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
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from models.core.events import BarEvent
from models.core.messages import Bar, Branch, FeatureVector, PositionSnapshot, Signal
from models.core.trusted import trusted

_isnan = math.isnan


@dataclass(frozen=True, slots=True)
class BarFloats:
    """`float()` of four of a `BarColumns`' Decimal columns, bit for bit (`close[i]` is
    `float(cols.close[i])`, and so on), made where that is cheaper than converting the Decimals
    again: ingest parses them from the message text (models/market/fast_bar.py says why they are
    the same floats), and the feature and trigger kernels read them instead of converting."""

    close: list[float]
    high: list[float]
    low: list[float]
    volume: list[float]

    def slice(self, lo: int, hi: int) -> BarFloats:
        return BarFloats(self.close[lo:hi], self.high[lo:hi], self.low[lo:hi], self.volume[lo:hi])


@dataclass(frozen=True, slots=True)
class BarColumns:
    """Consecutive closed bars of one symbol, oldest first, as columns of `Bar`'s fields.

    `floats`, when given, holds the float of some columns (`BarFloats`): derived data, so it
    takes no part in equality or repr, and it is left out of a pickle (a reader converts)."""

    symbol: str
    start_ms: list[int]
    end_ms: list[int]
    open: list[Decimal]
    high: list[Decimal]
    low: list[Decimal]
    close: list[Decimal]
    volume: list[Decimal]
    trades: list[int]
    vwap: list[Decimal]
    floats: BarFloats | None = field(default=None, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.end_ms)

    def __getstate__(self) -> list[Any]:
        """The fields as the dataclass pickles them, without the derived `floats`."""
        return [
            self.symbol,
            self.start_ms,
            self.end_ms,
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
            self.trades,
            self.vwap,
            None,
        ]

    def bar(self, i: int) -> Bar:
        """Bar `i` as the per-bar path builds it (unvalidated: every value is the flow's own)."""
        return trusted(
            Bar,
            {
                "symbol": self.symbol,
                "start_ms": self.start_ms[i],
                "end_ms": self.end_ms[i],
                "open": self.open[i],
                "high": self.high[i],
                "low": self.low[i],
                "close": self.close[i],
                "volume": self.volume[i],
                "trades": self.trades[i],
                "vwap": self.vwap[i],
            },
        )

    def bars(self) -> list[Bar]:
        return [self.bar(i) for i in range(len(self))]

    def slice(self, lo: int, hi: int) -> BarColumns:
        return BarColumns(
            self.symbol,
            self.start_ms[lo:hi],
            self.end_ms[lo:hi],
            self.open[lo:hi],
            self.high[lo:hi],
            self.low[lo:hi],
            self.close[lo:hi],
            self.volume[lo:hi],
            self.trades[lo:hi],
            self.vwap[lo:hi],
            None if self.floats is None else self.floats.slice(lo, hi),
        )

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


@dataclass(frozen=True, slots=True)
class FeatureColumns:
    """The features of consecutive bars: `rows[i][j]` is feature `names[j]` at bar i's close,
    NaN where the per-bar vector has None. Rows are tuples of floats (cheap to index one at a
    time, which is how the desk reads them); a vectorised step may keep its own arrays."""

    names: tuple[str, ...]
    rows: list[tuple[float, ...]]

    def __len__(self) -> int:
        return len(self.rows)

    def values(self, i: int) -> dict[str, float | None]:
        """Row `i` as `FeatureVector.values` (NaN back to None)."""
        row = self.rows[i]
        return {name: (None if _isnan(v) else v) for name, v in zip(self.names, row, strict=True)}

    def vector(self, i: int, symbol: str, ts_ms: int, close: float) -> FeatureVector:
        return trusted(
            FeatureVector,
            {"symbol": symbol, "ts_ms": ts_ms, "close": close, "values": self.values(i)},
        )

    def slice(self, lo: int, hi: int) -> FeatureColumns:
        return FeatureColumns(self.names, self.rows[lo:hi])

    @classmethod
    def of_vectors(cls, names: tuple[str, ...], vectors: Sequence[FeatureVector]) -> FeatureColumns:
        nan = math.nan
        return cls(
            names,
            [tuple(nan if (v := fv.values[n]) is None else v for n in names) for fv in vectors],
        )


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

    @property
    def symbol(self) -> str:
        return self.bars.symbol

    def seq(self, i: int) -> int:
        return self.first_seq + i

    def event(self, i: int) -> BarEvent:
        """Bar i's event, equal to the one the per-bar path emits."""
        cols = self.bars
        bar = cols.bar(i)
        return BarEvent(
            bar=bar,
            features=self.features.vector(i, cols.symbol, cols.end_ms[i], float(cols.close[i])),
            signals=list(self.signals.get(i, ())),
            branch=self.branches.get(i),
            partition=self.partition,
            clock_ms=self.clock_ms[i],
            seq=self.first_seq + i,
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
