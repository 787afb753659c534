"""Issue 9, item 14: orders decided during an outage went out when it ended, up to 30.6 s late
(a buy decided at 60,717 filled at 63,385). An order older than `execution.max_order_age` is
re-checked at the current price with the risk gate's limits, or dropped with the reason: here
through the executor, the gateway and the desk against the exchange emulator (the rule itself:
tests/unit/test_stale_order_rule.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from connectors.exchange.ccxt_executor import CcxtExecutor
from connectors.exchange.gateway import ExecutionGateway
from connectors.sim.exchange_emulator import ExchangeEmulator
from dataflows.adapters import DeskLogic
from models.config.settings import Settings
from models.core.events import BarEvent
from models.core.messages import (
    Alert,
    Branch,
    DecisionRecord,
    Order,
    OrderStatus,
)
from models.execution.reports import ExecStatus
from models.execution.stale_order import stale_rule
from tests.support import builders as build
from tests.unit.test_stale_order_rule import RULE, order

D = Decimal
BTC = "BTC/USDT"
POST = "POST /api/v3/order"


class Clock:
    def __init__(self) -> None:
        self.now = time.time_ns() // 1_000_000

    def __call__(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += round(seconds * 1000)


@pytest.fixture
def market() -> Iterator[tuple[ExchangeEmulator, Clock]]:
    clock = Clock()
    with ExchangeEmulator([BTC], prices={BTC: "60717"}, balances={"USDT": "100000"}) as ex:
        # The market at the decision, 30.6 s ago: a trade at 60,717.
        ex.set_price(BTC, "60717", ts_ms=clock() - 30_700, volume="0.5")
        yield ex, clock


def executor(ex: ExchangeEmulator, clock: Clock) -> CcxtExecutor:
    return CcxtExecutor(ex.client(), sleep=clock.sleep, clock_ms=clock, stale=RULE)


def posts(ex: ExchangeEmulator) -> int:
    return len([r for r in ex.requests if r.endpoint == POST])


def test_an_order_held_behind_an_outage_is_dropped_when_the_price_moved(
    market: tuple[ExchangeEmulator, Clock],
) -> None:
    ex, clock = market
    ex.set_price(BTC, "63385")  # the outage is over: the market is 4.4 % higher
    late = order(clock() - 30_600)
    report = executor(ex, clock).execute(late, check_age=True)
    assert report.status is ExecStatus.REJECTED and report.attempts == 0 and report.failed
    assert report.error.startswith(f"stale: decided at {late.placed_ms}, 30600 ms old; ")
    assert "60717" in report.error and "63385" in report.error
    assert posts(ex) == 0  # never sent


def test_a_stale_order_still_within_the_limits_is_sent(
    market: tuple[ExchangeEmulator, Clock],
) -> None:
    ex, clock = market
    ex.set_price(BTC, "60750")  # 5 bps away
    report = executor(ex, clock).execute(order(clock() - 30_600), check_age=True)
    assert report.status is ExecStatus.FILLED and posts(ex) == 1


def test_a_backtest_order_is_not_aged_but_a_live_one_is(
    market: tuple[ExchangeEmulator, Clock],
) -> None:
    """Inline (a backtest) the order's event time is the replay's: `execute` does not age it.
    The live worker (`submit`) does, and the rejection comes back as the order's report."""
    ex, clock = market
    ex.set_price(BTC, "63385")
    gateway = ExecutionGateway(executor(ex, clock))
    inline = gateway.execute(order(clock() - 30_600, n=1))
    assert inline.status is ExecStatus.FILLED
    gateway.submit(order(clock() - 30_600, n=2))
    gateway.wait()
    reports: list[Any] = []
    while not reports:
        reports = gateway.ready()
    gateway.close()
    assert [(r.client_order_id, r.status) for r in reports] == [
        ("sf-stale-0002", ExecStatus.REJECTED)
    ]
    assert reports[0].error.startswith("stale: decided at")
    assert posts(ex) == 1


def test_the_desk_records_a_stale_order_as_refused_and_applies_its_fallback(
    market: tuple[ExchangeEmulator, Clock],
) -> None:
    """Live (the worker sends): the bar was decided 30.6 s before the order could go out and
    the market moved 4.4 %: the desk's order comes back rejected with the reason, a critical
    alert is raised and the configured fallback is written into the decision log."""
    ex, clock = market
    settings = Settings.model_validate(
        {
            "symbols": {BTC: {"lot_size": "0.0001"}},
            "execution": {"initial_cash": "100000", "currency": "USDT", "fallback": "hold"},
            "strategy": {"controller": "local", "target_fraction": "0.05"},
        }
    )
    gateway = ExecutionGateway(
        CcxtExecutor(ex.client(), sleep=clock.sleep, clock_ms=clock, stale=stale_rule(settings))
    )
    logic = DeskLogic(settings, frozenset({"m#0"}), None, None, False, gateway)
    logic.on_batch([])
    ex.set_price(BTC, "63385")
    decided = bar_event(clock() - 30_600, D("60717"))
    out: list[Any] = list(logic.on_batch([decided])[0])
    gateway.wait()
    while gateway.in_flight or not any(isinstance(x, Order) and x.version > 1 for x in out):
        out.extend(logic.on_notify()[0])
    gateway.close()
    (final,) = [x for x in out if isinstance(x, Order) and x.version > 1]
    assert final.status is OrderStatus.REJECTED and final.reason.startswith("stale: decided at")
    alerts = [a for a in out if isinstance(a, Alert) and a.source == "executor"]
    assert (
        alerts
        and "stale: decided at" in alerts[0].message
        and "fallback: hold" in alerts[0].message
    )
    records = [r for r in out if isinstance(r, DecisionRecord)]
    assert "stale: decided at" in records[-1].note and "fallback: hold" in records[-1].note
    assert posts(ex) == 0 and logic.desk.portfolio.quantity(BTC) == 0


def bar_event(end_ms: int, price: Decimal) -> BarEvent:
    bar = build.bar(BTC, end_ms - 60_000, price)
    return build.bar_event(bar, [build.signal(BTC, end_ms, "outage")], Branch.ROUTINE)
