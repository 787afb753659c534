"""Live polling of RSS/Atom feeds: conditional fetch, parse, clean, tag, dedupe, publish.

Each feed is polled every `news.poll_interval`; a failed poll (unreachable, HTTP error, a body
over the cap, a feed refused for its entities or not a feed, a broker that does not take the
items) is one line and the feed waits `news.backoff` doubled after each failure in a row, at
most `news.backoff_max`, while the other feeds go on. Nothing a feed sends stops the poller.
The clock and the sleep are injected, so tests run the schedule without waiting.

What was published survives a restart (`connectors.news.state`): the validators of the last
answer (a 304 costs nothing), the ids already published (an unchanged entry is skipped without
being counted again), and the content keys (the same story under a new id is a duplicate).
The state is saved only after the items were delivered, so a broker outage republishes rather
than loses them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from connectors.kafka.broker import BrokerError
from connectors.news.http import Fetched, FetchFailed, NotModified, fetch
from connectors.news.publish import ItemSink, send_items
from connectors.news.state import FeedState, StateStore
from models.config.base import parse_duration_ms
from models.config.settings import TopicsConfig
from models.news.config import FeedSpec, NewsConfig
from models.news.dedupe import BoundedSet, NewsCounts, Sifter
from models.news.entries import Refused, TextItem, Undated, content_key, entry_item
from models.news.feed import parse_feed
from models.news.tagging import SymbolTagger

__all__ = ["FeedPollResult", "FeedPoller", "Fetcher", "backoff_ms"]


class Fetcher(Protocol):
    def __call__(
        self,
        url: str,
        *,
        etag: str | None,
        last_modified: str | None,
        timeout_s: float,
        max_bytes: int,
    ) -> Fetched | NotModified | FetchFailed: ...


def backoff_ms(failures: int, base_ms: int, cap_ms: int) -> int:
    """The wait after `failures` failed polls in a row: base, 2 base, 4 base ... at most cap."""
    if failures <= 0:
        return 0
    return min(cap_ms, base_ms << min(failures - 1, 40))


def _item(
    entry: Mapping[str, Any], feed: FeedSpec, source: str, tagger: SymbolTagger, fetched_ms: int
) -> TextItem | Undated | Refused:
    try:
        return entry_item(
            entry, kind=feed.kind, source=source, tagger=tagger, fetched_ms=fetched_ms
        )
    except ValueError as err:  # a message model refusing what cleaning left
        return Refused(" ".join(str(err).split())[:120])


@dataclass
class FeedPollResult:
    url: str
    status: str  # "new", "not modified", "failed"
    counts: NewsCounts = field(default_factory=NewsCounts)
    seen: int = 0
    """Entries already published by an earlier poll (skipped, not counted again)."""
    problem: str | None = None
    wait_ms: int = 0

    def line(self) -> str:
        if self.status == "failed":
            return f"{self.url}: {self.problem}; next try in {self.wait_ms / 1000:g} s"
        if self.status == "not modified":
            return f"{self.url}: not modified"
        note = f" ({self.problem})" if self.problem else ""
        return f"{self.url}: {self.counts.line()}, already seen {self.seen}{note}"


@dataclass
class FeedPoller:
    feeds: Sequence[FeedSpec]
    config: NewsConfig
    tagger: SymbolTagger
    sink: ItemSink
    topics: TopicsConfig
    store: StateStore
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    fetcher: Fetcher = fetch
    say: Callable[[str], None] = print
    states: dict[str, FeedState] = field(default_factory=dict)
    sifter: Sifter = field(init=False)

    def __post_init__(self) -> None:
        self.sifter = Sifter.of(self.config.dedupe_window)
        for feed in self.feeds:
            state = self.states.get(feed.url) or self.store.load(feed.url)
            self.states[feed.url] = state
            for key in state.seen_content:
                self.sifter.window.add(key)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _fail(self, feed: FeedSpec, state: FeedState, reason: str) -> FeedPollResult:
        state.failures += 1
        wait = backoff_ms(
            state.failures,
            parse_duration_ms(self.config.backoff),
            parse_duration_ms(self.config.backoff_max),
        )
        state.next_poll_ms = self._now_ms() + wait
        self.store.save(state)
        return FeedPollResult(feed.url, "failed", problem=reason, wait_ms=wait)

    def _succeed(self, state: FeedState) -> None:
        state.failures = 0
        state.next_poll_ms = self._now_ms() + parse_duration_ms(self.config.poll_interval)

    def poll(self, feed: FeedSpec) -> FeedPollResult:
        """One poll of `feed`; never raises for anything the feed or the network does."""
        state = self.states[feed.url]
        try:
            return self._poll(feed, state)
        except BrokerError as err:
            return self._fail(feed, state, str(err))
        except Exception as err:  # a parser's bug on a feed's bytes must not stop the others
            return self._fail(feed, state, f"unexpected {type(err).__name__}: {err}"[:200])

    def _poll(self, feed: FeedSpec, state: FeedState) -> FeedPollResult:
        got = self.fetcher(
            feed.url,
            etag=state.etag,
            last_modified=state.last_modified,
            timeout_s=self.config.timeout_s,
            max_bytes=self.config.max_bytes,
        )
        if isinstance(got, FetchFailed):
            return self._fail(feed, state, got.reason)
        if isinstance(got, NotModified):
            self._succeed(state)
            self.store.save(state)
            return FeedPollResult(feed.url, "not modified")
        parsed = parse_feed(got.body)
        if isinstance(parsed, Refused):
            return self._fail(feed, state, parsed.reason)
        fetched_ms = self._now_ms()
        source = feed.source or parsed.title or feed.url
        seen = BoundedSet.of(self.config.seen_ids, state.seen_ids)
        counts = NewsCounts()
        items: list[TextItem] = []
        already = 0
        for entry in parsed.entries:
            outcome = _item(entry, feed, source, self.tagger, fetched_ms)
            if not isinstance(outcome, Refused) and outcome.id in seen:
                already += 1
                continue
            item = self.sifter.take(outcome, counts)
            if item is not None:
                items.append(item)
        try:
            send_items(self.sink, items, self.topics)
        except BrokerError:
            for item in items:  # not delivered: the next poll publishes them
                self.sifter.forget(content_key(item))
            raise
        self.sifter.counts.merge(counts)
        for item in items:
            seen.add(item.id)
        state.seen_ids = seen.items()
        keys = BoundedSet.of(self.config.seen_ids, state.seen_content)
        for item in items:
            keys.add(content_key(item))
        state.seen_content = keys.items()
        state.etag, state.last_modified = got.etag, got.last_modified
        self._succeed(state)
        self.store.save(state)
        return FeedPollResult(feed.url, "new", counts, already, parsed.problem)

    def run(
        self, *, once: bool = False, stop: Callable[[], bool] = lambda: False
    ) -> list[FeedPollResult]:
        """Poll the feeds as they come due until `stop()` (or once each with `once`); each
        poll's line goes to `say`. Returns the results of the last round."""
        results: list[FeedPollResult] = []
        while True:
            now = self._now_ms()
            due = [f for f in self.feeds if once or self.states[f.url].next_poll_ms <= now]
            results = [self.poll(feed) for feed in due]
            for result in results:
                self.say(result.line())
            if once or stop():
                return results
            nxt = min(self.states[f.url].next_poll_ms for f in self.feeds)
            self.sleep(max(0.05, (nxt - self._now_ms()) / 1000))
            if stop():
                return results
