"""The market feed against the exchange emulator (real ccxt.binance) and the local broker.

Trades are made on the emulator the way they happen on an exchange: price moves with volume
(`set_price(..., volume=)` prints an outside trade) and market orders of a second ccxt client
that walk the synthetic maker's book. The expected tape is the emulator's own list of public
trades; what the feed published is read back from the topic with `read_topic`.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.exchange.market_feed import MarketFeed, MarketFeedError
from connectors.kafka.io import make_producer, read_topic
from connectors.sim.exchange_emulator import ExchangeEmulator, Fault
from models.core.messages import Tick, to_ms
from models.market.feed_cursor import FeedErrorKind, FeedStatus
from tests.support.builders import now_ms

pytestmark = pytest.mark.kafka

D = Decimal
BTC, ETH = "BTC/USDT", "ETH/USDT"
AGG = "GET /api/v3/aggTrades"
HOUR = 3_600_000


def move(ex: ExchangeEmulator, symbol: str, n: int, start: str, step: str = "0.5") -> None:
    """`n` price moves, each printing an outside trade (many land in the same millisecond)."""
    for i in range(n):
        ex.set_price(symbol, D(start) + D(step) * (i % 7), volume=D("0.01") * (1 + i % 5))


def tape(ex: ExchangeEmulator, symbol: str) -> list[tuple[str, int, Decimal, Decimal]]:
    """The exchange's public trades as (tick id, ms, price, size)."""
    sid = ex.symbol_id(symbol)
    with ex.lock:
        trades = ex.engine.trades(sid, limit=1_000_000)
    return [(f"binance:{symbol}:{t.trade_id}", t.time_ms, t.price, t.qty) for t in trades]


def published(bootstrap: str, topic: str) -> list[tuple[bytes | None, Tick]]:
    return [(r.key, Tick.model_validate_json(r.value)) for r in read_topic(bootstrap, topic)]


def assert_exactly_once(ex: ExchangeEmulator, bootstrap: str, topic: str) -> int:
    """Every trade of the exchange is on the topic once, keyed by symbol, with its exchange
    time, price and size, in exchange order per symbol. Returns how many."""
    records = published(bootstrap, topic)
    ids = Counter(t.id for _, t in records)
    repeated = {i: n for i, n in ids.items() if n > 1}
    assert not repeated, f"published more than once: {repeated}"
    total = 0
    for symbol in (BTC, ETH):
        want = tape(ex, symbol)
        got = [(t.id, to_ms(t.ts), t.price, t.size) for k, t in records if t.symbol == symbol]
        assert [r[0] for r in got] == [r[0] for r in want], f"{symbol}: missing or out of order"
        assert got == want
        assert all(k == symbol.encode() for k, t in records if t.symbol == symbol)
        total += len(want)
    assert len(records) == total
    return total


def wait_until(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def topic(fresh_topics: Callable[..., str]) -> str:
    return fresh_topics("market")


@pytest.fixture
def feed_factory(
    exchange_emulator: ExchangeEmulator, kafka_bootstrap: str, topic: str, tmp_path: Path
) -> Iterator[Callable[..., MarketFeed]]:
    made: list[MarketFeed] = []
    start = now_ms() - 60_000

    def make(**kw: Any) -> MarketFeed:
        args: dict[str, Any] = {
            "topic": topic,
            "bootstrap": kafka_bootstrap,
            "state_path": tmp_path / "feed-state.json",
            "start_ms": start,
            "limit": 7,
            "poll_interval_s": 0.05,
            "backoff_base_s": 0.05,
            "backoff_cap_s": 0.4,
        }
        args.update(kw)
        client = args.pop("client", None) or exchange_emulator.client(timeout_ms=400)
        feed = MarketFeed(client, args.pop("symbols", [BTC, ETH]), **args)
        made.append(feed)
        return feed

    yield make
    for feed in made:
        feed.close()


class Runner:
    """`feed.run(stop)` in a thread, as a live process runs it."""

    def __init__(self, feed: MarketFeed) -> None:
        self.feed = feed
        self.stop = threading.Event()
        self.thread = threading.Thread(target=feed.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(5)
        assert not self.thread.is_alive()


def test_every_trade_published_once_despite_overlapping_pages(
    exchange_emulator: ExchangeEmulator, kafka_bootstrap: str, topic: str, feed_factory: Any
) -> None:
    ex = exchange_emulator
    move(ex, BTC, 25, "60000")
    trader = ex.client()
    trader.create_market_buy_order(BTC, 1.2)  # walks several maker levels: several trades
    trader.create_market_sell_order(BTC, 0.5)
    move(ex, ETH, 9, "3000")
    feed = feed_factory()
    first = feed.poll_once()
    assert first.ok and first.published == len(tape(ex, BTC)) + len(tape(ex, ETH)) > 34
    assert first.requests > 6  # limit 7: paged, each page overlapping the last millisecond
    assert feed.status is FeedStatus.LIVE
    again = feed.poll_once()
    assert again.ok and again.published == 0 and again.duplicates > 0
    move(ex, BTC, 5, "60100")
    assert feed.poll_once().published == 5
    total = assert_exactly_once(ex, kafka_bootstrap, topic)
    stats = feed.stats
    assert (stats.published, stats.errors, stats.invalid) == (total, 0, 0)
    assert stats.duplicates >= again.duplicates
    record = read_topic(kafka_bootstrap, topic)[0]
    doc = json.loads(record.value)
    assert isinstance(doc["price"], str) and isinstance(doc["size"], str)  # exact decimals


def test_restart_from_the_state_file_resumes_without_duplicates_or_gaps(
    exchange_emulator: ExchangeEmulator,
    kafka_bootstrap: str,
    topic: str,
    feed_factory: Any,
    tmp_path: Path,
) -> None:
    ex = exchange_emulator
    move(ex, BTC, 12, "60000")
    move(ex, ETH, 3, "3000")
    first = feed_factory()
    assert first.poll_once().published == 15
    first.close()
    state = json.loads((tmp_path / "feed-state.json").read_text())
    last_btc = tape(ex, BTC)[-1]
    assert state["exchange"] == "binance"
    assert state["symbols"][BTC]["ts_ms"] == last_btc[1]
    assert last_btc[0].rsplit(":", 1)[1] in state["symbols"][BTC]["ids"]

    move(ex, BTC, 10, "60050")  # while the feed is down, partly in the same milliseconds
    move(ex, ETH, 4, "3010")
    second = feed_factory()  # same state file; start_ms is ignored now
    result = second.poll_once()
    assert (result.published, result.error) == (14, None)
    assert second.poll_once().published == 0
    assert_exactly_once(ex, kafka_bootstrap, topic)


def test_state_file_of_another_exchange_or_damaged_is_refused(
    exchange_emulator: ExchangeEmulator, kafka_bootstrap: str, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    client = exchange_emulator.client()
    path.write_text('{"version": 1, "exchange": "kraken", "symbols": {}}')
    with pytest.raises(MarketFeedError, match="belongs to exchange 'kraken'"):
        MarketFeed(client, [BTC], topic="t", bootstrap=kafka_bootstrap, state_path=path)
    path.write_text('{"version": 1, "exchange": "binance", "symbols": {"BTC/USDT": {"ts')
    with pytest.raises(MarketFeedError, match="not a market feed state"):
        MarketFeed(client, [BTC], topic="t", bootstrap=kafka_bootstrap, state_path=path)
    with pytest.raises(MarketFeedError, match="rename it"):
        MarketFeed(client, ["btc/usdt"], topic="t", bootstrap=kafka_bootstrap)
    with pytest.raises(MarketFeedError, match="producer or a bootstrap"):
        MarketFeed(client, [BTC], topic="t")


def test_faults_are_survived_and_the_gap_is_filled(
    exchange_emulator: ExchangeEmulator,
    kafka_bootstrap: str,
    topic: str,
    feed_factory: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="stratflow.market_feed")
    ex = exchange_emulator
    move(ex, BTC, 3, "60000")
    feed = feed_factory()
    assert feed.poll_once().published == 3
    ex.script(
        AGG,
        Fault.server_error(503),
        Fault.server_error(502, code=-1001),
        Fault.timeout(0.8),  # the client gives up after 0.4 s
        Fault.drop(),
        Fault.rate_limited(1),
    )
    move(ex, BTC, 30, "60010")  # printed during the outage: 30 > limit 7, so several pages
    move(ex, ETH, 8, "3000")
    mark = len(ex.requests)
    runner = Runner(feed)
    try:
        wait_until(lambda: feed.stats.published == 41, 10, "the gap to be filled")
        move(ex, ETH, 4, "3020")  # and live afterwards
        wait_until(lambda: feed.stats.published == 45, 5, "live trades")
    finally:
        runner.halt()
    assert_exactly_once(ex, kafka_bootstrap, topic)
    stats = feed.stats
    assert (stats.errors, stats.rate_limited, stats.status) == (5, 1, FeedStatus.LIVE)

    # The request after the 429 waited for its Retry-After (1 s).
    reqs = [r for r in ex.requests[mark:] if r.endpoint == AGG]
    limited = next(i for i, r in enumerate(reqs) if r.status == 429)
    assert reqs[limited + 1].received_at - reqs[limited].received_at >= 0.95
    # Backoff between the first errors grew (0.05, 0.1, 0.2 s; the timeout adds 0.4 s).
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(reqs[: limited + 1])]
    assert gaps[0] >= 0.04 and gaps[1] >= 0.09
    # After the outage the feed paged forward from its cursor: the startTime never went back.
    after = reqs[limited + 1 :]
    btc = [int(r.params["startTime"]) for r in after if r.params["symbol"] == "BTCUSDT"]
    assert btc == sorted(btc) and len(btc) >= 5

    # One log line per change of state, not one per failed poll.
    lines = [r.getMessage() for r in caplog.records]
    assert sum("failing" in m for m in lines) == 1  # 503, -1001, timeout, drop: one run
    assert sum("rate limited" in m for m in lines) == 1
    assert sum("live again after 5 errors" in m for m in lines) == 1


def test_chaos_and_a_restart_mid_stream_publish_every_trade_once(
    exchange_emulator: ExchangeEmulator, kafka_bootstrap: str, topic: str, feed_factory: Any
) -> None:
    ex = exchange_emulator
    ex.chaos(
        seed=11,
        probability=0.35,
        faults=[
            Fault.server_error(503),
            Fault.server_error(500, code=-1000),
            Fault.rate_limited(0),
            Fault.drop(),
            Fault.timeout(0.5),
        ],
        endpoints=[AGG],
    )
    stop_trading = threading.Event()

    def trade() -> None:
        i = 0
        trader = ex.client()
        while not stop_trading.wait(0.01):
            i += 1
            move(ex, BTC if i % 3 else ETH, 2, "60000" if i % 3 else "3000")
            if i % 25 == 0:
                trader.create_market_buy_order(BTC, 0.05)

    trader = threading.Thread(target=trade, daemon=True)
    trader.start()
    feed = feed_factory(limit=5)
    runner = Runner(feed)
    time.sleep(1.2)
    runner.halt()
    feed.close()
    second = feed_factory(limit=5)  # resumes from the state file, chaos still on
    runner = Runner(second)
    time.sleep(1.2)
    stop_trading.set()
    trader.join(5)
    ex.calm()
    total = sum(len(tape(ex, s)) for s in (BTC, ETH))
    try:
        wait_until(lambda: feed.stats.published + second.stats.published == total, 10, "all")
    finally:
        runner.halt()
    assert feed.stats.errors + second.stats.errors > 0  # chaos did hit
    assert assert_exactly_once(ex, kafka_bootstrap, topic) == total > 100
    assert {feed.stats.invalid, second.stats.invalid} == {0}


def test_binance_hour_windows_are_paged_through(
    exchange_emulator: ExchangeEmulator, kafka_bootstrap: str, topic: str, feed_factory: Any
) -> None:
    """ccxt.binance asks `startTime=since, endTime=since+1h`: after a long outage the feed must
    walk the closed hours one by one instead of stopping at the first short (or empty) one."""
    ex = exchange_emulator
    t0 = now_ms()
    for ts, n in ((t0 - 3 * HOUR - 20 * 60_000, 3), (t0 - 2 * HOUR - 5 * 60_000, 1)):
        for i in range(n):
            ex.set_price(BTC, D(60000) + i, ts_ms=ts, volume="0.1")
    ex.set_price(BTC, "60100", ts_ms=t0 - 30 * 60_000, volume="0.2")
    feed = feed_factory(start_ms=t0 - 4 * HOUR, limit=2, symbols=[BTC])
    mark = len(ex.requests)
    result = feed.poll_once()
    assert (result.published, result.error) == (5, None)
    starts = [int(r.params["startTime"]) for r in ex.requests[mark:] if r.endpoint == AGG]
    ends = [int(r.params["endTime"]) for r in ex.requests[mark:] if r.endpoint == AGG]
    assert all(e - s == HOUR for s, e in zip(starts, ends, strict=True))
    assert starts[0] == t0 - 4 * HOUR and starts == sorted(starts)
    assert len(starts) >= 5  # hour by hour (and page by page) up to the open hour
    cursor = feed.cursor(BTC)
    assert cursor.scanned_ms is not None and cursor.scanned_ms >= t0 - HOUR
    move(ex, BTC, 3, "60200")
    assert feed.poll_once().published == 3
    assert_exactly_once(ex, kafka_bootstrap, topic)


def test_a_symbol_the_exchange_refuses_does_not_hold_back_the_others(
    exchange_emulator: ExchangeEmulator,
    kafka_bootstrap: str,
    topic: str,
    feed_factory: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="stratflow.market_feed")
    ex = exchange_emulator
    move(ex, BTC, 4, "60000")
    move(ex, ETH, 2, "3000")
    feed = feed_factory(symbols=[BTC, "SOL/USDT", ETH], backoff_base_s=5.0, backoff_cap_s=5.0)
    result = feed.poll_once()
    assert result.published == 6 and result.error_kind is FeedErrorKind.EXCHANGE
    assert "BadSymbol" in (result.error or "") and feed.status is FeedStatus.LIVE
    move(ex, ETH, 3, "3010")
    again = feed.poll_once()  # at once: no feed-wide backoff, SOL/USDT is skipped while parked
    assert (again.published, again.error) == (3, None)
    assert feed.stats.errors == 1
    assert sum("SOL/USDT refused" in r.getMessage() for r in caplog.records) == 1
    assert_exactly_once(ex, kafka_bootstrap, topic)
    only_bad = feed_factory(symbols=["SOL/USDT"], state_path=None)
    failed = only_bad.poll_once()
    assert failed.error_kind is FeedErrorKind.EXCHANGE and failed.delay_s > 0
    assert only_bad.status is FeedStatus.FAILING and only_bad.stats.errors == 1


def test_cursor_moves_only_after_kafka_confirmed(
    exchange_emulator: ExchangeEmulator,
    kafka_bootstrap: str,
    topic: str,
    feed_factory: Any,
    tmp_path: Path,
) -> None:
    """A broker that does not answer: the page is not confirmed, so neither the cursor nor
    the state file move, and a feed with a working broker later publishes it all, once."""
    ex = exchange_emulator
    move(ex, BTC, 6, "60000")
    dead = make_producer("127.0.0.1:9", **{"message.timeout.ms": 300, "linger.ms": 0})
    try:
        broken = feed_factory(producer=dead, bootstrap=None, flush_timeout_s=0.5)
        result = broken.poll_once()
    finally:
        dead.close()
    assert result.error_kind is FeedErrorKind.PUBLISH and result.published == 0
    assert broken.cursor(BTC).ts_ms is None and broken.stats.published == 0
    saved = json.loads((tmp_path / "feed-state.json").read_text())
    assert saved["symbols"][BTC]["ts_ms"] is None  # only the start mark was written
    working = feed_factory()
    assert working.poll_once().published == 6
    assert_exactly_once(ex, kafka_bootstrap, topic)
