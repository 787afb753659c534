"""Ingest's block path: runs of replayed bars that the per-bar path passes straight through,
gathered and handed on as blocks (`BarColumns`, signals, one `BarBlock`) instead of one `Bar`
and `BarEvent` each (models/market/bar_runs.py says what a run is and why it is the same).

Two ways in, the same runs out: a batch read as columns (`_column_runs`, models/market/
bar_batch.py: every check of `bar_fields` a column operation, the guards and the bar builder
moved a stretch of bars at a time), and, for a batch the columns cannot read or a small one,
record by record (`_market_runs`, `bar_fields`). Either way, any record that is not such a bar
ends the run and takes the per-record path (`_guarded`), so the items and the state are the
per-bar path's (tests/unit/test_ingest_blocks.py compares all three).

`BlockPath` is a part of `PartitionIngest` (models/market/ingest.py), kept in its own module.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from models.config.settings import Settings
from models.core.blocks import BarColumns
from models.core.messages import Bar
from models.core.packed import PackedBars
from models.market.bar_batch import MIN_RECORDS, BatchBars, parse_bars
from models.market.bar_runs import BarRun, first_false, passes_through, run_block
from models.market.fast_bar import bar_fields
from models.market.parsing import EPOCH_SENTINEL_MS, MAX_EVENT_MS, dead_letter
from models.market.time_guard import JumpGuard

if TYPE_CHECKING:
    from models.market.ingest import Held, IngestOutput, RawBatch, SymbolState

MIN_BLOCK = 2
"""Shorter runs of the block path leave bar by bar: the same items, and cheaper so."""
MIN_STRETCH = 32
"""Shorter stretches of one symbol's bars in a batch read as columns go record by record
(measured: 2 symbols interleaved in stretches of 16 bars, 41 vs 48 µs a bar; of 64, 25 vs
19)."""


class BlockPath:
    """The block path's methods of `PartitionIngest`, over the state it declares here."""

    __slots__ = ()

    settings: Settings
    symbols: dict[str, SymbolState]
    clock_ms: int
    seq: int
    key: str
    market_partitions: int
    guard: JumpGuard[Held]
    _skew_ms: int

    def _symbol_rules(self, symbol: str) -> tuple[int, int]:
        raise NotImplementedError

    def _state(self, symbol: str) -> SymbolState:
        raise NotImplementedError

    def _on_bar(self, st: SymbolState, bar: Bar, out: list[IngestOutput]) -> None:
        raise NotImplementedError

    def _guarded(
        self,
        topic: str,
        partition: int,
        offset: int,
        record_ms: int,
        value: bytes | None,
        error: str | None,
        out: list[IngestOutput],
        now_ms: int | None,
        clock: str,
    ) -> None:
        raise NotImplementedError

    def _market_runs(
        self, batch: RawBatch, out: list[IngestOutput], now_ms: int | None, clock: str
    ) -> None:
        """The block path (`blocks`): consecutive bars of one symbol that the per-bar path
        would pass straight through (replay's layout, `bar_fields`; let through by the home,
        clock and jump guards; one for one through the bar builder, `BarBuilder.pass_through`)
        are gathered in a `BarRun` and leave as one block; any other record ends the run and
        takes the per-record path (`_one`), so the items and the state are the per-bar path's.

        A run never spans two symbols: the partition's order (a bar's `seq`) is kept as is.
        The checks run in the per-bar path's order, and the only one that changes state
        before the builder's (`JumpGuard.steady`) changes nothing when `_one` repeats it."""
        topic, partition = batch.topic, batch.partition
        symbols, skew, broker_time = self.settings.symbols, self._skew_ms, batch.broker_time
        run: BarRun | None = None
        # The last symbol `_passes` let through, with its jump threshold and bar builder: its
        # home check is settled and its state exists, so its next bars take the rest of
        # `_passes`'s checks inline (the same calls, in the same order).
        known: str | None = None
        jump_ms, builder, steady = 0, None, self.guard.steady
        for offset, record_ms, value, error in batch.records:
            if broker_time:
                now_ms = record_ms if record_ms > 0 else None
            f = None
            if error is None and type(value) is bytes and value:
                f = bar_fields(value, symbols, now_ms, skew, EPOCH_SENTINEL_MS, MAX_EVENT_MS)
            if f is not None:
                symbol, ts_ms, interval_s, ident = f[0], f[1], f[7], f[8]
                if run is not None and run.symbol != symbol:
                    self._end_run(run, topic, partition, out)
                    run = None
                end_ms = ts_ms + interval_s * 1000
                if symbol == known and builder is not None:
                    try:
                        passes = steady(end_ms, jump_ms) and builder.pass_through(
                            ts_ms, end_ms, ident or f"bar@{ts_ms}"
                        )
                    except Exception:
                        passes = False
                else:
                    passes = self._passes(symbol, ts_ms, end_ms, ident, partition)
                    if passes:
                        known, jump_ms = symbol, self._symbol_rules(symbol)[1]
                        builder = self.symbols[symbol].bars
                if passes:
                    if end_ms > self.clock_ms:
                        self.clock_ms = end_ms  # type: ignore[misc]  # a slot of the dataclass
                    if run is None:
                        run = BarRun(symbol, (offset, record_ms, value))
                    run.fields.append(f)
                    run.end_ms.append(end_ms)
                    run.clock_ms.append(self.clock_ms)
                    continue
            if run is not None:
                self._end_run(run, topic, partition, out)
                run = None
            self._guarded(topic, partition, offset, record_ms, value, error, out, now_ms, clock)
        if run is not None:
            self._end_run(run, topic, partition, out)

    def _batch_bars(self, batch: RawBatch, now_ms: int | None) -> BatchBars | None:
        """The batch's replay-layout bars read as columns (`parse_bars`), or None: a small
        batch, or one the columns cannot read (then `_market_runs`, record by record)."""
        records = batch.records
        if len(records) < MIN_RECORDS:
            return None
        values = [r[2] for r in records]
        errors = [r[3] for r in records]
        usable = None
        if errors.count(None) != len(errors):
            usable = np.array([e is None for e in errors])
        now: npt.NDArray[np.int64] | None = None
        if batch.broker_time:  # each record's own trusted clock; none where it is 0
            now = np.array([r[1] for r in records], np.int64)
            now[now <= 0] = -1
        elif now_ms is not None:
            now = np.full(len(records), now_ms, np.int64)
        return parse_bars(
            values,
            self.settings.symbols,
            now,
            self._skew_ms,
            EPOCH_SENTINEL_MS,
            MAX_EVENT_MS,
            usable,
        )

    def _column_runs(
        self,
        batch: RawBatch,
        bars: BatchBars,
        out: list[IngestOutput],
        now_ms: int | None,
        clock: str,
    ) -> None:
        """`_market_runs` on a batch read as columns: the same runs, taken a stretch at a time.

        A stretch is consecutive records that are bars of one symbol (`bar_fields` would read
        each); `_take` lets through the longest prefix of it that the per-bar path passes
        straight through, with the guards' and builder's state moved as bar by bar; the first
        bar it stops at takes the per-record path. Everything between stretches of at least
        `MIN_STRETCH` bars (other records, shorter stretches: symbols interleaved) goes
        through `_market_runs` as it would without the columns: there a stretch's fixed cost
        (~50 µs of column steps) would be more than its bars'."""
        topic, partition, records = batch.topic, batch.partition, batch.records
        broker_time = batch.broker_time

        def by_records(lo: int, hi: int) -> None:
            if hi > lo:
                part = dataclasses.replace(batch, records=records[lo:hi], end=None)
                self._market_runs(part, out, now_ms, clock)

        rows, codes = bars.rows, bars.symbol
        cuts = np.flatnonzero((np.diff(rows) != 1) | (np.diff(codes) != 0)) + 1
        done = 0  # records before this one are handled
        for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), len(rows)], strict=True):
            if b - a < MIN_STRETCH:
                continue
            by_records(done, int(rows[a]))
            j = a
            while j < b:
                k = self._take(bars, j, b, partition)
                if k > j:
                    first = records[int(rows[j])]
                    self._emit_run(*self._run_of(bars, j, k), first[:3], topic, partition, out)
                if k < b:
                    offset, record_ms, value, error = records[int(rows[k])]
                    now = (record_ms if record_ms > 0 else None) if broker_time else now_ms
                    self._guarded(
                        topic, partition, offset, record_ms, value, error, out, now, clock
                    )
                j = k + 1 if k < b else b
            done = int(rows[b - 1]) + 1
        by_records(done, len(records))

    def _take(self, bars: BatchBars, lo: int, hi: int, partition: int) -> int:
        """Let through bars `lo..` of a stretch of one symbol as `_passes` would, one after
        the other: home partition, jump guard (`JumpGuard.steady`: within the jump of the
        clock, which each bar moves), bar builder (`passes_through`); the index of the first
        bar refused (`hi`: none). The state moves for the bars let through only (a refused
        bar's `steady` is repeated by the per-record path, which moves the clock the same)."""
        symbol = bars.names[int(bars.symbol[lo])]
        try:
            home, jump_ms = self._symbol_rules(symbol)
            guard = self.guard
            clock = guard.clock_ms
            if (self.market_partitions > 1 and home != partition) or clock is None or guard.held:
                return lo
            ends = bars.end_ms[lo:hi]
            before = np.maximum.accumulate(np.concatenate(([clock], ends[:-1])))
            steady = first_false(ends <= before + jump_ms)
            if not steady:
                return lo
            builder = self._state(symbol).bars
            ident = bars.ident

            def keys(m: int) -> list[str]:
                ids = ident.slice(lo, m)
                if not bool(pc.any(pc.equal(ids, "")).as_py()):
                    return ids.to_pylist()  # type: ignore[no-any-return]
                stamps = pa.array(bars.ts_ms[lo : lo + m]).cast(pa.string())
                named = pc.binary_join_element_wise("bar@", stamps, "")
                return pc.if_else(pc.equal(ids, ""), named, ids).to_pylist()  # type: ignore[no-any-return]

            taken = passes_through(builder, bars.ts_ms[lo : lo + steady], ends[:steady], keys)
        except Exception:
            return lo
        if taken:
            guard.clock_ms = max(clock, int(ends[:taken].max()))
        return lo + taken

    def _run_of(self, bars: BatchBars, lo: int, hi: int) -> tuple[BarColumns, list[int]]:
        """Bars `lo..hi-1` (let through) as columns, with the partition's clock at each."""
        ends = bars.end_ms[lo:hi]
        clock = np.maximum.accumulate(np.maximum(ends, self.clock_ms))
        self.clock_ms = int(clock[-1])  # type: ignore[misc]  # a slot of the dataclass
        n = hi - lo
        packed = PackedBars(
            bars.ts_ms[lo:hi],
            ends,
            tuple(t.slice(lo, n) for t in bars.text),
            tuple(d.slice(lo, n) for d in bars.dec),
            bars.floats.slice(lo, hi),
        )
        symbol = bars.names[int(bars.symbol[lo])]
        return BarColumns.of_packed(symbol, packed), clock.tolist()

    def _passes(self, symbol: str, ts_ms: int, end_ms: int, ident: str, partition: int) -> bool:
        """Whether the per-bar path would pass this bar straight through, in its order of
        checks: home partition, jump guard (`steady` moves the guard's clock when it says yes,
        and repeating it changes nothing), bar builder (`pass_through`: its state moves only
        when it says yes). An exception (a bug) says no: the per-record path then makes it
        the record's dead letter."""
        try:
            home, jump_ms = self._symbol_rules(symbol)
            return (
                (self.market_partitions <= 1 or home == partition)
                and self.guard.steady(end_ms, jump_ms)
                and self._state(symbol).bars.pass_through(ts_ms, end_ms, ident or f"bar@{ts_ms}")
            )
        except Exception:
            return False

    def _end_run(self, run: BarRun, topic: str, partition: int, out: list[IngestOutput]) -> None:
        """A run of the per-record loop, as `_emit_run` emits it."""
        self._emit_run(run.columns(), run.clock_ms, run.first, topic, partition, out)

    def _emit_run(
        self,
        cols: BarColumns,
        clock_ms: list[int],
        first: tuple[int, int, bytes | None],
        topic: str,
        partition: int,
        out: list[IngestOutput],
    ) -> None:
        """A run's items, as `_on_bar` emits them bar by bar: the bars (first: they are out of
        their windows already), the signals, the desk's block. A failure in the features or
        triggers (a bug) becomes one dead letter, on the run's first record (`first`)."""
        st = self.symbols[cols.symbol]
        try:
            if len(cols) < MIN_BLOCK:  # a lone bar (symbols interleaved): a block costs more
                for i in range(len(cols)):  # nothing moved the clock since: `_on_bar` stamps it
                    self._on_bar(st, cols.bar(i), out)
                return
            out.append(cols)
            signals, block = run_block(
                cols,
                clock_ms,
                st.features,
                st.triggers,
                self.settings.router,
                self.key,
                self.seq + 1,
            )
        except Exception as err:
            offset, record_ms, value = first
            reason = f"internal error: {type(err).__name__}: {err}"
            out.append(dead_letter(topic, partition, offset, record_ms, value, reason))
            return
        self.seq += len(cols)  # type: ignore[misc]  # a slot of the dataclass
        out.extend(signals)
        out.append(block)
