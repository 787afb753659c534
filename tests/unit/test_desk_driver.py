"""The desk's driver (dataflows/driver.py) with fake gateways and a clock the test moves: what a
restart left is re-sent first, the book is reconciled with the exchange only when nothing is on
its way, inline answers land before the next event, worker answers when they arrive; commands
and rows never mix."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, get_args

import pytest

from dataflows.driver import ANSWER_POLL, Clock, DeskDriver
from dataflows.lanes import DeskInput, is_desk_input
from models.config.settings import Settings
from models.core.commands import COMMAND_TYPES, AskGpt, CancelOpen, Command, PlaceOrder, is_command
from models.core.messages import (
    Alert,
    Branch,
    DecisionRecord,
    DecisionStatus,
    Direction,
    Fill,
    GptCall,
    GptRequest,
    Order,
    OrderStatus,
    PositionSnapshot,
    Severity,
)
from models.desk.desk import DeskRow, TradingDesk
from models.execution.reports import ExchangeState, ExecStatus, ExecutionReport
from models.gpt.decider import GptAnswer
from models.market.ingest import IngestOutput
from models.strategy.spec import GptDecision
from tests.support.gpt import answer, make_settings
from tests.unit.test_desk_execution import buy, ev, fill, of, report
from tests.unit.test_desk_execution import settings as exchange_settings
from tests.unit.test_strategy_takeover import RSI, end
from tests.unit.test_strategy_takeover import ev as gpt_ev

D = Decimal
SYM = "BTC/USDT"
EVERY_S = 60.0  # execution.reconcile_every by default


@dataclass
class FakeClock:
    t: float = 1000.0
    wall: int = 1_700_000_000_000

    def clock(self) -> Clock:
        return Clock(monotonic=lambda: self.t, wall_ms=lambda: self.wall)


@dataclass
class FakeOrders:
    """The order gateway: inline orders fill at once at 100; submitted ones wait in the
    "worker" until `finish`. A state check is answered at once, marked with the orders
    submitted so far (as the real gateway's is)."""

    state: ExchangeState
    fail: bool = False  # every order fails
    executed: list[tuple[str, bool]] = field(default_factory=list)
    queued: list[tuple[Order, bool, bool]] = field(default_factory=list)
    sent: list[tuple[str, bool, bool]] = field(default_factory=list)
    cancels: list[tuple[CancelOpen, bool]] = field(default_factory=list)
    reads: int = 0
    checks: int = 0
    submitted: int = 0
    _ready: list[ExecutionReport] = field(default_factory=list)
    _states: list[tuple[ExchangeState, int]] = field(default_factory=list)

    @property
    def in_flight(self) -> int:
        return len(self.queued)

    def _report(self, order: Order) -> ExecutionReport:
        if self.fail:
            return report(order, ExecStatus.FAILED, [], attempts=2, error="down")
        return report(order, ExecStatus.FILLED, [fill(order, str(order.quantity), "100")])

    def read_state(self, symbols: list[str]) -> ExchangeState:
        self.reads += 1
        return self.state

    def execute(
        self, order: Order, resend: bool = False, look_up: bool = False, *, check_age: bool = False
    ) -> ExecutionReport:
        self.executed.append((order.client_order_id, resend))
        return self._report(order)

    def submit(self, order: Order, resend: bool = False, look_up: bool = False) -> None:
        self.submitted += 1
        self.queued.append((order, resend, look_up))
        self.sent.append((order.client_order_id, resend, look_up))

    def finish(self) -> None:
        self._ready += [self._report(order) for order, _, _ in self.queued]
        self.queued = []

    def ready(self) -> list[ExecutionReport]:
        out, self._ready = self._ready, []
        return out

    def check_state(self, symbols: list[str]) -> None:
        self.checks += 1
        self._states.append((self.state, self.submitted))

    def states(self) -> list[tuple[ExchangeState, int]]:
        out, self._states = self._states, []
        return out

    def cancel_open(self, command: CancelOpen, *, inline: bool) -> None:
        self.cancels.append((command, inline))

    def wait(self, timeout_s: float | None = None) -> None:
        self.finish()


@dataclass
class FakeGpt:
    """The GPT gateway: answers every question with `decision`; at once when asked inline
    (noting the desk's newest bar then), or once `finish` lets the "worker" answer."""

    desk: TradingDesk | None
    decision: GptDecision
    asked_at: list[int] = field(default_factory=list)
    queued: list[GptRequest] = field(default_factory=list)
    _ready: list[GptAnswer] = field(default_factory=list)

    @property
    def in_flight(self) -> int:
        return len(self.queued)

    def answer(self, request: GptRequest) -> GptAnswer:
        assert self.desk is not None
        self.asked_at.append(self.desk.latest[request.symbol].bar.end_ms)
        return answer(request, self.decision)

    def submit(self, request: GptRequest) -> None:
        self.queued.append(request)

    def finish(self) -> None:
        self._ready += [answer(r, self.decision) for r in self.queued]
        self.queued = []

    def ready(self) -> list[GptAnswer]:
        out, self._ready = self._ready, []
        return out

    def wait(self, timeout_s: float | None = None) -> None:
        self.finish()


def state(usdt: str, btc: str = "0") -> ExchangeState:
    return ExchangeState(balances={"USDT": D(usdt), "BTC": D(btc)}, free={}, prices={SYM: D(100)})


def restarted(desk: TradingDesk, settings: Settings) -> TradingDesk:
    again = TradingDesk.create(settings, venue=desk.venue, gpt=desk.gpt.decider is not None)
    again.restore(pickle.loads(pickle.dumps(desk.state())))
    return again


# ------------------------------------------------------------------ commands and rows
def test_commands_and_rows_are_told_apart_by_type() -> None:
    assert set(get_args(Command)) == COMMAND_TYPES
    assert not set(get_args(DeskRow)) & COMMAND_TYPES
    desk = TradingDesk.create(exchange_settings(), venue="exchange")
    order = buy(desk)
    commands: list[Any] = [PlaceOrder(order), CancelOpen(SYM, "x"), AskGpt(_request())]
    assert all(is_command(c) for c in commands)
    assert not any(is_command(r) for r in [order, *desk.on_bar_event(ev(1, "100"))])


def test_ingest_outputs_are_desk_inputs_or_rows() -> None:
    from connectors.store.rows import ROW_CONVERTERS
    from models.core.blocks import COLUMN_TABLES

    desk_inputs = set(get_args(DeskInput))
    for kind in get_args(IngestOutput):
        assert (kind in desk_inputs) != (kind in ROW_CONVERTERS or kind in COLUMN_TABLES), kind
    assert all(kind in ROW_CONVERTERS or kind in COLUMN_TABLES for kind in get_args(DeskRow))
    event = ev(0, "1")
    assert is_desk_input(event) and not is_desk_input(event.bar)


def _request() -> GptRequest:
    return GptRequest(
        request_id="r", decision_id="d", symbol=SYM, round=0, ts_ms=0, messages=(), prompt_hash="h"
    )


# ------------------------------------------------------------------ a restart
def test_a_restart_resends_unreported_orders_before_adopting_anything() -> None:
    desk = TradingDesk.create(exchange_settings(), venue="exchange")
    order = buy(desk)  # placed, never reported: the process died
    orders = FakeOrders(state("0", "50"))  # the exchange filled it meanwhile
    driver = DeskDriver(restarted(desk, exchange_settings()), orders=orders, inline=True)
    assert orders.reads == 1  # the exchange was asked before anything else
    out: list[DeskRow] = []
    driver.poll(out)
    assert orders.executed == [(order.client_order_id, True)]  # found by id, not placed again
    assert of(Fill, out) and [o.status for o in of(Order, out)] == [OrderStatus.FILLED]
    # Not adopted at start-up: the fill came with the report, at its price, counted once.
    assert driver.desk.portfolio.quantity(SYM) == D(50)
    assert not [a for a in of(Alert, out) if "->" in a.message]
    driver.poll(out)
    assert len(orders.executed) == 1  # sent again once


def test_a_live_restart_resends_through_the_worker_and_applies_the_report_later() -> None:
    desk = TradingDesk.create(exchange_settings(), venue="exchange")
    order = buy(desk)
    orders = FakeOrders(state("0", "50"))
    driver = DeskDriver(restarted(desk, exchange_settings()), orders=orders, inline=False)
    out: list[DeskRow] = []
    driver.poll(out)
    assert orders.sent[0] == (order.client_order_id, True, False) and of(Fill, out) == []
    assert driver.wake_in() == ANSWER_POLL  # busy: look again soon
    orders.finish()
    driver.poll(out)
    assert [f.client_order_id for f in of(Fill, out)] == [order.client_order_id]
    assert driver.desk.unreported_orders() == []


def test_a_fresh_desk_adopts_the_exchange_state_at_the_first_poll() -> None:
    orders = FakeOrders(state("500"))
    driver = DeskDriver(TradingDesk.create(exchange_settings(), venue="exchange"), orders=orders)
    out: list[DeskRow] = []
    driver.poll(out)
    assert driver.desk.portfolio.cash == D(500)
    assert any("10000 -> 500" in a.message for a in of(Alert, out))


# ------------------------------------------------------------------ the live exchange
def test_the_book_is_reconciled_only_when_no_order_is_on_its_way() -> None:
    clock = FakeClock()
    orders = FakeOrders(state("10000"))
    desk = TradingDesk.create(exchange_settings(), venue="exchange")
    driver = DeskDriver(desk, orders=orders, inline=False, clock=clock.clock())
    out: list[DeskRow] = []
    driver.poll(out)
    assert orders.checks == 0  # not due yet
    clock.t += EVERY_S
    orders.state = state("7777", "0")  # what the exchange will say
    driver.poll(out)
    assert orders.checks == 1  # the state is read in the background...
    driver.run([ev(0, "100", Direction.LONG)], out)  # ...while an order leaves
    (placed,) = of(Order, out)
    assert orders.sent == [(placed.client_order_id, False, False)]
    orders.finish()
    driver.poll(out)  # the report, then the state read before the order was sent: dropped
    assert desk.portfolio.quantity(SYM) == D(50) and desk.portfolio.cash != D(7777)
    driver.poll(out)
    assert orders.checks == 1  # the next check waits for its time
    clock.t += EVERY_S
    driver.poll(out)  # asks again
    driver.poll(out)  # nothing sent since it asked, every order reported: applied
    assert orders.checks == 2 and desk.portfolio.cash == D(7777)
    assert desk.portfolio.quantity(SYM) == 0


def test_the_reconcile_timer_sets_the_wake_up() -> None:
    clock = FakeClock()
    orders = FakeOrders(state("10000"))
    desk = TradingDesk.create(exchange_settings(), venue="exchange")
    driver = DeskDriver(desk, orders=orders, inline=False, clock=clock.clock())
    assert driver.wake_in() == timedelta(seconds=1)  # at least every second
    clock.t += EVERY_S - 0.25
    assert driver.wake_in() == timedelta(seconds=0.25)
    clock.t += 1
    assert driver.wake_in() == timedelta(0)
    inline = DeskDriver(restarted(desk, exchange_settings()), orders=orders, inline=True)
    assert inline.wake_in() is None  # a backtest has no timers


def test_a_failed_order_cancels_open_orders_through_the_gateway() -> None:
    desk = TradingDesk.create(exchange_settings("cancel_open"), venue="exchange")
    orders = FakeOrders(state("10000"), fail=True)
    driver = DeskDriver(desk, orders=orders, inline=True)
    out: list[DeskRow] = []
    driver.run([ev(0, "100", Direction.LONG)], out)
    ((command, inline),) = orders.cancels
    assert command.symbol == SYM and inline
    assert not any(is_command(x) for x in out)
    (record,) = [r for r in of(DecisionRecord, out) if r.version > 1]
    assert record.status is DecisionStatus.REJECTED


# ------------------------------------------------------------------ GPT
@pytest.fixture
def gpt_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, gpt={"cooldown": "0s"})


def test_an_inline_answer_is_applied_before_the_next_event(gpt_settings: Settings) -> None:
    desk = TradingDesk.create(gpt_settings, gpt=True)
    gpt = FakeGpt(desk, RSI)
    driver = DeskDriver(desk, gpt=gpt, inline=True)
    out: list[DeskRow] = []
    driver.run([gpt_ev(0, Branch.STRATEGIC, rsi=20.0), gpt_ev(1)], out)
    assert gpt.asked_at == [end(0)]  # answered while bar 0 was the newest
    call = of(GptCall, out)[0]
    snapshot = next(p for p in of(PositionSnapshot, out) if p.ts_ms == end(1))
    assert out.index(call) < out.index(snapshot)
    (placed,) = [o for o in of(Order, out) if o.version == 1]
    assert placed.placed_ms == end(0)
    # Ordered 100 (10 % of equity at the close), bought 99 at bar 1's open: 10 % of equity
    # pays 99 units and the fee.
    assert desk.portfolio.quantity("ABC") == D(99)
    assert not any(is_command(x) for x in out) and desk.gpt.pending == {}


def test_a_worker_answer_is_applied_when_it_arrives(gpt_settings: Settings) -> None:
    desk = TradingDesk.create(gpt_settings, gpt=True)
    gpt = FakeGpt(None, RSI)
    driver = DeskDriver(desk, gpt=gpt, inline=False)
    out: list[DeskRow] = []
    driver.run([gpt_ev(0, Branch.STRATEGIC, rsi=20.0)], out)
    assert len(gpt.queued) == 1 and of(GptCall, out) == [] and "ABC" in desk.gpt.pending
    assert driver.wake_in() == ANSWER_POLL
    driver.run([gpt_ev(1, rsi=20.0)], out)  # the flow goes on meanwhile
    assert of(GptCall, out) == []
    gpt.finish()
    driver.poll(out)  # on notify
    assert len(of(GptCall, out)) == 1 and desk.gpt.pending == {}
    (placed,) = [o for o in of(Order, out) if o.version == 1]
    assert placed.placed_ms == end(1)  # placed at the bar the answer found
    assert driver.wake_in() is None


def test_a_restart_asks_the_pending_questions_again(gpt_settings: Settings) -> None:
    desk = TradingDesk.create(gpt_settings, gpt=True)
    DeskDriver(desk, gpt=FakeGpt(None, RSI), inline=False).run(
        [gpt_ev(0, Branch.STRATEGIC, rsi=20.0)], []
    )
    again = restarted(desk, gpt_settings)
    gpt = FakeGpt(again, RSI)
    driver = DeskDriver(again, gpt=gpt, inline=True)
    out: list[DeskRow] = []
    driver.poll(out)
    assert gpt.asked_at == [end(0)] and len(of(GptCall, out)) == 1
    assert again.gpt.pending == {}


def test_the_end_of_input_waits_for_every_answer(gpt_settings: Settings) -> None:
    desk = TradingDesk.create(gpt_settings, gpt=True)
    gpt = FakeGpt(None, RSI)
    driver = DeskDriver(desk, gpt=gpt, inline=False)
    out: list[DeskRow] = []
    driver.run([gpt_ev(0, Branch.STRATEGIC, rsi=20.0)], out)
    driver.drain(out)
    assert len(of(GptCall, out)) == 1 and not driver.busy()


def test_a_bug_applying_an_answer_is_an_alert_stamped_by_the_clock(gpt_settings: Settings) -> None:
    clock = FakeClock(wall=1_234_567)
    desk = TradingDesk.create(gpt_settings, gpt=True)
    gpt = FakeGpt(None, RSI)
    driver = DeskDriver(desk, gpt=gpt, inline=False, clock=clock.clock())
    out: list[DeskRow] = []
    driver.run([gpt_ev(0, Branch.STRATEGIC, rsi=20.0)], out)
    gpt.finish()
    gpt._ready = [GptAnswer("r", None, "x", "", None, False)]  # type: ignore[arg-type]
    driver.poll(out)
    (alert,) = of(Alert, out)
    assert alert.severity is Severity.CRITICAL and alert.ts_ms == 1_234_567
    assert alert.message.startswith("applying GPT answer r failed")
    driver.run([gpt_ev(1)], out)  # the flow goes on
    assert [p.ts_ms for p in of(PositionSnapshot, out)][-1] == end(1)
