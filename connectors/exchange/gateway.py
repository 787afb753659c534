"""The order gateway: the desk's orders to a `CcxtExecutor`, its reports back to the desk.

Like the GPT gateway: `execute` answers inline (a paper backtest on the emulator, where the
result must not depend on thread timing), `submit` + `ready` hand orders to a worker so the flow
never waits for an exchange. One worker only: a ccxt client is not thread-safe, and orders of
one desk must reach the exchange in the order the desk placed them.
"""

from __future__ import annotations

import logging
import threading
from decimal import Decimal
from typing import TYPE_CHECKING, Final

from connectors.workers.keyed_worker import KeyedWorker
from models.core.commands import CancelOpen
from models.core.messages import Order
from models.execution.reports import ExchangeState, ExecStatus, ExecutionReport

if TYPE_CHECKING:  # ccxt (~0.6 s to import) only where an executor is made: exchange runs
    from connectors.exchange.ccxt_executor import CcxtExecutor

__all__ = ["ExecutionGateway"]

_LOG: Final = logging.getLogger(__name__)


class ExecutionGateway:
    def __init__(self, executor: CcxtExecutor) -> None:
        self.executor = executor
        # One thread: a ccxt client is not thread-safe, and orders keep the desk's order.
        self._worker: KeyedWorker[ExecutionReport] = KeyedWorker(1, "orders")
        self._lock = threading.Lock()
        self._states: list[tuple[ExchangeState, int]] = []
        self._state_asked = False
        # The exchange's smallest order value per symbol (set by the exchange session from
        # ccxt's markets); the desk leaves out smaller orders instead of sending them.
        self.min_notional: dict[str, Decimal] = {}

    def read_state(self, symbols: list[str]) -> ExchangeState:
        """The exchange's balances and open orders now, blocking (raises when the exchange
        cannot be asked): the start-up reconciliation."""
        return self.executor.state(symbols)

    def execute(
        self,
        order: Order,
        resend: bool = False,
        look_up: bool = False,
        *,
        check_age: bool = False,
    ) -> ExecutionReport:
        """Place one order, blocking (`look_up`: only ask the exchange about an order the
        executor gave up on, never create it); a bug becomes an `unknown` report (the order
        may be on the exchange: it is looked up again), never an exception. Inline (a
        backtest) the order's age is not checked: its event time is the replay's, not the
        clock's."""
        try:
            if look_up:
                return self.executor.look_up(order)
            return self.executor.execute(order, resend=resend, check_age=check_age)
        except Exception as err:
            _LOG.exception("executing %s failed", order.client_order_id)
            return ExecutionReport(
                client_order_id=order.client_order_id,
                decision_id=order.decision_id,
                symbol=order.symbol,
                side=order.side,
                quantity=order.quantity,
                status=ExecStatus.UNKNOWN,
                attempts=0,
                error=f"executor error: {type(err).__name__}: {err}"[:500],
                ts_ms=order.updated_ms,
            )

    def submit(self, order: Order, resend: bool = False, look_up: bool = False) -> None:
        """Queue one order for the worker; when the worker reaches it, an order older than
        `execution.max_order_age` is re-checked at the current price or dropped (stale)."""
        self._worker.submit(order.client_order_id, self._execute_live, order, resend, look_up)

    def _execute_live(self, order: Order, resend: bool, look_up: bool) -> ExecutionReport:
        return self.execute(order, resend, look_up, check_age=True)

    @property
    def submitted(self) -> int:
        """Orders handed to the worker so far."""
        return self._worker.submitted

    def ready(self) -> list[ExecutionReport]:
        return self._worker.ready()

    def check_state(self, symbols: list[str]) -> None:
        """Read balances and open orders in the background (behind the orders already queued,
        so they are included); the result comes out of `states()` with the number of orders
        submitted before it, so an order sent since then can be told apart. One at a time."""
        with self._lock:
            if self._state_asked:
                return
            self._state_asked = True
            mark = self.submitted
        self._worker.run(self._read_state, symbols, mark)

    def _read_state(self, symbols: list[str], mark: int) -> None:
        state: ExchangeState | None = None
        try:
            state = self.executor.state(symbols)
        except Exception as err:  # an unreachable exchange: no check this time, logged
            _LOG.warning("periodic reconciliation skipped: %s: %s", type(err).__name__, err)
        with self._lock:
            self._state_asked = False
            if state is not None:
                self._states.append((state, mark))

    def states(self) -> list[tuple[ExchangeState, int]]:
        with self._lock:
            states, self._states = self._states, []
        return states

    @property
    def in_flight(self) -> int:
        return self._worker.in_flight

    def cancel_open(self, cmd: CancelOpen, *, inline: bool) -> None:
        """Cancel a symbol's open orders, the `cancel_open` fallback (in order with the
        orders when not inline)."""
        if inline:
            self._cancel(cmd)
        else:
            self._worker.run(self._cancel, cmd)

    def _cancel(self, cmd: CancelOpen) -> None:
        done = self.executor.cancel_open(cmd.symbol)
        _LOG.warning("cancelled %d open order(s) of %s: %s", len(done), cmd.symbol, cmd.reason)

    def wait(self, timeout_s: float | None = None) -> None:
        self._worker.wait(timeout_s)

    def close(self) -> None:
        self._worker.shutdown(wait=True)
