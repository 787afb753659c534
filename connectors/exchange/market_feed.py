"""Live market data: an exchange's public trades (through ccxt) onto the Kafka market topic.

`MarketFeed` polls `fetch_trades(symbol, since=..., limit=...)` for each symbol and publishes
every trade once as a `Tick` keyed by symbol, as `connectors.files.replay` does, so the pipeline
consumes a live feed exactly like a replayed one. The rules (what is a duplicate, what to ask
next, how long to wait, when the status changed) are `models.market.feed_cursor`; this module does
the I/O around them:

- Exchanges return overlapping windows, so every trade is checked against the symbol's cursor
  (newest published time + the ids at that millisecond) and skipped if already out.
- The cursor advances only after Kafka confirmed the records (`flush`), and is then written to
  a JSON state file atomically (temporary file, fsync, rename), so a restart resumes where the
  last confirmed page ended: no gap, and no duplicate unless the process died between the
  flush and the rename (then the pipeline drops it: the tick id is derived from exchange,
  symbol and trade id).
- After errors (network, 5xx, timeouts) the next poll pages forward from the cursor until a
  page comes back short, so the trades printed during the outage are all published, in order.
- Odd answers never stop the feed or reach the topic: a trade ccxt cannot read (no time, a
  price that is not a number) makes ccxt fail the whole page, so the page is read again entry
  by entry (`exchange.parse_trade`) and only the unreadable trades are skipped; trades without
  a time, with a time in the future (`max_ahead_ms`), a zero or negative price are skipped
  with a logged reason and counted `invalid`; an answer with trades older than `since` from a
  windowed exchange (Binance) is stale and asked again later instead of marking its hour read.
- `DDoSProtection` (429/418) waits for the response's `Retry-After` (default 1 s) before the
  next request; other errors back off exponentially up to a cap; each change of status is one
  log line, not one per poll.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

import ccxt
from confluent_kafka import Producer

from connectors.kafka.io import DeliveryCounter, make_producer, publish
from models.core.messages import SYMBOL_PATTERN
from models.market.feed_cursor import (
    FeedCursorState,
    FeedErrorKind,
    FeedHealth,
    FeedStatus,
    HealthChange,
    SymbolCursor,
    TradePrint,
    backoff_s,
    plan_next_page,
    retry_after_s,
    split_new,
    start_cursor,
    to_tick,
    trades_from_ccxt,
)

__all__ = [
    "BINANCE_WINDOW_MS",
    "FeedStats",
    "MarketFeed",
    "MarketFeedError",
    "PollResult",
    "classify",
]

_LOG: Final = logging.getLogger("stratflow.market_feed")
_SYMBOL_RE: Final = re.compile(SYMBOL_PATTERN)
BINANCE_WINDOW_MS: Final = 3_600_000  # ccxt.binance sends endTime = since + 1 h with `since`
DEFAULT_SETTLE_MS: Final = 5_000
DEFAULT_MAX_AHEAD_MS: Final = 60_000


class MarketFeedError(RuntimeError):
    """A set-up problem phrased as one line (bad symbol, unusable state file, no producer)."""


class _PublishFailed(RuntimeError):
    """Kafka did not confirm every record of a page within the flush timeout."""


class _PageError(Exception):
    """Carries a symbol's progress out of `_catch_up`; the real error is its `__cause__`."""

    def __init__(self, progress: tuple[int, int, int, int]) -> None:
        super().__init__("page failed")
        self.progress = progress


@dataclass(frozen=True)
class FeedStats:
    """Counters since the feed was built (a snapshot)."""

    status: FeedStatus
    published: int
    duplicates: int
    invalid: int
    errors: int
    rate_limited: int
    requests: int
    unreachable: int
    """Milliseconds given up because more than `max_limit` trades shared one of them."""
    consecutive_errors: int


@dataclass(frozen=True)
class PollResult:
    """What one `poll_once` did."""

    published: int
    duplicates: int
    invalid: int
    requests: int
    error: str | None
    error_kind: FeedErrorKind | None
    delay_s: float
    """Seconds the next request will wait (backoff or Retry-After); 0 after a success."""
    status: FeedStatus

    @property
    def ok(self) -> bool:
        return self.error is None


def classify(err: BaseException) -> FeedErrorKind:
    """ccxt's error classes -> the feed's error kinds. `OperationFailed` is ccxt's "may work
    on retry" branch (network errors, timeouts, 5xx, and Binance's -1000/-1001, which ccxt
    does not count as `NetworkError`); `DDoSProtection` covers 429 and 418."""
    if isinstance(err, ccxt.DDoSProtection):
        return FeedErrorKind.RATE_LIMITED
    if isinstance(err, ccxt.OperationFailed):
        return FeedErrorKind.TRANSIENT
    if isinstance(err, ccxt.BaseError):
        return FeedErrorKind.EXCHANGE
    if isinstance(err, _PublishFailed):
        return FeedErrorKind.PUBLISH
    if isinstance(err, OSError):
        return FeedErrorKind.STATE
    return FeedErrorKind.INTERNAL


def _error_text(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".splitlines()[0]
    return text if len(text) <= 300 else text[:297] + "..."


def _within(docs: list[dict[str, Any]], since: int) -> tuple[list[dict[str, Any]], int, list[str]]:
    """What ccxt keeps of a parsed answer (a time at or after `since`, oldest first), how many
    were older, and a reason for each entry without a usable time."""
    kept: list[dict[str, Any]] = []
    older = 0
    bad: list[str] = []
    for doc in docs:
        ts = doc.get("timestamp")
        if isinstance(ts, bool) or not isinstance(ts, int | float) or not ts > 0:
            bad.append(f"trade {doc.get('id')!r}: timestamp={ts!r}: not epoch milliseconds")
        elif ts < since:
            older += 1
        else:
            kept.append(doc)
    kept.sort(key=lambda d: d["timestamp"])
    return kept, older, bad


def _write_atomically(path: Path, text: str) -> None:
    """Temporary file in the same directory, fsync, rename over the old file, fsync the
    directory: a crash leaves the old state or the new one, never half of either."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class MarketFeed:
    """Polls one ccxt exchange for the public trades of `symbols` and publishes them to `topic`.

    Give it a `producer` (not closed by the feed) or a `bootstrap` (the feed makes and closes
    its own). One feed per exchange client: ccxt clients are not thread-safe, so `run` owns the
    client while it runs. `poll_once()` is one round over every symbol (tests); `run(stop)`
    loops it until `stop` is set (a thread).
    """

    def __init__(
        self,
        exchange: ccxt.Exchange,
        symbols: Sequence[str],
        *,
        topic: str,
        producer: Producer | None = None,
        bootstrap: str | None = None,
        state_path: str | Path | None = None,
        topic_symbols: Mapping[str, str] | None = None,
        start_ms: int | None = None,
        limit: int = 500,
        max_limit: int = 1000,
        poll_interval_s: float = 1.0,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        window_ms: int | Literal["auto"] | None = "auto",
        settle_ms: int = DEFAULT_SETTLE_MS,
        max_pages_per_poll: int = 200,
        flush_timeout_s: float = 10.0,
        clock_ms: Callable[[], int] | None = None,
        max_ahead_ms: int = DEFAULT_MAX_AHEAD_MS,
    ) -> None:
        """`symbols`: ccxt unified symbols (BTC/USDT). `topic_symbols` renames them on the topic
        (default: the same name; it must match the pipeline's symbol pattern). `start_ms`: where
        a symbol without a saved cursor starts (None: `settle_ms` before its first poll).
        `window_ms`: the span the exchange cuts a `since` query to ("auto": one hour for
        ccxt.binance and its subclasses, none otherwise). `settle_ms`: a window counts as closed
        only that long after its end. `clock_ms`: the exchange's clock for window decisions
        (default `exchange.milliseconds`). `max_ahead_ms`: a trade stamped later than that
        after the clock is refused (a bogus time would move the cursor into the future)."""
        if not symbols:
            raise MarketFeedError("market feed needs at least one symbol")
        if len(set(symbols)) != len(symbols):
            raise MarketFeedError(f"duplicate symbols in {list(symbols)}")
        if not 1 <= limit <= max_limit:
            raise MarketFeedError(f"need 1 <= limit <= max_limit, got {limit} and {max_limit}")
        if poll_interval_s < 0 or backoff_base_s < 0 or backoff_cap_s < backoff_base_s:
            raise MarketFeedError("poll interval and backoff must be >= 0, cap >= base")
        if max_pages_per_poll < 1:
            raise MarketFeedError("max_pages_per_poll must be >= 1")
        self.exchange = exchange
        self.exchange_id = str(exchange.id)
        self.symbols = list(symbols)
        names = dict(topic_symbols or {})
        self._topic_symbol = {s: names.get(s, s) for s in self.symbols}
        for sym, name in self._topic_symbol.items():
            if not _SYMBOL_RE.match(name):
                raise MarketFeedError(
                    f"symbol {sym!r} is published as {name!r}, which the pipeline refuses "
                    "(A-Z, 0-9 and . _ / : - , max 32); rename it with topic_symbols="
                )
        self.topic = topic
        self.start_ms = start_ms
        self.limit = limit
        self.max_limit = max_limit
        self.poll_interval_s = poll_interval_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        if window_ms == "auto":
            window_ms = BINANCE_WINDOW_MS if isinstance(exchange, ccxt.binance) else None
        self.window_ms = window_ms
        self.settle_ms = settle_ms
        self.max_pages_per_poll = max_pages_per_poll
        self.flush_timeout_s = flush_timeout_s
        self._clock_ms: Callable[[], int] = clock_ms or (lambda: int(exchange.milliseconds()))
        if window_ms is not None and window_ms <= 0:
            raise MarketFeedError(f"window_ms must be > 0 or None, got {window_ms}")
        if settle_ms < 0:
            raise MarketFeedError(f"settle_ms must be >= 0, got {settle_ms}")
        if max_ahead_ms < 0:
            raise MarketFeedError(f"max_ahead_ms must be >= 0, got {max_ahead_ms}")
        self.max_ahead_ms = max_ahead_ms
        self.state_path = Path(state_path) if state_path is not None else None
        self._state = self._load_state()  # before the producer: a refusal leaks nothing
        if producer is None:
            if not bootstrap:
                raise MarketFeedError("market feed needs a producer or a bootstrap")
            producer = make_producer(bootstrap, **{"linger.ms": 5})
            self._owns_producer = True
        else:
            self._owns_producer = False
        self.producer = producer
        self._health = FeedHealth()
        self._not_before = 0.0  # monotonic time before which no request is sent
        self._parked_until: dict[str, float] = {}  # symbols the exchange refused, until when
        self._symbol_errors: dict[str, int] = {}
        self._idle = threading.Event()  # never set: poll_once's wait without a stop event
        self._lock = threading.Lock()  # counters, read by other threads through `stats`
        self._published = self._duplicates = self._invalid = 0
        self._errors = self._rate_limited = self._requests = self._unreachable = 0
        self._failing_since: float | None = None
        self._closed = False

    # ------------------------------------------------------------------ state file

    def _load_state(self) -> FeedCursorState:
        path = self.state_path
        if path is None or not path.exists():
            return FeedCursorState(exchange=self.exchange_id)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise MarketFeedError(f"state file {path}: cannot read ({exc.strerror})") from None
        try:
            state = FeedCursorState.from_json(text)
        except ValueError as exc:
            # Starting over would republish or skip trades: a person must decide.
            raise MarketFeedError(f"state file {path}: not a market feed state ({exc})") from None
        if state.exchange != self.exchange_id:
            raise MarketFeedError(
                f"state file {path} belongs to exchange {state.exchange!r}, "
                f"not {self.exchange_id!r}"
            )
        return state

    def _save_state(self) -> None:
        if self.state_path is not None:
            _write_atomically(self.state_path, self._state.to_json())

    def cursor(self, symbol: str) -> SymbolCursor:
        """The symbol's cursor as last advanced (and, with a state file, saved)."""
        return self._state.cursor(symbol)

    # ------------------------------------------------------------------ counters

    @property
    def status(self) -> FeedStatus:
        return self._health.status

    @property
    def stats(self) -> FeedStats:
        with self._lock:
            return FeedStats(
                status=self._health.status,
                published=self._published,
                duplicates=self._duplicates,
                invalid=self._invalid,
                errors=self._errors,
                rate_limited=self._rate_limited,
                requests=self._requests,
                unreachable=self._unreachable,
                consecutive_errors=self._health.consecutive_errors,
            )

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, f"_{name}", getattr(self, f"_{name}") + delta)

    # ------------------------------------------------------------------ polling

    def poll_once(self, stop: threading.Event | None = None) -> PollResult:
        """One round: every symbol paged forward from its cursor until caught up (or
        `max_pages_per_poll` pages). Waits first if a backoff or Retry-After is pending (`stop`
        cuts the wait short: the result then says nothing was done). Errors are reported in the
        result, never raised: a network, rate-limit, Kafka or state-file error ends the round
        (the exchange or the broker is the problem, so every symbol waits); an exchange error
        about one symbol (e.g. delisted) parks that symbol with its own backoff and the round
        goes on with the others."""
        waiter = stop or self._idle
        remaining = self._not_before - time.monotonic()
        if remaining > 0 and waiter.wait(remaining):
            return self._result(0, 0, 0, 0, None, None, 0.0)
        published = duplicates = invalid = requests = 0
        answered = 0
        refused: tuple[BaseException, FeedErrorKind] | None = None
        for symbol in self.symbols:
            if stop is not None and stop.is_set():
                break
            if self._parked_until.get(symbol, 0.0) > time.monotonic():
                continue
            err: BaseException | None = None
            try:
                progress = self._catch_up(symbol)
            except _PageError as page_error:
                progress = page_error.progress
                err = page_error.__cause__ or page_error
            published += progress[0]
            duplicates += progress[1]
            invalid += progress[2]
            requests += progress[3]
            if err is None:
                answered += 1
                self._unpark(symbol)
                continue
            kind = classify(err)
            if kind is FeedErrorKind.EXCHANGE:
                self._park(symbol, err)
                refused = (err, kind)
                continue
            delay = self._failed(err, kind, published)
            return self._result(
                published, duplicates, invalid, requests, _error_text(err), kind, delay
            )
        if answered == 0 and refused is None:  # every symbol parked: nothing was asked
            return self._result(0, 0, 0, 0, None, None, 0.0)
        if refused is not None and answered == 0:  # every symbol polled was refused
            delay = self._failed(refused[0], refused[1], published, counted=True)
            text = _error_text(refused[0])
            return self._result(published, duplicates, invalid, requests, text, refused[1], delay)
        self._succeeded(published)
        if refused is None:
            return self._result(published, duplicates, invalid, requests, None, None, 0.0)
        text = _error_text(refused[0])
        return self._result(published, duplicates, invalid, requests, text, refused[1], 0.0)

    def _park(self, symbol: str, err: BaseException) -> None:
        """Skip a symbol the exchange refuses for a while (backoff of its own), so a delisted
        market does not hold back or slow down the others; one log line when it starts."""
        errors = self._symbol_errors.get(symbol, 0) + 1
        self._symbol_errors[symbol] = errors
        wait = backoff_s(errors, self.backoff_base_s, self.backoff_cap_s)
        self._parked_until[symbol] = time.monotonic() + wait
        self._count(errors=1)
        if errors == 1:
            _LOG.warning(
                "market feed %s %s refused (%s); skipping it with backoff (at most %g s), "
                "the other symbols go on",
                self.exchange_id,
                symbol,
                _error_text(err),
                self.backoff_cap_s,
            )

    def _unpark(self, symbol: str) -> None:
        errors = self._symbol_errors.pop(symbol, 0)
        self._parked_until.pop(symbol, None)
        if errors:
            _LOG.info(
                "market feed %s %s answering again after %d errors",
                self.exchange_id,
                symbol,
                errors,
            )

    def _result(
        self,
        published: int,
        duplicates: int,
        invalid: int,
        requests: int,
        error: str | None,
        kind: FeedErrorKind | None,
        delay: float,
    ) -> PollResult:
        return PollResult(
            published, duplicates, invalid, requests, error, kind, delay, self._health.status
        )

    def _catch_up(self, symbol: str) -> tuple[int, int, int, int]:
        """Page one symbol forward; (published, duplicates, invalid, requests). An error is
        re-raised as `_PageError` carrying the progress made before it."""
        published = duplicates = invalid = requests = 0
        cursor = self._state.cursor(symbol)
        limit = self.limit
        try:
            started = start_cursor(cursor, self.start_ms, self._clock_ms(), self.settle_ms)
            if started != cursor:
                cursor = started
                self._state = self._state.with_cursor(symbol, cursor)
                self._save_state()
            since = cursor.next_since()
            assert since is not None
            for _ in range(self.max_pages_per_poll):
                requests += 1
                self._count(requests=1)
                raw, problems, older, page_size = self._fetch_page(symbol, since, limit)
                now_ms = self._clock_ms()
                trades, unreadable = trades_from_ccxt(raw, not_after_ms=now_ms + self.max_ahead_ms)
                problems += unreadable
                step = plan_next_page(
                    since=since,
                    limit=limit,
                    base_limit=self.limit,
                    max_limit=self.max_limit,
                    page_size=page_size,
                    page_ts=[t.ts_ms for t in trades],
                    window_ms=self.window_ms,
                    now_ms=now_ms,
                    settle_ms=self.settle_ms,
                    older=older,
                )
                if step.stale:  # nothing of it is published; the round backs off
                    raise ccxt.BadResponse(
                        f"{self.exchange_id} {symbol}: the answer to since={since} holds "
                        f"{older} trade(s) older than that: stale, asked again later"
                    )
                if problems:
                    invalid += len(problems)
                    self._count(invalid=len(problems))
                    _LOG.warning(
                        "market feed %s %s: %d unreadable trade(s) skipped, e.g. %s",
                        self.exchange_id,
                        symbol,
                        len(problems),
                        problems[0],
                    )
                new, dups = split_new(cursor, trades)
                duplicates += dups
                self._count(duplicates=dups)
                sent, bad = self._publish(symbol, new)
                published += sent
                invalid += bad
                advanced = cursor.advance(new)
                if step.scanned_ms is not None:
                    advanced = advanced.scanned_to(step.scanned_ms)
                if step.stuck:
                    self._count(unreachable=1)
                    _LOG.warning(
                        "market feed %s %s: more than %d trades at %d ms; the rest of that "
                        "millisecond cannot be paged by time and is skipped",
                        self.exchange_id,
                        symbol,
                        self.max_limit,
                        since,
                    )
                if advanced != cursor:
                    cursor = advanced
                    self._state = self._state.with_cursor(symbol, cursor)
                    self._save_state()
                if step.done:
                    break
                since, limit = step.since, step.limit
        except Exception as err:
            raise _PageError((published, duplicates, invalid, requests)) from err
        return published, duplicates, invalid, requests

    def _fetch_page(
        self, symbol: str, since: int, limit: int
    ) -> tuple[list[dict[str, Any]], list[str], int, int]:
        """`fetch_trades`, checked against the exchange's own answer; (ccxt trades, reasons
        for the entries skipped, how many entries were older than `since`, the answer's size).

        ccxt drops entries without a time or older than `since` and cuts the answer to
        `limit` without a word, and one unreadable entry makes it fail the whole page (a
        `TypeError` or `ValueError`, which would fail every poll on that page forever). For
        an answer that is a JSON list (Binance) the entries ccxt did not return are read one by
        one with `exchange.parse_trade`, so each gets a reason, and a page ccxt could not read
        keeps its readable trades. The answer's size is the page size for paging: a full page
        with one bad entry is still full."""
        self.exchange.last_http_response = None
        try:
            raw = [dict(t) for t in self.exchange.fetch_trades(symbol, since=since, limit=limit)]
        except ccxt.BaseError:
            raise
        except Exception as err:  # ccxt could not read the answer: read it entry by entry
            answer = self._answer()
            if answer is None:
                raise ccxt.BadResponse(
                    f"{self.exchange_id} {symbol}: unreadable trades answer ({_error_text(err)})"
                ) from err
            docs, problems = self._reparse(symbol, answer)
            kept, older, bad = _within(docs, since)
            return kept[:limit], problems + bad, older, len(answer)
        answer = self._answer()
        if answer is None or len(answer) <= len(raw):
            return raw, [], 0, len(raw)
        docs, problems = self._reparse(symbol, answer)
        _, older, bad = _within(docs, since)
        return raw, problems + bad, older, len(answer)

    def _answer(self) -> list[Any] | None:
        """The last answer's JSON when it is a list of entries, else None."""
        text = getattr(self.exchange, "last_http_response", None)
        if not isinstance(text, str) or not text:
            return None
        try:
            doc = json.loads(text)
        except ValueError:
            return None
        return doc if isinstance(doc, list) else None

    def _reparse(self, symbol: str, answer: list[Any]) -> tuple[list[dict[str, Any]], list[str]]:
        market = self.exchange.market(symbol)
        docs: list[dict[str, Any]] = []
        problems: list[str] = []
        for entry in answer:
            try:
                docs.append(dict(self.exchange.parse_trade(entry, market)))
            except Exception as exc:
                problems.append(f"unreadable entry {str(entry)[:120]}: {_error_text(exc)}")
        return docs, problems

    def _publish(self, symbol: str, trades: list[TradePrint]) -> tuple[int, int]:
        """Publish new trades and wait for Kafka's confirmation; (published, invalid). Raises
        `_PublishFailed` if any record is unconfirmed: the cursor then stays where it was and
        the page is published again on the next poll (the tick ids make that harmless)."""
        if not trades:
            return 0, 0
        counter = DeliveryCounter()
        key = self._topic_symbol[symbol].encode()
        sent = bad = 0
        record_ms = int(time.time() * 1000)  # publishing time, as a live feed stamps it
        for trade in trades:
            try:
                tick = to_tick(self.exchange_id, symbol, trade, self._topic_symbol[symbol])
            except ValueError as exc:
                bad += 1
                _LOG.warning("market feed %s %s: trade skipped: %s", self.exchange_id, symbol, exc)
                continue
            publish(
                self.producer,
                self.topic,
                key,
                tick.model_dump_json().encode(),
                record_ms,
                on_delivery=counter,
            )
            sent += 1
        remaining = self.producer.flush(self.flush_timeout_s)
        if remaining or counter.failed:
            # Drop what is still queued: it is sent again from the unchanged cursor.
            self.producer.purge(in_queue=True, in_flight=False)
            self.producer.poll(0)
            why = "; ".join(counter.errors) or f"{remaining} not confirmed"
            raise _PublishFailed(
                f"{sent - counter.delivered} of {sent} records to {self.topic} not confirmed "
                f"within {self.flush_timeout_s:g} s ({why})"
            )
        self._count(published=sent, invalid=bad)
        return sent, bad

    # ------------------------------------------------------------------ health

    def _succeeded(self, published: int) -> None:
        self._health, change = self._health.success()
        if change is not None:
            self._log_change(change, None, 0.0, published)
            self._failing_since = None

    def _failed(
        self, err: BaseException, kind: FeedErrorKind, published: int, *, counted: bool = False
    ) -> float:
        """Record a failed round (`counted`: its error is already in the counters)."""
        retry_after = None
        if kind is FeedErrorKind.RATE_LIMITED:
            headers = getattr(self.exchange, "last_response_headers", None)
            retry_after = retry_after_s(headers, default_s=1.0, now_s=time.time())
        self._health, delay, change = self._health.failure(
            kind, base_s=self.backoff_base_s, cap_s=self.backoff_cap_s, retry_after=retry_after
        )
        self._not_before = time.monotonic() + delay
        if not counted:
            self._count(errors=1, rate_limited=1 if kind is FeedErrorKind.RATE_LIMITED else 0)
        if self._failing_since is None:
            self._failing_since = time.monotonic()
        if change is not None:
            self._log_change(change, err, delay, published)
        if kind is FeedErrorKind.INTERNAL and change is not None:
            _LOG.error(
                "market feed %s internal error:\n%s",
                self.exchange_id,
                "".join(traceback.format_exception(err)),
            )
        return delay

    def _log_change(
        self, change: HealthChange, err: BaseException | None, delay: float, published: int
    ) -> None:
        feed = f"market feed {self.exchange_id}"
        if change.new is FeedStatus.LIVE:
            if change.old is FeedStatus.STARTING:
                _LOG.info(
                    "%s live: %s -> %s (%d trades published catching up)",
                    feed,
                    ", ".join(self.symbols),
                    self.topic,
                    published,
                )
            else:
                spent = time.monotonic() - (self._failing_since or time.monotonic())
                _LOG.info(
                    "%s live again after %d errors in %.1f s; caught up, %d trades published",
                    feed,
                    change.errors,
                    spent,
                    published,
                )
        elif change.new is FeedStatus.RATE_LIMITED:
            _LOG.warning(
                "%s rate limited (%s): waiting %.1f s before the next request",
                feed,
                _error_text(err) if err else "",
                delay,
            )
        else:
            _LOG.warning(
                "%s failing (%s); retrying with backoff (%.1f s now, at most %g s)",
                feed,
                _error_text(err) if err else "",
                delay,
                self.backoff_cap_s,
            )

    # ------------------------------------------------------------------ loop

    def run(self, stop: threading.Event) -> None:
        """Poll until `stop` is set: every `poll_interval_s` when healthy, after the backoff or
        Retry-After when not (the wait happens inside `poll_once`). Never raises for what the
        exchange, Kafka or the state file do; closes nothing (call `close`)."""
        while not stop.is_set():
            try:
                result = self.poll_once(stop)
            except Exception as err:  # a bug: keep the feed alive, say so once per change
                self._failed(err, FeedErrorKind.INTERNAL, 0)
                continue
            if result.ok:
                stop.wait(self.poll_interval_s)

    def close(self) -> None:
        """Flush and close the producer if the feed made it (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_producer:
            self.producer.flush(self.flush_timeout_s)
            # Drop the broker connections now, not at garbage collection: a broker shutting
            # down waits for its clients.
            closer = getattr(self.producer, "close", None)  # confluent-kafka >= 2.10
            if callable(closer):
                closer()

    def __enter__(self) -> MarketFeed:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
