"""Places the desk's orders on a real exchange through ccxt: reconcile, retry once, never twice.

For each order (`execute`):
1. `create_order` as a market order with the desk's client order id;
2. on an error: look the order up by that client order id (`fetch_order` with
   `origClientOrderId`); if the exchange has it (the request arrived, the response was lost),
   that order is the answer;
3. otherwise, if the error can go away (network, timeout, 5xx, 429 after its Retry-After),
   retry once with the same client order id, and reconcile again if that fails too;
4. otherwise the report says `rejected` (the exchange refused) or `failed` (unknown), with the
   error, and the desk raises an alert and applies its fallback action.
The exchange enforces unique client order ids, so even a retry racing a lost first attempt
cannot make a second order. The decision rules are `models.execution.next_step`.

Amounts cross the API as decimal strings. ccxt parses the exchange's decimal strings into
floats; `Decimal(repr(x))` gives back the shortest decimal that float came from, which is the
exchange's own figure for any price or amount of up to 15 significant digits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import ccxt

from models.execution import ErrorKind, ExecStatus, ExecutionReport, next_step
from models.messages import Fill, Order, Side

__all__ = ["CcxtExecutor", "ExchangeState", "classify", "to_decimal"]

_LOG: Final = logging.getLogger(__name__)
_ZERO: Final = Decimal(0)
MAX_RETRY_AFTER_S: Final = 10.0  # a Retry-After beyond this is not waited for: give up instead

_PERMANENT: Final = (
    ccxt.InsufficientFunds,
    ccxt.InvalidOrder,
    ccxt.BadSymbol,
    ccxt.BadRequest,
    ccxt.AuthenticationError,
    ccxt.PermissionDenied,
    ccxt.AccountSuspended,
)


def classify(err: Exception) -> ErrorKind:
    """Transient errors may go away (and may have happened); permanent ones will repeat."""
    if isinstance(err, ccxt.DuplicateOrderId):
        return ErrorKind.DUPLICATE
    if isinstance(err, ccxt.NetworkError):  # timeouts, 5xx, rate limits, DDoS protection
        return ErrorKind.TRANSIENT
    if isinstance(err, _PERMANENT):
        return ErrorKind.PERMANENT
    if isinstance(err, ccxt.ExchangeError):
        return ErrorKind.PERMANENT
    return ErrorKind.TRANSIENT


def to_decimal(value: Any) -> Decimal | None:
    """A number from ccxt as the decimal the exchange sent (see the module docstring)."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(str(value))


def _error_text(err: Exception) -> str:
    text = f"{type(err).__name__}: {err}"
    return text if len(text) <= 500 else text[:497] + "..."


@dataclass(frozen=True, slots=True)
class ExchangeState:
    """What the exchange says we own and have open: the truth a restarted desk starts from."""

    balances: dict[str, Decimal]  # asset -> total (free + locked)
    free: dict[str, Decimal]
    open_orders: list[dict[str, Any]] = field(default_factory=list)


class CcxtExecutor:
    """Executes `Order`s on one ccxt exchange; one call at a time per instance (ccxt clients
    are not thread-safe), so a live flow gives it one worker thread."""

    def __init__(
        self,
        exchange: ccxt.Exchange,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.exchange = exchange
        self._sleep = sleep
        self._clock_ms = clock_ms

    # ------------------------------------------------------------------ orders

    def execute(self, order: Order) -> ExecutionReport:
        """Place one market order; never raises for what the exchange does."""
        attempts = 0
        last: Exception | None = None
        while True:
            attempts += 1
            try:
                placed = self._create(order)
            except Exception as err:  # every ccxt error is an outcome here, not a crash
                last = err
                kind = classify(err)
                found = self._lookup(order)
                step = next_step(kind, attempts, found is not None)
                _LOG.warning(
                    "order %s attempt %d: %s -> %s",
                    order.client_order_id,
                    attempts,
                    _error_text(err),
                    step,
                )
                if step == "adopt" and found is not None:
                    return self._report(order, found, attempts, reconciled=True)
                if step == "retry":
                    if not self._wait_retry_after(err):
                        step = "give_up"
                    else:
                        continue
                status = ExecStatus.REJECTED if kind is ErrorKind.PERMANENT else ExecStatus.FAILED
                return ExecutionReport(
                    client_order_id=order.client_order_id,
                    decision_id=order.decision_id,
                    symbol=order.symbol,
                    side=order.side,
                    quantity=order.quantity,
                    status=status,
                    attempts=attempts,
                    error=_error_text(last),
                    ts_ms=self._clock_ms(),
                )
            return self._report(order, placed, attempts, reconciled=False)

    def _create(self, order: Order) -> dict[str, Any]:
        return dict(
            self.exchange.create_order(
                order.symbol,
                "market",
                order.side.value,
                str(order.quantity),
                None,
                {"clientOrderId": order.client_order_id},
            )
        )

    def _lookup(self, order: Order) -> dict[str, Any] | None:
        """The order as the exchange knows it by our client order id, or None. A lookup that
        fails (the exchange is down) counts as not found: the retry that follows carries the
        same id, so the exchange itself refuses a duplicate."""
        try:
            found = self.exchange.fetch_order(
                None, order.symbol, {"origClientOrderId": order.client_order_id}
            )
        except ccxt.OrderNotFound:
            return None
        except Exception as err:
            _LOG.warning("reconcile of %s failed: %s", order.client_order_id, _error_text(err))
            return None
        return dict(found) if found else None

    def _wait_retry_after(self, err: Exception) -> bool:
        """Honour a rate limit's Retry-After before the one retry; False when it is too long."""
        if not isinstance(err, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
            return True
        headers = getattr(self.exchange, "last_response_headers", None) or {}
        raw = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
        try:
            wait = float(raw) if raw is not None else 1.0
        except ValueError:
            wait = 1.0
        if wait > MAX_RETRY_AFTER_S:
            return False
        self._sleep(max(0.0, wait))
        return True

    def _report(
        self, order: Order, placed: Mapping[str, Any], attempts: int, *, reconciled: bool
    ) -> ExecutionReport:
        trades = list(placed.get("trades") or [])
        if not trades and (to_decimal(placed.get("filled")) or _ZERO) > 0:
            trades = self._trades_of(order, str(placed.get("id")))
        fills = [self._fill(order, t, n) for n, t in enumerate(trades)]
        filled = sum((f.quantity for f in fills), _ZERO)
        if not fills:
            filled = to_decimal(placed.get("filled")) or _ZERO
        status_text = str(placed.get("status") or "")
        if filled >= order.quantity:
            status = ExecStatus.FILLED
        elif status_text in ("closed", "canceled", "expired", "rejected") and filled > 0:
            status = ExecStatus.PARTIALLY_FILLED
        elif status_text in ("canceled", "expired", "rejected"):
            status = ExecStatus.REJECTED
        else:
            status = ExecStatus.OPEN
        notional = sum((f.quantity * f.price for f in fills), _ZERO)
        return ExecutionReport(
            client_order_id=order.client_order_id,
            decision_id=order.decision_id,
            symbol=order.symbol,
            side=order.side,
            quantity=order.quantity,
            status=status,
            exchange_order_id=str(placed.get("id")) if placed.get("id") is not None else None,
            filled=filled,
            average_price=(notional / filled) if filled > 0 and fills else None,
            fills=fills,
            attempts=attempts,
            reconciled=reconciled,
            ts_ms=int(placed.get("timestamp") or self._clock_ms()),
        )

    def _trades_of(self, order: Order, exchange_id: str) -> list[dict[str, Any]]:
        try:
            trades = self.exchange.fetch_my_trades(
                order.symbol, None, None, {"orderId": exchange_id}
            )
        except Exception as err:
            _LOG.warning("trades of %s unavailable: %s", order.client_order_id, _error_text(err))
            return []
        return [dict(t) for t in trades if str(t.get("order")) == exchange_id]

    def _fill(self, order: Order, trade: Mapping[str, Any], n: int) -> Fill:
        fee = trade.get("fee") or {}
        fee_cost = to_decimal(fee.get("cost")) or _ZERO
        trade_id = trade.get("id")
        return Fill(
            fill_id=f"{order.client_order_id}:{trade_id if trade_id is not None else n}",
            client_order_id=order.client_order_id,
            decision_id=order.decision_id,
            symbol=order.symbol,
            side=Side(str(trade.get("side") or order.side.value)),
            quantity=to_decimal(trade.get("amount")) or _ZERO,
            price=to_decimal(trade.get("price")) or _ZERO,
            fee=fee_cost,
            ts_ms=int(trade.get("timestamp") or self._clock_ms()),
        )

    # ------------------------------------------------------------------ fallbacks and start

    def cancel_open(self, symbol: str) -> list[str]:
        """Cancel every open order of `symbol`; returns the ids cancelled (errors logged)."""
        done: list[str] = []
        try:
            orders = self.exchange.fetch_open_orders(symbol)
        except Exception as err:
            _LOG.warning("open orders of %s unavailable: %s", symbol, _error_text(err))
            return done
        for o in orders:
            try:
                self.exchange.cancel_order(str(o["id"]), symbol)
                done.append(str(o["id"]))
            except Exception as err:
                _LOG.warning("cancel of %s failed: %s", o.get("id"), _error_text(err))
        return done

    def state(self, symbols: Iterable[str]) -> ExchangeState:
        """Balances and open orders, for the reconciliation at start (raises on failure: a
        desk must not start trading on a book it could not check)."""
        balance = self.exchange.fetch_balance()
        totals = {
            a: to_decimal(v) or _ZERO
            for a, v in (balance.get("total") or {}).items()
            if v is not None
        }
        free = {
            a: to_decimal(v) or _ZERO
            for a, v in (balance.get("free") or {}).items()
            if v is not None
        }
        open_orders: list[dict[str, Any]] = []
        for sym in symbols:
            open_orders.extend(dict(o) for o in self.exchange.fetch_open_orders(sym))
        return ExchangeState(balances=totals, free=free, open_orders=open_orders)
