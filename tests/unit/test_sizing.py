"""Buys sized at their fill (`models.execution.sizing`, the simulated venue's `execute`): what a
fraction-of-equity order buys at the open, as backtesting.py sizes a fractional `buy()`."""

from __future__ import annotations

import pickle
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from models.config.settings import ExecutionConfig
from models.core.messages import Order, Side, TradeIntent
from models.execution.reports import ExecStatus
from models.execution.sim_venue import SimulatedExchange
from models.execution.sizing import (
    NO_LOT_FOR_CASH,
    NO_LOT_FOR_TARGET,
    Funds,
    fee_of,
    size_at_fill,
)
from tests.support import builders as build

D = Decimal
MIN = 60_000
NO_COSTS = ExecutionConfig(fee_bps=D(0), slippage_bps=D(0))
COSTS = ExecutionConfig(fee_bps=D(10), slippage_bps=D(50))


def flat(cash: str) -> Funds:
    return Funds(cash=D(cash), equity=D(cash), held=D(0))


def cost(qty: Decimal, price: Decimal, execution: ExecutionConfig) -> Decimal:
    return qty * price + fee_of(qty, price, execution)


def fraction_order(fraction: str, estimate: str = "100", side: Side = Side.BUY) -> Order:
    return build.order(
        "o1",
        "ABC@60000",
        "ABC",
        side=side,
        quantity=estimate,
        placed_ms=MIN,
        size_fraction=D(fraction),
    )


# ------------------------------------------------------------------ size_at_fill


def test_all_in_at_a_gap_up_buys_what_the_cash_pays() -> None:
    # Decided at a close of 100 (estimate 100 units); the open gaps to 125.
    sized = size_at_fill(D(1), flat("10000"), D(125), NO_COSTS, D(1))
    assert sized.quantity == D(80) and sized.reason == ""


def test_all_in_at_a_gap_down_buys_more_than_the_estimate() -> None:
    sized = size_at_fill(D(1), flat("10000"), D(80), NO_COSTS, D(1))
    assert sized.quantity == D(125)


def test_fees_are_paid_from_the_same_cash_as_backtesting_py_does() -> None:
    # backtesting.py: int(10000 * 1 // (100 + 100 * 0.001)) = 99
    execution = ExecutionConfig(fee_bps=D(10), slippage_bps=D(0))
    sized = size_at_fill(D(1), flat("10000"), D(100), execution, D(1))
    assert sized.quantity == D(99) == int(D(10000) // (D(100) + D(100) * D("0.001")))
    assert cost(sized.quantity, D(100), execution) <= D(10000)


def test_slippage_is_in_the_fill_price_the_venue_sizes_at() -> None:
    venue = SimulatedExchange(COSTS)
    order = fraction_order("1")
    assert venue.accept(order)
    (due,) = venue.due(build.bar("ABC", MIN, "100", open="100"))
    report = venue.execute(due, build.bar("ABC", MIN, "100", open="100"), flat("10000"))
    (fill,) = report.fills
    assert fill.price == D("100.5")  # 50 bps against the buyer
    # 10000 / (100.5 * 1.001) = 99.40
    assert fill.quantity == report.filled == report.quantity == D(99)
    assert fill.fee == fee_of(D(99), D("100.5"), COSTS)
    assert cost(fill.quantity, fill.price, COSTS) <= D(10000)


def test_quantities_are_rounded_down_to_the_lot() -> None:
    sized = size_at_fill(D("0.5"), flat("1000"), D("30000"), NO_COSTS, D("0.001"))
    assert sized.quantity == D("0.016")  # 500 / 30000 = 0.01666...
    assert size_at_fill(D(1), flat("1000"), D(3), NO_COSTS, D(10)).quantity == D(330)


def test_a_fraction_of_equity_adds_only_up_to_the_target() -> None:
    # Half of 10000 wanted, 30 units held at 100 already: 2000 more, at most the cash.
    funds = Funds(cash=D(7000), equity=D(10000), held=D(30))
    assert size_at_fill(D("0.5"), funds, D(100), NO_COSTS, D(1)).quantity == D(20)
    over = size_at_fill(D("0.2"), funds, D(100), NO_COSTS, D(1))
    assert over.quantity == 0 and over.reason == NO_LOT_FOR_TARGET


def test_no_whole_lot_is_a_reason_not_an_order() -> None:
    sized = size_at_fill(D(1), flat("99"), D(100), NO_COSTS, D(1))
    assert sized.quantity == 0 and sized.reason == NO_LOT_FOR_CASH
    broke = size_at_fill(D(1), Funds(cash=D(-5), equity=D(100), held=D(0)), D(1), COSTS, D(1))
    assert broke.quantity == 0 and broke.reason == NO_LOT_FOR_CASH


def test_the_venue_rejects_a_fraction_order_that_buys_no_lot_with_the_reason() -> None:
    venue = SimulatedExchange(COSTS)
    venue.accept(fraction_order("1"))
    bar = build.bar("ABC", MIN, "100", open="100")
    (due,) = venue.due(bar)
    report = venue.execute(due, bar, flat("50"))
    assert report.status is ExecStatus.REJECTED and report.failed
    assert report.error == "cash buys no whole lot at fill" and report.fills == []
    assert venue.open_orders() == []


def test_an_explicit_order_fills_its_quantity_whatever_the_funds() -> None:
    venue = SimulatedExchange(COSTS)
    explicit = build.order("o2", "ABC@60000", "ABC", quantity=100, placed_ms=MIN)
    venue.accept(explicit)
    bar = build.bar("ABC", MIN, "300", open="300")
    (due,) = venue.due(bar)
    report = venue.execute(due, bar, flat("10"))  # the desk refuses what it cannot pay
    assert report.status is ExecStatus.FILLED and report.fills[0].quantity == D(100)


def test_an_order_placed_after_the_bar_started_is_not_due() -> None:
    venue = SimulatedExchange(COSTS)
    venue.accept(fraction_order("1"))
    assert venue.due(build.bar("ABC", 0, "100", open="100")) == []
    assert len(venue.due(build.bar("ABC", MIN, "100", open="100"))) == 1


# ------------------------------------------------------------------ the messages


def test_only_a_buy_is_sized_at_its_fill() -> None:
    with pytest.raises(ValidationError, match="only a buy"):
        TradeIntent(symbol="ABC", side=Side.SELL, quantity=D(1), size_fraction=D("0.5"))
    for bad in ("0", "1.5", "NaN", "-0.1"):
        with pytest.raises(ValidationError):
            TradeIntent(symbol="ABC", side=Side.BUY, quantity=D(1), size_fraction=D(bad))
    assert TradeIntent(symbol="ABC", side=Side.BUY, quantity=D(1)).size_fraction is None


def test_intents_and_orders_pickled_before_the_field_restore_without_it() -> None:
    intent = TradeIntent(symbol="ABC", side=Side.BUY, quantity=D(1), size_fraction=D("0.5"))
    order = fraction_order("0.5")
    for model in (intent, order):
        state = model.__getstate__()
        del state["__dict__"]["size_fraction"]  # as a release before it pickled it
        old = type(model).__new__(type(model))
        old.__setstate__(state)
        assert old.size_fraction is None
        assert pickle.loads(pickle.dumps(model)) == model


# ------------------------------------------------------------------ properties

prices = st.decimals(min_value=D("0.0001"), max_value=D("100000"), places=4)
cash_amounts = st.decimals(min_value=D(0), max_value=D("10000000"), places=2)
lots = st.sampled_from([D("0.00000001"), D("0.001"), D("0.01"), D(1), D(10)])
bps = st.decimals(min_value=D(0), max_value=D(100), places=1)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    fraction=st.decimals(min_value=D("0.0001"), max_value=D(1), places=4),
    cash=cash_amounts,
    extra=cash_amounts,
    held=st.decimals(min_value=D(0), max_value=D(1000), places=3),
    price=prices,
    lot=lots,
    fee=bps,
)
def test_a_fraction_order_never_costs_more_than_the_cash_at_its_fill(
    fraction: Decimal,
    cash: Decimal,
    extra: Decimal,
    held: Decimal,
    price: Decimal,
    lot: Decimal,
    fee: Decimal,
) -> None:
    execution = ExecutionConfig(fee_bps=fee, slippage_bps=D(0))
    funds = Funds(cash=cash, equity=cash + held * price + extra, held=held)
    sized = size_at_fill(fraction, funds, price, execution, lot)
    assert sized.quantity >= 0 and (sized.quantity / lot) == int(sized.quantity / lot)
    assert cost(sized.quantity, price, execution) <= cash
    assert (sized.quantity == 0) == bool(sized.reason)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(cash=cash_amounts, price=prices, lot=lots, fee=bps)
def test_all_in_from_flat_leaves_less_than_one_lot_and_its_fee(
    cash: Decimal, price: Decimal, lot: Decimal, fee: Decimal
) -> None:
    execution = ExecutionConfig(fee_bps=fee, slippage_bps=D(0))
    sized = size_at_fill(D(1), flat(str(cash)), price, execution, lot)
    left = cash - cost(sized.quantity, price, execution)
    assert D(0) <= left < lot * price + fee_of(lot, price, execution) + D("1e-8")
