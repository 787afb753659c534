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
from models.market.bars import BarBuilder, Rejected, input_end_ms
from models.market.block_path import BlockPath
from models.market.merge import OPEN_END, PartitionMark
from models.market.parsing import (
    CLOCK_REFUSAL,
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
class PartitionIngest(BlockPath):
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
