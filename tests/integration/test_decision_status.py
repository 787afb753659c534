"""A decision's status follows its orders (models/execution/decision_status.py): refused at fill or
by the
exchange -> `rejected`; an order that fills after the executor gave up -> the decision is
`executed` with the fill row at the fill's price, the book at that price (never adopted at the
mark); for any sequence of reports the newest rows agree with the fills."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.exchange.ccxt_executor import CcxtExecutor
from connectors.exchange.gateway import ExecutionGateway
from connectors.sim.exchange_emulator import ExchangeEmulator
from dataflows.adapters import DeskLogic
from models.config.settings import Settings
from models.core.commands import CancelOpen
from models.core.messages import (
    Alert,
    DecisionRecord,
    DecisionStatus,
    Direction,
    Fill,
    Order,
    OrderStatus,
    Side,
)
from models.desk.desk import TradingDesk
from models.execution.decision_status import decision_status, order_status
from models.execution.reports import ExchangeState, ExecStatus, ExecutionReport
from tests.integration.test_ccxt_executor import bar_event
from tests.unit.test_desk_execution import buy, ev, fill, of, report

D = Decimal
SYM = "BTC/USDT"


def exchange_settings(fallback: str = "cancel_open") -> Settings:
    return Settings.model_validate(
        {
            "symbols": {SYM: {}},
            "execution": {"initial_cash": "10000", "fallback": fallback, "currency": "USDT"},
            "strategy": {"controller": "local", "target_fraction": "0.5"},
        }
    )


def newest(kind: type[Any], rows: list[Any], key: str) -> dict[str, Any]:
    """What a ReplacingMergeTree(version) keeps: per id the row with the highest version;
    the emission order must agree (a later row never has a lower version)."""
    out: dict[str, Any] = {}
    for row in of(kind, rows):
        ident = getattr(row, key)
        if ident in out:
            assert row.version > out[ident].version, f"{ident}: version went back"
        out[ident] = row
    return out


# ------------------------------------------------------------------ the simulated exchange
@pytest.mark.parametrize("gap", ["50", "200"])
def test_an_order_refused_at_fill_makes_the_decision_rejected(gap: str) -> None:
    """Buy half of equity at 100 (sized at the fill); the next bar opens `gap` times higher:
    half of equity buys no whole unit at the fill. The decision's newest row is `rejected`,
    and the report's count with it."""
    desk = TradingDesk.create(exchange_settings())
    rows: list[Any] = list(desk.on_bar_event(ev(0, "100", Direction.LONG)))
    (order,) = of(Order, rows)
    rows += desk.on_bar_event(ev(1, str(D(100) * D(gap))))
    decisions = newest(DecisionRecord, rows, "decision_id")
    record = decisions[order.decision_id]
    assert record.orders[0].status is OrderStatus.REJECTED and record.fills == []
    assert record.status is DecisionStatus.REJECTED
    assert desk.portfolio.quantity(SYM) == 0 and desk.decisions.open == {}


def test_an_order_filled_at_the_next_open_stays_executed() -> None:
    desk = TradingDesk.create(exchange_settings())
    rows: list[Any] = list(desk.on_bar_event(ev(0, "100", Direction.LONG)))
    rows += desk.on_bar_event(ev(1, "101"))
    (record,) = newest(DecisionRecord, rows, "decision_id").values()
    assert record.status is DecisionStatus.EXECUTED and len(record.fills) == 1


# ------------------------------------------------------------------ the rules
def _order(cid: str, status: OrderStatus, qty: str = "10") -> Order:
    return Order(
        client_order_id=cid,
        decision_id="X@1",
        symbol=SYM,
        side=Side.BUY,
        quantity=D(qty),
        status=status,
        placed_ms=1,
        updated_ms=1,
    )


@pytest.mark.parametrize(
    ("statuses", "with_fill", "expected"),
    [
        (["rejected"], False, "rejected"),
        (["rejected", "expired"], False, "rejected"),
        (["rejected", "filled"], True, "executed"),  # mixed: the decision moved the book
        (["rejected", "partially_filled"], True, "executed"),
        (["rejected", "pending"], False, "executed"),  # one still on its way
        (["pending"], False, "executed"),
        (["filled"], True, "executed"),
    ],
)
def test_decision_status_rule(statuses: list[str], with_fill: bool, expected: str) -> None:
    orders = [_order(f"c{i}", OrderStatus(s)) for i, s in enumerate(statuses)]
    fills = [fill(orders[-1], "10", "100")] if with_fill else []
    desk = TradingDesk.create(exchange_settings(), venue="exchange")
    (record,) = of(DecisionRecord, desk.on_bar_event(ev(0, "100", Direction.LONG)))
    record = record.model_copy(update={"orders": orders, "fills": fills})
    assert decision_status(record).value == expected
    assert decision_status(record.model_copy(update={"orders": []})) is record.status


@pytest.mark.parametrize(
    ("reported", "filled", "expected"),
    [
        ("rejected", "0", "rejected"),
        ("rejected", "3", "partially_filled"),  # fills win over a refusal
        ("rejected", "10", "filled"),
        ("pending", "3", "pending"),
        ("pending", "10", "pending"),  # the exchange's word on open/filled stands
        ("filled", "9.99", "filled"),  # a fee taken in the base asset
        ("partially_filled", "3", "partially_filled"),
    ],
)
def test_order_status_rule(reported: str, filled: str, expected: str) -> None:
    order = _order("c", OrderStatus.PENDING)
    assert order_status(order, OrderStatus(reported), D(filled)).value == expected


# ------------------------------------------------------------------ the exchange venue
def test_an_order_filled_after_the_executor_gave_up_is_booked_at_its_fill_price() -> None:
    desk = TradingDesk.create(exchange_settings(), venue="exchange")
    order = buy(desk)
    rows: list[Any] = [order]
    gave_up = report(order, ExecStatus.FAILED, [], attempts=2, error="RequestTimeout")
    rows += desk.on_execution(gave_up)
    first = newest(DecisionRecord, rows, "decision_id")[order.decision_id]
    assert first.status is DecisionStatus.REJECTED
    assert len(of(CancelOpen, rows)) == 1  # the fallback, once
    # The same failure reported again changes nothing (no second fallback, no new row).
    assert desk.on_execution(gave_up) == []
    # The exchange had the order after all, and filled it at 100.4 (the mark is 100).
    late = [fill(order, "30", "100.4", 0), fill(order, "20", "100.6", 1)]
    out = desk.on_execution(report(order, ExecStatus.FILLED, late))
    rows += out
    record = newest(DecisionRecord, rows, "decision_id")[order.decision_id]
    assert record.status is DecisionStatus.EXECUTED and record.fills == late
    assert record.version > first.version
    (latest_order,) = newest(Order, rows, "client_order_id").values()
    assert latest_order.status is OrderStatus.FILLED
    assert of(Fill, out) == late
    pos = desk.portfolio.position(SYM)
    assert pos.quantity == 50 and pos.avg_cost == (D(30) * D("100.4") + D(20) * D("100.6")) / 50
    assert pos.avg_cost != D(100)  # not the mark
    assert any(a.source == "executor" and "was rejected but" in a.message for a in of(Alert, out))
    assert len(of(CancelOpen, rows)) == 1
    # The reconciliation that follows finds the book equal to the exchange: nothing adopted.
    cash = desk.portfolio.cash
    state = ExchangeState(balances={"BTC": D(50), "USDT": cash}, free={}, prices={SYM: D(90)})
    alerts = desk.on_exchange_state(state, 10**9)
    assert alerts == [] and desk.portfolio.position(SYM).avg_cost == pos.avg_cost


def test_a_refused_order_found_open_is_pending_again_and_polled() -> None:
    desk = TradingDesk.create(exchange_settings(), venue="exchange")
    order = buy(desk)
    desk.on_execution(report(order, ExecStatus.FAILED, [], error="timeout"))
    assert desk.unreported_orders() == []
    out = desk.on_execution(report(order, ExecStatus.OPEN, []))
    (again,) = of(Order, out)
    assert again.status is OrderStatus.PENDING and desk.unreported_orders() == [again]
    (record,) = of(DecisionRecord, out)
    assert record.status is DecisionStatus.EXECUTED


# Reports: (kind, fill quantity). Fills get fresh ids; "repeat" sends an earlier report again.
KINDS = ["fill", "partial", "open_fill", "open", "reject", "fail", "unknown", "unknown_fill"]
reports = st.lists(
    st.tuples(st.sampled_from([*KINDS, "repeat"]), st.integers(1, 30), st.integers(0, 50)),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(seq=reports)
def test_any_report_sequence_ends_consistent_with_the_fills(
    seq: list[tuple[str, int, int]],
) -> None:
    desk = TradingDesk.create(exchange_settings(), venue="exchange")
    rows: list[Any] = list(desk.on_bar_event(ev(0, "100", Direction.LONG)))
    (order,) = of(Order, rows)  # 50 at 100
    sent: list[ExecutionReport] = []
    booked: dict[str, Fill] = {}  # the independent model: fills the exchange confirmed
    n = 0
    for kind, qty, pick in seq:
        if kind == "repeat":
            if not sent:
                continue
            r = sent[pick % len(sent)]
        else:
            done = sum((f.quantity for f in booked.values()), D(0))
            # An exchange never fills more than ordered; `filled` brings the rest, an order
            # reported open or partly filled has some left.
            rest = int(order.quantity - done)
            qty = rest if kind == "fill" else min(qty, rest - 1)
            fills = []
            if kind in ("fill", "partial", "open_fill", "unknown_fill") and qty > 0:
                fills = [fill(order, str(qty), str(100 + n % 7), n)]
                n += 1
            status = {
                "fill": ExecStatus.FILLED,
                "partial": ExecStatus.PARTIALLY_FILLED,
                "open_fill": ExecStatus.OPEN,
                "open": ExecStatus.OPEN,
                "reject": ExecStatus.REJECTED,
                "fail": ExecStatus.FAILED,
            }.get(kind, ExecStatus.UNKNOWN)
            r = report(order, status, fills, error="" if fills else "refused")
            sent.append(r)
        if r.status is not ExecStatus.UNKNOWN:  # an unknown report books nothing
            booked.update((f.fill_id, f) for f in r.fills)
        rows += desk.on_execution(r)
    filled = sum((f.quantity for f in booked.values()), D(0))
    decisions = newest(DecisionRecord, rows, "decision_id")
    record = decisions[order.decision_id]
    (latest,) = newest(Order, rows, "client_order_id").values()
    # The fills: each confirmed one exactly once, in the log and in the book, at its price.
    assert sorted(f.fill_id for f in record.fills) == sorted(booked)
    assert sorted(f.fill_id for f in of(Fill, rows)) == sorted(booked)
    assert desk.portfolio.quantity(SYM) == filled
    if filled:
        cost = sum((f.quantity * f.price for f in booked.values()), D(0)) / filled
        assert abs(desk.portfolio.position(SYM).avg_cost - cost) < D("1e-9")
    # The order: fills win; filled once they reach the quantity; never rejected with fills.
    if filled >= order.quantity:
        assert latest.status is OrderStatus.FILLED
    elif filled > 0:
        assert latest.status in (OrderStatus.PARTIALLY_FILLED, OrderStatus.PENDING)
    definitive = [r for r in sent if r.status is not ExecStatus.UNKNOWN]
    if not definitive:
        assert latest.status is OrderStatus.PENDING and record.version == 1
    # The decision: executed iff something filled or still on its way; rejected otherwise.
    if filled > 0 or latest.status is OrderStatus.PENDING:
        assert record.status is DecisionStatus.EXECUTED
    else:
        assert latest.status is OrderStatus.REJECTED
        assert record.status is DecisionStatus.REJECTED
    # Open iff the order is still on its way; the fallback at most once.
    assert (order.decision_id in desk.decisions.open) == (latest.status is OrderStatus.PENDING)
    assert len(of(CancelOpen, rows)) <= 1


# ------------------------------------------------------------------ through the live flow
class LostAnswerExecutor(CcxtExecutor):
    """The exchange fills the order, but the executor's answer was lost and its lookups said
    the order did not exist (Binance's lookup lags a create): it gives up, `failed`."""

    def execute(
        self, order: Order, *, resend: bool = False, check_age: bool = False
    ) -> ExecutionReport:
        placed = super().execute(order, resend=resend, check_age=check_age)
        assert placed.status is ExecStatus.FILLED
        return self._failure(order, ExecStatus.FAILED, 2, "RequestTimeout: no answer")


def test_a_live_flow_books_a_given_up_order_at_its_fill_price_not_at_the_mark() -> None:
    settings = Settings.model_validate(
        {
            "symbols": {SYM: {"lot_size": "0.0001"}},
            "execution": {
                "initial_cash": "100000",
                "currency": "USDT",
                "reconcile_every": "100ms",
            },
            "strategy": {"controller": "local", "target_fraction": "0.05"},
        }
    )
    # The bar closes at 60,000 (the mark); the exchange trades at 60,500.
    with ExchangeEmulator([SYM], prices={SYM: "60500"}, balances={"USDT": "100000"}) as ex:
        gateway = ExecutionGateway(LostAnswerExecutor(ex.client()))
        logic = DeskLogic(settings, frozenset({"m#0"}), None, None, False, gateway)
        rows: list[Any] = list(logic.on_batch([])[0])
        rows += logic.on_batch([bar_event(0, D(60000), Direction.LONG)])[0]
        deadline = time.monotonic() + 30  # only a wait for the worker thread, not a bound
        while time.monotonic() < deadline:
            time.sleep(0.05)
            rows += logic.on_notify()[0]
            if of(Fill, rows) and not logic.desk.orders_to_look_up() and not gateway.in_flight:
                break
        time.sleep(0.3)  # one more reconciliation after the late report
        rows += logic.on_notify()[0]
        gateway.close()
        with ex.lock:
            balances = ex.engine.balances()
    (order,) = newest(Order, rows, "client_order_id").values()
    record = newest(DecisionRecord, rows, "decision_id")[order.decision_id]
    fills = of(Fill, rows)
    assert order.status is OrderStatus.FILLED and record.status is DecisionStatus.EXECUTED
    assert fills and record.fills == fills and all(f.price >= D(60500) for f in fills)
    paid = sum((f.quantity * f.price for f in fills), D(0)) / sum(f.quantity for f in fills)
    pos = logic.desk.portfolio.position(SYM)
    assert pos.quantity == balances["BTC"].total and pos.avg_cost == paid  # not the mark
    assert logic.desk.portfolio.cash == balances["USDT"].total
    assert not [a for a in of(Alert, rows) if "book reconciled" in a.message]


# ------------------------------------------------------------------ the report
@pytest.mark.parametrize("order_of_writes", ["as emitted", "reversed"])
def test_the_report_counts_the_newest_status(tmp_path: Path, order_of_writes: str) -> None:
    """The report reads decisions with FINAL (ReplacingMergeTree by version): the newest row
    wins whatever order the rows were written in, so refused decisions count as rejected and
    a late fill as executed."""
    from api.report import summarize
    from connectors.store.clickhouse import Store
    from models.config.settings import ClickHouseConfig

    sim = TradingDesk.create(exchange_settings())
    rows: list[Any] = list(sim.on_bar_event(ev(0, "100", Direction.LONG)))
    rows += sim.on_bar_event(ev(1, "6000"))  # refused at fill: half of equity buys no unit
    desk = TradingDesk.create(exchange_settings(), venue="exchange")
    late = list(desk.on_bar_event(ev(5, "100", Direction.LONG)))
    (order,) = of(Order, late)
    late += desk.on_execution(report(order, ExecStatus.FAILED, [], error="timeout"))
    late += desk.on_execution(report(order, ExecStatus.FILLED, [fill(order, "50", "101")]))
    written = [r for r in rows + late if isinstance(r, DecisionRecord)]
    if order_of_writes == "reversed":
        written.reverse()
    with Store.open(ClickHouseConfig(path=str(tmp_path / "ch"))) as store:
        store.apply_schema()
        for record in written:  # one insert each: separate parts, merged by FINAL
            store.insert("decisions", [record])
        counts = {r["status"]: r["n"] for r in summarize(store).decisions}
    assert counts == {"rejected": 1, "executed": 1}
