"""A backtest's data from a market topic already on a broker: a date range of what it holds.

`stratflow backtest --from-topic TOPIC` re-plays part of a recorded feed (a live run's input,
say) through a fresh flow: every record is read to the topic's end as of the call, judged by
the pipeline's own parser (a record it would dead-letter is skipped here and counted), cut to
the event-time range, and put in publishing order (by the time each message is complete, as
`connectors.files.replay` orders files), so the backtest republishes it to topics of its own
and never writes into the recorded one. Read into memory: a range of a topic, not a whole
history (`read_topic` fixes the end first, so a live producer cannot make it run forever).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass

from connectors.files.market_file import MergedStreams, Wire
from connectors.files.replay import wire_of
from connectors.kafka.io import read_topic
from models.core.messages import BarIn, Tick
from models.market.bars import input_end_ms
from models.market.parsing import parse_market

MarketMsg = Tick | BarIn


class TopicMessages(MergedStreams):
    """Messages read from a topic, in publishing order, shaped as the file streams are."""

    def __init__(self, messages: list[MarketMsg]) -> None:
        super().__init__([])
        self._messages = messages
        self.count = len(messages)

    @property
    def symbols(self) -> list[str]:
        return sorted({m.symbol for m in self._messages})

    def messages(self) -> Iterator[MarketMsg]:
        return iter(self._messages)

    def encoded(self) -> Iterator[Wire]:
        """What `replay` publishes, already in publishing order."""
        return wire_of(self._messages)


@dataclass(frozen=True)
class TopicRange:
    data: TopicMessages
    records: int  # read from the topic
    refused: int  # records the pipeline's parser refuses (not market messages of ours)
    outside: int  # valid messages outside the range


def market_range(
    bootstrap: str,
    topic: str,
    symbols: Collection[str],
    start_ms: int | None,
    end_ms: int | None,
    timeout_s: float = 120.0,
) -> TopicRange:
    """The valid market messages of `topic` whose event time (a bar's open, a trade's time)
    is in [start_ms, end_ms), in publishing order."""
    records = read_topic(bootstrap, topic, timeout_s)
    kept: list[tuple[int, int, MarketMsg]] = []
    refused = outside = 0
    for n, rec in enumerate(records):
        parsed = parse_market(
            rec.value,
            topic=topic,
            partition=rec.partition,
            offset=rec.offset,
            record_ms=rec.timestamp_ms,
            symbols=symbols,
            max_future_skew_ms=0,
            now_ms=None,
        )
        if not isinstance(parsed, tuple):
            refused += 1
            continue
        msg, ts_ms = parsed
        if (start_ms is not None and ts_ms < start_ms) or (end_ms is not None and ts_ms >= end_ms):
            outside += 1
            continue
        kept.append((input_end_ms(msg, ts_ms), n, msg))
    kept.sort(key=lambda t: (t[0], t[1]))
    return TopicRange(TopicMessages([m for _, _, m in kept]), len(records), refused, outside)
