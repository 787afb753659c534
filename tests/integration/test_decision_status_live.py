"""A decision's status through the live flow on the exchange emulator (an order whose answer
was lost is booked at its fill price, not at the mark) and in the report read from chdb (the
newest row wins whatever order the rows were written in)."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.exchange.ccxt_executor import CcxtExecutor
from connectors.exchange.gateway import ExecutionGateway
from connectors.sim.exchange_emulator import ExchangeEmulator
from dataflows.pipeline import DeskLogic
from models.config.settings import Settings
from models.core.messages import (
    Alert,
    DecisionRecord,
    DecisionStatus,
    Direction,
    Fill,
    Order,
    OrderStatus,
)
from models.desk.desk import TradingDesk
from models.execution.reports import ExecStatus, ExecutionReport
from tests.integration.test_ccxt_executor import bar_event
from tests.unit.test_decision_status import SYM, exchange_settings, newest
from tests.unit.test_desk_execution import ev, fill, of, report

D = Decimal


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
    rows += sim.on_bar_event(ev(1, "300"))  # refused at fill: no cash for it
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
