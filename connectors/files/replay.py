"""Publish market messages to the market topic, in the order a live feed delivers them.

Reading files is `connectors.files.market_file` (streaming, bounded memory); this module is the
publishing loop. Messages go out by the time each is complete: a tick at its time, a bar at
its END (open + interval), never at its open, so a daily bar reaches the pipeline after that
day's hourly bars, as a live feed would deliver it (issue 9, item 2). The names of the loading
API are re-exported here for callers that know them from here.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from connectors.files.market_file import (
    MarketFile,
    MarketFileError,
    MarketStream,
    MergedStreams,
    ReplayError,
    RowProblem,
    Wire,
    load_market_file,
    open_market_file,
)
from connectors.kafka.broker import wait_for_broker
from connectors.kafka.io import DeliveryCounter, KeyedProducer, make_producer
from models.core.messages import BarIn, Tick, to_ms
from models.market.bars import input_end_ms

__all__ = [
    "MarketFile",
    "MarketFileError",
    "MarketStream",
    "MergedStreams",
    "ReplayError",
    "ReplayStats",
    "RowProblem",
    "TimeSlice",
    "load_market_file",
    "open_market_file",
    "publish_order",
    "replay",
]

MarketMsg = Tick | BarIn


@dataclass(frozen=True)
class ReplayStats:
    topic: str
    sent: int
    published: int
    failed: int
    elapsed_s: float
    msgs_per_s: float
    speed: float | None
    first_event_ms: int | None
    last_event_ms: int | None
    per_symbol: dict[str, int]
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        pace = "as fast as possible" if self.speed is None else f"at {self.speed:g}x event time"
        text = (
            f"published {self.published} of {self.sent} messages to {self.topic} "
            f"in {self.elapsed_s:.2f} s ({self.msgs_per_s:,.0f} msgs/s, {pace})"
        )
        if self.failed:
            text += f"; {self.failed} failed: {'; '.join(self.errors)}"
        return text


def publish_order(messages: Iterable[MarketMsg]) -> list[MarketMsg]:
    """The messages in the order a live feed delivers them: by the time each is complete (a
    tick at its time, a bar at its end: its close is not known before), ties in input order.

    Epoch ms, not datetimes: a caller's naive datetime (taken as UTC, as the pipeline does)
    must not break the comparison with aware ones."""
    timed = sorted(((input_end_ms(m), i, m) for i, m in enumerate(messages)), key=lambda t: t[:2])
    return [m for _, _, m in timed]


def wire_of(messages: Iterable[MarketMsg]) -> Iterator[Wire]:
    """`MarketStream.encoded` items of messages given as models, through pydantic."""
    for msg in messages:
        ms = to_ms(msg.ts)
        yield input_end_ms(msg, ms), ms, msg.symbol.encode(), msg.model_dump_json().encode()


PROGRESS_EVERY = 4096
"""Records between two looks at the clock (progress bar, delivery reports) at full speed."""


def replay(
    bootstrap: str,
    topic: str,
    messages: Iterable[MarketMsg] | MarketStream | MergedStreams,
    speed: float | None = None,
    progress: bool = False,
    *,
    flush_timeout_s: float = 60.0,
    connect_timeout_s: float = 10.0,
) -> ReplayStats:
    """Publish messages as JSON in publishing order (`publish_order`), keyed by symbol.

    A `MarketStream` (`open_market_file`) or `MergedStreams` (several of them) is published as
    it is read, already in that order, in bounded memory, its values written straight from the
    scanned texts (`MarketStream.encoded`: the bytes `model_dump_json()` gives); any other
    iterable is ordered in memory first and serialised by pydantic.

    The key pins a symbol to one partition, which is what keeps its events in order for the
    pipeline. The record timestamp is the wall clock (the moment of publishing, stamped by the
    client library), as a live feed would stamp it, so the pipeline's future-skew check sees
    realistic record times. With `speed`, event time advances `speed` times faster than wall
    time; with None, no pacing.

    The hot loop does one `produce` per record and nothing else per record that can be done
    per batch (issue 11): no delivery callback per record (the client reports failures only,
    `delivery.report.only.error`; delivered = sent - failed - left in the queue at the end),
    partitions looked up once per symbol, the clock, poll and progress bar every
    `PROGRESS_EVERY` records.
    """
    if speed is not None and not (math.isfinite(speed) and speed > 0):
        raise ValueError(f"speed must be a positive number or None, got {speed!r}")
    total: int | None
    items: Iterable[Wire]
    if isinstance(messages, MarketStream | MergedStreams):
        items = messages.encoded()
        total = messages.count
    else:
        ordered = publish_order(messages)
        items = wire_of(ordered)
        total = len(ordered)
    # Fail in seconds with one line, rather than queueing everything and timing out in flush().
    wait_for_broker(bootstrap, connect_timeout_s, label="bootstrap")
    counter = DeliveryCounter()
    # Paced replays imitate a live feed, so do not hold records back for batching.
    producer = make_producer(
        bootstrap,
        on_delivery=counter,
        **{"delivery.report.only.error": True},
        **({"linger.ms": 5} if speed is not None else {}),
    )
    per_key: Counter[bytes] = Counter()
    partitions: dict[bytes, int] = {}
    first_ms: int | None = None
    last_ms: int | None = None
    bar = _Bar(topic, total) if progress else None

    t0 = time.monotonic()
    sent = 0
    newest = -(2**63)
    produce, poll = producer.produce, producer.poll
    try:
        for end, _open, key, value in items:
            if end < newest:
                raise ReplayError(
                    f"messages out of publishing order: {key.decode()} ending at {end} ms "
                    f"after one ending at {newest} ms"
                )
            newest = end
            if first_ms is None:
                first_ms = end
            if speed is not None:
                due = t0 + (end - first_ms) / 1000.0 / speed
                while (wait := due - time.monotonic()) > 0:
                    poll(min(wait, 0.05))
            part = partitions.get(key)
            if part is None:
                home = (
                    producer.partition_for(topic, key)
                    if isinstance(producer, KeyedProducer)
                    else None
                )
                part = partitions[key] = -1 if home is None else home  # -1: the partitioner
            try:
                produce(topic, value, key, part)
            except BufferError:  # we outran the broker: wait for room, the back-pressure
                while True:
                    poll(0.01)
                    try:
                        produce(topic, value, key, part)
                        break
                    except BufferError:
                        continue
            sent += 1
            per_key[key] += 1
            if sent % PROGRESS_EVERY == 0 or speed is not None:
                poll(0)
                if bar is not None:
                    bar.show(sent, t0)
        last_ms = None if first_ms is None else newest
    finally:
        remaining = producer.flush(flush_timeout_s)
        if bar is not None:
            bar.show(sent, t0, force=True)
            bar.stop()
    elapsed = time.monotonic() - t0
    errors = list(counter.errors)
    failed = counter.failed + remaining
    if remaining:
        errors.append(f"{remaining} not delivered within {flush_timeout_s:g} s")
    published = sent - failed
    return ReplayStats(
        topic=topic,
        sent=sent,
        published=published,
        failed=failed,
        elapsed_s=elapsed,
        msgs_per_s=published / elapsed if elapsed > 0 else 0.0,
        speed=speed,
        first_event_ms=first_ms,
        last_event_ms=last_ms,
        per_symbol={k.decode(): v for k, v in per_key.items()},
        errors=errors,
    )


class _Bar:
    """The progress bar on stderr, redrawn at most every half second."""

    def __init__(self, topic: str, total: int | None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]replay[/] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._bar.start()
        self._task = self._bar.add_task(topic, total=total, rate="")
        self._shown_at = 0.0

    def show(self, sent: int, t0: float, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._shown_at < 0.5:
            return
        self._shown_at = now
        spent = now - t0
        rate = f"{sent / spent:>9,.0f} msg/s" if spent > 0 else ""
        self._bar.update(self._task, completed=sent, rate=rate)

    def stop(self) -> None:
        self._bar.stop()


class TimeSlice(MergedStreams):
    """Merged streams cut to the event-time range [start_ms, end_ms) (a bar by its open, a
    trade by its time): a backtest's date range. Counted once up front, so the progress bar
    has its total and an empty range is known before anything is published."""

    def __init__(self, streams: MergedStreams, start_ms: int | None, end_ms: int | None) -> None:
        super().__init__(streams.streams)
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.count = sum(1 for _ in self.encoded())

    def _inside(self, msg: MarketMsg) -> bool:
        ts = to_ms(msg.ts)
        return (self.start_ms is None or ts >= self.start_ms) and (
            self.end_ms is None or ts < self.end_ms
        )

    def messages(self) -> Iterator[MarketMsg]:
        return (m for m in super().messages() if self._inside(m))

    def encoded(self) -> Iterator[Wire]:
        lo, hi = self.start_ms, self.end_ms
        return (
            w for w in super().encoded() if (lo is None or w[1] >= lo) and (hi is None or w[1] < hi)
        )
