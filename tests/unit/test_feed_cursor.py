"""The market feed's pure rules (`models.market.feed_cursor`): no exchange, no broker.

The last test runs the paging rules against a simulated exchange tape (overlapping `since`
answers, page limits, Binance's one-hour window, many trades in one millisecond, restarts from
the saved cursor) and checks that every trade comes out exactly once, in order.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest

from models.core.messages import to_ms
from models.market.feed_cursor import (
    MAX_RETRY_AFTER_S,
    FeedCursorState,
    FeedErrorKind,
    FeedHealth,
    FeedStatus,
    HealthChange,
    PageStep,
    SymbolCursor,
    TradePrint,
    backoff_s,
    number_to_decimal,
    plan_next_page,
    retry_after_s,
    split_new,
    start_cursor,
    tick_id,
    to_tick,
    trades_from_ccxt,
)

D = Decimal
HOUR = 3_600_000


def tp(trade_id: str | int, ts_ms: int, price: str = "100", amount: str = "1") -> TradePrint:
    return TradePrint(trade_id=str(trade_id), ts_ms=ts_ms, price=D(price), amount=D(amount))


def ccxt_trade(
    trade_id: Any, ts: Any, price: Any = 60000.01, amount: Any = 0.123
) -> dict[str, Any]:
    return {"id": trade_id, "timestamp": ts, "price": price, "amount": amount, "side": "buy"}


# ------------------------------------------------------------------------------ trades, ids


def test_tick_id_is_exchange_symbol_trade_and_stable() -> None:
    assert tick_id("binance", "BTC/USDT", "17") == "binance:BTC/USDT:17"
    long_id = "x" * 200
    first = tick_id("binance", "BTC/USDT", long_id)
    assert first == tick_id("binance", "BTC/USDT", long_id)
    assert len(first) <= 128 and first.startswith("binance:sha256:")
    assert first != tick_id("binance", "ETH/USDT", long_id)


def test_numbers_become_the_exchange_decimal() -> None:
    assert number_to_decimal(60000.01) == D("60000.01")
    assert str(number_to_decimal(0.1)) == "0.1"  # not 0.1000000000000000055511151231257827
    assert str(number_to_decimal("0.12300000")) == "0.12300000"
    assert number_to_decimal(3) == D(3)
    for bad in (float("nan"), float("inf"), None, True, "abc", "NaN", [1]):
        with pytest.raises(ValueError):
            number_to_decimal(bad)


def test_trades_from_ccxt_reads_and_reports() -> None:
    trades, problems = trades_from_ccxt(
        [
            ccxt_trade("7", 1_700_000_000_123),
            ccxt_trade(8, 1_700_000_000_124, "60000.02000000", "0.5"),
            ccxt_trade("9", None),
            ccxt_trade("10", 1_700_000_000_125, price=float("nan")),
        ]
    )
    assert [(t.trade_id, t.ts_ms, t.price, t.amount) for t in trades] == [
        ("7", 1_700_000_000_123, D("60000.01"), D("0.123")),
        ("8", 1_700_000_000_124, D("60000.02"), D("0.5")),
    ]
    assert len(problems) == 2
    assert "timestamp=None" in problems[0]


def test_trades_without_id_get_a_stable_derived_one() -> None:
    page = [ccxt_trade(None, 5, 1.5, 2.0), ccxt_trade(None, 5, 1.5, 2.0), ccxt_trade("", 6)]
    first, _ = trades_from_ccxt(page)
    again, _ = trades_from_ccxt(page)
    ids = [t.trade_id for t in first]
    assert ids == [t.trade_id for t in again]
    assert len(set(ids)) == 3  # two identical prints of one millisecond stay two trades


def test_to_tick_exact_time_and_bounds() -> None:
    trade = tp("42", 1_795_580_935_441, "60000.01000000", "0.123")
    tick = to_tick("binance", "BTC/USDT", trade)
    assert tick.symbol == "BTC/USDT" and tick.id == "binance:BTC/USDT:42"
    assert to_ms(tick.ts) == 1_795_580_935_441
    assert tick.price == D("60000.01") and tick.size == D("0.123")
    renamed = to_tick("binance", "BTC/USDT", trade, "BTCUSDT")
    assert renamed.symbol == "BTCUSDT" and renamed.id == tick.id
    with pytest.raises(ValueError, match="price"):
        to_tick("binance", "BTC/USDT", tp("1", 5, "0"))


# ------------------------------------------------------------------------------ cursor


def test_split_new_skips_the_overlap_and_keeps_same_millisecond_trades() -> None:
    cursor = SymbolCursor().advance([tp(1, 10), tp(2, 20), tp(3, 20)])
    assert cursor.ts_ms == 20 and cursor.ids == ("2", "3")
    # a `since=20` answer repeats 2 and 3, brings 4 in the same millisecond, and 5 later
    new, dups = split_new(cursor, [tp(5, 30), tp(3, 20), tp(2, 20), tp(4, 20), tp(4, 20)])
    assert [t.trade_id for t in new] == ["4", "5"]
    assert dups == 3  # 2, 3 and the repeated 4
    after = cursor.advance(new)
    assert after.ts_ms == 30 and after.ids == ("5",)
    assert split_new(after, [tp(4, 20), tp(5, 30)]) == ([], 2)


def test_cursor_keeps_ids_of_one_millisecond_across_pages() -> None:
    cursor = SymbolCursor().advance([tp(1, 20)]).advance([tp(2, 20)])
    assert cursor.ids == ("1", "2")
    with pytest.raises(ValueError, match="back"):
        cursor.advance([tp(0, 19)])


def test_numeric_ids_sort_numerically() -> None:
    new, _ = split_new(SymbolCursor(), [tp(10, 5), tp(9, 5), tp("a", 5), tp(11, 4)])
    assert [t.trade_id for t in new] == ["11", "9", "10", "a"]


def test_next_since_is_the_later_of_trade_and_scan_mark() -> None:
    assert SymbolCursor().next_since() is None
    assert SymbolCursor(ts_ms=5).next_since() == 5
    assert SymbolCursor(ts_ms=5, scanned_ms=9).next_since() == 9
    assert SymbolCursor(ts_ms=12, scanned_ms=9).next_since() == 12
    assert SymbolCursor(scanned_ms=9).scanned_to(3).scanned_ms == 9


def test_state_roundtrip_and_refusals() -> None:
    state = FeedCursorState(exchange="binance").with_cursor(
        "BTC/USDT", SymbolCursor(ts_ms=20, ids=("2", "3"), scanned_ms=7)
    )
    text = state.to_json()
    assert FeedCursorState.from_json(text) == state
    assert state.cursor("ETH/USDT") == SymbolCursor()
    for bad, where in (
        ("{", "document"),
        ('{"version": 2, "exchange": "binance"}', "version"),
        ('{"exchange": "binance", "symbols": {"X": {"ts_ms": "a"}}}', "symbols.X.ts_ms"),
        ('{"exchange": "binance", "extra": 1}', "extra"),
    ):
        with pytest.raises(ValueError) as info:
            FeedCursorState.from_json(bad)
        assert str(info.value).startswith(where) and "\n" not in str(info.value)


# ------------------------------------------------------------------------------ paging


def plan(**kw: Any) -> PageStep:
    args: dict[str, Any] = {
        "since": 1000,
        "limit": 3,
        "base_limit": 3,
        "max_limit": 12,
        "page_size": 0,
        "page_ts": [],
        "window_ms": None,
        "now_ms": 10 * HOUR,
        "settle_ms": 5000,
    }
    args.update(kw)
    return plan_next_page(**args)


def test_first_query_starts_at_start_or_now() -> None:
    fresh = SymbolCursor()
    assert start_cursor(fresh, 500, now_ms=9000, settle_ms=1000).next_since() == 500
    assert start_cursor(fresh, None, now_ms=9000, settle_ms=1000).next_since() == 8000
    going = SymbolCursor(ts_ms=7)
    assert start_cursor(going, 500, now_ms=9000, settle_ms=1000) is going


def test_full_page_continues_from_its_newest_millisecond() -> None:
    assert plan(page_size=3, page_ts=[1000, 1001, 1005]) == PageStep(False, 1005, 3, None)


def test_full_page_stuck_on_one_millisecond_widens_then_gives_it_up() -> None:
    step = plan(page_size=3, page_ts=[1000] * 3)
    assert step == PageStep(False, 1000, 6, None)
    step = plan(limit=6, page_size=6, page_ts=[1000] * 6)
    assert step == PageStep(False, 1000, 12, None)
    step = plan(limit=12, page_size=12, page_ts=[1000] * 12)
    assert step == PageStep(False, 1001, 3, 1001, stuck=True)


def test_short_page_is_caught_up_unless_a_closed_window_cut_it() -> None:
    assert plan(page_size=2, page_ts=[1000, 1500]).done
    closed = plan(page_size=2, page_ts=[1000, 1500], window_ms=HOUR)
    assert closed == PageStep(False, 1000 + HOUR, 3, 1000 + HOUR)
    still_open = plan(since=10 * HOUR - HOUR, page_size=1, page_ts=[1], window_ms=HOUR)
    assert still_open.done and still_open.scanned_ms is None
    settling = plan(since=9 * HOUR - 4000, window_ms=HOUR)  # ended 4 s ago: not settled
    assert settling.done


# ------------------------------------------------------------------------------ waits, health


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_s(n, 0.5, 3.0) for n in range(6)] == [0.0, 0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff_s(10_000, 0.5, 30.0) == 30.0


def test_retry_after_header() -> None:
    assert retry_after_s({"Retry-After": "2"}) == 2.0
    assert retry_after_s({"retry-after": "0.5"}) == 0.5
    assert retry_after_s({}) == 1.0
    assert retry_after_s(None, default_s=3.0) == 3.0
    assert retry_after_s({"Retry-After": "soon"}) == 1.0
    assert retry_after_s({"Retry-After": "-4"}) == 0.0
    assert retry_after_s({"Retry-After": "1e9"}) == MAX_RETRY_AFTER_S
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert retry_after_s({"Retry-After": date}, now_s=1445412470.0) == 10.0
    assert retry_after_s({"Retry-After": date}) == 1.0  # a date needs the current time


def test_health_logs_changes_only() -> None:
    h = FeedHealth()
    h, change = h.success()
    assert change == HealthChange(FeedStatus.STARTING, FeedStatus.LIVE, 0)
    h, change = h.success()
    assert change is None
    h, delay, change = h.failure(FeedErrorKind.TRANSIENT, base_s=0.5, cap_s=2.0)
    assert (delay, change) == (0.5, HealthChange(FeedStatus.LIVE, FeedStatus.FAILING, 0))
    h, delay, change = h.failure(FeedErrorKind.TRANSIENT, base_s=0.5, cap_s=2.0)
    assert (delay, change) == (1.0, None)
    h, delay, change = h.failure(FeedErrorKind.RATE_LIMITED, base_s=0.5, cap_s=2.0, retry_after=0)
    assert delay == 2.0  # Retry-After 0 still waits for the backoff of a third error
    assert change == HealthChange(FeedStatus.FAILING, FeedStatus.RATE_LIMITED, 2)
    h, change = h.success()
    assert change == HealthChange(FeedStatus.RATE_LIMITED, FeedStatus.LIVE, 3)
    assert h.consecutive_errors == 0
    _, delay, _ = h.failure(FeedErrorKind.RATE_LIMITED, base_s=0.1, cap_s=2.0, retry_after=1.5)
    assert delay == 1.5
    _, delay, _ = h.failure(FeedErrorKind.RATE_LIMITED, base_s=0.1, cap_s=2.0)
    assert delay == 1.0  # no header: 1 s


# ------------------------------------------------------------------------------ simulation


class Tape:
    """An exchange's public tape with ccxt.binance's `since` semantics: trades with
    `since <= ts <= since + window`, oldest first, at most `limit`."""

    def __init__(self, trades: Sequence[TradePrint], window_ms: int | None) -> None:
        self.trades = list(trades)
        self.window_ms = window_ms
        self.visible = 0

    def fetch(self, since: int, limit: int) -> list[TradePrint]:
        shown = self.trades[: self.visible]
        end = since + self.window_ms if self.window_ms is not None else None
        rows = [t for t in shown if t.ts_ms >= since and (end is None or t.ts_ms <= end)]
        return rows[:limit]


def run_feed(
    tape: Tape,
    cursor: SymbolCursor,
    *,
    limit: int,
    start_ms: int | None,
    now_ms: int,
    out: list[TradePrint],
) -> SymbolCursor:
    """One poll of one symbol, as `connectors.exchange.market_feed` does it."""
    cursor = start_cursor(cursor, start_ms, now_ms, settle_ms=0)
    since = cursor.next_since()
    assert since is not None
    lim = limit
    for _ in range(10_000):
        page = tape.fetch(since, lim)
        new, _ = split_new(cursor, page)
        out.extend(new)
        step = plan_next_page(
            since=since,
            limit=lim,
            base_limit=limit,
            max_limit=64,
            page_size=len(page),
            page_ts=[t.ts_ms for t in page],
            window_ms=tape.window_ms,
            now_ms=now_ms,
            settle_ms=0,
        )
        cursor = cursor.advance(new)
        if step.scanned_ms is not None:
            cursor = cursor.scanned_to(step.scanned_ms)
        if step.done:
            return cursor
        since, lim = step.since, step.limit
    raise AssertionError("paging did not terminate")


@pytest.mark.parametrize("seed", range(40))
def test_simulated_feed_publishes_every_trade_once_in_order(seed: int) -> None:
    rng = random.Random(seed)
    window = rng.choice([None, HOUR])
    start = 1_000 * HOUR
    ts = start + 1
    trades: list[TradePrint] = []
    for i in range(rng.randint(50, 400)):
        ts += rng.choice([0, 0, 0, 1, 7, 1000, HOUR // 2, 3 * HOUR])  # bursts and gaps
        trades.append(tp(i + 1, ts))
    tape = Tape(trades, window)
    limit = rng.randint(2, 9)
    cursor = SymbolCursor()
    out: list[TradePrint] = []
    saved = FeedCursorState(exchange="sim")
    start_ms: int | None = start if seed % 3 else None  # None: from the first poll on
    first_now: int | None = None
    now = start
    while tape.visible < len(trades):
        now += rng.choice([1, 500, 60_000, HOUR, 5 * HOUR])  # the exchange's clock moves on
        tape.visible = sum(1 for t in trades if t.ts_ms <= now)  # a trade shows at its time
        if first_now is None:
            first_now = now
        if rng.random() < 0.3:  # a restart from the state file
            cursor = FeedCursorState.from_json(saved.to_json()).cursor("S")
        cursor = run_feed(tape, cursor, limit=limit, start_ms=start_ms, now_ms=now, out=out)
        saved = saved.with_cursor("S", cursor)
    cursor = run_feed(tape, cursor, limit=limit, start_ms=start_ms, now_ms=now + HOUR, out=out)
    begin = start if start_ms is not None else (first_now or 0)
    assert [t.trade_id for t in out] == [t.trade_id for t in trades if t.ts_ms >= begin]
