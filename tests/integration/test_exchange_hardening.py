"""Odd-but-possible exchange data through the real ccxt.binance client and the emulator.

Each test makes the emulator answer something a real exchange can send (a `Fault.rewrite` of
the answer: the request itself is executed normally) and checks that the market feed and the
order executor neither crash nor corrupt what they pass on: bad market data is skipped with a
logged reason, never published; an execution that cannot be accounted for is `unknown` (looked
up again), never a silently wrong fill.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import pytest

from connectors.exchange.ccxt_executor import CcxtExecutor
from connectors.exchange.gateway import ExecutionGateway
from connectors.exchange.market_feed import MarketFeed
from connectors.kafka.io import read_topic
from connectors.sim.exchange_emulator import ExchangeEmulator, Fault, FaultKind
from dataflows.adapters import DeskLogic
from models.config.settings import Settings
from models.core.messages import Alert, Order, Tick, to_ms
from models.execution.reports import ExecStatus
from tests.support import builders as build
from tests.support.builders import now_ms

D = Decimal
BTC = "BTC/USDT"
AGG = "GET /api/v3/aggTrades"
POST = "POST /api/v3/order"
MY_TRADES = "GET /api/v3/myTrades"
ACCOUNT = "GET /api/v3/account"
HOUR = 3_600_000


# --------------------------------------------------------------------------- the market feed


def tape_ids(ex: ExchangeEmulator) -> list[str]:
    with ex.lock:
        return [f"binance:{BTC}:{t.trade_id}" for t in ex.engine.trades("BTCUSDT", limit=10**6)]


def ticks(bootstrap: str, topic: str) -> list[Tick]:
    return [Tick.model_validate_json(r.value) for r in read_topic(bootstrap, topic)]


@pytest.fixture
def make_feed(
    exchange_emulator: ExchangeEmulator,
    kafka_bootstrap: str,
    fresh_topics: Callable[..., str],
    tmp_path: Path,
) -> Iterator[Callable[..., tuple[MarketFeed, str]]]:
    made: list[MarketFeed] = []

    def make(**kw: Any) -> tuple[MarketFeed, str]:
        topic = fresh_topics("market")
        args: dict[str, Any] = {
            "topic": topic,
            "bootstrap": kafka_bootstrap,
            "state_path": tmp_path / f"feed-{len(made)}.json",
            "start_ms": now_ms() - 60_000,
            "limit": 5,
            "backoff_base_s": 0.01,
            "backoff_cap_s": 0.05,
        }
        args.update(kw)
        feed = MarketFeed(exchange_emulator.client(timeout_ms=2_000), [BTC], **args)
        made.append(feed)
        return feed, topic

    yield make
    for feed in made:
        feed.close()


@pytest.mark.kafka
def test_a_trade_stamped_in_the_future_is_refused_and_does_not_freeze_the_feed(
    exchange_emulator: ExchangeEmulator,
    kafka_bootstrap: str,
    make_feed: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """One trade a year ahead must not be published (the pipeline's clock would jump) nor
    move the cursor there (every real trade after it would look already published)."""
    caplog.set_level(logging.WARNING, logger="stratflow.market_feed")
    ex = exchange_emulator
    # The three trades share one millisecond, the one the feed's cursor re-reads from: the
    # refused one (the second) comes back with its real time only if the next query covers it.
    # Stamped by the wall clock they fell in one millisecond on a quiet machine and in three on
    # a loaded one, where the second was behind the cursor and never re-read (4 published, not
    # 5): the feed never re-reads before its cursor, by design.
    t0 = now_ms() - 1_000
    for i in range(3):
        ex.set_price(BTC, D(60000) + i, ts_ms=t0, volume="0.1")
    year_ahead = now_ms() + 365 * 86_400_000

    def one_in_the_future(doc: list[dict[str, Any]]) -> list[dict[str, Any]]:
        doc[1]["T"] = year_ahead
        return doc

    ex.script(AGG, Fault.rewrite(one_in_the_future))
    feed, topic = make_feed()
    first = feed.poll_once()
    assert (first.published, first.invalid, first.error) == (2, 1, None)
    assert feed.cursor(BTC).ts_ms is not None and feed.cursor(BTC).ts_ms < now_ms() + 1
    assert any("in the future" in r.getMessage() for r in caplog.records)
    for i in range(4):  # the market goes on: these must be published
        ex.set_price(BTC, D(60100) + i, ts_ms=t0 + 1 + i, volume="0.1")
    # ... and so is the refused trade, now that the exchange serves it with its real time
    # (it was skipped, not taken as published).
    assert feed.poll_once().published == 5
    got = ticks(kafka_bootstrap, topic)
    assert all(to_ms(t.ts) < year_ahead for t in got)
    assert sorted(t.id for t in got) == sorted(tape_ids(ex)) and len(got) == 7


@pytest.mark.kafka
def test_a_trade_ccxt_cannot_read_costs_that_trade_only(
    exchange_emulator: ExchangeEmulator,
    kafka_bootstrap: str,
    make_feed: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A null time or a price that is not a number makes ccxt fail the whole page (TypeError,
    ValueError); the exchange serves that page at every poll, so the feed must skip the bad
    entries with a reason instead of failing forever."""
    caplog.set_level(logging.WARNING, logger="stratflow.market_feed")
    ex = exchange_emulator
    for i in range(4):
        ex.set_price(BTC, D(60000) + i, volume="0.1")

    with ex.lock:
        ids = [str(t.trade_id) for t in ex.engine.trades("BTCUSDT", limit=10**6)]

    def broken(doc: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # The same two trades are broken in every answer that holds them (pages may overlap).
        for entry in doc:
            if str(entry.get("a")) == ids[0]:
                entry["T"] = None
            elif str(entry.get("a")) == ids[2]:
                entry["p"] = "abc"
        return doc

    ex.script(AGG, *[Fault.rewrite(broken) for _ in range(3)])
    feed, topic = make_feed()
    results = [feed.poll_once() for _ in range(3)]
    assert [(r.error, r.published) for r in results] == [(None, 2), (None, 0), (None, 0)]
    assert results[0].invalid == 2 and feed.stats.errors == 0
    reasons = " ".join(r.getMessage() for r in caplog.records)
    assert "unreadable" in reasons
    wanted = tape_ids(ex)
    assert [t.id for t in ticks(kafka_bootstrap, topic)] == [wanted[1], wanted[3]]


@pytest.mark.kafka
def test_an_entry_without_time_in_a_full_page_does_not_end_a_closed_hour(
    exchange_emulator: ExchangeEmulator, kafka_bootstrap: str, make_feed: Any
) -> None:
    """ccxt silently drops an entry without a time: the full page looked short, and a short
    page of a closed Binance hour marks the hour read, so the rest of the hour was lost."""
    ex = exchange_emulator
    t0 = now_ms()
    start = t0 - 3 * HOUR
    for i in range(7):
        ex.set_price(BTC, D(60000) + i, ts_ms=start + 60_000 + i, volume="0.1")

    def no_time(doc: list[dict[str, Any]]) -> list[dict[str, Any]]:
        del doc[1]["T"]
        return doc

    ex.script(AGG, Fault.rewrite(no_time))
    feed, topic = make_feed(start_ms=start, limit=3)
    result = feed.poll_once()
    assert (result.error, result.invalid, result.published) == (None, 1, 6)
    wanted = tape_ids(ex)
    assert [t.id for t in ticks(kafka_bootstrap, topic)] == wanted[:1] + wanted[2:]


@pytest.mark.kafka
def test_a_stale_answer_of_older_trades_is_asked_again_not_taken_as_an_empty_hour(
    exchange_emulator: ExchangeEmulator, kafka_bootstrap: str, make_feed: Any
) -> None:
    """After a reconnect a lagging server answers the query for a closed hour with trades
    from before it (ccxt filters them out: an empty page). Taken as "that hour was empty",
    its trades would never be published; the feed must distrust the answer and ask again."""
    ex = exchange_emulator
    t0 = now_ms()
    ex.set_price(BTC, "59000", ts_ms=t0 - 5 * HOUR, volume="0.1")  # old history
    ex.set_price(BTC, "59001", ts_ms=t0 - 5 * HOUR + 1, volume="0.1")
    ex.set_price(BTC, "60000", ts_ms=t0 - 3 * HOUR + 30 * 60_000, volume="0.1")  # the hour
    with ex.lock:
        old = ex.engine.trades("BTCUSDT", limit=2, start_ms=0)  # the two oldest
    stale = [
        {"a": t.trade_id, "p": str(t.price), "q": str(t.qty), "f": t.trade_id,
         "l": t.trade_id, "T": t.time_ms, "m": False, "M": True}
        for t in old
    ]  # fmt: skip
    ex.script(AGG, Fault.rewrite(lambda _doc: stale))
    feed, topic = make_feed(start_ms=t0 - 3 * HOUR)
    first = feed.poll_once()
    assert first.published == 0 and first.error is not None and "stale" in first.error
    assert feed.cursor(BTC).scanned_ms == t0 - 3 * HOUR  # the hour is not marked read
    time.sleep(first.delay_s)
    second = feed.poll_once()
    assert (second.error, second.published) == (None, 1)
    assert [t.id for t in ticks(kafka_bootstrap, topic)] == tape_ids(ex)[2:]


# --------------------------------------------------------------------------- the executor


def order(n: int = 0, qty: str = "0.01") -> Order:
    return build.order(f"sf-hard-{n:06d}", f"BTC/USDT@{n}", BTC, quantity=qty, placed_ms=n)


def exchange_fills(ex: ExchangeEmulator) -> list[tuple[Decimal, Decimal, Decimal]]:
    with ex.lock:
        return [(t.qty, t.price, t.commission) for t in ex.engine.my_trades("BTCUSDT")]


def on_fills(edit: Callable[[dict[str, Any]], Any]) -> Callable[[Any], Any]:
    def rewrite(doc: dict[str, Any]) -> dict[str, Any]:
        for fill in doc["fills"]:
            edit(fill)
        return doc

    return rewrite


@pytest.mark.parametrize(
    "rewrite",
    [
        on_fills(lambda f: f.pop("price")),
        on_fills(lambda f: f.update(price="-1")),
        on_fills(lambda f: f.update(price="0")),
        on_fills(lambda f: f.pop("commission")),
        lambda d: {  # a trade of another order among its fills
            **d,
            "fills": [*d["fills"], {**d["fills"][0], "tradeId": 777_777, "orderId": 424_242}],
        },
        lambda d: {**d, "fills": d["fills"] + d["fills"]},  # the same trade listed twice
    ],
    ids=["no-price", "negative-price", "zero-price", "no-commission", "other-order", "twice"],
)
def test_an_odd_fill_in_the_order_answer_is_replaced_by_the_exchanges_trade_list(
    exchange_emulator: ExchangeEmulator, rewrite: Callable[[Any], Any]
) -> None:
    """The fills of the order answer are checked one by one; when one cannot be booked as it
    is, the order's trades are read from the exchange's trade list (myTrades)."""
    exchange_emulator.script(POST, Fault.rewrite(rewrite))
    report = CcxtExecutor(exchange_emulator.client(), sleep=lambda _s: None).execute(order())
    assert report.status is ExecStatus.FILLED and report.filled == D("0.01")
    assert [(f.quantity, f.price, f.fee) for f in report.fills] == exchange_fills(exchange_emulator)


def test_a_fill_the_exchange_cannot_complete_is_unknown_not_booked(
    exchange_emulator: ExchangeEmulator,
) -> None:
    ex = exchange_emulator
    no_price = on_fills(lambda f: f.pop("price"))

    def trades_without_price(doc: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in t.items() if k != "price"} for t in doc]

    ex.script(POST, Fault.rewrite(no_price))
    ex.script(MY_TRADES, *[Fault.rewrite(trades_without_price) for _ in range(8)])
    report = CcxtExecutor(ex.client(), sleep=lambda _s: None).execute(order())
    assert report.status is ExecStatus.UNKNOWN and report.fills == []
    assert "price" in report.error


def test_closed_with_nothing_filled_is_unknown_not_open_forever(
    exchange_emulator: ExchangeEmulator,
) -> None:
    exchange_emulator.script(
        POST,
        Fault.rewrite(lambda d: {**d, "executedQty": "0", "cummulativeQuoteQty": "0", "fills": []}),
    )
    report = CcxtExecutor(exchange_emulator.client(), sleep=lambda _s: None).execute(order())
    assert report.status is ExecStatus.UNKNOWN and "closed" in report.error


def test_an_over_fill_is_booked_as_the_exchange_did_and_said(
    exchange_emulator: ExchangeEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """executedQty above origQty: the trades moved the balances, so the book takes them (it
    must equal the exchange) and the report carries the anomaly."""
    caplog.set_level(logging.ERROR, logger="connectors.exchange.ccxt_executor")

    def doubled(doc: dict[str, Any]) -> dict[str, Any]:
        extra = {**doc["fills"][0], "tradeId": 999_999}
        return {**doc, "executedQty": "0.02000000", "fills": [*doc["fills"], extra]}

    exchange_emulator.script(POST, Fault.rewrite(doubled))
    report = CcxtExecutor(exchange_emulator.client(), sleep=lambda _s: None).execute(order())
    assert report.status is ExecStatus.FILLED and report.filled == D("0.02")
    assert "filled 0.02 of the 0.01 ordered" in report.error
    assert any("0.01 ordered" in r.getMessage() for r in caplog.records)


def balances_edit(edit: Callable[[dict[str, Any]], dict[str, Any] | None]) -> Fault:
    def rewrite(doc: dict[str, Any]) -> dict[str, Any]:
        kept = [edit(b) for b in doc["balances"]]
        return {**doc, "balances": [b for b in kept if b is not None]}

    return Fault.rewrite(rewrite)


def test_balances_odd_for_the_book_are_refused_and_others_ignored(
    exchange_emulator: ExchangeEmulator,
) -> None:
    ex = exchange_emulator
    ex.deposit("SOL", "3")
    executor = CcxtExecutor(ex.client())

    def negative(asset: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return lambda b: {**b, "free": "-5"} if b["asset"] == asset else b

    ex.script(ACCOUNT, balances_edit(negative("USDT")))
    with pytest.raises(ccxt.BadResponse, match="USDT"):
        executor.state([BTC])
    ex.script(ACCOUNT, balances_edit(lambda b: {**b, "free": None, "locked": None}))
    with pytest.raises(ccxt.BadResponse, match=r"balance \w+ of (BTC|USDT)"):
        executor.state([BTC])
    ex.script(ACCOUNT, balances_edit(negative("SOL")))  # not an asset of the book
    state = executor.state([BTC])
    assert "SOL" not in state.balances and state.balances["USDT"] == D("100000")


def test_an_account_without_the_quote_currency_has_no_cash() -> None:
    """The account does not list USDT at all: the book must start with 0 cash, not keep its
    configured initial cash and trade money the account does not have."""
    settings = Settings.model_validate(
        {
            "symbols": {"BTC/USDT": {"lot_size": "0.0001"}},
            "execution": {"initial_cash": "100000", "currency": "USDT"},
            "strategy": {"controller": "local"},
        }
    )
    with ExchangeEmulator([BTC], prices={BTC: "60000"}, balances={"BTC": "0.5"}) as ex:
        ex.script(ACCOUNT, balances_edit(lambda b: None if b["asset"] == "USDT" else b))
        gateway = ExecutionGateway(CcxtExecutor(ex.client()))
        logic = DeskLogic(settings, frozenset({"m#0"}), None, None, True, gateway)
        out, _ = logic.on_batch([])
        gateway.close()
    assert logic.desk.portfolio.cash == 0
    assert any("cash 100000 -> 0" in a.message for a in out if isinstance(a, Alert))


# --------------------------------------------------------------------------- the emulator


def test_rewrite_executes_the_request_and_leaves_error_answers_alone(
    exchange_emulator: ExchangeEmulator,
) -> None:
    ex = exchange_emulator
    client = ex.client()
    ex.script(POST, Fault.rewrite(lambda d: {**d, "status": "PENDING_NEW"}))
    placed = client.create_order(BTC, "market", "buy", 0.01, None, {"clientOrderId": "rw-1"})
    assert placed["status"] == "PENDING_NEW"  # ccxt passes a status it does not know
    with ex.lock:
        assert ex.engine.order("BTCUSDT", client_order_id="rw-1").executed_qty == D("0.01")
    ex.script(POST, Fault.rewrite(lambda _d: {"unexpected": True}))
    with pytest.raises(ccxt.InsufficientFunds):  # 4xx answers are sent unchanged
        client.create_order(BTC, "market", "buy", 1000, None, {"clientOrderId": "rw-2"})
    assert ex.requests[-1].fault is FaultKind.REWRITE and ex.pending() == 0
