"""The matching engine behind the exchange emulator, without HTTP: exact Decimal books.

Market used throughout: BTC/USDT, tick 0.01, step 0.001, maker 3 levels of 1 BTC, spread 20 bps
and 10 bps between levels, so at 100 the maker asks 100.10 / 100.20 / 100.30 and bids
99.90 / 99.80 / 99.70. Fees: maker 10 bps, taker 20 bps (different, so a test sees which).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.sim.matching import (
    EngineConfig,
    EngineError,
    EngineOrder,
    EngineOrderStatus,
    MarketSpec,
    MatchingEngine,
    OrderSide,
    OrderType,
    TimeInForce,
)

D = Decimal
BTC = "BTCUSDT"
BUY, SELL = OrderSide.BUY, OrderSide.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
GTC = TimeInForce.GTC
INSUFFICIENT = (-2010, "Account has insufficient balance for requested action.")


def spec(pair: str = "BTC/USDT", levels: int = 3) -> MarketSpec:
    return MarketSpec.from_pair(
        pair,
        tick_size=D("0.01"),
        step_size=D("0.001"),
        min_qty=D("0.001"),
        min_notional=D("1"),
        maker_levels=levels,
        maker_level_qty=D("1"),
        maker_spread_bps=D("20"),
        maker_level_step_bps=D("10"),
    )


def engine(*, levels: int = 3, usdt: str = "1000", btc: str | None = None) -> MatchingEngine:
    e = MatchingEngine(
        [spec(levels=levels), spec("ETH/USDT", levels)],
        EngineConfig(maker_fee_bps=D("10"), taker_fee_bps=D("20")),
    )
    e.deposit("USDT", D(usdt))
    if btc is not None:
        e.deposit("BTC", D(btc))
    if levels:
        e.set_price(BTC, D("100"), 0)
    return e


def limit(
    e: MatchingEngine,
    side: OrderSide,
    qty: str,
    price: str,
    cid: str | None = None,
    *,
    now_ms: int = 1_000,
    tif: TimeInForce = GTC,
) -> EngineOrder:
    return e.place(
        BTC,
        side,
        LIMIT,
        now_ms=now_ms,
        quantity=D(qty),
        price=D(price),
        time_in_force=tif,
        client_order_id=cid,
    )


def codes(err: pytest.ExceptionInfo[EngineError]) -> tuple[int, str]:
    return err.value.code, err.value.msg


def test_maker_quotes_levels_around_the_price() -> None:
    depth = engine().depth(BTC)
    assert depth.asks == [(D("100.10"), D(1)), (D("100.20"), D(1)), (D("100.30"), D(1))]
    assert depth.bids == [(D("99.90"), D(1)), (D("99.80"), D(1)), (D("99.70"), D(1))]


def test_market_buy_walks_the_levels_and_pays_the_taker_fee() -> None:
    e = engine()
    order = e.place(BTC, BUY, MARKET, now_ms=5, quantity=D("2.5"))
    assert order.status is EngineOrderStatus.FILLED
    assert [(f.price, f.qty, f.commission, f.is_maker) for f in order.fills] == [
        (D("100.10"), D(1), D("0.2002"), False),
        (D("100.20"), D(1), D("0.2004"), False),
        (D("100.30"), D("0.5"), D("0.1003"), False),
    ]
    assert order.cumm_quote_qty == D("250.45")
    assert e.balance("USDT").free == D("1000") - D("250.45") - D("0.5009")
    assert e.balance("BTC").free == D("2.5")
    assert e.fees_collected["USDT"] == D("0.5009")
    assert e.depth(BTC).asks == [(D("100.30"), D("0.5"))]
    assert e.check_invariants() == []


def test_market_order_bigger_than_the_book_fills_what_there_is_and_expires() -> None:
    e = engine(usdt="10000")
    order = e.place(BTC, BUY, MARKET, now_ms=5, quantity=D(5))
    assert order.status is EngineOrderStatus.EXPIRED
    assert (order.orig_qty, order.executed_qty) == (D(5), D(3))
    assert e.depth(BTC).asks == []
    assert e.balance("USDT").locked == 0
    assert e.check_invariants() == []


def test_price_time_priority_among_resting_orders() -> None:
    e = engine(levels=0, btc="3")
    a = limit(e, SELL, "1", "101", "a", now_ms=1)
    b = limit(e, SELL, "1", "101", "b", now_ms=2)
    c = limit(e, SELL, "1", "100.50", "c", now_ms=3)
    assert e.depth(BTC).asks == [(D("100.50"), D(1)), (D("101"), D(2))]
    taker = e.place(BTC, BUY, MARKET, now_ms=4, quantity=D("2.5"))
    assert [(f.price, f.qty) for f in taker.fills] == [
        (D("100.50"), D(1)),
        (D("101"), D(1)),
        (D("101"), D("0.5")),
    ]
    assert e.order(BTC, client_order_id="c").status is EngineOrderStatus.FILLED
    assert e.order(BTC, client_order_id="a").status is EngineOrderStatus.FILLED
    late = e.order(BTC, client_order_id="b")
    assert (late.status, late.remaining) == (EngineOrderStatus.PARTIALLY_FILLED, D("0.5"))
    assert [t.order_id for t in e.my_trades(BTC) if t.is_maker] == [
        c.order_id,
        a.order_id,
        b.order_id,
    ]
    assert e.check_invariants() == []


def test_limit_buy_locks_notional_plus_worst_fee_and_cancel_releases_it() -> None:
    e = engine()
    order = e.place(BTC, BUY, LIMIT, now_ms=1, quantity=D(1), price=D(99), time_in_force=GTC)
    assert order.status is EngineOrderStatus.NEW
    assert order.locked == D("99.198")  # 99 + 20 bps (the higher of maker and taker)
    assert e.balance("USDT").free == D("900.802")
    assert e.balance("USDT").locked == D("99.198")
    assert e.depth(BTC).bids[0] == (D("99.90"), D(1))  # the maker still bids above
    cancelled = e.cancel(BTC, now_ms=2, order_id=order.order_id)
    assert cancelled.status is EngineOrderStatus.CANCELED
    assert e.balance("USDT").free == D(1000)
    assert e.balance("USDT").locked == 0
    with pytest.raises(EngineError) as err:
        e.cancel(BTC, now_ms=3, order_id=order.order_id)
    assert codes(err) == (-2011, "Unknown order sent.")
    assert e.order(BTC, order_id=order.order_id).status is EngineOrderStatus.CANCELED
    assert e.check_invariants() == []


def test_limit_sell_locks_the_base_asset() -> None:
    e = engine(btc="2")
    order = e.place(BTC, SELL, LIMIT, now_ms=1, quantity=D("1.5"), price=D(101), time_in_force=GTC)
    assert e.balance("BTC").free == D("0.5")
    assert e.balance("BTC").locked == D("1.5")
    assert order.locked == D("1.5")
    e.cancel(BTC, now_ms=2, client_order_id=order.client_order_id)
    assert e.balance("BTC").free == D(2)


def test_crossing_limit_takes_then_rests_and_a_price_move_fills_the_rest_as_maker() -> None:
    e = engine()
    order = e.place(
        BTC, BUY, LIMIT, now_ms=1, quantity=D("1.5"), price=D("100.10"), time_in_force=GTC
    )
    assert order.status is EngineOrderStatus.PARTIALLY_FILLED
    assert (order.executed_qty, order.remaining) == (D(1), D("0.5"))
    assert order.fills[0].commission == D("0.2002")  # taker
    assert order.locked == D("150.4503") - D("100.3002")
    assert e.depth(BTC).bids[0] == (D("100.10"), D("0.5"))
    trades = e.set_price(BTC, D(99), 2)  # the maker now asks 99.10: crosses the resting bid
    assert [(t.price, t.qty, t.buyer_is_maker) for t in trades] == [(D("100.10"), D("0.5"), True)]
    done = e.order(BTC, order_id=order.order_id)
    assert done.status is EngineOrderStatus.FILLED
    assert (done.fills[1].commission, done.fills[1].is_maker) == (D("0.05005"), True)
    assert e.balance("USDT") == type(e.balance("USDT"))(
        D(1000) - D("100.3002") - D("50.05") - D("0.05005"), D(0)
    )
    assert e.check_invariants() == []


def test_resting_user_order_fills_at_its_own_price_when_the_market_moves_through_it() -> None:
    e = engine()
    order = e.place(BTC, BUY, LIMIT, now_ms=1, quantity=D(1), price=D(99), time_in_force=GTC)
    assert e.set_price(BTC, D("99.50"), 2) == []  # asks 99.60+: not crossed yet
    trades = e.set_price(BTC, D(98), 3)
    assert [(t.price, t.buy_order_id, t.sell_order_id) for t in trades] == [
        (D(99), order.order_id, None)
    ]
    filled = e.order(BTC, order_id=order.order_id)
    assert filled.status is EngineOrderStatus.FILLED
    assert filled.fills[0].is_maker and filled.fills[0].commission == D("0.099")
    assert e.balance("BTC").free == D(1)
    assert e.balance("USDT").free == D(1000) - D(99) - D("0.099")
    assert e.check_invariants() == []


def test_insufficient_funds_is_refused_and_changes_nothing() -> None:
    e = engine(usdt="50")
    before = e.balances()
    with pytest.raises(EngineError) as err:
        limit(e, BUY, "1", "99", "retry-me")
    assert codes(err) == INSUFFICIENT
    with pytest.raises(EngineError) as err:
        e.place(BTC, BUY, MARKET, now_ms=1, quantity=D(1))
    assert codes(err) == INSUFFICIENT
    with pytest.raises(EngineError) as err:
        e.place(BTC, SELL, MARKET, now_ms=1, quantity=D("0.1"))
    assert codes(err) == INSUFFICIENT
    assert e.balances() == before
    assert e.open_orders() == []
    first = e.rejections[0]
    assert (first.client_order_id, first.status, first.code) == (
        "retry-me",
        EngineOrderStatus.REJECTED,
        -2010,
    )
    with pytest.raises(EngineError) as err:
        e.order(BTC, client_order_id="retry-me")
    assert codes(err) == (-2013, "Order does not exist.")
    e.deposit("USDT", D(100))
    again = limit(e, BUY, "1", "99", "retry-me")  # a refused id may be sent again
    assert again.status is EngineOrderStatus.NEW


def test_a_client_order_id_is_refused_only_while_its_order_is_open() -> None:
    """Binance's documented rule, never stricter: -2010 while an open order has the id; once
    it is done (canceled, filled, expired) the id makes a new order, and a lookup finds the
    newest one."""
    e = engine()
    first = limit(e, BUY, "1", "99", "dup-1")
    with pytest.raises(EngineError) as err:
        limit(e, BUY, "0.5", "98", "dup-1")
    assert codes(err) == (-2010, "Duplicate order sent.")
    with pytest.raises(EngineError) as err:  # whatever the order type
        e.place(BTC, BUY, MARKET, now_ms=2, quantity=D("0.1"), client_order_id="dup-1")
    assert codes(err) == (-2010, "Duplicate order sent.")
    e.cancel(BTC, now_ms=2, client_order_id="dup-1")
    second = e.place(BTC, BUY, MARKET, now_ms=3, quantity=D("0.1"), client_order_id="dup-1")
    assert second.status is EngineOrderStatus.FILLED and second.order_id != first.order_id
    third = e.place(BTC, BUY, MARKET, now_ms=4, quantity=D("0.1"), client_order_id="dup-1")
    assert third.status is EngineOrderStatus.FILLED  # a filled order frees its id too
    assert e.order(BTC, client_order_id="dup-1").order_id == third.order_id
    assert [o.order_id for o in e.orders_with_client_id(BTC, "dup-1")] == [
        first.order_id,
        second.order_id,
        third.order_id,
    ]
    e.set_price("ETHUSDT", D(100), 4)
    other = e.place(
        "ETHUSDT", BUY, MARKET, now_ms=5, quantity=D("0.1"), client_order_id="dup-1"
    )  # per symbol, as on Binance
    assert other.status is EngineOrderStatus.FILLED
    assert e.check_invariants() == []


@pytest.mark.parametrize(
    ("qty", "price", "failure"),
    [
        ("1", "99.001", "PRICE_FILTER"),
        ("1.0005", "99", "LOT_SIZE"),
        ("0.0001", "99", "LOT_SIZE"),
        ("0.005", "99", "NOTIONAL"),
    ],
)
def test_filters(qty: str, price: str, failure: str) -> None:
    e = engine()
    with pytest.raises(EngineError) as err:
        limit(e, BUY, qty, price)
    assert codes(err) == (-1013, f"Filter failure: {failure}")
    assert e.check_invariants() == []


def test_unknown_symbol_and_order() -> None:
    e = engine()
    with pytest.raises(EngineError) as err:
        e.place("DOGEUSDT", BUY, MARKET, now_ms=1, quantity=D(1))
    assert codes(err) == (-1121, "Invalid symbol.")
    order = limit(e, BUY, "1", "99")
    with pytest.raises(EngineError) as err:
        e.order("ETHUSDT", order_id=order.order_id)
    assert codes(err) == (-2013, "Order does not exist.")


def test_limit_maker_ioc_and_fok() -> None:
    e = engine()
    with pytest.raises(EngineError) as err:
        e.place(BTC, BUY, OrderType.LIMIT_MAKER, now_ms=1, quantity=D(1), price=D("100.10"))
    assert codes(err) == (-2010, "Order would immediately match and take.")
    maker = e.place(BTC, BUY, OrderType.LIMIT_MAKER, now_ms=1, quantity=D(1), price=D(99))
    assert maker.status is EngineOrderStatus.NEW
    ioc = limit(e, BUY, "1.5", "100.10", tif=TimeInForce.IOC)
    assert (ioc.status, ioc.executed_qty) == (EngineOrderStatus.EXPIRED, D(1))
    fok = limit(e, BUY, "5", "100.30", tif=TimeInForce.FOK)
    assert (fok.status, fok.executed_qty) == (EngineOrderStatus.EXPIRED, D(0))
    fok = limit(e, BUY, "1.5", "100.30", tif=TimeInForce.FOK)
    assert fok.status is EngineOrderStatus.FILLED
    assert e.balance("USDT").locked == maker.locked
    assert e.check_invariants() == []


def test_market_buy_by_quote_amount_spends_at_most_the_amount_fees_included() -> None:
    e = engine()
    order = e.place(BTC, BUY, MARKET, now_ms=1, quote_order_qty=D(150))
    assert order.status is EngineOrderStatus.FILLED
    assert [(f.price, f.qty) for f in order.fills] == [
        (D("100.10"), D(1)),
        (D("100.20"), D("0.495")),
    ]
    spent = D(1000) - e.balance("USDT").free
    assert spent == D("100.3002") + D("49.599") + D("0.099198")
    assert spent <= 150
    assert e.balance("USDT").locked == 0
    assert e.check_invariants() == []


def test_bars_follow_set_price_with_trade_volume_and_no_holes() -> None:
    e = engine(levels=3)
    e.set_price("ETHUSDT", D(100), 0)
    e.set_price("ETHUSDT", D(101), 10_000)
    e.set_price("ETHUSDT", D(99), 20_000)
    e.place("ETHUSDT", BUY, MARKET, now_ms=30_000, quantity=D("0.5"))  # at 99.10
    e.set_price("ETHUSDT", D("100.5"), 50_000)
    e.set_price("ETHUSDT", D(102), 60_000, volume=D(2))
    e.set_price("ETHUSDT", D(103), 180_000)
    bars = e.bars("ETHUSDT", 60_000)
    assert [(b.open_ms, b.open, b.high, b.low, b.close, b.volume, b.trades) for b in bars] == [
        (0, D(100), D(101), D(99), D("100.5"), D("0.5"), 1),
        (60_000, D(102), D(102), D(102), D(102), D(2), 1),
        (120_000, D(102), D(102), D(102), D(102), D(0), 0),
        (180_000, D(103), D(103), D(103), D(103), D(0), 0),
    ]
    assert bars[0].close_ms == 59_999
    assert bars[0].quote_volume == D("0.5") * D("99.10")
    assert [b.open_ms for b in e.bars("ETHUSDT", 60_000, start_ms=60_000, limit=2)] == [
        60_000,
        120_000,
    ]
    assert [b.open_ms for b in e.bars("ETHUSDT", 60_000, limit=1)] == [180_000]
    assert [b.open_ms for b in e.bars("ETHUSDT", 60_000, end_ms=60_000)] == [0, 60_000]
    ticker = e.ticker("ETHUSDT")
    assert ticker is not None
    assert (ticker.open, ticker.high, ticker.low, ticker.last) == (D(100), D(103), D(99), D(103))
    assert (ticker.volume, ticker.count) == (D("2.5"), 2)
    assert ticker.bid == (D("102.89"), D(1)) and ticker.ask == (D("103.11"), D(1))


def test_set_price_and_deposit_refuse_nonsense() -> None:
    e = engine()
    with pytest.raises(ValueError):
        e.set_price(BTC, D(0), 1)
    with pytest.raises(ValueError):
        e.set_price(BTC, D("NaN"), 1)
    with pytest.raises(ValueError):
        e.deposit("USDT", D(-1))
    with pytest.raises(ValueError):
        MarketSpec.from_pair("BTCUSDT")


Op = tuple[str, OrderSide, int, int]
_ops = st.lists(
    st.tuples(
        st.sampled_from(["price", "limit", "market", "cancel"]),
        st.sampled_from([BUY, SELL]),
        st.integers(1, 4000),  # quantity in steps of 0.001, or which open order to cancel
        st.integers(9000, 11000),  # price in cents
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(_ops)
def test_books_always_balance(ops: list[Op]) -> None:
    """Whatever happens, no asset is created or lost, locks match open orders, and the book
    never stays crossed."""
    e = engine(usdt="5000", btc="20")
    now = 10
    for kind, side, n, cents in ops:
        now += 1
        try:
            if kind == "price":
                e.set_price(BTC, D(cents) / 100, now)
            elif kind == "limit":
                e.place(
                    BTC,
                    side,
                    LIMIT,
                    now_ms=now,
                    quantity=D(n) / 1000,
                    price=D(cents) / 100,
                    time_in_force=GTC,
                )
            elif kind == "market":
                e.place(BTC, side, MARKET, now_ms=now, quantity=D(n) / 1000)
            else:
                open_ = e.open_orders(BTC)
                if open_:
                    e.cancel(BTC, now_ms=now, order_id=open_[n % len(open_)].order_id)
        except EngineError as err:
            assert err.code in (-2010, -1013), err
        assert e.check_invariants() == []
