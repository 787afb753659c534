"""A spot order book and matching engine per symbol: the core of the exchange emulator.

The ccxt executor has to be tested against something that behaves like an exchange (partial
fills, fees, locked funds, rejections with the exchange's own error codes, orders that exist
although the answer never arrived) while staying deterministic and fast. This module is that
exchange without any I/O: every call is given the time by its caller, so a test or a replay
decides what "now" is, and the HTTP face (`connectors.sim.exchange_emulator`) only translates.

Rules, kept close to Binance spot so that what ccxt sees is believable:

- Price-time priority; a trade executes at the resting order's price.
- Market, limit (GTC, IOC, FOK) and LIMIT_MAKER orders for one user account. Fees are charged in
  the quote asset (maker or taker rate in bps, rounded down to 1e-8). A limit order locks its
  funds (a buy: notional plus the fee at the higher rate, rounded up; a sell: the base
  quantity); a market order must be covered before it executes. Short funds, a filter failure,
  a duplicate client order id: `EngineError` with Binance's code and message, nothing changes.
- Liquidity comes from a synthetic market maker that `set_price` moves: it replaces its resting
  orders with a few levels on both sides of the new price. User orders that the move crosses
  fill against it at their own price, as makers. A market order larger than the levels walks
  them and the remainder expires (status EXPIRED), as on Binance when the book runs dry.
- Client order ids follow Binance's documented rule: a new order is refused as a duplicate
  (-2010 "Duplicate order sent.") only while an OPEN order of the symbol carries that id; once
  that order is filled, canceled or expired the id may be used again and makes a new order.
  Never stricter than Binance: the executor must not rely on a uniqueness Binance does not
  give (a lost answer plus a second create of a filled market order IS a second order there).
  A lookup by client order id finds the newest order with it. A rejected order leaves no
  trace, so its id may be sent again.
- No self-trade prevention: user orders may match each other (both sides pay their fee).
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_UP, Decimal
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "Balance",
    "Depth",
    "EngineConfig",
    "EngineError",
    "EngineFill",
    "EngineOrder",
    "EngineOrderStatus",
    "EngineRejection",
    "Kline",
    "MarketSpec",
    "MatchingEngine",
    "MyTrade",
    "OrderSide",
    "OrderType",
    "Ticker",
    "TimeInForce",
    "Trade",
]

BPS: Final = Decimal(10_000)
FEE_QUANTUM: Final = Decimal("1e-8")
DAY_MS: Final = 86_400_000
ZERO: Final = Decimal(0)

# Binance's codes and messages for the refusals the engine can produce.
DUPLICATE_ORDER: Final = (-2010, "Duplicate order sent.")
INSUFFICIENT_BALANCE: Final = (-2010, "Account has insufficient balance for requested action.")
WOULD_TAKE: Final = (-2010, "Order would immediately match and take.")
UNKNOWN_ORDER: Final = (-2011, "Unknown order sent.")
NO_SUCH_ORDER: Final = (-2013, "Order does not exist.")
INVALID_SYMBOL: Final = (-1121, "Invalid symbol.")


class EngineError(Exception):
    """A request the exchange refuses, carrying Binance's error code and message, so the HTTP
    layer can answer exactly what Binance would and ccxt picks the same exception class."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg

    @classmethod
    def of(cls, pair: tuple[int, str]) -> EngineError:
        return cls(*pair)


def filter_failure(name: str) -> EngineError:
    return EngineError(-1013, f"Filter failure: {name}")


class OrderSide(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def opposite(self) -> OrderSide:
        return OrderSide.SELL if self is OrderSide.BUY else OrderSide.BUY


class OrderType(StrEnum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"
    LIMIT_MAKER = "LIMIT_MAKER"


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class EngineOrderStatus(StrEnum):
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


def _positive(value: Decimal) -> Decimal:
    if not value.is_finite() or value <= 0:
        raise ValueError("must be a finite number > 0")
    return value


class MarketSpec(BaseModel):
    """One spot market: its assets, its filters (as in Binance's exchangeInfo) and the shape of
    the synthetic market maker's book around the price."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: str = Field(pattern=r"^[A-Z0-9]{1,20}$")
    quote: str = Field(pattern=r"^[A-Z0-9]{1,20}$")
    tick_size: Decimal = Decimal("0.01")
    step_size: Decimal = Decimal("0.00001")
    min_qty: Decimal = Decimal("0.00001")
    max_qty: Decimal = Decimal("9000")
    min_notional: Decimal = Decimal("5")
    maker_levels: int = Field(default=5, ge=0, le=100)
    """Resting maker orders per side after each `set_price` (0: no synthetic liquidity)."""
    maker_level_qty: Decimal = Decimal("0.5")
    maker_spread_bps: Decimal = Field(default=Decimal("10"), gt=0)
    """Distance between the best maker bid and ask, around the price."""
    maker_level_step_bps: Decimal = Field(default=Decimal("5"), gt=0)
    """Distance between two maker levels of the same side."""

    _positive_fields = field_validator(
        "tick_size", "step_size", "min_qty", "max_qty", "maker_level_qty"
    )(_positive)

    @field_validator("min_notional")
    @classmethod
    def _non_negative(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or value < 0:
            raise ValueError("must be a finite number >= 0")
        return value

    @property
    def symbol(self) -> str:
        """Binance's market id, e.g. BTCUSDT."""
        return self.base + self.quote

    @property
    def pair(self) -> str:
        """ccxt's unified symbol, e.g. BTC/USDT."""
        return f"{self.base}/{self.quote}"

    @classmethod
    def from_pair(cls, pair: str, **overrides: object) -> MarketSpec:
        """`MarketSpec.from_pair("BTC/USDT", maker_level_qty=Decimal("2"))`."""
        base, sep, quote = pair.strip().upper().partition("/")
        if not sep or not base or not quote:
            raise ValueError(f"a market is BASE/QUOTE, e.g. BTC/USDT; got {pair!r}")
        return cls.model_validate({"base": base, "quote": quote, **overrides})


class EngineConfig(BaseModel):
    """Account-wide settings: fee rates and how much history is kept."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    maker_fee_bps: Decimal = Field(default=Decimal("10"), ge=0, lt=BPS)
    taker_fee_bps: Decimal = Field(default=Decimal("10"), ge=0, lt=BPS)
    history_limit: int = Field(default=100_000, ge=10)
    """Public trades, price prints and account trades kept per symbol (oldest dropped)."""
    fee_in_received_asset: bool = False
    """Binance's rule without a BNB discount: a buy pays its commission in the base asset it
    receives (a sell in the quote asset it receives). Off: every commission is in quote."""


@dataclass(frozen=True, slots=True)
class Balance:
    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass(frozen=True, slots=True)
class EngineFill:
    """One execution of an order (Binance's `fills[]` entry of a FULL order response)."""

    trade_id: int
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    is_maker: bool


@dataclass(slots=True)
class EngineOrder:
    """A user order as the engine keeps it; callers always get a copy."""

    order_id: int
    client_order_id: str
    symbol: str
    side: OrderSide
    type: OrderType
    time_in_force: TimeInForce
    price: Decimal
    """The limit price; 0 for a market order (as Binance reports it)."""
    orig_qty: Decimal
    orig_quote_qty: Decimal
    time_ms: int
    update_ms: int
    executed_qty: Decimal = ZERO
    cumm_quote_qty: Decimal = ZERO
    status: EngineOrderStatus = EngineOrderStatus.NEW
    fills: list[EngineFill] = field(default_factory=list)
    locked: Decimal = ZERO
    """Funds still reserved for this order: quote asset for a buy, base asset for a sell."""

    @property
    def remaining(self) -> Decimal:
        return self.orig_qty - self.executed_qty

    @property
    def is_open(self) -> bool:
        return self.status in (EngineOrderStatus.NEW, EngineOrderStatus.PARTIALLY_FILLED)

    def copy(self) -> EngineOrder:
        return replace(self, fills=list(self.fills))


@dataclass(frozen=True, slots=True)
class Trade:
    """A public trade. An order id of None is the synthetic market maker or an outside print."""

    trade_id: int
    symbol: str
    price: Decimal
    qty: Decimal
    time_ms: int
    buyer_is_maker: bool
    buy_order_id: int | None
    sell_order_id: int | None

    @property
    def quote_qty(self) -> Decimal:
        return self.price * self.qty


@dataclass(frozen=True, slots=True)
class MyTrade:
    """The account's side of a trade (Binance's `myTrades` row)."""

    trade_id: int
    order_id: int
    client_order_id: str
    symbol: str
    side: OrderSide
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    time_ms: int
    is_maker: bool

    @property
    def quote_qty(self) -> Decimal:
        return self.price * self.qty


@dataclass(frozen=True, slots=True)
class EngineRejection:
    """A refused new order, kept for tests: Binance keeps nothing, and neither does the book."""

    symbol: str
    client_order_id: str | None
    side: OrderSide
    type: OrderType
    qty: Decimal | None
    price: Decimal | None
    code: int
    msg: str
    time_ms: int
    status: EngineOrderStatus = EngineOrderStatus.REJECTED


@dataclass(frozen=True, slots=True)
class Kline:
    open_ms: int
    close_ms: int
    """Last millisecond of the bar (open + interval - 1), as Binance reports it."""
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    quote_volume: Decimal
    trades: int
    taker_buy_volume: Decimal
    taker_buy_quote_volume: Decimal


@dataclass(frozen=True, slots=True)
class Depth:
    update_id: int
    bids: list[tuple[Decimal, Decimal]]
    asks: list[tuple[Decimal, Decimal]]


@dataclass(frozen=True, slots=True)
class Ticker:
    symbol: str
    open_ms: int
    close_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    last: Decimal
    last_qty: Decimal
    prev_close: Decimal
    volume: Decimal
    quote_volume: Decimal
    count: int
    first_id: int
    last_id: int
    bid: tuple[Decimal, Decimal] | None
    ask: tuple[Decimal, Decimal] | None


@dataclass(slots=True)
class _Resting:
    seq: int
    price: Decimal
    qty: Decimal
    order: EngineOrder | None  # None: the synthetic market maker


@dataclass(frozen=True, slots=True)
class _Print:
    """A price event for bars and the ticker: a `set_price` call or a trade."""

    ts_ms: int
    price: Decimal
    qty: Decimal
    trade: bool
    taker_buy: bool


def _bid_key(r: _Resting) -> tuple[Decimal, int]:
    return (-r.price, r.seq)


def _ask_key(r: _Resting) -> tuple[Decimal, int]:
    return (r.price, r.seq)


@dataclass(slots=True)
class _Market:
    spec: MarketSpec
    bids: list[_Resting] = field(default_factory=list)  # best first: price desc, then time
    asks: list[_Resting] = field(default_factory=list)  # best first: price asc, then time
    mark: Decimal | None = None
    update_id: int = 1
    trades: deque[Trade] = field(default_factory=deque)
    prints: deque[_Print] = field(default_factory=deque)

    def side(self, side: OrderSide) -> list[_Resting]:
        return self.bids if side is OrderSide.BUY else self.asks

    def insert(self, side: OrderSide, entry: _Resting) -> None:
        key = _bid_key if side is OrderSide.BUY else _ask_key
        book = self.side(side)
        book.insert(bisect.bisect_right(book, key(entry), key=key), entry)


def _crosses(taker_side: OrderSide, limit: Decimal | None, resting_price: Decimal) -> bool:
    if limit is None:
        return True
    return resting_price <= limit if taker_side is OrderSide.BUY else resting_price >= limit


class MatchingEngine:
    """All markets of one emulated exchange and its single user account. Not thread-safe: the
    HTTP layer holds one lock around every call."""

    def __init__(self, markets: Iterable[MarketSpec], config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self._markets: dict[str, _Market] = {}
        for spec in markets:
            if spec.symbol in self._markets:
                raise ValueError(f"market {spec.pair} given twice")
            self._markets[spec.symbol] = _Market(
                spec,
                trades=deque(maxlen=self.config.history_limit),
                prints=deque(maxlen=self.config.history_limit),
            )
        if not self._markets:
            raise ValueError("an exchange needs at least one market")
        self._free: dict[str, Decimal] = {}
        self._locked: dict[str, Decimal] = {}
        self._orders: dict[int, EngineOrder] = {}
        # Every order id per (symbol, client order id), oldest first: an id may be reused once
        # its order is done (Binance's rule), and a lookup answers the newest.
        self._by_client: dict[tuple[str, str], list[int]] = {}
        self._my_trades: dict[str, deque[MyTrade]] = {
            s: deque(maxlen=self.config.history_limit) for s in self._markets
        }
        self.deposits: dict[str, Decimal] = {}
        """Everything ever credited by `deposit`, per asset."""
        self.fees_collected: dict[str, Decimal] = {}
        """Commission paid by the account, per asset."""
        self.maker_flows: dict[str, Decimal] = {}
        """Net amount the synthetic market maker received from the account, per asset."""
        self.rejections: deque[EngineRejection] = deque(maxlen=self.config.history_limit)
        """Refused new orders, newest last (Binance keeps none; tests look here)."""
        self._seq = 0
        self._next_order_id = 1
        self._next_trade_id = 1

    # ------------------------------------------------------------------ markets and account

    @property
    def markets(self) -> dict[str, MarketSpec]:
        """Market specs by Binance id (BTCUSDT)."""
        return {s: m.spec for s, m in self._markets.items()}

    def market(self, symbol: str) -> MarketSpec:
        return self._market(symbol).spec

    def _market(self, symbol: str) -> _Market:
        try:
            return self._markets[symbol]
        except KeyError:
            raise EngineError.of(INVALID_SYMBOL) from None

    def assets(self) -> list[str]:
        """Every asset of every market plus any deposited one, sorted."""
        names = {a for m in self._markets.values() for a in (m.spec.base, m.spec.quote)}
        return sorted(names | set(self._free))

    def deposit(self, asset: str, amount: Decimal) -> None:
        """Credit the account (test set-up, or a top-up between runs)."""
        if not amount.is_finite() or amount <= 0:
            raise ValueError(f"deposit must be > 0, got {amount}")
        self._free[asset] = self._free.get(asset, ZERO) + amount
        self.deposits[asset] = self.deposits.get(asset, ZERO) + amount

    def balance(self, asset: str) -> Balance:
        return Balance(self._free.get(asset, ZERO), self._locked.get(asset, ZERO))

    def balances(self) -> dict[str, Balance]:
        return {a: self.balance(a) for a in self.assets()}

    def mark(self, symbol: str) -> Decimal | None:
        """The last price given to `set_price` (None before the first)."""
        return self._market(symbol).mark

    # ------------------------------------------------------------------ prices and the maker

    def set_price(
        self, symbol: str, price: Decimal, ts_ms: int, volume: Decimal = ZERO
    ) -> list[Trade]:
        """Move the market: the synthetic maker replaces its orders around `price`.

        User orders the new quotes cross fill at their own price (the user is the maker there).
        `volume` > 0 also prints an outside trade of that size at `price` (for the public tape
        and the bars). Returns the trades the move caused, the print included.
        """
        m = self._market(symbol)
        spec = m.spec
        if not price.is_finite() or price <= 0:
            raise ValueError(f"price must be > 0, got {price}")
        if not volume.is_finite() or volume < 0:
            raise ValueError(f"volume must be >= 0, got {volume}")
        m.bids[:] = [r for r in m.bids if r.order is not None]
        m.asks[:] = [r for r in m.asks if r.order is not None]
        previous = m.mark
        m.mark = price
        trades: list[Trade] = []
        m.prints.append(_Print(ts_ms, price, ZERO, trade=False, taker_buy=False))
        if volume > 0:
            down = previous is not None and price < previous
            trades.append(self._record_trade(m, price, volume, ts_ms, buyer_is_maker=down))
        half = spec.maker_spread_bps / 2
        for i in range(spec.maker_levels):
            offset = (half + spec.maker_level_step_bps * i) / BPS
            ask = (price * (1 + offset) / spec.tick_size).to_integral_value(ROUND_CEILING)
            trades += self._maker_quote(m, OrderSide.SELL, ask * spec.tick_size, ts_ms)
        for i in range(spec.maker_levels):
            offset = (half + spec.maker_level_step_bps * i) / BPS
            bid = (price * (1 - offset) / spec.tick_size).to_integral_value(ROUND_FLOOR)
            if bid > 0:
                trades += self._maker_quote(m, OrderSide.BUY, bid * spec.tick_size, ts_ms)
        m.update_id += 1
        return trades

    def _maker_quote(self, m: _Market, side: OrderSide, price: Decimal, ts_ms: int) -> list[Trade]:
        """One maker level: first fill the user orders it crosses, then rest the remainder."""
        qty = m.spec.maker_level_qty
        trades: list[Trade] = []
        opposite = m.side(side.opposite)
        while qty > 0 and opposite and _crosses(side, price, opposite[0].price):
            resting = opposite[0]
            take = min(qty, resting.qty)
            trades.append(self._execute(m, side, None, resting, take, ts_ms))
            qty -= take
        if qty > 0:
            self._seq += 1
            same = [r for r in m.side(side) if r.order is None and r.price == price]
            if same:  # two levels rounded onto one tick: one bigger order
                same[0].qty += qty
            else:
                m.insert(side, _Resting(self._seq, price, qty, None))
        return trades

    # ------------------------------------------------------------------ orders

    def place(
        self,
        symbol: str,
        side: OrderSide,
        type: OrderType,
        *,
        now_ms: int,
        quantity: Decimal | None = None,
        price: Decimal | None = None,
        time_in_force: TimeInForce | None = None,
        client_order_id: str | None = None,
        quote_order_qty: Decimal | None = None,
    ) -> EngineOrder:
        """Accept, match and (for a GTC limit remainder) rest a new order; returns its state.

        Raises `EngineError` (nothing changes, the refusal is logged in `rejections`) for a bad
        symbol, a filter failure, a duplicate client order id, short funds, or a LIMIT_MAKER
        that would take.
        """
        try:
            return self._place(
                symbol,
                side,
                type,
                now_ms,
                quantity,
                price,
                time_in_force,
                client_order_id,
                quote_order_qty,
            )
        except EngineError as err:
            self.rejections.append(
                EngineRejection(
                    symbol, client_order_id, side, type, quantity, price, err.code, err.msg, now_ms
                )
            )
            raise

    def _place(
        self,
        symbol: str,
        side: OrderSide,
        type: OrderType,
        now_ms: int,
        quantity: Decimal | None,
        price: Decimal | None,
        tif: TimeInForce | None,
        client_order_id: str | None,
        quote_order_qty: Decimal | None,
    ) -> EngineOrder:
        m = self._market(symbol)
        spec = m.spec
        limit: Decimal | None = None
        if type is OrderType.MARKET:
            if (quantity is None) == (quote_order_qty is None):
                raise EngineError(
                    -1102,
                    "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!",
                )
            tif = TimeInForce.GTC  # reported as such by Binance; the remainder expires anyway
        else:
            if quantity is None or price is None:
                missing = "quantity" if quantity is None else "price"
                raise EngineError(
                    -1102,
                    f"Mandatory parameter '{missing}' was not sent, was empty/null, or malformed.",
                )
            if quote_order_qty is not None:
                raise EngineError(-1106, "Parameter 'quoteOrderQty' sent when not required.")
            if type is OrderType.LIMIT_MAKER:
                tif = TimeInForce.GTC
            elif tif is None:
                raise EngineError(
                    -1102,
                    "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.",
                )
            self._check_price(spec, price)
            limit = price
        if quantity is not None:
            self._check_quantity(spec, quantity)
        if quote_order_qty is not None and (
            not quote_order_qty.is_finite() or quote_order_qty <= 0
        ):
            raise EngineError(-1013, "Invalid quoteOrderQty.")
        reference = limit if limit is not None else m.mark
        notional = (
            quote_order_qty
            if quote_order_qty is not None
            else (quantity * reference if quantity is not None and reference is not None else None)
        )
        if notional is not None and notional < spec.min_notional:
            raise filter_failure("NOTIONAL")
        if client_order_id is not None and any(
            self._orders[i].is_open for i in self._by_client.get((symbol, client_order_id), ())
        ):
            raise EngineError.of(DUPLICATE_ORDER)  # only while an open order has the id
        assert tif is not None

        # What the order would take right now (nothing changes yet).
        plan = self._plan(m, side, limit, quantity, quote_order_qty)
        planned_qty = sum((q for _, q in plan), ZERO)
        if type is OrderType.LIMIT_MAKER and plan:
            raise EngineError.of(WOULD_TAKE)
        taker = self.config.taker_fee_bps / BPS
        pay_asset = spec.quote if side is OrderSide.BUY else spec.base
        if type is OrderType.MARKET:
            if side is OrderSide.BUY:
                lock = quote_order_qty if quote_order_qty is not None else self._cost(plan, taker)
            else:
                lock = quantity if quantity is not None else planned_qty
        elif side is OrderSide.BUY:
            assert quantity is not None and limit is not None
            worst = max(self.config.maker_fee_bps, self.config.taker_fee_bps) / BPS
            lock = quantity * limit + (quantity * limit * worst).quantize(FEE_QUANTUM, ROUND_UP)
        else:
            assert quantity is not None
            lock = quantity
        if self._free.get(pay_asset, ZERO) < lock:
            raise EngineError.of(INSUFFICIENT_BALANCE)

        order_id = self._next_order_id
        self._next_order_id += 1
        order = EngineOrder(
            order_id=order_id,
            client_order_id=client_order_id or f"emu-{order_id:012d}",
            symbol=symbol,
            side=side,
            type=type,
            time_in_force=tif,
            price=limit if limit is not None else ZERO,
            orig_qty=quantity if quantity is not None else planned_qty,
            orig_quote_qty=quote_order_qty if quote_order_qty is not None else ZERO,
            time_ms=now_ms,
            update_ms=now_ms,
        )
        self._orders[order_id] = order
        self._by_client.setdefault((symbol, order.client_order_id), []).append(order_id)
        self._move(pay_asset, lock, to_locked=True)
        order.locked = lock

        if tif is TimeInForce.FOK and planned_qty < order.orig_qty:
            self._finish(order, EngineOrderStatus.EXPIRED, now_ms)
            return order.copy()
        for entry, qty in plan:
            self._execute(m, side, order, entry, qty, now_ms)
        if order.remaining <= 0:
            self._finish(order, EngineOrderStatus.FILLED, now_ms)
        elif type is OrderType.MARKET or tif is not TimeInForce.GTC:
            self._finish(order, EngineOrderStatus.EXPIRED, now_ms)
        else:
            assert limit is not None
            self._seq += 1
            m.insert(side, _Resting(self._seq, limit, order.remaining, order))
            m.update_id += 1
        return order.copy()

    def _check_price(self, spec: MarketSpec, price: Decimal) -> None:
        if not price.is_finite() or price <= 0:
            raise EngineError(-1013, "Invalid price.")
        if price % spec.tick_size != 0:
            raise filter_failure("PRICE_FILTER")

    def _check_quantity(self, spec: MarketSpec, qty: Decimal) -> None:
        if not qty.is_finite() or qty <= 0:
            raise EngineError(-1013, "Invalid quantity.")
        if qty < spec.min_qty or qty > spec.max_qty or (qty - spec.min_qty) % spec.step_size:
            raise filter_failure("LOT_SIZE")

    def _plan(
        self,
        m: _Market,
        side: OrderSide,
        limit: Decimal | None,
        quantity: Decimal | None,
        quote_budget: Decimal | None,
    ) -> list[tuple[_Resting, Decimal]]:
        """The resting orders a new order would take and how much of each, in priority order.
        A quote budget (market order by `quoteOrderQty`) buys what it can pay for, fee included,
        in whole steps; it sells until the notional reaches it."""
        plan: list[tuple[_Resting, Decimal]] = []
        left_qty = quantity
        left_quote = quote_budget
        step = m.spec.step_size
        taker = self.config.taker_fee_bps / BPS
        for entry in m.side(side.opposite):
            if not _crosses(side, limit, entry.price):
                break
            if left_qty is not None:
                take = min(left_qty, entry.qty)
                left_qty -= take
            else:
                assert left_quote is not None
                per_unit = entry.price * (1 + taker) if side is OrderSide.BUY else entry.price
                affordable = (left_quote / per_unit / step).to_integral_value(ROUND_DOWN) * step
                take = min(affordable, entry.qty)
                left_quote -= (
                    self._cost([(entry, take)], taker)
                    if side is OrderSide.BUY
                    else (take * entry.price)
                )
            if take > 0:
                plan.append((entry, take))
            if (left_qty is not None and left_qty <= 0) or (
                left_quote is not None and take < entry.qty
            ):
                break
        return plan

    @staticmethod
    def _cost(plan: list[tuple[_Resting, Decimal]], rate: Decimal) -> Decimal:
        """Quote paid for buying `plan` as a taker: notional plus each fill's fee."""
        total = ZERO
        for entry, qty in plan:
            notional = entry.price * qty
            total += notional + (notional * rate).quantize(FEE_QUANTUM, ROUND_DOWN)
        return total

    def _move(self, asset: str, amount: Decimal, *, to_locked: bool) -> None:
        sign = 1 if to_locked else -1
        self._free[asset] = self._free.get(asset, ZERO) - sign * amount
        self._locked[asset] = self._locked.get(asset, ZERO) + sign * amount

    def _finish(self, order: EngineOrder, status: EngineOrderStatus, now_ms: int) -> None:
        """Close an order: give back whatever is still locked for it."""
        spec = self._markets[order.symbol].spec
        asset = spec.quote if order.side is OrderSide.BUY else spec.base
        if order.locked:
            self._move(asset, order.locked, to_locked=False)
            order.locked = ZERO
        order.status = status
        order.update_ms = now_ms

    def _record_trade(
        self,
        m: _Market,
        price: Decimal,
        qty: Decimal,
        ts_ms: int,
        *,
        buyer_is_maker: bool,
        buy_order_id: int | None = None,
        sell_order_id: int | None = None,
    ) -> Trade:
        trade = Trade(
            self._next_trade_id,
            m.spec.symbol,
            price,
            qty,
            ts_ms,
            buyer_is_maker,
            buy_order_id,
            sell_order_id,
        )
        self._next_trade_id += 1
        m.trades.append(trade)
        m.prints.append(_Print(ts_ms, price, qty, trade=True, taker_buy=not buyer_is_maker))
        return trade

    def _execute(
        self,
        m: _Market,
        taker_side: OrderSide,
        taker: EngineOrder | None,
        resting: _Resting,
        qty: Decimal,
        ts_ms: int,
    ) -> Trade:
        """One trade between an incoming order (`taker`; None: the maker's new quote) and a
        resting order, at the resting price. Settles the account's side(s)."""
        price = resting.price
        buy_order, sell_order = (
            (taker, resting.order) if taker_side is OrderSide.BUY else (resting.order, taker)
        )
        trade = self._record_trade(
            m,
            price,
            qty,
            ts_ms,
            buyer_is_maker=taker_side is OrderSide.SELL,
            buy_order_id=buy_order.order_id if buy_order else None,
            sell_order_id=sell_order.order_id if sell_order else None,
        )
        for order, is_maker in ((taker, False), (resting.order, True)):
            if order is None:
                maker_side = taker_side.opposite if is_maker else taker_side
                self._maker_side(m.spec, order_side=maker_side, price=price, qty=qty)
            else:
                self._settle(m, order, trade, is_maker)
        resting.qty -= qty
        if resting.qty <= 0:
            m.side(taker_side.opposite).remove(resting)
            if resting.order is not None:
                self._finish(resting.order, EngineOrderStatus.FILLED, ts_ms)
        m.update_id += 1
        return trade

    def _maker_side(
        self, spec: MarketSpec, *, order_side: OrderSide, price: Decimal, qty: Decimal
    ) -> None:
        """Book the synthetic maker's side of a trade: it has unlimited inventory, but what it
        received from the account is counted so a test can prove nothing was created or lost.
        `order_side` is the side the maker traded on."""
        sign = 1 if order_side is OrderSide.BUY else -1
        flows = self.maker_flows
        flows[spec.base] = flows.get(spec.base, ZERO) + sign * qty
        flows[spec.quote] = flows.get(spec.quote, ZERO) - sign * qty * price

    def _settle(self, m: _Market, order: EngineOrder, trade: Trade, is_maker: bool) -> None:
        spec = m.spec
        rate = (self.config.maker_fee_bps if is_maker else self.config.taker_fee_bps) / BPS
        notional = trade.price * trade.qty
        fee = (notional * rate).quantize(FEE_QUANTUM, ROUND_DOWN)
        fee_asset = spec.quote
        if order.side is OrderSide.BUY and self.config.fee_in_received_asset:
            fee = (trade.qty * rate).quantize(FEE_QUANTUM, ROUND_DOWN)
            fee_asset = spec.base
        if order.side is OrderSide.BUY:
            cost = notional + (fee if fee_asset == spec.quote else ZERO)
            from_lock = min(cost, order.locked)
            order.locked -= from_lock
            self._locked[spec.quote] -= from_lock
            self._free[spec.quote] -= cost - from_lock  # never, unless a caller broke the lock
            received = trade.qty - (fee if fee_asset == spec.base else ZERO)
            self._free[spec.base] = self._free.get(spec.base, ZERO) + received
        else:
            order.locked -= trade.qty
            self._locked[spec.base] -= trade.qty
            self._free[spec.quote] = self._free.get(spec.quote, ZERO) + notional - fee
        self.fees_collected[fee_asset] = self.fees_collected.get(fee_asset, ZERO) + fee
        order.executed_qty += trade.qty
        order.cumm_quote_qty += notional
        order.update_ms = trade.time_ms
        order.fills.append(
            EngineFill(trade.trade_id, trade.price, trade.qty, fee, fee_asset, is_maker)
        )
        if order.is_open:
            order.status = EngineOrderStatus.PARTIALLY_FILLED
        self._my_trades[spec.symbol].append(
            MyTrade(
                trade.trade_id,
                order.order_id,
                order.client_order_id,
                spec.symbol,
                order.side,
                trade.price,
                trade.qty,
                fee,
                fee_asset,
                trade.time_ms,
                is_maker,
            )
        )

    def _find(
        self, symbol: str, order_id: int | None, client_order_id: str | None
    ) -> EngineOrder | None:
        self._market(symbol)
        if order_id is not None:
            order = self._orders.get(order_id)
            if order is None or order.symbol != symbol:
                return None
            if client_order_id is not None and order.client_order_id != client_order_id:
                return None
            return order
        if client_order_id is not None:
            found = self._by_client.get((symbol, client_order_id))
            return self._orders[found[-1]] if found else None
        raise EngineError(
            -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
        )

    def order(
        self, symbol: str, *, order_id: int | None = None, client_order_id: str | None = None
    ) -> EngineOrder:
        """An order by exchange id or client order id (-2013 "Order does not exist." if none)."""
        order = self._find(symbol, order_id, client_order_id)
        if order is None:
            raise EngineError.of(NO_SUCH_ORDER)
        return order.copy()

    def orders_with_client_id(self, symbol: str, client_order_id: str) -> list[EngineOrder]:
        """Every order that carried `client_order_id` on `symbol`, oldest first (an id is
        reused once its order is done): what a lagging lookup may still see."""
        self._market(symbol)
        ids = self._by_client.get((symbol, client_order_id), [])
        return [self._orders[i].copy() for i in ids]

    def cancel(
        self,
        symbol: str,
        *,
        now_ms: int,
        order_id: int | None = None,
        client_order_id: str | None = None,
    ) -> EngineOrder:
        """Cancel an open order and release its funds (-2011 "Unknown order sent." when it is
        unknown or already done, as on Binance)."""
        order = self._find(symbol, order_id, client_order_id)
        if order is None or not order.is_open:
            raise EngineError.of(UNKNOWN_ORDER)
        m = self._markets[symbol]
        book = m.side(order.side)
        book[:] = [r for r in book if r.order is not order]
        self._finish(order, EngineOrderStatus.CANCELED, now_ms)
        m.update_id += 1
        return order.copy()

    def cancel_all(self, symbol: str, *, now_ms: int) -> list[EngineOrder]:
        """Cancel every open order of a symbol (-2011 when there is none, as on Binance)."""
        ids = [o.order_id for o in self._orders.values() if o.symbol == symbol and o.is_open]
        self._market(symbol)
        if not ids:
            raise EngineError.of(UNKNOWN_ORDER)
        return [self.cancel(symbol, now_ms=now_ms, order_id=i) for i in ids]

    def open_orders(self, symbol: str | None = None) -> list[EngineOrder]:
        if symbol is not None:
            self._market(symbol)
        return [
            o.copy()
            for o in self._orders.values()
            if o.is_open and (symbol is None or o.symbol == symbol)
        ]

    def all_orders(
        self,
        symbol: str,
        *,
        from_order_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
    ) -> list[EngineOrder]:
        """Orders of a symbol, oldest first (Binance's allOrders)."""
        self._market(symbol)
        rows = [
            o
            for o in self._orders.values()
            if o.symbol == symbol
            and (from_order_id is None or o.order_id >= from_order_id)
            and (start_ms is None or o.time_ms >= start_ms)
            and (end_ms is None or o.time_ms <= end_ms)
        ]
        rows = rows[:limit] if from_order_id is not None or start_ms is not None else rows[-limit:]
        return [o.copy() for o in rows]

    # ------------------------------------------------------------------ history and market data

    def my_trades(
        self,
        symbol: str,
        *,
        order_id: int | None = None,
        from_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
    ) -> list[MyTrade]:
        """The account's trades of a symbol, oldest first (Binance's myTrades)."""
        self._market(symbol)
        rows = [
            t
            for t in self._my_trades[symbol]
            if (order_id is None or t.order_id == order_id)
            and (from_id is None or t.trade_id >= from_id)
            and (start_ms is None or t.time_ms >= start_ms)
            and (end_ms is None or t.time_ms <= end_ms)
        ]
        forward = from_id is not None or start_ms is not None
        return rows[:limit] if forward else rows[-limit:]

    def trades(
        self,
        symbol: str,
        *,
        limit: int = 500,
        from_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[Trade]:
        """Public trades of a symbol, oldest first; the most recent `limit` unless a start is
        given."""
        rows = [
            t
            for t in self._market(symbol).trades
            if (from_id is None or t.trade_id >= from_id)
            and (start_ms is None or t.time_ms >= start_ms)
            and (end_ms is None or t.time_ms <= end_ms)
        ]
        forward = from_id is not None or start_ms is not None
        return rows[:limit] if forward else rows[-limit:]

    def depth(self, symbol: str, limit: int = 100) -> Depth:
        """Aggregated price levels, maker and user orders together, best first."""
        m = self._market(symbol)

        def levels(book: list[_Resting]) -> list[tuple[Decimal, Decimal]]:
            out: list[tuple[Decimal, Decimal]] = []
            for r in book:
                if out and out[-1][0] == r.price:
                    out[-1] = (r.price, out[-1][1] + r.qty)
                elif len(out) == limit:
                    break
                else:
                    out.append((r.price, r.qty))
            return out

        return Depth(m.update_id, levels(m.bids), levels(m.asks))

    def top(
        self, symbol: str
    ) -> tuple[tuple[Decimal, Decimal] | None, tuple[Decimal, Decimal] | None]:
        """(best bid, best ask) as (price, total quantity at that price), None for an empty side."""
        d = self.depth(symbol, 1)
        return (d.bids[0] if d.bids else None, d.asks[0] if d.asks else None)

    def bars(
        self,
        symbol: str,
        interval_ms: int,
        *,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 500,
        offset_ms: int = 0,
    ) -> list[Kline]:
        """OHLCV bars, oldest first: open/high/low/close follow the `set_price` prices (the
        market's path; a fill at a stale limit price does not move it), volume and trade count
        come from the trades in the bar.

        Bars start at multiples of `interval_ms` (+ `offset_ms`, e.g. weeks open on Monday);
        an interval without a price is a flat bar at the last close (with the volume of any
        trades in it), so the series has no holes. Without `start_ms` the most recent `limit`."""
        if interval_ms <= 0:
            raise ValueError("interval_ms must be > 0")
        prints = self._market(symbol).prints
        if not prints:
            return []

        def bucket(ts: int) -> int:
            return ts - (ts - offset_ms) % interval_ms

        grouped: dict[int, list[_Print]] = {}
        for p in prints:
            grouped.setdefault(bucket(p.ts_ms), []).append(p)
        keys = sorted(grouped)
        for members in grouped.values():
            members.sort(key=lambda p: p.ts_ms)
        last = keys[-1] if end_ms is None else min(keys[-1], bucket(end_ms))
        if start_ms is not None:
            first = max(keys[0], bucket(start_ms + interval_ms - 1))  # first open >= start
            stop = min(last, first + (limit - 1) * interval_ms)
        else:
            stop = last
            first = max(keys[0], last - (limit - 1) * interval_ms)
        bars: list[Kline] = []
        close: Decimal | None = None
        i = bisect.bisect_left(keys, first) - 1
        while i >= 0 and close is None:  # the close before the first bar shown
            marks = [p.price for p in grouped[keys[i]] if not p.trade]
            close = marks[-1] if marks else None
            i -= 1
        for t in range(first, stop + 1, interval_ms):
            group = grouped.get(t, [])
            marks = [p.price for p in group if not p.trade]
            if not marks and close is None:
                continue  # trades before the first price: no bar to hang them on
            opening = marks[0] if marks else close
            assert opening is not None
            prices = marks or [opening]
            trades = [p for p in group if p.trade]
            bought = [p for p in trades if p.taker_buy]
            bars.append(
                Kline(
                    t,
                    t + interval_ms - 1,
                    prices[0],
                    max(prices),
                    min(prices),
                    prices[-1],
                    sum((p.qty for p in trades), ZERO),
                    sum((p.qty * p.price for p in trades), ZERO),
                    len(trades),
                    sum((p.qty for p in bought), ZERO),
                    sum((p.qty * p.price for p in bought), ZERO),
                )
            )
            close = prices[-1]
        return bars

    def ticker(self, symbol: str) -> Ticker | None:
        """24-hour statistics up to the latest price or trade (the market's own clock, so a
        replay of old prices still has a ticker); prices from `set_price` as in `bars`, volume
        from the trades. None before anything happened."""
        m = self._market(symbol)
        if not m.prints:
            return None
        close_ms = max(p.ts_ms for p in m.prints)
        window = sorted((p for p in m.prints if p.ts_ms > close_ms - DAY_MS), key=lambda p: p.ts_ms)
        before = [p for p in m.prints if p.ts_ms <= close_ms - DAY_MS and not p.trade]
        trades = [t for t in m.trades if t.time_ms > close_ms - DAY_MS]
        prices = [p.price for p in window if not p.trade] or [p.price for p in window]
        last_trade = trades[-1] if trades else None
        bid, ask = self.top(symbol)
        return Ticker(
            symbol=symbol,
            open_ms=max(close_ms - DAY_MS + 1, 0),
            close_ms=close_ms,
            open=prices[0],
            high=max(prices),
            low=min(prices),
            last=m.mark if m.mark is not None else prices[-1],
            last_qty=last_trade.qty if last_trade else ZERO,
            prev_close=before[-1].price if before else prices[0],
            volume=sum((t.qty for t in trades), ZERO),
            quote_volume=sum((t.quote_qty for t in trades), ZERO),
            count=len(trades),
            first_id=trades[0].trade_id if trades else -1,
            last_id=trades[-1].trade_id if trades else -1,
            bid=bid,
            ask=ask,
        )

    # ------------------------------------------------------------------ checks

    def check_invariants(self) -> list[str]:
        """What is wrong with the books, as sentences; empty when all holds.

        Per asset: free and locked >= 0; locked equals what the open orders hold; and nothing is
        created or lost: account total + fees paid + what the maker received = deposits.
        """
        problems: list[str] = []
        held: dict[str, Decimal] = {}
        for o in self._orders.values():
            spec = self._markets[o.symbol].spec
            asset = spec.quote if o.side is OrderSide.BUY else spec.base
            if o.is_open:
                held[asset] = held.get(asset, ZERO) + o.locked
            elif o.locked:
                problems.append(f"order {o.order_id} is {o.status} but still locks {o.locked}")
        for asset in sorted(set(self.assets()) | set(self.maker_flows) | set(self.fees_collected)):
            b = self.balance(asset)
            if b.free < 0 or b.locked < 0:
                problems.append(f"{asset}: negative balance {b}")
            if b.locked != held.get(asset, ZERO):
                problems.append(
                    f"{asset}: locked {b.locked} but open orders hold {held.get(asset)}"
                )
            total = (
                b.total + self.fees_collected.get(asset, ZERO) + self.maker_flows.get(asset, ZERO)
            )
            if total != self.deposits.get(asset, ZERO):
                problems.append(
                    f"{asset}: account + fees + maker = {total} != deposits "
                    f"{self.deposits.get(asset, ZERO)}"
                )
        for m in self._markets.values():
            for side, book in ((OrderSide.BUY, m.bids), (OrderSide.SELL, m.asks)):
                for r in book:
                    if r.order is not None and (r.order.remaining != r.qty or not r.order.is_open):
                        problems.append(
                            f"{m.spec.symbol} {side}: book and order {r.order.order_id} differ"
                        )
            if m.bids and m.asks and m.bids[0].price >= m.asks[0].price:
                problems.append(
                    f"{m.spec.symbol}: crossed book {m.bids[0].price} >= {m.asks[0].price}"
                )
        return problems
