"""Places the desk's orders on a real exchange through ccxt: reconcile, retry once, never twice.

For each order (`execute`):
1. `create_order` as a market order with the desk's client order id;
2. on an error: look the order up by that client order id (`fetch_order` with
   `origClientOrderId`); if the exchange has it (the request arrived, the response was lost),
   that order is the answer;
3. otherwise, if the error can go away (network, timeout, 5xx, 429 after its Retry-After),
   retry once with the same client order id, and reconcile again if that fails too;
4. otherwise the report says `rejected` (the exchange refused) or `failed` (unknown), with the
   error, and the desk raises an alert and applies its fallback action. Before it reports a
   failure after an error that may have placed the order, it asks the exchange until it
   knows (`unknown` when it cannot: the desk looks again later), so the book never silently
   disagrees with the exchange.
The exchange enforces unique client order ids, so even a retry racing a lost first attempt
cannot make a second order. The decision rules are `models.execution.next_step`.

Amounts cross the API as decimal strings. ccxt parses the exchange's decimal strings into
floats; `Decimal(repr(x))` gives back the shortest decimal that float came from, which is the
exchange's own figure for any price or amount of up to 15 significant digits.
"""

from __future__ import annotations

import decimal
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

import ccxt

from models.execution import ErrorKind, ExchangeState, ExecStatus, ExecutionReport, next_step
from models.messages import Fill, Order, Side

__all__ = ["CcxtExecutor", "ExchangeState", "classify", "to_decimal"]

_LOG: Final = logging.getLogger(__name__)
_ZERO: Final = Decimal(0)
MAX_RETRY_AFTER_S: Final = 10.0  # a Retry-After beyond this is not waited for: give up instead
SETTLE_LOOKUPS: Final = 8  # lookups (with backoff) that decide whether a failed order exists

_PERMANENT: Final = (
    ccxt.InsufficientFunds,
    ccxt.InvalidOrder,
    ccxt.BadSymbol,
    ccxt.BadRequest,
    ccxt.AuthenticationError,
    ccxt.PermissionDenied,
    ccxt.AccountSuspended,
)


def _executed(trades: Iterable[Mapping[str, Any]]) -> Decimal:
    """The quantity the trades executed (before any fee taken from it)."""
    return sum((to_decimal(t.get("amount")) or _ZERO for t in trades), _ZERO)


def _amount(value: Any) -> Decimal | None:
    """`to_decimal`, None for what is not a finite number (ccxt passes odd text through)."""
    try:
        out = to_decimal(value)
    except (ArithmeticError, ValueError):
        return None
    return out if out is not None and out.is_finite() else None


def _usable(
    trades: Iterable[Mapping[str, Any]], order: Order, exchange_id: str | None, *, need_fee: bool
) -> tuple[list[dict[str, Any]], str | None]:
    """An order's trades, each once (by trade id), and the first reason they cannot be booked
    as they are: a missing or non-positive price or amount, a trade of another order or of
    the other side, and (`need_fee`) a trade without its commission."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for raw in trades:
        t = dict(raw)
        tid = t.get("id")
        if tid is not None:
            if str(tid) in seen:
                continue  # the same trade listed twice is one execution
            seen.add(str(tid))
        name = f"trade {tid}"
        price, amount = _amount(t.get("price")), _amount(t.get("amount"))
        if price is None or price <= 0:
            return out, f"{name} has price {t.get('price')!r}"
        if amount is None or amount <= 0:
            return out, f"{name} has amount {t.get('amount')!r}"
        owner = t.get("order")
        if owner is not None and exchange_id is not None and str(owner) != exchange_id:
            return out, f"{name} belongs to order {owner}, not {exchange_id}"
        side = t.get("side")
        if side is not None and str(side) != order.side.value:
            return out, f"{name} is a {side}, the order a {order.side.value}"
        fee = t.get("fee")
        if need_fee and (not isinstance(fee, Mapping) or fee.get("cost") is None):
            return out, f"{name} has no commission"
        cost = fee.get("cost") if isinstance(fee, Mapping) else None
        if cost is not None and _amount(cost) is None:
            return out, f"{name} has commission {cost!r}"
        out.append(t)
    return out, None


def _balances(balance: Mapping[str, Any], kind: str, needed: set[str]) -> dict[str, Decimal]:
    """One column (`total` or `free`) of a ccxt balance as `Decimal`s. Assets the book does not
    hold with a null, unreadable or negative amount are left out (logged); for an asset in
    `needed` that is `ccxt.BadResponse`: the book cannot be checked on it. A needed asset
    the account does not list is 0."""
    column = balance.get(kind)
    if not isinstance(column, Mapping):
        column = {}
    out: dict[str, Decimal] = {}
    for asset, raw in column.items():
        value = _amount(raw)
        if value is None or value < 0:
            if str(asset) in needed:
                raise ccxt.BadResponse(f"balance {kind} of {asset} is {raw!r}")
            if raw is not None:
                _LOG.warning("balance %s of %s is %r: ignored", kind, asset, raw)
            continue
        out[str(asset)] = value
    for asset in needed:
        out.setdefault(asset, _ZERO)
    return out


def classify(err: Exception) -> ErrorKind:
    """Permanent errors will repeat; everything else may go away and may even have happened
    (a retry is safe whatever it was: it carries the same client order id, which the exchange
    refuses twice). Binance reports a duplicate client order id as a plain order rejection,
    recognised by its message."""
    if isinstance(err, ccxt.DuplicateOrderId) or "duplicate order" in str(err).lower():
        return ErrorKind.DUPLICATE
    if isinstance(err, _PERMANENT):
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

    def execute(self, order: Order, *, resend: bool = False) -> ExecutionReport:
        """Place one market order; never raises for what the exchange does. `resend`: the
        order may already be on the exchange (a restart, an earlier `unknown`): it is looked
        up first and created only when the exchange says for sure it has none, because
        Binance refuses a repeated client order id only while the first order is open."""
        # ccxt sets the thread's decimal context to ROUND_HALF_UP while it formats amounts;
        # the book's accounting on this thread must keep its own rounding.
        with decimal.localcontext():
            if resend:
                found = self._lookup(order)
                if isinstance(found, dict):
                    return self._report(order, found, 0, reconciled=True)
                if found == "unknown":
                    error = "the exchange could not say whether it has the order"
                    return self._failure(order, ExecStatus.UNKNOWN, 0, error)
            return self._execute(order)

    def look_up(self, order: Order) -> ExecutionReport:
        """Ask the exchange for an order the executor gave up on, never creating it: found ->
        its report (a late fill at its own prices); absent -> `failed` again; no answer ->
        `unknown`."""
        with decimal.localcontext():
            found = self._lookup(order)
            if isinstance(found, dict):
                return self._report(order, found, 0, reconciled=True)
            if found == "absent":
                return self._failure(order, ExecStatus.FAILED, 0, "not on the exchange")
            error = "the exchange could not say whether it has the order"
            return self._failure(order, ExecStatus.UNKNOWN, 0, error)

    def _execute(self, order: Order) -> ExecutionReport:
        attempts = 0
        maybe_placed = False  # a transient error: the request may have reached the exchange
        while True:
            attempts += 1
            try:
                placed = self._create(order)
            except Exception as err:  # every ccxt error is an outcome here, not a crash
                kind = classify(err)
                wait = self._retry_after(err)  # before the lookup replaces the headers
                found = self._lookup(order)
                if found == "unknown" and kind is not ErrorKind.PERMANENT:
                    found = self._lookup_until_sure(order)
                step = next_step(kind, attempts, isinstance(found, dict))
                _LOG.warning(
                    "order %s attempt %d: %s -> %s",
                    order.client_order_id,
                    attempts,
                    _error_text(err),
                    step,
                )
                if isinstance(found, dict):
                    return self._report(order, found, attempts, reconciled=True)
                maybe_placed = maybe_placed or kind is not ErrorKind.PERMANENT
                # Create again only when the exchange said for sure it has no such order.
                if step == "retry" and found == "absent" and wait <= MAX_RETRY_AFTER_S:
                    self._sleep(wait)
                    continue
                if maybe_placed:
                    return self._settle(order, attempts, err)
                return self._failure(order, ExecStatus.REJECTED, attempts, _error_text(err))
            return self._report(order, placed, attempts, reconciled=False)

    def _failure(
        self, order: Order, status: ExecStatus, attempts: int, error: str
    ) -> ExecutionReport:
        return ExecutionReport(
            client_order_id=order.client_order_id,
            decision_id=order.decision_id,
            symbol=order.symbol,
            side=order.side,
            quantity=order.quantity,
            status=status,
            attempts=attempts,
            error=error[:500],
            ts_ms=self._clock_ms(),
        )

    def _lookup_until_sure(self, order: Order) -> dict[str, Any] | str:
        """Ask again (with backoff) until the exchange says found or absent, or give up with
        "unknown": an order must not be created again on a maybe."""
        for n in range(SETTLE_LOOKUPS):
            self._sleep(min(2.0, 0.1 * 2**n))
            found = self._lookup(order)
            if found != "unknown":
                return found
        return "unknown"

    def _settle(self, order: Order, attempts: int, err: Exception) -> ExecutionReport:
        """Giving up after an error that may have placed the order: ask the exchange until it
        says for sure whether the order exists (found: adopted; absent: failed), so the book
        never disagrees with the exchange; if it cannot tell, the order's state is unknown and
        it is looked up again later (`ExecStatus.UNKNOWN`)."""
        for n in range(SETTLE_LOOKUPS):
            found = self._lookup(order)
            if isinstance(found, dict):
                return self._report(order, found, attempts, reconciled=True)
            if found == "absent":
                return self._failure(order, ExecStatus.FAILED, attempts, _error_text(err))
            self._sleep(min(2.0, 0.1 * 2**n))
        error = f"{_error_text(err)}; state unknown after {SETTLE_LOOKUPS} lookups"
        return self._failure(order, ExecStatus.UNKNOWN, attempts, error)

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

    def _lookup(self, order: Order) -> dict[str, Any] | str:
        """The order as the exchange knows it by our client order id; "absent" when the
        exchange says it has none, "unknown" when the lookup itself failed."""
        try:
            found = self.exchange.fetch_order(
                None, order.symbol, {"origClientOrderId": order.client_order_id}
            )
        except ccxt.OrderNotFound:
            return "absent"
        except Exception as err:
            _LOG.warning("lookup of %s failed: %s", order.client_order_id, _error_text(err))
            return "unknown"
        return dict(found) if found else "absent"

    def _retry_after(self, err: Exception) -> float:
        """Seconds to wait before the one retry: a rate limit's Retry-After (1 s if absent),
        otherwise none."""
        if not isinstance(err, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
            return 0.0
        headers = getattr(self.exchange, "last_response_headers", None) or {}
        raw = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
        try:
            return max(0.0, float(raw)) if raw is not None else 1.0
        except ValueError:
            return 1.0

    def _report(
        self, order: Order, placed: Mapping[str, Any], attempts: int, *, reconciled: bool
    ) -> ExecutionReport:
        exchange_id = str(placed.get("id")) if placed.get("id") is not None else None
        reported = _amount(placed.get("filled"))
        if reported is None or reported < 0:
            error = f"order {exchange_id} reports filled={placed.get('filled')!r}"
            return self._failure(order, ExecStatus.UNKNOWN, attempts, error)
        # The order's own trades (Binance's `fills`) must each be complete: a trade without a
        # price would book the quantity for nothing, one without its commission would leave
        # the fee out of cash. Anything odd: the exchange's trade list is asked instead.
        trades, problem = _usable(placed.get("trades") or [], order, exchange_id, need_fee=True)
        filled = _executed(trades)  # gross: a fee in the base asset is not a missing trade
        if problem is not None or filled < reported:
            if problem is not None:
                _LOG.warning("order %s: %s; asking for its trades", order.client_order_id, problem)
            for n in range(SETTLE_LOOKUPS):
                got = self._trades_of(order, str(exchange_id))
                if got is not None:
                    trades, problem = _usable(got, order, exchange_id, need_fee=False)
                    filled = _executed(trades)
                    if problem is None and filled >= reported:
                        break
                self._sleep(min(2.0, 0.1 * 2**n))
            if problem is not None:
                error = f"trades of order {exchange_id} unusable: {problem}"
                return self._failure(order, ExecStatus.UNKNOWN, attempts, error)
            if filled < reported:
                # Without every fill (and its fee) the book would drift from the exchange.
                error = f"order filled {reported}, but its trades show {filled}"
                return self._failure(order, ExecStatus.UNKNOWN, attempts, error)
        fills = [self._fill(order, t, n) for n, t in enumerate(trades)]
        status_text = str(placed.get("status") or "")
        error = ""
        if filled >= order.quantity:
            status = ExecStatus.FILLED
            if filled > order.quantity:
                # The exchange's trades are what moved the balances: booked as they are, so the
                # book keeps equal to the exchange, and said loudly.
                error = f"the exchange filled {filled} of the {order.quantity} ordered"
                _LOG.error("order %s: %s", order.client_order_id, error)
        elif status_text in ("closed", "canceled", "expired", "rejected") and filled > 0:
            status = ExecStatus.PARTIALLY_FILLED
        elif status_text in ("canceled", "expired", "rejected"):
            status = ExecStatus.REJECTED
        elif status_text == "closed":
            # "Filled" with nothing filled cannot be booked either way: ask again later.
            error = f"order {exchange_id} is closed but shows nothing filled"
            return self._failure(order, ExecStatus.UNKNOWN, attempts, error)
        else:
            status = ExecStatus.OPEN
        notional = sum(
            (
                (to_decimal(t.get("amount")) or _ZERO) * (to_decimal(t.get("price")) or _ZERO)
                for t in trades
            ),
            _ZERO,
        )
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
            error=error,
            ts_ms=int(placed.get("timestamp") or self._clock_ms()),
        )

    def _trades_of(self, order: Order, exchange_id: str) -> list[dict[str, Any]] | None:
        """The order's trades, or None when the exchange could not be asked."""
        try:
            trades = self.exchange.fetch_my_trades(
                order.symbol, None, None, {"orderId": exchange_id}
            )
        except Exception as err:
            _LOG.warning("trades of %s unavailable: %s", order.client_order_id, _error_text(err))
            return None
        return [dict(t) for t in trades if str(t.get("order")) == exchange_id]

    def _fill(self, order: Order, trade: Mapping[str, Any], n: int) -> Fill:
        """The book's fill of one exchange trade. The book keeps fees in the quote currency;
        a commission paid in the base asset (Binance's buys without BNB) changes the quantity
        that moved instead: a buy of q with fee f in base adds q - f, and its fee is f * price,
        so cash and quantity both equal the exchange's. A fee in a third asset (BNB) does not
        touch this pair's balances: it is logged and booked as 0."""
        fee = trade.get("fee") or {}
        fee_cost = to_decimal(fee.get("cost")) or _ZERO
        fee_currency = str(fee.get("currency") or "")
        base, _, quote = order.symbol.partition("/")
        side = Side(str(trade.get("side") or order.side.value))
        quantity = to_decimal(trade.get("amount")) or _ZERO
        price = to_decimal(trade.get("price")) or _ZERO
        trade_id = trade.get("id")
        if fee.get("cost") is None:  # only after the exchange's trade list had none either
            _LOG.warning(
                "trade %s of %s came without its commission: booked without a fee",
                trade_id,
                order.client_order_id,
            )
        if fee_cost and fee_currency == base:
            quantity += -fee_cost if side is Side.BUY else fee_cost
            fee_cost *= price
        elif fee_cost and fee_currency not in ("", quote):
            _LOG.warning(
                "trade %s of %s paid its fee of %s in %s: not in this book",
                trade_id,
                order.client_order_id,
                fee_cost,
                fee_currency,
            )
            fee_cost = _ZERO
        return Fill(
            fill_id=f"{order.client_order_id}:{trade_id if trade_id is not None else n}",
            client_order_id=order.client_order_id,
            decision_id=order.decision_id,
            symbol=order.symbol,
            side=side,
            quantity=quantity,
            price=price,
            fee=fee_cost,
            ts_ms=int(trade.get("timestamp") or self._clock_ms()),
        )

    # ------------------------------------------------------------------ fallbacks and start

    def cancel_open(self, symbol: str) -> list[str]:
        """Cancel every open order of `symbol`; returns the ids cancelled (errors logged)."""
        with decimal.localcontext():
            return self._cancel_open(symbol)

    def _cancel_open(self, symbol: str) -> list[str]:
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
        with decimal.localcontext():
            return self._state(symbols)

    def _state(self, symbols: Iterable[str]) -> ExchangeState:
        symbols = list(symbols)
        balance = self.exchange.fetch_balance()
        # The assets the book holds: each must be readable. One the account does not list is
        # 0 (ccxt lists what the exchange sends): left out, the desk would keep its own figure
        # (its initial cash) and trade money the account does not have.
        needed = {part for sym in symbols for part in sym.split("/") if "/" in sym}
        totals = _balances(balance, "total", needed)
        free = _balances(balance, "free", needed)
        open_orders: list[dict[str, Any]] = []
        prices: dict[str, Decimal] = {}
        for sym in symbols:
            open_orders.extend(dict(o) for o in self.exchange.fetch_open_orders(sym))
            try:  # only to value adopted balances before the first bar: optional
                ticker = self.exchange.fetch_ticker(sym)
            except Exception as err:
                _LOG.warning("ticker of %s unavailable: %s", sym, _error_text(err))
                continue
            last = to_decimal(ticker.get("last") or ticker.get("close"))
            if last is not None and last > 0:
                prices[sym] = last
        return ExchangeState(balances=totals, free=free, open_orders=open_orders, prices=prices)
