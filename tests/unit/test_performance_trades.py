"""Fills paired into round trips (models.performance.trades): hand-worked trades, long and
short, scaling in and out, flips through zero, fees; and the accounting identity for any
sequence of fills."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.core.messages import Side
from models.performance.trades import (
    END_OF_RUN,
    TaggedFill,
    close_open_trades,
    exit_kind,
    pair_fills,
)
from tests.support.builders import fill

D = Decimal


def tf(
    side: Side,
    quantity: str,
    price: str,
    fee: str = "0",
    ts_ms: int = 0,
    symbol: str = "ABC",
    controller: str = "strategy",
    strategy: str = "sma@v1",
    reason: str = "",
) -> TaggedFill:
    f = fill(
        f"f{ts_ms}",
        f"o{ts_ms}",
        f"d{ts_ms}",
        symbol,
        side=side,
        quantity=quantity,
        price=price,
        fee=fee,
        ts_ms=ts_ms,
    )
    return TaggedFill(f, controller=controller, strategy=strategy, reason=reason)


BUY, SELL = Side.BUY, Side.SELL


def test_a_long_round_trip_nets_both_fees() -> None:
    p = pair_fills([tf(BUY, "10", "100", "1", 1), tf(SELL, "10", "110", "1.1", 2, reason="x")])
    (t,) = p.closed
    assert p.open == ()
    assert (t.direction, t.entry_ms, t.exit_ms, t.quantity) == ("long", 1, 2, D(10))
    assert (t.entry_price, t.exit_price, t.fees, t.pnl) == (D(100), D(110), D("2.1"), D("97.9"))
    assert t.return_pct == pytest.approx(97.9 / 1000)
    assert t.exit_reason == "x"


def test_a_sell_from_flat_opens_a_short_that_gains_when_the_price_falls() -> None:
    p = pair_fills([tf(SELL, "5", "50", "0.5", 1), tf(BUY, "5", "40", "0.4", 2)])
    (t,) = p.closed
    assert (t.direction, t.entry_price, t.exit_price) == ("short", D(50), D(40))
    assert t.pnl == D("49.1")
    assert t.return_pct == pytest.approx(49.1 / 250)


def test_scaling_in_and_partial_exits_make_one_trade_with_weighted_prices() -> None:
    p = pair_fills(
        [
            tf(BUY, "10", "100", "1", 1, reason="entry"),
            tf(BUY, "10", "110", "1", 2, strategy="other", controller="gpt"),
            tf(SELL, "5", "120", "1", 3, reason="s take_profit: close >= target"),
            tf(SELL, "15", "100", "1", 4, reason="s stop_loss: close <= stop"),
        ]
    )
    (t,) = p.closed
    assert (t.quantity, t.entry_price, t.exit_price) == (D(20), D(105), D(105))
    assert (t.entry_ms, t.exit_ms, t.fees, t.pnl) == (1, 4, D(4), D(-4))
    # the trade belongs to whoever opened it; its exit reason is the fill that flattened it
    assert (t.strategy, t.controller) == ("sma@v1", "strategy")
    assert exit_kind(t.exit_reason) == "stop_loss"


def test_a_partial_exit_leaves_the_trade_open_with_its_realised_part() -> None:
    p = pair_fills([tf(BUY, "10", "100", "1", 1), tf(SELL, "4", "120", "1", 2)])
    assert p.closed == ()
    (o,) = p.open
    assert (o.quantity, o.entry_price, o.fees) == (D(6), D(100), D(2))
    # 4 * 20 realised + 6 * (90 - 100) unrealised - 2 fees
    assert o.unrealized_pnl(D(90)) == D(80 - 60 - 2)


def test_a_fill_through_zero_closes_the_trade_and_opens_the_opposite_one() -> None:
    p = pair_fills(
        [
            tf(BUY, "10", "100", "1", 1),
            tf(SELL, "15", "90", "1.5", 2, reason="flip"),
            tf(BUY, "5", "80", "0.4", 3, reason="cover"),
        ]
    )
    long, short = p.closed
    assert (long.direction, long.quantity, long.exit_price) == ("long", D(10), D(90))
    assert long.fees == D("2.0")  # 1 + 10/15 of 1.5
    assert long.pnl == D(-100) - D("2.0")
    assert long.exit_reason == "flip"
    assert (short.direction, short.quantity, short.entry_ms, short.entry_price) == (
        "short",
        D(5),
        2,
        D(90),
    )
    assert short.fees == D("0.5") + D("0.4")
    assert short.pnl == D(50) - D("0.9")


def test_a_flip_splits_an_awkward_fee_without_losing_a_cent() -> None:
    p = pair_fills([tf(BUY, "1", "100", "0", 1), tf(SELL, "3", "100", "1", 2)])
    (closed,) = p.closed
    (o,) = p.open
    assert closed.fees + o.fees == D(1)
    assert o.direction == "short" and o.quantity == D(2)


def test_symbols_are_paired_independently() -> None:
    p = pair_fills(
        [
            tf(BUY, "1", "10", ts_ms=1, symbol="AAA"),
            tf(SELL, "2", "50", ts_ms=2, symbol="BBB"),
            tf(SELL, "1", "12", ts_ms=3, symbol="AAA"),
        ]
    )
    (t,) = p.closed
    assert (t.symbol, t.pnl) == ("AAA", D(2))
    (o,) = p.open
    assert (o.symbol, o.direction, o.quantity) == ("BBB", "short", D(2))


def test_an_open_trade_closed_at_the_last_price_pays_the_fee_rate() -> None:
    p = pair_fills([tf(BUY, "10", "100", "1", 1)])
    (t,) = close_open_trades(p.open, {"ABC": D(110)}, 9, fee_rate=D("0.001"))
    assert (t.exit_ms, t.exit_price, t.fees, t.exit_reason) == (9, D(110), D("2.1"), END_OF_RUN)
    assert t.pnl == D(100) - D("2.1")
    assert exit_kind(t.exit_reason) == END_OF_RUN


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("sma@v1 stop_loss: close 90 <= stop", "stop_loss"),
        ("sma@v1 take_profit: close 120 >= target", "take_profit"),
        ("sma@v1 exit: crosses_below(sma_fast, sma_slow)", "exit"),
        ("momentum faded, selling", "other"),
        ("", "other"),
    ],
)
def test_exit_kinds_are_read_from_the_reason(reason: str, kind: str) -> None:
    assert exit_kind(reason) == kind


def test_fills_out_of_time_order_are_refused() -> None:
    with pytest.raises(ValueError, match="time order"):
        pair_fills([tf(BUY, "1", "10", ts_ms=5), tf(SELL, "1", "10", ts_ms=4)])


@pytest.mark.parametrize(("quantity", "price"), [("0", "10"), ("-1", "10"), ("1", "0")])
def test_a_fill_without_a_positive_quantity_and_price_is_refused(quantity: str, price: str) -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        pair_fills([tf(BUY, quantity, price)])


# ------------------------------------------------------------------ properties

_amount = st.decimals(min_value=D("0.01"), max_value=D(1000), places=2)
_fill = st.tuples(
    st.sampled_from(["AAA", "BBB"]),
    st.sampled_from([BUY, SELL]),
    _amount,
    _amount,
    st.decimals(min_value=D(0), max_value=D(5), places=3),
)


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(fills=st.lists(_fill, max_size=40), marks=st.tuples(_amount, _amount))
def test_trades_account_for_every_fill(
    fills: list[tuple[str, Side, Decimal, Decimal, Decimal]], marks: tuple[Decimal, Decimal]
) -> None:
    """Closed pnl + open trades' unrealised pnl at a mark == the fills' cash flows (fees
    included) + the positions valued at that mark; every unit filled is an entry or an exit of
    exactly one trade; an open trade is the symbol's net position."""
    tagged = [
        tf(side, str(q), str(p), str(fee), ts_ms=i, symbol=symbol)
        for i, (symbol, side, q, p, fee) in enumerate(fills)
    ]
    mark = dict(zip(["AAA", "BBB"], marks, strict=True))
    cash, position = D(0), {"AAA": D(0), "BBB": D(0)}
    for symbol, side, q, p, fee in fills:
        sign = 1 if side == BUY else -1
        cash -= sign * q * p + fee
        position[symbol] += sign * q
    p = pair_fills(tagged)
    equity_change = cash + sum(position[s] * mark[s] for s in position)
    pnl = sum((t.pnl for t in p.closed), D(0)) + sum(
        (o.unrealized_pnl(mark[o.symbol]) for o in p.open), D(0)
    )
    assert pnl == equity_change
    filled = sum((q for _, _, q, _, _ in fills), D(0))
    assert (
        sum(2 * t.quantity for t in p.closed)
        + sum(o.entry_quantity + o.exit_quantity for o in p.open)
        == filled
    )
    assert sum((t.fees for t in p.closed), D(0)) + sum((o.fees for o in p.open), D(0)) == sum(
        (fee for *_, fee in fills), D(0)
    )
    open_position = {o.symbol: o.quantity * (1 if o.direction == "long" else -1) for o in p.open}
    assert {s: q for s, q in position.items() if q} == open_position
    assert all(t.quantity > 0 and t.entry_ms <= t.exit_ms for t in p.closed)
    # closing every open trade at the mark turns unrealised into closed pnl, unchanged
    marked = close_open_trades(p.open, mark, len(fills))
    assert sum((t.pnl for t in (*p.closed, *marked)), D(0)) == equity_change
