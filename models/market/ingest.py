"""Per-partition ingest: parse, window, featurise, detect triggers, route; one message at a time.

The flow keys this stage by Kafka partition, not by symbol, and keeps one `SymbolState` per
symbol inside. The producer keys messages by symbol, so every symbol still lives in exactly one
partition; keying by partition keeps the partition's order all the way to the desk, which is
what makes a restarted run identical to an uninterrupted one (Bytewax regroups items of one
epoch by key, so per-symbol keys would let epoch boundaries reorder symbols between runs).

That only holds if a symbol's records all arrive on one partition. With several market
partitions a symbol belongs to `models.market.partitioning.home_partition(symbol)` (Kafka's rule
for a
record keyed by the symbol; the project's producers use it); one arriving on another partition
is a dead letter (`symbol X belongs to partition p of T, arrived on q`), never a second set of
bars for the same minutes. Event times pass the clock and jump guards (models/market/time_guard.py);
a burst of refusals on one partition is also an `Alert`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from models.config.base import parse_duration_ms
from models.config.settings import Settings
from models.control.commands import ControlEvent, parse_command
from models.core.blocks import BarBlock, BarColumns
from models.core.events import BarEvent, TextEvent
from models.core.messages import (
    Alert,
    Bar,
    BarIn,
    DeadLetter,
    NewsItem,
    Signal,
    SocialPost,
    StoredTick,
    Tick,
    to_ms,
)
from models.core.packed import PackedBars
from models.market.bar_batch import MIN_RECORDS, BatchBars, parse_bars
from models.market.bar_runs import BarRun, first_false, passes_through, run_block
from models.market.bars import BarBuilder, Rejected, input_end_ms
from models.market.fast_bar import bar_fields
from models.market.merge import OPEN_END, PartitionMark
from models.market.parsing import (
    CLOCK_REFUSAL,
    EPOCH_SENTINEL_MS,
    MAX_EVENT_MS,
    dead_letter,
    parse_market,
    parse_text_item,
)
from models.market.partitioning import home_partition
from models.market.time_guard import GuardAlarm, JumpGuard
from models.signals.features import FeatureState
from models.signals.router import route
from models.signals.triggers import TriggerState

IngestOutput = (
    DeadLetter
    | Alert
    | Bar
    | BarColumns
    | Signal
    | BarEvent
    | BarBlock
    | TextEvent
    | ControlEvent
    | PartitionMark
    | NewsItem
    | SocialPost
    | StoredTick
)


MIN_BLOCK = 2
"""Shorter runs of the block path leave bar by bar: the same items, and cheaper so."""

Record = tuple[int, int, bytes | None, str | None]
"""(offset, broker record time in ms, value, client error) of one message."""


@dataclass(frozen=True, slots=True)
class RawBatch:
    """Consecutive records of one topic partition, as a Kafka client delivers them.

    A batch, not a message, is the unit that travels through the flow: per-item engine overhead
    is paid once per poll instead of once per tick.
    """

    topic: str
    partition: int
    records: list[Record]
    end: Literal["final", "idle"] | None = None  # the partition ended, or is quiet for now
    broker_time: bool = False  # record times are the broker's (LogAppendTime), not a producer's


Held = tuple[str, int, int, int, bytes | None, Tick | BarIn, int]
"""A market record the jump guard holds: topic, partition, offset, record ms, value, message,
event ms."""


@dataclass(slots=True)
class SymbolState:
    bars: BarBuilder
    features: FeatureState
    triggers: TriggerState


@dataclass(slots=True)
class PartitionIngest:
    settings: Settings
    symbols: dict[str, SymbolState] = field(default_factory=dict)
    clock_ms: int = 0  # newest accepted event time of this partition (never decreases)
    seq: int = 0  # bars (or news/posts) emitted so far: their order within the partition
    key: str = ""  # "topic#partition" of the partition this state serves
    market_partitions: int = 1  # partitions of the market topic: a symbol's home is one of them
    # The trusted clock for records whose time a producer set (CreateTime), and its name in
    # reasons: the wall clock live, the run's start in a bounded run; None: no such check.
    now_ms: Callable[[], int] | None = None
    clock_name: str = "the wall clock at ingest"
    # Runs of replayed bars leave as blocks (`BarColumns`, signals, one `BarBlock`) instead of
    # one `Bar` + `BarEvent` each: the same items once expanded (models/market/bar_runs.py).
    blocks: bool = False
    guard: JumpGuard[Held] = field(init=False)
    alarm: GuardAlarm = field(init=False)
    _skew_ms: int = field(init=False, repr=False)
    _keep_ticks: bool = field(init=False, repr=False)
    _max_jump_ms: int = field(init=False, repr=False)
    _homes: dict[str, tuple[int, int]] = field(init=False, repr=False)  # home, jump ms

    def __post_init__(self) -> None:
        bars = self.settings.bars
        self._skew_ms = parse_duration_ms(bars.max_future_skew)
        self._keep_ticks = self.settings.storage.ticks
        self._max_jump_ms = parse_duration_ms(bars.max_jump)
        self._homes = {}
        self.guard = JumpGuard(bars.jump_confirmations)
        self.alarm = GuardAlarm(
            "", bars.guard_alert_burst, parse_duration_ms(bars.guard_alert_window)
        )

    def _symbol_rules(self, symbol: str) -> tuple[int, int]:
        """(home partition, jump threshold in ms) of a symbol, computed once."""
        rules = self._homes.get(symbol)
        if rules is None:
            home = home_partition(symbol.encode(), self.market_partitions)
            jump = max(self._max_jump_ms, 2 * self.settings.bar_interval(symbol).longest_ms)
            rules = self._homes[symbol] = (home, jump)
        return rules

    def _refused(self, dead: DeadLetter, arrival_ms: int, out: list[IngestOutput]) -> None:
        """A guard's dead letter, and the alert when it completes a burst."""
        out.append(dead)
        self.alarm.partition = self.key
        alert = self.alarm.refused(arrival_ms, dead.offset, dead.reason)
        if alert is not None:
            out.append(alert)

    def _state(self, symbol: str) -> SymbolState:
        st = self.symbols.get(symbol)
        if st is None:
            cfg = self.settings
            st = SymbolState(
                bars=BarBuilder(
                    symbol=symbol,
                    interval=cfg.bar_interval(symbol),
                    allowed_lateness_ms=parse_duration_ms(cfg.bars.allowed_lateness),
                    dedupe_window=cfg.bars.dedupe_window,
                ),
                features=FeatureState(cfg.features, cfg.extra_features(symbol)),
                triggers=TriggerState(cfg.triggers),
            )
            self.symbols[symbol] = st
        return st

    def _on_bar(self, st: SymbolState, bar: Bar, out: list[IngestOutput]) -> None:
        out.append(bar)  # first: the bar is already out of its window, it must not be lost
        fv = st.features.update(bar)
        signals = st.triggers.evaluate(fv)
        out.extend(signals)
        self.seq += 1
        out.append(
            BarEvent(
                bar=bar,
                features=fv,
                signals=signals,
                branch=route(signals, self.settings.router),
                partition=self.key,
                clock_ms=self.clock_ms,
                seq=self.seq,
            )
        )

    def process_batch(self, batch: RawBatch, out: list[IngestOutput]) -> None:
        """Append everything these records produce to `out`, in record order.

        A failure inside one message (a bug, by definition: bad input is already a dead letter)
        costs that message, which becomes a dead letter with the error, never the stream.
        """
        topic, partition = batch.topic, batch.partition
        market = topic == self.settings.kafka.topics.market
        self.key = f"{topic}#{partition}"
        # The trusted clock: the broker's time on each record, else one reading per batch.
        now_ms = None if batch.broker_time or self.now_ms is None else self.now_ms()
        clock = "the broker's append time" if batch.broker_time else self.clock_name
        if self.blocks and market:
            bars = self._batch_bars(batch, now_ms)
            if bars is not None:
                self._column_runs(batch, bars, out, now_ms, clock)
            else:
                self._market_runs(batch, out, now_ms, clock)
        else:
            self._records(batch, out, now_ms, clock)
        if batch.end == "final":  # this partition's input is over: close its windows now
            if market:
                out.extend(self.flush())
            out.append(PartitionMark(self.key, OPEN_END))
        elif batch.end == "idle":
            out.append(PartitionMark(self.key, OPEN_END))
        else:
            out.append(PartitionMark(self.key, self.clock_ms))

    def _records(
        self, batch: RawBatch, out: list[IngestOutput], now_ms: int | None, clock: str
    ) -> None:
        """The per-record path: each record on its own (`_one`)."""
        topic, partition = batch.topic, batch.partition
        for offset, record_ms, value, error in batch.records:
            if batch.broker_time:
                now_ms = record_ms if record_ms > 0 else None
            self._guarded(topic, partition, offset, record_ms, value, error, out, now_ms, clock)

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
        """`_one`, with a failure turned into the record's dead letter."""
        try:
            self._one(topic, partition, offset, record_ms, value, error, out, now_ms, clock)
        except Exception as err:
            reason = f"internal error: {type(err).__name__}: {err}"
            out.append(dead_letter(topic, partition, offset, record_ms, value, reason))

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
                        self.clock_ms = end_ms
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
        bar it stops at, and every record that is not such a bar, takes the per-record path."""
        topic, partition, records = batch.topic, batch.partition, batch.records
        broker_time = batch.broker_time

        def one(r: int) -> None:
            offset, record_ms, value, error = records[r]
            now = (record_ms if record_ms > 0 else None) if broker_time else now_ms
            self._guarded(topic, partition, offset, record_ms, value, error, out, now, clock)

        rows, codes = bars.rows, bars.symbol
        if not len(rows):
            for r in range(len(records)):
                one(r)
            return
        cuts = np.flatnonzero((np.diff(rows) != 1) | (np.diff(codes) != 0)) + 1
        done = 0  # records before this one are handled
        for a, b in zip([0, *cuts.tolist()], [*cuts.tolist(), len(rows)], strict=True):
            for r in range(done, int(rows[a])):
                one(r)
            j = a
            while j < b:
                k = self._take(bars, j, b, partition)
                if k > j:
                    first = records[int(rows[j])]
                    self._emit_run(*self._run_of(bars, j, k), first[:3], topic, partition, out)
                if k < b:
                    one(int(rows[k]))
                j = k + 1 if k < b else b
            done = int(rows[b - 1]) + 1
        for r in range(done, len(records)):
            one(r)

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
        self.clock_ms = int(clock[-1])
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
        self.seq += len(cols)
        out.extend(signals)
        out.append(block)

    def _one(
        self,
        topic: str,
        partition: int,
        offset: int,
        record_ms: int,
        value: bytes | None,
        error: str | None,
        out: list[IngestOutput],
        now_ms: int | None = None,
        clock: str = "",
    ) -> None:
        topics = self.settings.kafka.topics
        arrival_ms = record_ms if now_ms is None else now_ms
        if error is not None:
            out.append(dead_letter(topic, partition, offset, record_ms, value, error))
        elif topic == topics.market:
            msg = parse_market(
                value,
                topic=topic,
                partition=partition,
                offset=offset,
                record_ms=record_ms,
                symbols=self.settings.symbols,
                max_future_skew_ms=self._skew_ms,
                now_ms=now_ms,
                clock=clock,
            )
            if isinstance(msg, DeadLetter):
                if CLOCK_REFUSAL in msg.reason:
                    self._refused(msg, arrival_ms, out)
                else:
                    out.append(msg)
                return
            tick, ts_ms = msg
            home, jump_ms = self._symbol_rules(tick.symbol)
            if home != partition and self.market_partitions > 1:
                reason = (
                    f"symbol {tick.symbol} belongs to partition {home} of {topic} (Kafka's "
                    f"murmur2 of the symbol as key), arrived on {partition}: key market "
                    "records by their symbol"
                )
                dead = dead_letter(topic, partition, offset, record_ms, value, reason)
                self._refused(dead, arrival_ms, out)
                return
            end_ms = input_end_ms(tick, ts_ms)
            if self.guard.steady(end_ms, jump_ms):  # the per-tick path: no gap, nothing held
                self._market(topic, partition, offset, record_ms, value, tick, ts_ms, out)
                return
            verdict = self.guard.admit(
                end_ms, jump_ms, (topic, partition, offset, record_ms, value, tick, ts_ms)
            )
            for held, reason in verdict.refuse:
                dead = dead_letter(held[0], held[1], held[2], held[3], held[4], reason)
                self._refused(dead, arrival_ms, out)
            for held in verdict.use:
                self._market(*held, out)
        elif topic in (topics.news, topics.social):
            item = parse_text_item(
                value,
                kind="news" if topic == topics.news else "social",
                topic=topic,
                partition=partition,
                offset=offset,
                record_ms=record_ms,
                max_future_skew_ms=self._skew_ms,
                now_ms=now_ms,
                clock=clock,
            )
            if isinstance(item, DeadLetter) and CLOCK_REFUSAL in item.reason:
                self._refused(item, arrival_ms, out)
                return
            out.append(item)
            if not isinstance(item, DeadLetter):
                # News take their place among the bars by event time (models/market/merge.py), so
                # the
                # digest a decision sees does not depend on how the engine interleaved topics.
                ts_ms = to_ms(item.ts)
                self.clock_ms = max(self.clock_ms, ts_ms)
                self.seq += 1
                out.append(TextEvent(item, self.key, self.clock_ms, self.seq))
        elif topic == topics.control:
            self._control(topic, partition, offset, record_ms, value, out)
        else:
            reason = f"no handler for topic {topic!r}"
            out.append(dead_letter(topic, partition, offset, record_ms, value, reason))

    def _control(
        self,
        topic: str,
        partition: int,
        offset: int,
        record_ms: int,
        value: bytes | None,
        out: list[IngestOutput],
    ) -> None:
        """A control command takes its place in the stream at its Kafka record time (so a
        replayed control topic replays it at the same place); a malformed one is a dead
        letter with the reason."""
        command = parse_command(value)
        if isinstance(command, str):
            out.append(dead_letter(topic, partition, offset, record_ms, value, command))
            return
        self.clock_ms = max(self.clock_ms, record_ms)
        self.seq += 1
        out.append(ControlEvent(command, record_ms, self.key, self.clock_ms, self.seq))

    def _market(
        self,
        topic: str,
        partition: int,
        offset: int,
        record_ms: int,
        value: bytes | None,
        tick: Tick | BarIn,
        ts_ms: int,
        out: list[IngestOutput],
    ) -> None:
        """One market message the guards let through: window, featurise, emit."""
        st = self._state(tick.symbol)
        result = st.bars.add(tick, ts_ms)
        # An input bar is known at its end, not its open: the clock (which orders bars
        # across partitions, models/market/merge.py) must not put a daily bar before its hours.
        end_ms = input_end_ms(tick, ts_ms)
        if end_ms > self.clock_ms and not isinstance(result, Rejected):
            self.clock_ms = end_ms
        if isinstance(result, Rejected):
            out.append(dead_letter(topic, partition, offset, record_ms, value, result.reason))
            return
        if self._keep_ticks and isinstance(tick, Tick):
            out.append(
                StoredTick(
                    symbol=tick.symbol,
                    ts_ms=ts_ms,
                    price=tick.price,
                    size=tick.size,
                    tick_id=tick.id or f"{topic}:{partition}:{offset}",
                )
            )
        for bar in result:
            self._on_bar(st, bar, out)

    def flush(self) -> list[IngestOutput]:
        """End of a bounded input: refuse what the jump guard still holds (never confirmed),
        then close every open window, in symbol order."""
        out: list[IngestOutput] = []
        verdict = self.guard.finish()
        for held, reason in verdict.refuse:
            dead = dead_letter(held[0], held[1], held[2], held[3], held[4], reason)
            self._refused(dead, held[3], out)
        for held in verdict.use:
            self._market(*held, out)
        for symbol in sorted(self.symbols):
            st = self.symbols[symbol]
            for bar in st.bars.flush():
                self._on_bar(st, bar, out)
        return out
