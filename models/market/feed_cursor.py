"""The market feed's rules, without I/O: which trades are new, what to ask next, how long to wait.

`connectors/exchange/market_feed.py` polls an exchange's public trades and publishes them as
`Tick`s.
Exchanges answer `fetch_trades(since=...)` with overlapping windows (everything at `since`
itself comes back again), cap a page at `limit` trades, and Binance also cuts every `since`
query to one hour. Deciding what is a duplicate, whether the exchange has been read completely
and when to ask again is where a feed loses or repeats trades, so those decisions live here, as
plain functions over plain values, and are unit-tested without an exchange or a broker.

The cursor of a symbol is "the newest published trade time plus the ids published at exactly
that millisecond": ids alone would need an ever-growing set, times alone would drop the second
of two trades printed in the same millisecond. It assumes what exchanges guarantee for their
public tape: a trade never appears later with a time older than trades already served.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Final, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.core.messages import Tick

__all__ = [
    "MAX_TICK_ID_CHARS",
    "STATE_VERSION",
    "FeedCursorState",
    "FeedErrorKind",
    "FeedHealth",
    "FeedStatus",
    "HealthChange",
    "PageStep",
    "SymbolCursor",
    "TradePrint",
    "backoff_s",
    "number_to_decimal",
    "plan_next_page",
    "retry_after_s",
    "split_new",
    "start_cursor",
    "tick_id",
    "to_tick",
    "trades_from_ccxt",
]

STATE_VERSION: Final = 1
MAX_TICK_ID_CHARS: Final = 128  # `Tick.id`'s limit
MAX_RETRY_AFTER_S: Final = 300.0  # a larger Retry-After is a broken header, not a plan
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_INT_RE: Final = re.compile(r"^[0-9]{1,30}$")


# --------------------------------------------------------------------------------- trades


class TradePrint(BaseModel):
    """One public trade as the feed keeps it: the exchange's id, time, price and size."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trade_id: str = Field(min_length=1)
    ts_ms: int
    price: Decimal
    amount: Decimal

    @property
    def sort_key(self) -> tuple[int, int, int, str]:
        """Time, then the id: numerically when it is a number (Binance's "9" before "10")."""
        if _INT_RE.match(self.trade_id):
            return (self.ts_ms, 0, int(self.trade_id), "")
        return (self.ts_ms, 1, 0, self.trade_id)


def number_to_decimal(value: Any) -> Decimal:
    """A ccxt number as the decimal the exchange sent.

    ccxt parses the exchange's decimal text into a float unless the client was built with
    `number=str`; `repr` of that float is the shortest text that reads back as it, which is the
    exchange's own figure for up to 15 significant digits. Strings are taken exactly.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, Decimal):
        out = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {value!r}")
        out = Decimal(repr(value))
    elif isinstance(value, int | str):
        try:
            out = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"not a number: {value!r}") from None
    else:
        raise ValueError(f"not a number: {value!r}")
    if not out.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return out


def trades_from_ccxt(
    docs: Iterable[Mapping[str, Any]], *, not_after_ms: int | None = None
) -> tuple[list[TradePrint], list[str]]:
    """ccxt trade structures -> (trades, one reason per trade that could not be read).

    A trade without an id (some exchanges have none) gets one derived from its time, price,
    size and side plus its rank among identical prints of the same millisecond in this
    answer; a `since` query always returns whole milliseconds, so the rank is stable across
    the overlapping answers the feed sees.

    A trade time after `not_after_ms` (the exchange's clock plus a tolerance) is refused: once
    published it would move the cursor into the future, and every real trade after it would
    then look already published (and the pipeline's clock would jump with it).
    """
    out: list[TradePrint] = []
    problems: list[str] = []
    seen: Counter[str] = Counter()
    for doc in docs:
        try:
            ts = doc.get("timestamp")
            if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
                raise ValueError(f"timestamp={ts!r}: not epoch milliseconds")
            ts_ms = int(ts)
            if ts_ms <= 0:
                raise ValueError(f"timestamp={ts!r}: not epoch milliseconds")
            if not_after_ms is not None and ts_ms > not_after_ms:
                raise ValueError(
                    f"trade {doc.get('id')!r}: timestamp {ts_ms} is in the future "
                    f"(after {not_after_ms})"
                )
            price = number_to_decimal(doc.get("price"))
            amount = number_to_decimal(doc.get("amount"))
            raw_id = doc.get("id")
            if raw_id is None or str(raw_id).strip() == "":
                basis = f"{ts_ms}|{price}|{amount}|{doc.get('side')}"
                seen[basis] += 1
                digest = hashlib.sha256(f"{basis}|{seen[basis]}".encode()).hexdigest()[:24]
                trade_id = f"h{digest}"
            else:
                trade_id = str(raw_id).strip()
            out.append(TradePrint(trade_id=trade_id, ts_ms=ts_ms, price=price, amount=amount))
        except ValueError as exc:  # ValidationError is a ValueError
            problems.append(str(exc).splitlines()[0])
    return out, problems


def tick_id(exchange_id: str, symbol: str, trade_id: str) -> str:
    """`exchange:symbol:trade_id`, the same whoever publishes it and however often, so the
    pipeline's dedupe (and ClickHouse's `tick_id`) drop a re-published trade. Trade ids are
    only unique per symbol (Binance numbers each market from 1), hence the symbol. An id too
    long for `Tick.id` becomes its SHA-256 (still stable)."""
    text = f"{exchange_id}:{symbol}:{trade_id}"
    if len(text) <= MAX_TICK_ID_CHARS:
        return text
    return f"{exchange_id[:32]}:sha256:{hashlib.sha256(text.encode()).hexdigest()}"


def _ms_to_datetime(ms: int) -> datetime:
    """Exact: timedelta arithmetic, never a float of seconds."""
    return _EPOCH + timedelta(milliseconds=ms)


def to_tick(
    exchange_id: str, symbol: str, trade: TradePrint, topic_symbol: str | None = None
) -> Tick:
    """The market-topic message of a trade (`ValueError` if the trade breaks `Tick`'s bounds,
    e.g. a zero price). `topic_symbol` is the name the pipeline knows the market by (default:
    the exchange's symbol); the id always uses the exchange's symbol."""
    try:
        return Tick(
            symbol=topic_symbol or symbol,
            ts=_ms_to_datetime(trade.ts_ms),
            price=trade.price,
            size=trade.amount,
            id=tick_id(exchange_id, symbol, trade.trade_id),
        )
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"trade {trade.trade_id}: {where}: {first['msg']}") from None


# --------------------------------------------------------------------------------- cursor


class SymbolCursor(BaseModel):
    """How far a symbol has been published.

    `ts_ms` is the time of the newest published trade and `ids` the trades published at
    exactly that millisecond. `scanned_ms` is set when the exchange was read completely up to
    a time with no trade there (an empty closed Binance hour), so the next query starts there
    instead of re-reading the empty hours after every restart.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ts_ms: int | None = None
    ids: tuple[str, ...] = ()
    scanned_ms: int | None = None

    def is_published(self, trade: TradePrint) -> bool:
        if self.ts_ms is None:
            return False
        return trade.ts_ms < self.ts_ms or (
            trade.ts_ms == self.ts_ms and trade.trade_id in self.ids
        )

    def next_since(self) -> int | None:
        """The `since` of the next query: the newest published millisecond (asked again, as
        more trades of it may have printed) or the scan mark, whichever is later."""
        marks = [m for m in (self.ts_ms, self.scanned_ms) if m is not None]
        return max(marks) if marks else None

    def advance(self, published: Sequence[TradePrint]) -> SymbolCursor:
        """The cursor after `published` (new trades in order) went out."""
        if not published:
            return self
        last = max(t.ts_ms for t in published)
        if self.ts_ms is not None and last < self.ts_ms:
            raise ValueError(f"cursor cannot move back from {self.ts_ms} to {last}")
        at_last = [t.trade_id for t in published if t.ts_ms == last]
        kept = self.ids if last == self.ts_ms else ()
        ids = tuple(dict.fromkeys((*kept, *at_last)))
        return self.model_copy(update={"ts_ms": last, "ids": ids})

    def scanned_to(self, ms: int) -> SymbolCursor:
        if self.scanned_ms is not None and ms <= self.scanned_ms:
            return self
        return self.model_copy(update={"scanned_ms": ms})


def split_new(cursor: SymbolCursor, trades: Iterable[TradePrint]) -> tuple[list[TradePrint], int]:
    """(trades not published yet, in publishing order; how many were skipped as already
    published or repeated within the answer)."""
    new: dict[str, TradePrint] = {}
    duplicates = 0
    for t in sorted(trades, key=lambda t: t.sort_key):
        if cursor.is_published(t) or t.trade_id in new:
            duplicates += 1
        else:
            new[t.trade_id] = t
    return list(new.values()), duplicates


class FeedCursorState(BaseModel):
    """The feed's state file: one cursor per symbol of one exchange. Cursors of symbols the
    running feed does not poll are kept, so narrowing the symbol list loses nothing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = STATE_VERSION
    exchange: str = Field(min_length=1)
    symbols: dict[str, SymbolCursor] = Field(default_factory=dict)

    def cursor(self, symbol: str) -> SymbolCursor:
        return self.symbols.get(symbol, SymbolCursor())

    def with_cursor(self, symbol: str, cursor: SymbolCursor) -> FeedCursorState:
        return self.model_copy(update={"symbols": {**self.symbols, symbol: cursor}})

    def to_json(self) -> str:
        return self.model_dump_json(indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> FeedCursorState:
        """Parse a state file (`ValueError` with one line naming the first problem)."""
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "document"
            raise ValueError(f"{where}: {first['msg']}") from None


# --------------------------------------------------------------------------------- paging


class PageStep(NamedTuple):
    """What follows one answer of `fetch_trades`."""

    done: bool
    """Caught up: nothing more to ask this poll."""
    since: int
    """`since` of the next query (when not done)."""
    limit: int
    """`limit` of the next query."""
    scanned_ms: int | None
    """A new scan mark for the cursor (a closed window was read completely), or None."""
    stuck: bool = False
    """More than `max_limit` trades share the millisecond `since`: the rest of it cannot be
    reached by time paging and is skipped (the feed counts and logs it)."""
    stale: bool = False
    """The answer held trades older than `since` from an exchange that cuts queries to a
    window (it does not answer what was asked: a lagging replica, a cached page): nothing of it
    is trusted, the feed asks again later."""


def start_cursor(
    cursor: SymbolCursor, start_ms: int | None, now_ms: int, settle_ms: int
) -> SymbolCursor:
    """The cursor a symbol's first query starts from: its own when it has one, else a scan mark
    at `start_ms` (None: `now - settle`, i.e. trades from the feed's start on). The mark is
    saved with the cursor, so a restart before the first trade still starts there."""
    if cursor.next_since() is not None:
        return cursor
    return cursor.scanned_to(now_ms - settle_ms if start_ms is None else start_ms)


def plan_next_page(
    *,
    since: int,
    limit: int,
    base_limit: int,
    max_limit: int,
    page_size: int,
    page_ts: Sequence[int],
    window_ms: int | None,
    now_ms: int,
    settle_ms: int,
    older: int = 0,
) -> PageStep:
    """Decide the next query after an answer of `page_size` trades (times `page_ts`) to
    `fetch_trades(since=since, limit=limit)`.

    - `older` trades of the answer were before `since`. An exchange with a query window
      (Binance) never sends those: the answer is stale, and concluding from it that a closed
      window was empty would skip its trades for good, so it is `stale` (done, nothing
      scanned). Exchanges without a window may ignore `since`; their older trades are only
      skipped.

    - A full page: more may follow; ask again from its newest millisecond (trades there come
      back and are skipped as duplicates). A full page that does not move past `since` means
      one millisecond holds more than `limit` trades: ask again with twice the limit, up to
      `max_limit`, then give the millisecond up (`stuck`).
    - A short page: caught up, unless the exchange cut the query to a window (`window_ms`,
      Binance: one hour) that closed before `now - settle`: then the window was read
      completely and the next query starts at its end.
    """
    if older > 0 and window_ms is not None:
        return PageStep(True, since, base_limit, None, stale=True)
    if page_size >= limit:
        newest = max(page_ts, default=since)
        if newest > since:
            return PageStep(False, newest, base_limit, None)
        if limit < max_limit:
            return PageStep(False, since, min(limit * 2, max_limit), None)
        return PageStep(False, since + 1, base_limit, since + 1, stuck=True)
    if window_ms is not None:
        end = since + window_ms
        if end <= now_ms - settle_ms:
            return PageStep(False, end, base_limit, end)
    return PageStep(True, since, base_limit, None)


# --------------------------------------------------------------------------------- health


class FeedErrorKind(StrEnum):
    """Why a poll failed; every kind is retried, with different waits and log lines."""

    RATE_LIMITED = "rate_limited"  # 429/418 (ccxt DDoSProtection): wait for Retry-After
    TRANSIENT = "transient"  # network, timeout, 5xx: the exchange may answer again soon
    EXCHANGE = "exchange"  # any other exchange error (e.g. a delisted symbol)
    PUBLISH = "publish"  # Kafka did not confirm the records: nothing advanced
    STATE = "state"  # the state file could not be written
    INTERNAL = "internal"  # a bug: logged with its traceback, retried like the rest


class FeedStatus(StrEnum):
    STARTING = "starting"
    LIVE = "live"
    FAILING = "failing"
    RATE_LIMITED = "rate_limited"


def backoff_s(consecutive_errors: int, base_s: float, cap_s: float) -> float:
    """Exponential backoff: `base`, `2 base`, `4 base`... capped at `cap` (0 with no error)."""
    if consecutive_errors <= 0:
        return 0.0
    return float(min(cap_s, base_s * 2 ** min(consecutive_errors - 1, 62)))


def retry_after_s(
    headers: Mapping[str, Any] | None, *, default_s: float = 1.0, now_s: float | None = None
) -> float:
    """Seconds to wait from a `Retry-After` header (delta-seconds or an HTTP date, the latter
    needing `now_s`), matched case-insensitively; `default_s` when absent or unreadable, capped
    at `MAX_RETRY_AFTER_S`."""
    if not headers:
        return default_s
    raw = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
    if raw is None:
        return default_s
    text = str(raw).strip()
    try:
        seconds = float(text)
    except ValueError:
        if now_s is None:
            return default_s
        from email.utils import parsedate_to_datetime  # stdlib parsing, no I/O

        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return default_s
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now_s
    if not math.isfinite(seconds):
        return default_s
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


class HealthChange(NamedTuple):
    """A change of the feed's status: exactly what deserves one log line."""

    old: FeedStatus
    new: FeedStatus
    errors: int
    """Consecutive errors before this change (for a recovery: how many it took)."""


class FeedHealth(BaseModel):
    """The feed's status and its run of consecutive errors.

    Every poll reports `success()` or `failure(...)`; each returns the change of status, if
    any, so the connector logs once per change instead of once per poll, and `failure` also
    says how long to wait before the next request.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: FeedStatus = FeedStatus.STARTING
    consecutive_errors: int = 0

    def success(self) -> tuple[FeedHealth, HealthChange | None]:
        new = FeedHealth(status=FeedStatus.LIVE)
        if self.status is FeedStatus.LIVE:
            return new, None
        return new, HealthChange(self.status, FeedStatus.LIVE, self.consecutive_errors)

    def failure(
        self,
        kind: FeedErrorKind,
        *,
        base_s: float,
        cap_s: float,
        retry_after: float | None = None,
    ) -> tuple[FeedHealth, float, HealthChange | None]:
        """(new health, seconds to wait before the next request, change or None).

        A rate limit waits for `retry_after` (the server's `Retry-After`, 1 s by default), and
        no less than the backoff, so a server answering `Retry-After: 0` to every request is
        not hammered; everything else waits for the backoff.
        """
        errors = self.consecutive_errors + 1
        delay = backoff_s(errors, base_s, cap_s)
        if kind is FeedErrorKind.RATE_LIMITED:
            status = FeedStatus.RATE_LIMITED
            delay = max(delay, 1.0 if retry_after is None else retry_after)
        else:
            status = FeedStatus.FAILING
        new = FeedHealth(status=status, consecutive_errors=errors)
        change = None if status is self.status else HealthChange(self.status, status, errors - 1)
        return new, delay, change
