"""Places the desk's orders on a real exchange through ccxt: reconcile, retry once, never twice.

For each order (`execute`):
1. `create_order` as a market order with the desk's client order id;
2. when the answer is lost (timeout, dropped connection, 5xx, an answer that is not an order
   report) the order may exist: it is looked up by that client order id (`fetch_order` with
   `origClientOrderId`) until the exchange knows it: found -> that order is the answer;
   proven absent -> one retry with the same id; neither -> `unknown` (looked up again later);
3. when the exchange certainly did not execute it (a refusal, a rate limit), it is retried
   once (after a rate limit's Retry-After) unless the refusal will repeat;
4. otherwise the report says `rejected` (the exchange refused) or `failed`, with the error,
   and the desk raises an alert and applies its fallback action.
Binance does not make a repeated client order id safe: it refuses one only while the first
order is OPEN (a filled market order's id makes a second order), and its lookup can answer
"does not exist" for a while after a create. So "does not exist" counts as proof only once the
create can no longer be executed or hidden: `absent_after_ms` after it was sent (recvWindow +
Binance's backend timeout + the lookup lag). The decision rules are
`models.execution.reports.next_step`.

Amounts cross the API as decimal strings. ccxt parses the exchange's decimal strings into
floats; `Decimal(repr(x))` gives back the shortest decimal that float came from, which is the
exchange's own figure for any price or amount of up to 15 significant digits.
"""

from __future__ import annotations

import decimal
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, Final

import ccxt

from models.core.messages import Fill, Order, Side
from models.execution.reports import (
    ErrorKind,
    ExchangeState,
    ExecStatus,
    ExecutionReport,
    next_step,
)
from models.execution.stale_order import StaleRule, stale_reason

__all__ = ["CcxtExecutor", "ExchangeState", "classify", "to_decimal"]

_LOG: Final = logging.getLogger(__name__)
_ZERO: Final = Decimal(0)
MAX_RETRY_AFTER_S: Final = 10.0  # a Retry-After beyond this is not waited for: give up instead
SETTLE_LOOKUPS: Final = 8  # asks (with backoff) for an order's complete trades
RESOLVE_LOOKUPS: Final = 20  # lookups (with backoff, ~31 s) until an order is known
RECV_WINDOW_MS: Final = 10_000  # ccxt's recvWindow for Binance, when the client has none
BACKEND_TIMEOUT_MS: Final = 10_000  # Binance's -1007: an accepted request may run until then
LOOKUP_LAG_MS: Final = 5_000  # how long Binance's lookup may still say "does not exist"
_ID: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_STATUS: Final = re.compile(r"[A-Za-z_]{1,32}")

_PERMANENT: Final = (
    ccxt.InsufficientFunds,
    ccxt.InvalidOrder,
    ccxt.BadSymbol,
    ccxt.BadRequest,
    ccxt.AuthenticationError,
    ccxt.PermissionDenied,
    ccxt.AccountSuspended,
)


def _backoff(n: int) -> float:
    return min(2.0, 0.1 * 2.0**n)


def _may_have_reached(err: Exception, kind: ErrorKind) -> bool:
    """Whether the failed create may have been executed: everything but a refusal (the
    exchange answered no), a rate limit (429/418: refused before execution) and a timestamp
    outside the recvWindow. A 5xx, a timeout, a dropped connection, an answer ccxt cannot
    parse: Binance says the execution status is then unknown."""
    if kind is ErrorKind.PERMANENT:
        return False
    return not isinstance(err, ccxt.RateLimitExceeded | ccxt.DDoSProtection | ccxt.InvalidNonce)


def _malformed(placed: Any, order: Order) -> str | None:
    """What a 200 answer to a create lacks to be an order report: an order id, a status,
    our client order id (when it names one), a filled amount. Such an answer says nothing
    for sure: the order may exist, so it is looked up (never booked as open with nothing)."""
    if not isinstance(placed, Mapping):
        return f"order (got {type(placed).__name__})"
    oid = placed.get("id")
    if isinstance(oid, bool) or not isinstance(oid, str | int) or not _ID.fullmatch(str(oid)):
        return f"order id (got {oid!r})"[:120]
    status = placed.get("status")
    if not isinstance(status, str) or not _STATUS.fullmatch(status):
        return f"status (got {status!r})"[:120]
    # ccxt turns any JSON value into text: the exchange's own fields must have their types.
    raw = placed.get("info")
    if isinstance(raw, Mapping):
        raw_id, raw_status = raw.get("orderId"), raw.get("status")
        if "orderId" in raw and (
            isinstance(raw_id, bool) or not isinstance(raw_id, int | str) or not str(raw_id)
        ):
            return f"order id (got {raw_id!r})"[:120]
        if "status" in raw and not (isinstance(raw_status, str) and _STATUS.fullmatch(raw_status)):
            return f"status (got {raw_status!r})"[:120]
    cid = placed.get("clientOrderId")
    if cid is not None and str(cid) != order.client_order_id:
        return f"client order id (got {cid!r})"[:120]
    filled = _amount(placed.get("filled"))
    if filled is None or filled < 0:
        return f"filled amount (got {placed.get('filled')!r})"[:120]
    return None


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
    (whether a retry is safe is `_may_have_reached`'s and `_resolve`'s question: the same
    client order id is refused only while the first order is open). Binance reports a
    duplicate client order id as a plain order rejection, recognised by its message."""
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
        absent_after_ms: int | None = None,
        stale: StaleRule | None = None,
    ) -> None:
        """`absent_after_ms`: how long after the last create was sent a "does not exist"
        lookup proves the order absent (default: the client's recvWindow, past which the
        exchange refuses the request, plus `BACKEND_TIMEOUT_MS`, how long a request it
        accepted may still be executed (Binance's -1007 timeout), plus `LOOKUP_LAG_MS`, its
        lagging lookup)
        `stale`: the age rule for orders sent by the live worker (`execute(check_age=True)`)."""
        self.exchange = exchange
        self._sleep = sleep
        self._clock_ms = clock_ms
        if absent_after_ms is None:
            options = getattr(exchange, "options", None) or {}
            recv = options.get("recvWindow") if isinstance(options, Mapping) else None
            window = int(recv) if isinstance(recv, int | float) and recv > 0 else RECV_WINDOW_MS
            absent_after_ms = window + BACKEND_TIMEOUT_MS + LOOKUP_LAG_MS
        self.absent_after_ms = absent_after_ms
        self.stale = stale
        # When a create of each unresolved order was last sent (an order sent by an earlier
        # process counts from this executor's start: it was sent before that).
        self._started_ms = clock_ms()
        self._sent: dict[str, int] = {}

    # ------------------------------------------------------------------ orders

    def execute(
        self, order: Order, *, resend: bool = False, check_age: bool = False
    ) -> ExecutionReport:
        """Place one market order; never raises for what the exchange does. `resend`: the
        order may already be on the exchange (a restart, an earlier `unknown`): it is looked
        up first and created only once the exchange has proved it has none, because Binance
        refuses a repeated client order id only while the first order is open. `check_age`
        (the live worker; a backtest's orders carry event time in the past): an order older
        than the `stale` rule's age is re-checked at the current price or dropped."""
        # ccxt sets the thread's decimal context to ROUND_HALF_UP while it formats amounts;
        # the book's accounting on this thread must keep its own rounding.
        with decimal.localcontext():
            if resend:
                found = self._resolve(order)
                if isinstance(found, dict):
                    return self._report(order, found, 0, reconciled=True)
                if found == "unknown":
                    error = (
                        "the exchange could not say whether it has the order "
                        f"({RESOLVE_LOOKUPS} lookups); it is looked up again"
                    )
                    return self._failure(order, ExecStatus.UNKNOWN, 0, error)
            return self._execute(order, check_age)

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

    def _execute(self, order: Order, check_age: bool) -> ExecutionReport:
        attempts = 0
        earlier: Exception | None = None  # the error of an attempt proved not placed
        while True:
            if check_age and self.stale is not None:
                reason = self._stale_reason(order, self.stale)
                if reason is not None:
                    _LOG.warning("order %s dropped: %s", order.client_order_id, reason)
                    return self._failure(order, ExecStatus.REJECTED, attempts, reason)
            attempts += 1
            self._sent[order.client_order_id] = self._clock_ms()
            problem: str | None = None
            try:
                placed = self._create(order)
                problem = _malformed(placed, order)
                if problem is None:
                    self._sent.pop(order.client_order_id, None)
                    return self._report(order, placed, attempts, reconciled=False)
                err: Exception = ccxt.BadResponse(f"the create answer has no valid {problem}")
            except Exception as exc:  # every ccxt error is an outcome here, not a crash
                err = exc
            kind = classify(err)
            wait = self._retry_after(err)  # before a lookup replaces the headers
            reached = problem is not None or _may_have_reached(err, kind)
            _LOG.warning(
                "order %s attempt %d: %s (%s)",
                order.client_order_id,
                attempts,
                _error_text(err),
                "may have reached the exchange" if reached else kind.value,
            )
            if reached or kind is ErrorKind.DUPLICATE:
                # The order may exist: never create again before the exchange has proved it
                # does not ("does not exist" right after a create proves nothing on Binance).
                found = self._resolve(order)
                if isinstance(found, dict):
                    return self._report(order, found, attempts, reconciled=True)
                if found == "unknown":
                    error = (
                        f"{_error_text(err)}; state unknown after {RESOLVE_LOOKUPS} lookups, "
                        "looked up again"
                    )
                    return self._failure(order, ExecStatus.UNKNOWN, attempts, error)
                if kind is not ErrorKind.DUPLICATE and attempts < 2:
                    earlier = err
                    continue  # proved absent: the one retry, same client order id
                return self._failure(order, ExecStatus.FAILED, attempts, _error_text(err))
            # Certainly not executed (refused, rate limited): retry once, then give up.
            self._sent.pop(order.client_order_id, None)
            step = next_step(kind, attempts, False)
            if step == "retry" and wait <= MAX_RETRY_AFTER_S:
                self._sleep(wait)
                earlier = err
                continue
            permanent = kind is ErrorKind.PERMANENT and earlier is None
            status = ExecStatus.REJECTED if permanent else ExecStatus.FAILED
            return self._failure(order, status, attempts, _error_text(err))

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

    def _resolve(self, order: Order) -> dict[str, Any] | str:
        """Look the order up (with backoff) until the exchange knows it: the order found, or
        "absent" once "does not exist" is proof: answered at least `absent_after_ms` after
        the last create of it was sent. By then the exchange has refused that request (its
        recvWindow is over when it arrives later), its backend has executed or dropped it,
        and its lagging lookup shows what it executed.
        "unknown" when neither came within `RESOLVE_LOOKUPS` lookups."""
        since = self._sent.get(order.client_order_id, self._started_ms)
        for n in range(RESOLVE_LOOKUPS):
            found = self._lookup(order)
            if isinstance(found, dict):
                self._sent.pop(order.client_order_id, None)
                return found
            if found == "absent" and self._clock_ms() - since >= self.absent_after_ms:
                self._sent.pop(order.client_order_id, None)
                return "absent"
            self._sleep(_backoff(n))
        return "unknown"

    def _stale_reason(self, order: Order, rule: StaleRule) -> str | None:
        """`models.execution.stale_order.stale_reason` with the exchange's prices: the last trade at
        or before the decision, the ticker now, the free quote balance."""
        now = self._clock_ms()
        if not rule.is_stale(order, now):
            return None
        quote = order.symbol.partition("/")[2]
        decided: Decimal | None = None
        current: Decimal | None = None
        free: Decimal | None = None
        try:
            decided = self._price_at(order.symbol, order.placed_ms)
            ticker = self.exchange.fetch_ticker(order.symbol)
            current = to_decimal(ticker.get("last") or ticker.get("close"))
            if order.side is Side.BUY:
                free = _amount((self.exchange.fetch_balance().get("free") or {}).get(quote))
        except Exception as err:  # without the prices it is dropped: never sent on a guess
            _LOG.warning("re-check of %s failed: %s", order.client_order_id, _error_text(err))
        return stale_reason(
            order, now, rule, decided_price=decided, current_price=current, free_quote=free
        )

    def _price_at(self, symbol: str, ts_ms: int) -> Decimal | None:
        """The exchange's last trade price at or before `ts_ms` (within the minute before)."""
        trades = self.exchange.fetch_trades(symbol, ts_ms - 60_000, 1000, {"endTime": ts_ms})
        before = [t for t in trades if int(t.get("timestamp") or 0) <= ts_ms]
        return _amount(before[-1].get("price")) if before else None

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
        exchange says it has none, "unknown" when the lookup itself failed or answered
        something that is not this order (`_malformed`)."""
        try:
            found = self.exchange.fetch_order(
                None, order.symbol, {"origClientOrderId": order.client_order_id}
            )
        except ccxt.OrderNotFound:
            return "absent"
        except Exception as err:
            _LOG.warning("lookup of %s failed: %s", order.client_order_id, _error_text(err))
            return "unknown"
        if not found:
            return "absent"
        problem = _malformed(found, order)
        if problem is not None:  # an answer that is not the order tells nothing either way
            _LOG.warning("lookup of %s answered without a valid %s", order.client_order_id, problem)
            return "unknown"
        return dict(found)

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
