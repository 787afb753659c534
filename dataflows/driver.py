"""The desk's driver: carries out the desk's commands and feeds what comes back into the desk.

The desk (`models.desk.desk.TradingDesk`) is pure: it takes events, answers and reports, and
returns rows and commands (`models.core.commands`). Everything that happens in time lives here:

- Commands become calls. `AskGpt` goes to the GPT gateway, `PlaceOrder` and `CancelOpen` to the
  order gateway. Inline (a backtest) each is answered at once and the answer is applied before
  the next event, so results depend on the data only; otherwise (live) it goes to a worker and
  the answer is applied when it arrives, while the flow goes on (`poll`).
- After a restart, questions still pending in the desk's snapshot are asked again (free from
  the answer store when they had been answered) and orders that never got a report are sent
  again (the executor finds them on the exchange by client order id, never twice).
- On a real exchange, the book is checked against the exchange's balances at start-up and every
  `execution.reconcile_every` (only while no order is on its way), orders reported `open` are
  polled, and orders the executor gave up on are looked up once more.
- A bug in any step becomes a critical alert, never a stopped flow.

The driver knows nothing of Bytewax: `dataflows.adapters.DeskLogic` calls it from the flow, and
tests call it directly with fake gateways and a fake `Clock`, so its timers run without sleeping.
Rows go out in the order the desk produced them, with the rows an inline answer brings in place
of the command that asked.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol, assert_never

from models.config.base import parse_duration_ms
from models.control.commands import ControlEvent
from models.core.blocks import BarBlock
from models.core.commands import AskGpt, CancelOpen, Command, PlaceOrder, is_command
from models.core.events import BarEvent, TextEvent
from models.core.ids import alert_id
from models.core.messages import Alert, GptRequest, Order, Severity
from models.desk.desk import DeskOutput, DeskRow, TradingDesk, desk_failure_alert
from models.execution.reports import ExchangeState, ExecStatus, ExecutionReport
from models.gpt.decider import GptAnswer

ANSWER_POLL = timedelta(milliseconds=50)  # how often a live desk looks for answers and reports
LONGEST_SLEEP = timedelta(seconds=1)  # a live exchange desk wakes at least this often


def _wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Clock:
    """The driver's two clocks: `monotonic` (seconds) times its timers, `wall_ms` stamps what
    it writes (an alert, the start-up reconciliation). Injected so tests can move time."""

    monotonic: Callable[[], float] = time.monotonic
    wall_ms: Callable[[], int] = _wall_ms


SYSTEM_CLOCK = Clock()


class GptLine(Protocol):
    """What the driver needs of the GPT gateway (`connectors.gpt.gateway.GptGateway`)."""

    @property
    def in_flight(self) -> int: ...

    def answer(self, request: GptRequest) -> GptAnswer: ...

    def submit(self, request: GptRequest) -> None: ...

    def ready(self) -> list[GptAnswer]: ...

    def wait(self, timeout_s: float | None = None) -> None: ...


class OrderLine(Protocol):
    """What the driver needs of the order gateway (`connectors.exchange.gateway`)."""

    @property
    def in_flight(self) -> int: ...

    @property
    def submitted(self) -> int: ...

    def read_state(self, symbols: list[str]) -> ExchangeState: ...

    def execute(
        self, order: Order, resend: bool = False, look_up: bool = False, *, check_age: bool = False
    ) -> ExecutionReport: ...

    def submit(self, order: Order, resend: bool = False, look_up: bool = False) -> None: ...

    def ready(self) -> list[ExecutionReport]: ...

    def check_state(self, symbols: list[str]) -> None: ...

    def states(self) -> list[tuple[ExchangeState, int]]: ...

    def cancel_open(self, command: CancelOpen, *, inline: bool) -> None: ...

    def wait(self, timeout_s: float | None = None) -> None: ...


def flow_error_alert(what: str, err: Exception, ts_ms: int) -> Alert:
    """A bug outside any bar (a GPT answer, a news item): critical, never silent."""
    return Alert(
        alert_id=alert_id("desk-error", what, type(err).__name__, str(err)),
        ts_ms=ts_ms,
        severity=Severity.CRITICAL,
        source="desk",
        message=f"{what} failed: {type(err).__name__}: {err}",
        context={},
    )


class DeskDriver:
    """Runs one desk against its gateways; every method appends the rows it makes to `out`.

    `inline`: answer every command before the next event (a backtest; deterministic), else
    through the gateways' workers (live). `orders`: a real exchange behind the desk (its venue
    must be `exchange`); its state is read here, at construction, and adopted unless a restart
    left orders to settle first (raises when the exchange cannot be asked: never trade on an
    unchecked book)."""

    def __init__(
        self,
        desk: TradingDesk,
        *,
        gpt: GptLine | None = None,
        orders: OrderLine | None = None,
        inline: bool = True,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.desk = desk
        self.gpt = gpt
        self.orders = orders
        self.inline = inline
        self.clock = clock
        # What a restart left over (nothing for a fresh desk): asked and sent again first.
        self._unasked: list[AskGpt] = desk.pending_requests()
        self._unsent: list[Order] = desk.unreported_orders()
        self._startup: list[DeskRow] = []
        self._pairs = [s for s in desk.settings.symbols if "/" in s]
        self._check_every_s = parse_duration_ms(desk.settings.execution.reconcile_every) / 1000
        self._next_check = clock.monotonic() + self._check_every_s
        if orders is not None:
            state = orders.read_state(self._pairs)
            if self._unsent or (not inline and desk.orders_to_look_up()):
                # Orders without a report (or given up on): the balances may already hold
                # their fills, which the re-sent orders' reports will bring; adopting now would
                # count them twice. The periodic check reconciles once they have reported.
                self._next_check = clock.monotonic()
            else:
                self._startup = list(desk.on_exchange_state(state, clock.wall_ms()))

    # ------------------------------------------------------------------ the flow's entry points
    def run(
        self, events: Iterable[BarEvent | BarBlock | TextEvent | ControlEvent], out: list[DeskRow]
    ) -> None:
        """Hand events to the desk, in order, carrying out what each asks for; a block goes
        at once (`TradingDesk.on_bar_block`), exactly as its events one by one."""
        for event in events:
            if type(event) is BarBlock:
                self._block(event, out)
            elif isinstance(event, TextEvent):
                what = f"adding {event.item.type} {event.item.id} to the digest"
                self._guarded(functools.partial(self._text, event), what, out)
            elif isinstance(event, ControlEvent):
                what = f"applying control command {event.command.command_id}"
                self._guarded(functools.partial(self.desk.on_control, event), what, out)
            else:
                assert isinstance(event, BarEvent)
                self._guarded(functools.partial(self.desk.on_bar_event, event), event, out)

    def _block(self, block: BarBlock, out: list[DeskRow]) -> None:
        """A block in steps: each ends with the bar that asked for something (a command), which
        is carried out here before the next bar, as for that bar's event; a failure while
        carrying it out is that bar's alert, as `_guarded` gives it."""
        i, n = 0, len(block)
        while i < n:
            start = i
            try:
                outputs, i = self.desk.on_bar_block(block, start)
            except Exception as err:  # a bug in the block path: the bar it started on
                out.append(desk_failure_alert(block.event(start), err))
                i = start + 1
                continue
            try:
                self._emit(outputs, out)
            except Exception as err:
                out.append(desk_failure_alert(block.event(i - 1), err))

    def poll(self, out: list[DeskRow]) -> None:
        """What is due now: the start-up reconciliation, what a restart left over, the answers
        and reports that arrived, the periodic check against the exchange."""
        if self._startup:
            out.extend(self._startup)
            self._startup = []
        if self._unasked:
            unasked, self._unasked = self._unasked, []
            self._guarded(lambda: unasked, "re-asking pending GPT questions", out)
        if self._unsent and self.orders is not None:
            unsent, self._unsent = self._unsent, []
            for order in unsent:  # found on the exchange by client order id, never duplicated
                self._guarded(functools.partial(self._resend, order), "re-sending orders", out)
        if self.gpt is not None and not self.inline:
            for answer in self.gpt.ready():
                what = f"applying GPT answer {answer.request_id}"
                self._guarded(functools.partial(self.desk.on_gpt_answer, answer), what, out)
        if self.orders is not None and not self.inline:
            for report in self.orders.ready():
                what = f"applying the report of order {report.client_order_id}"
                self._guarded(functools.partial(self._reported, report), what, out)
            self._reconcile(self.orders, out)

    def drain(self, out: list[DeskRow]) -> None:
        """The end of the input: wait for every answer and report still out (and those their
        follow-ups ask for); they still count."""
        while not self.inline and self.busy():
            if self.gpt is not None:
                self.gpt.wait()
            if self.orders is not None:
                self.orders.wait()
            self.poll(out)

    def busy(self) -> bool:
        """A question or an order is with a worker."""
        gpt = self.gpt is not None and self.gpt.in_flight > 0
        return gpt or (self.orders is not None and self.orders.in_flight > 0)

    def wake_in(self) -> timedelta | None:
        """How soon `poll` has something to do (None: only when new input comes)."""
        if self.inline:
            return None
        if self.busy():
            return ANSWER_POLL
        if self.orders is not None:  # the next reconciliation
            wait = max(0.0, self._next_check - self.clock.monotonic())
            return min(timedelta(seconds=wait), LONGEST_SLEEP)
        return None

    # ------------------------------------------------------------------ commands
    def _emit(self, outputs: Sequence[DeskOutput], out: list[DeskRow]) -> None:
        for item in outputs:
            if is_command(item):
                self._carry_out(item, out)
            else:
                out.append(item)  # type: ignore[arg-type]  # not a command: a row

    def _carry_out(self, command: Command, out: list[DeskRow]) -> None:
        match command:
            case AskGpt(request=request):
                if self.gpt is None:  # cannot happen: the desk asks only with a gateway
                    return
                if self.inline:
                    self._emit(self.desk.on_gpt_answer(self.gpt.answer(request)), out)
                else:
                    self.gpt.submit(request)
            case PlaceOrder(order=order):
                if self.orders is not None:
                    self._send(order, out)
            case CancelOpen():
                if self.orders is not None:  # in order with the orders when not inline
                    self.orders.cancel_open(command, inline=self.inline)
            case _:
                assert_never(command)

    def _send(self, order: Order, out: list[DeskRow], resend: bool = False) -> None:
        assert self.orders is not None
        if self.inline:
            self._report(self.orders.execute(order, resend), out)
        else:
            self.orders.submit(order, resend)

    def _report(self, report: ExecutionReport, out: list[DeskRow]) -> None:
        if report.status is ExecStatus.UNKNOWN:  # ask the exchange again at the next poll
            self._unsent.extend(
                o
                for o in self.desk.unreported_orders()
                if o.client_order_id == report.client_order_id
            )
        self._emit(self.desk.on_execution(report), out)

    def _reported(self, report: ExecutionReport) -> list[DeskRow]:
        out: list[DeskRow] = []
        self._report(report, out)
        return out

    def _resend(self, order: Order) -> list[DeskRow]:
        out: list[DeskRow] = []
        self._send(order, out, resend=True)
        return out

    # ------------------------------------------------------------------ a live exchange
    def _reconcile(self, orders: OrderLine, out: list[DeskRow]) -> None:
        """Live: check the book against the exchange every `execution.reconcile_every` (only
        applied while no order is on its way: balances would be caught mid-change)."""
        for state, mark in orders.states():
            quiet = orders.in_flight == 0 and orders.submitted == mark  # nothing sent since
            settled = not self.desk.unreported_orders() and not self.desk.orders_to_look_up()
            if quiet and settled:
                step = functools.partial(self.desk.on_exchange_state, state, self.clock.wall_ms())
                self._guarded(step, "reconciling with the exchange", out)
        if self.clock.monotonic() >= self._next_check:
            self._next_check = self.clock.monotonic() + self._check_every_s
            for order in self.desk.orders_to_look_up():  # before the balances are read
                orders.submit(order, look_up=True)
            orders.check_state(self._pairs)
            if orders.in_flight == 0 and not self._unsent:
                # Orders the exchange accepted but has not filled (reported `open`): looked
                # up again by client order id, so later fills reach the book while running.
                for order in self.desk.unreported_orders():
                    self._guarded(functools.partial(self._resend, order), "polling orders", out)

    # ------------------------------------------------------------------ guarding
    def _text(self, event: TextEvent) -> list[DeskOutput]:
        self.desk.on_text(event)
        return []

    def _guarded(
        self,
        step: Callable[[], Sequence[DeskOutput]],
        where: BarEvent | str,
        out: list[DeskRow],
    ) -> None:
        """Run one desk step and carry out its commands; a bug becomes an alert (the rows
        already passed on stay, what the step had not passed on yet is lost with it)."""
        try:
            self._emit(step(), out)
        except Exception as err:  # a bug must raise an alarm, not stop every symbol
            if isinstance(where, BarEvent):
                out.append(desk_failure_alert(where, err))
            else:
                out.append(flow_error_alert(where, err, self.clock.wall_ms()))
