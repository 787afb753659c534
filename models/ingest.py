"""Per-partition ingest: parse, window, featurise, detect triggers, route; one message at a time.

The flow keys this stage by Kafka partition, not by symbol, and keeps one `SymbolState` per
symbol inside. The producer keys messages by symbol, so every symbol still lives in exactly one
partition; keying by partition keeps the partition's order all the way to the desk, which is
what makes a restarted run identical to an uninterrupted one (Bytewax regroups items of one
epoch by key, so per-symbol keys would let epoch boundaries reorder symbols between runs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.bars import BarBuilder, Rejected
from models.config import Settings, parse_duration_ms
from models.desk import BarEvent
from models.features import FeatureState
from models.messages import Bar, DeadLetter, NewsItem, Signal, SocialPost, StoredTick, Tick
from models.parsing import dead_letter, parse_market, parse_text_item
from models.router import route
from models.triggers import TriggerState

IngestOutput = DeadLetter | Bar | Signal | BarEvent | NewsItem | SocialPost | StoredTick


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A topic record as any Kafka client delivers it, reduced to what the pipeline uses."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    value: bytes | None
    error: str | None = None


@dataclass(slots=True)
class SymbolState:
    bars: BarBuilder
    features: FeatureState
    triggers: TriggerState


@dataclass(slots=True)
class PartitionIngest:
    settings: Settings
    symbols: dict[str, SymbolState] = field(default_factory=dict)
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
        fv = st.features.update(bar)
        signals = st.triggers.evaluate(fv)
        out.append(bar)
        out.extend(signals)
        out.append(
            BarEvent(
                bar=bar, features=fv, signals=signals, branch=route(signals, self.settings.router)
            )
        )

    def process(self, raw: RawMessage, out: list[IngestOutput]) -> None:
        """Append everything this message produces to `out` (a list, to avoid per-call lists)."""
        topics = self.settings.kafka.topics
        skew = self._skew_ms
        if raw.error is not None:
            out.append(
                dead_letter(
                    raw.topic, raw.partition, raw.offset, raw.timestamp_ms, raw.value, raw.error
                )
            )
        elif raw.topic == topics.market:
            msg = parse_market(
                raw.value,
                topic=raw.topic,
                partition=raw.partition,
                offset=raw.offset,
                record_ms=raw.timestamp_ms,
                symbols=self.settings.symbols,
                max_future_skew_ms=skew,
            )
            if isinstance(msg, DeadLetter):
                out.append(msg)
                return
            tick, ts_ms = msg
            st = self._state(tick.symbol)
            result = st.bars.add(tick, ts_ms)
            if self._keep_ticks and isinstance(tick, Tick) and not isinstance(result, Rejected):
                out.append(
                    StoredTick(
                        symbol=tick.symbol,
                        ts_ms=ts_ms,
                        price=tick.price,
                        size=tick.size,
                        tick_id=tick.id or f"{raw.topic}:{raw.partition}:{raw.offset}",
                    )
                )
            if isinstance(result, Rejected):
                out.append(
                    dead_letter(
                        raw.topic,
                        raw.partition,
                        raw.offset,
                        raw.timestamp_ms,
                        raw.value,
                        result.reason,
                    )
                )
                return
            for bar in result:
                self._on_bar(st, bar, out)
        elif raw.topic in (topics.news, topics.social):
            item = parse_text_item(
                raw.value,
                kind="news" if raw.topic == topics.news else "social",
                topic=raw.topic,
                partition=raw.partition,
                offset=raw.offset,
                record_ms=raw.timestamp_ms,
                max_future_skew_ms=skew,
            )
            out.append(item)
        else:
            out.append(
                dead_letter(
                    raw.topic,
                    raw.partition,
                    raw.offset,
                    raw.timestamp_ms,
                    raw.value,
                    f"no handler for topic {raw.topic!r}",
                )
            )

    def flush(self) -> list[IngestOutput]:
        """End of a bounded input: close every open window, in symbol order."""
        out: list[IngestOutput] = []
        for symbol in sorted(self.symbols):
            st = self.symbols[symbol]
            for bar in st.bars.flush():
                self._on_bar(st, bar, out)
        return out
