"""The desk on a real exchange (venue "exchange"): orders go to an executor, its reports move
the book; a failed order raises a critical alert and applies the configured fallback, written
into the decision log. Reports are built here; the ccxt path is tested against the emulator."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, TypeVar

import pytest

from models.config.settings import Settings
from models.core.commands import CancelOpen, PlaceOrder
from models.core.events import BarEvent
from models.core.messages import (
    Alert,
    Bar,
    Branch,
    DecisionRecord,
    Direction,
    FeatureVector,
    Fill,
    Order,
    OrderStatus,
    Severity,
    Side,
    Signal,
)
from models.desk.desk import TradingDesk
from models.execution.reports import ErrorKind, ExecStatus, ExecutionReport, next_step

D = Decimal
MIN = 60_000
T = TypeVar("T")


def settings(fallback: str = "hold") -> Settings:
    return Settings.model_validate(
        {
            "symbols": {"BTC/USDT": {}},
            "execution": {"initial_cash": "10000", "fallback": fallback, "currency": "USDT"},
            "strategy": {"controller": "local", "target_fraction": "0.5"},
        }
    )


def ev(i: int, close: str, direction: Direction | None = None) -> BarEvent:
    c = D(close)
    bar = Bar(
        symbol="BTC/USDT",
        start_ms=i * MIN,
        end_ms=(i + 1) * MIN,
        open=c,
        high=c,
        low=c,
        close=c,
        volume=D(1),
        trades=1,
        vwap=c,
    )
    fv = FeatureVector(symbol="BTC/USDT", ts_ms=bar.end_ms, close=float(c), values={})
    signals = (
        [
            Signal(
                symbol="BTC/USDT",
                ts_ms=bar.end_ms,
                trigger="t",
                kind="crossover",
                direction=direction,
                strength=0.5,
                strategic=False,
            )
        ]
        if direction
        else []
    )
    return BarEvent(bar, fv, signals, Branch.ROUTINE if direction else None)


def of(kind: type[T], out: list[Any]) -> list[T]:
    return [x for x in out if isinstance(x, kind)]


def report(order: Order, status: ExecStatus, fills: list[Fill], **kw: Any) -> ExecutionReport:
    return ExecutionReport(
        client_order_id=order.client_order_id,
        decision_id=order.decision_id,
        symbol=order.symbol,
        side=order.side,
        quantity=order.quantity,
        status=status,
        filled=sum((f.quantity for f in fills), D(0)),
        fills=fills,
        ts_ms=order.placed_ms + 10,
        **kw,
    )


def fill(order: Order, qty: str, price: str, n: int = 0) -> Fill:
    return Fill(
        fill_id=f"{order.client_order_id}:{n}",
        client_order_id=order.client_order_id,
        decision_id=order.decision_id,
        symbol=order.symbol,
        side=order.side,
        quantity=D(qty),
        price=D(price),
        fee=D("0.5"),
        ts_ms=order.placed_ms + 10,
    )


def buy(desk: TradingDesk) -> Order:
    out = desk.on_bar_event(ev(0, "100", Direction.LONG))
    (order,) = of(Order, out)
    assert order.status is OrderStatus.PENDING
    return order


def test_next_step_reconciles_retries_once_and_never_retries_a_permanent_error() -> None:
    assert next_step(ErrorKind.TRANSIENT, 1, found=True) == "adopt"
    assert next_step(ErrorKind.TRANSIENT, 1, found=False) == "retry"
    assert next_step(ErrorKind.TRANSIENT, 2, found=False) == "give_up"
    assert next_step(ErrorKind.PERMANENT, 1, found=False) == "give_up"
    assert next_step(ErrorKind.DUPLICATE, 1, found=False) == "give_up"
    assert next_step(ErrorKind.DUPLICATE, 1, found=True) == "adopt"


def test_orders_wait_for_the_exchange_and_partial_fills_move_the_book() -> None:
    desk = TradingDesk.create(settings(), venue="exchange")
    order = buy(desk)
    assert order.quantity == D(50)
    # The simulator never fills an exchange order, however many bars pass.
    assert of(Fill, desk.on_bar_event(ev(1, "101"))) == []
    fills = [fill(order, "20", "100.5", 0), fill(order, "10", "100.7", 1)]
    out = desk.on_execution(report(order, ExecStatus.PARTIALLY_FILLED, fills))
    assert of(Fill, out) == fills
    (updated,) = of(Order, out)
    assert updated.status is OrderStatus.PARTIALLY_FILLED and updated.version == 2
    (record,) = of(DecisionRecord, out)
    assert record.fills == fills and record.version == 2
    assert desk.portfolio.quantity("BTC/USDT") == D(30)
    assert desk.portfolio.cash == D(10000) - D("20") * D("100.5") - D("10") * D("100.7") - 1
    assert desk.decisions.open == {}
    # The same report again (a restart re-asked the exchange) changes nothing.
    again = desk.on_execution(report(order, ExecStatus.PARTIALLY_FILLED, fills))
    assert of(Fill, again) == [] and desk.portfolio.quantity("BTC/USDT") == D(30)


@pytest.mark.parametrize("fallback", ["hold", "cancel_open", "flatten", "safe_local"])
def test_a_failed_order_alerts_and_applies_the_fallback(fallback: str) -> None:
    desk = TradingDesk.create(settings(fallback), venue="exchange")
    first = buy(desk)
    desk.on_execution(report(first, ExecStatus.FILLED, [fill(first, "50", "100")]))
    out = desk.on_bar_event(ev(2, "99", Direction.FLAT))
    (sell,) = of(Order, out)
    failed = report(sell, ExecStatus.FAILED, [], attempts=2, error="RequestTimeout: no answer")
    out = desk.on_execution(failed)
    (alert,) = [a for a in of(Alert, out) if a.source == "executor"]
    assert alert.severity is Severity.CRITICAL and f"fallback: {fallback}" in alert.message
    record = next(r for r in of(DecisionRecord, out) if r.decision_id == sell.decision_id)
    assert f"fallback: {fallback}" in record.note and "2 attempt(s)" in record.note
    assert of(Order, out)[0].status is OrderStatus.REJECTED
    commands = of(CancelOpen, out)
    flatten = [r for r in of(DecisionRecord, out) if "/flatten-" in r.decision_id]
    if fallback == "cancel_open":
        assert commands == [CancelOpen("BTC/USDT", commands[0].reason)]
    elif fallback == "flatten":
        assert len(flatten) == 1 and flatten[0].orders[0].quantity == D(50)
        assert flatten[0].orders[0].side is Side.SELL
        # A flatten that fails too is not flattened again.
        retry = report(flatten[0].orders[0], ExecStatus.FAILED, [], error="down")
        again = desk.on_execution(retry)
        assert not [r for r in of(Order, again) if r.status is OrderStatus.PENDING]
    elif fallback == "safe_local":
        assert "BTC/USDT" in desk.gpt.local_only
    else:
        assert commands == [] and flatten == []
    assert desk.portfolio.quantity("BTC/USDT") == D(50)  # nothing moved without a fill


def test_a_restarted_desk_resends_the_orders_without_a_report() -> None:
    import pickle

    desk = TradingDesk.create(settings(), venue="exchange")
    order = buy(desk)
    state = pickle.loads(pickle.dumps(desk.state()))
    again = TradingDesk.create(settings(), venue="exchange")
    again.restore(state)
    assert again.unreported_orders() == [order]
    assert TradingDesk.create(settings()).unreported_orders() == []


def test_an_order_on_its_way_counts_as_held() -> None:
    desk = TradingDesk.create(settings(), venue="exchange")
    buy(desk)  # no report yet: the exchange is slow
    out = desk.on_bar_event(ev(1, "100", Direction.LONG))
    assert of(Order, out) == []  # the same signal again does not buy twice
    (record,) = of(DecisionRecord, out)
    assert record.status.value == "no_action"


def test_a_restored_desk_takes_settings_from_the_current_config() -> None:
    import pickle

    old = TradingDesk.create(settings())
    changed = Settings.model_validate(
        {
            **settings().model_dump(mode="json"),
            "execution": {**settings().execution.model_dump(mode="json"), "fee_bps": "2"},
            "gpt": {"daily_budget_usd": "1"},
        }
    )
    desk = TradingDesk.create(changed)
    desk.restore(pickle.loads(pickle.dumps(old.state())))
    assert desk.gpt.budget.cap == D(1) and desk.exchange.execution.fee_bps == D(2)


def test_each_new_order_leaves_for_the_exchange_right_after_its_row() -> None:
    """The `Order` row is only a row; on a real exchange a `PlaceOrder` follows it (the
    simulated exchange fills inside the desk: no command)."""
    desk = TradingDesk.create(settings("flatten"), venue="exchange")
    out = desk.on_bar_event(ev(0, "100", Direction.LONG))
    (order,) = of(Order, out)
    assert out[out.index(order) + 1] == PlaceOrder(order)
    # Updates of an order never leave again, and neither does a flatten's order before its row.
    first = desk.on_execution(report(order, ExecStatus.FILLED, [fill(order, "50", "100")]))
    assert of(PlaceOrder, first) == []
    sell = of(Order, desk.on_bar_event(ev(2, "99", Direction.FLAT)))[0]
    failed = desk.on_execution(report(sell, ExecStatus.FAILED, [], attempts=2, error="down"))
    (flatten,) = [o for o in of(Order, failed) if o.version == 1]
    assert failed[failed.index(flatten) + 1] == PlaceOrder(flatten)
    assert of(PlaceOrder, failed) == [PlaceOrder(flatten)]
    sim = TradingDesk.create(settings())
    assert of(PlaceOrder, sim.on_bar_event(ev(0, "100", Direction.LONG))) == []
