"""Per-partition ingest: parse, window, featurise, detect triggers, route; one message at a time.

The flow keys this stage by Kafka partition, not by symbol, and keeps one `SymbolState` per
symbol inside. The producer keys messages by symbol, so every symbol still lives in exactly one
partition; keying by partition keeps the partition's order all the way to the desk, which is
what makes a restarted run identical to an uninterrupted one (Bytewax regroups items of one
epoch by key, so per-symbol keys would let epoch boundaries reorder symbols between runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from models.bars import BarBuilder, Rejected, input_end_ms
from models.config import Settings, parse_duration_ms
from models.desk import BarEvent, TextEvent
from models.features import FeatureState
from models.merge import OPEN_END, PartitionMark
from models.messages import (
    Bar,
    DeadLetter,
    NewsItem,
    Signal,
    SocialPost,
    StoredTick,
    Tick,
    to_ms,
)
from models.parsing import dead_letter, parse_market, parse_text_item
from models.router import route
from models.triggers import TriggerState

IngestOutput = (
    DeadLetter
    | Bar
    | Signal
    | BarEvent
    | TextEvent
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
    _skew_ms: int = field(init=False, repr=False)
    _keep_ticks: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._skew_ms = parse_duration_ms(self.settings.bars.max_future_skew)
        self._keep_ticks = self.settings.storage.ticks

    def _state(self, symbol: str) -> SymbolState:
        st = self.symbols.get(symbol)
        if st is None:
            cfg = self.settings
            st = SymbolState(
                bars=BarBuilder(
                    symbol=symbol,
                    interval_ms=cfg.bar_interval_ms(symbol),
                    allowed_lateness_ms=parse_duration_ms(cfg.bars.allowed_lateness),
                    dedupe_window=cfg.bars.dedupe_window,
                ),
                features=FeatureState(cfg.features),
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
        for offset, record_ms, value, error in batch.records:
            try:
                self._one(topic, partition, offset, record_ms, value, error, out)
            except Exception as err:
                out.append(
                    dead_letter(
                        topic,
                        partition,
                        offset,
                        record_ms,
                        value,
                        f"internal error: {type(err).__name__}: {err}",
                    )
                )
        if batch.end == "final":  # this partition's input is over: close its windows now
            if market:
                out.extend(self.flush())
            out.append(PartitionMark(self.key, OPEN_END))
        elif batch.end == "idle":
            out.append(PartitionMark(self.key, OPEN_END))
        else:
            out.append(PartitionMark(self.key, self.clock_ms))

    def _one(
        self,
        topic: str,
        partition: int,
        offset: int,
        record_ms: int,
        value: bytes | None,
        error: str | None,
        out: list[IngestOutput],
    ) -> None:
        topics = self.settings.kafka.topics
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
            )
            if isinstance(msg, DeadLetter):
                out.append(msg)
                return
            tick, ts_ms = msg
            st = self._state(tick.symbol)
            result = st.bars.add(tick, ts_ms)
            # An input bar is known at its end, not its open: the clock (which orders bars
            # across partitions, models/merge.py) must not put a daily bar before its hours.
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
        elif topic in (topics.news, topics.social):
            item = parse_text_item(
                value,
                kind="news" if topic == topics.news else "social",
                topic=topic,
                partition=partition,
                offset=offset,
                record_ms=record_ms,
                max_future_skew_ms=self._skew_ms,
            )
            out.append(item)
            if not isinstance(item, DeadLetter):
                # News take their place among the bars by event time (models/merge.py), so the
                # digest a decision sees does not depend on how the engine interleaved topics.
                ts_ms = to_ms(item.ts)
                self.clock_ms = max(self.clock_ms, ts_ms)
                self.seq += 1
                out.append(TextEvent(item, self.key, self.clock_ms, self.seq))
        else:
            reason = f"no handler for topic {topic!r}"
            out.append(dead_letter(topic, partition, offset, record_ms, value, reason))

    def flush(self) -> list[IngestOutput]:
        """End of a bounded input: close every open window, in symbol order."""
        out: list[IngestOutput] = []
        for symbol in sorted(self.symbols):
            st = self.symbols[symbol]
            for bar in st.bars.flush():
                self._on_bar(st, bar, out)
        return out
