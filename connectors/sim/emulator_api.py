"""The Binance spot REST API of the exchange emulator: parameters in, Binance's JSON out.

Split from `connectors.sim.exchange_emulator` (the HTTP layer: server, signing, faults, request
log) so the account and order rules are one job: `BinanceApi` holds the matching engine and
answers each endpoint the way Binance does (its parameter checks and error codes, its
documents: amounts as 8-decimal strings, orders, fills, klines, tickers), including its
eventually consistent order lookup (`connectors.sim.emulator_faults.LookupLag`). Its handlers
run under the emulator's lock; `EngineError` is a refusal the HTTP layer answers as 400.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from connectors.sim.emulator_faults import LookupLag
from models.sim.matching import (
    NO_SUCH_ORDER,
    EngineError,
    EngineOrder,
    Kline,
    MarketSpec,
    MatchingEngine,
    MyTrade,
    OrderSide,
    OrderType,
    TimeInForce,
    Trade,
)

__all__ = ["INTERVALS_MS", "BinanceApi"]

Q8: Final = Decimal("1e-8")
CLIENT_ID_RE: Final = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")
INTERVALS_MS: Final = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
}
WEEK_OFFSET_MS: Final = 4 * 86_400_000  # 1970-01-01 was a Thursday; Binance weeks open Monday


class _Reply(Exception):
    """An error answer: HTTP status plus Binance's code and message."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg


def _fmt(value: Decimal) -> str:
    """Binance prints amounts as strings with 8 decimals."""
    return f"{value.quantize(Q8):f}"


def _mandatory(name: str) -> EngineError:
    return EngineError(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name, "")
    if not value:
        raise _mandatory(name)
    return value


def _decimal(params: Mapping[str, str], name: str) -> Decimal | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or not re.fullmatch(r"[0-9]{1,20}(\.[0-9]{1,20})?", raw.strip()):
        raise EngineError(
            -1100,
            f"Illegal characters found in parameter '{name}'; "
            "legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
        )
    return value


def _int(params: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"-?[0-9]{1,20}", raw.strip()):
        raise EngineError(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
        )
    return int(raw)


def _limit(params: Mapping[str, str], default: int, maximum: int) -> int:
    value = _int(params, "limit", default)
    assert value is not None
    if value <= 0:
        raise EngineError(
            -1100, "Illegal characters found in parameter 'limit'; legal range is '1'."
        )
    return min(value, maximum)


def _client_id(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name) or None
    if value is not None and not CLIENT_ID_RE.fullmatch(value):
        raise EngineError(
            -1100,
            f"Illegal characters found in parameter '{name}'; "
            "legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.",
        )
    return value


def _symbols_param(raw: str) -> list[str]:
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if not isinstance(doc, list) or not doc or not all(isinstance(s, str) for s in doc):
        raise EngineError(-1100, "Illegal characters found in parameter 'symbols'.")
    return [str(s) for s in doc]


class BinanceApi:
    """The endpoints' handlers (`connectors.sim.emulator_faults.ENDPOINTS` names them), each
    `handler(params, now_ms) -> JSON document`; not thread-safe (the emulator's lock)."""

    def __init__(self, engine: MatchingEngine, lookup_lag: LookupLag | None = None) -> None:
        self.engine = engine
        self.lookup_lag = lookup_lag or LookupLag()
        self._hidden: dict[int, int] = {}  # order id -> lookups answered -2013 (lookup lag)

    # ------------------------------------------------------------------ documents

    def _symbol(self, params: Mapping[str, str]) -> str:
        symbol = _required(params, "symbol")
        self.engine.market(symbol)  # -1121 Invalid symbol.
        return symbol

    def _market_doc(self, spec: MarketSpec) -> dict[str, Any]:
        return {
            "symbol": spec.symbol,
            "status": "TRADING",
            "baseAsset": spec.base,
            "baseAssetPrecision": 8,
            "quoteAsset": spec.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8,
            "quoteCommissionPrecision": 8,
            "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
            "icebergAllowed": False,
            "ocoAllowed": False,
            "otoAllowed": False,
            "quoteOrderQtyMarketAllowed": True,
            "allowTrailingStop": False,
            "cancelReplaceAllowed": False,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": _fmt(spec.tick_size),
                    "maxPrice": "1000000000.00000000",
                    "tickSize": _fmt(spec.tick_size),
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": _fmt(spec.min_qty),
                    "maxQty": _fmt(spec.max_qty),
                    "stepSize": _fmt(spec.step_size),
                },
                {
                    "filterType": "MARKET_LOT_SIZE",
                    "minQty": _fmt(spec.min_qty),
                    "maxQty": _fmt(spec.max_qty),
                    "stepSize": _fmt(spec.step_size),
                },
                {
                    "filterType": "NOTIONAL",
                    "minNotional": _fmt(spec.min_notional),
                    "applyMinToMarket": True,
                    "maxNotional": "9000000000.00000000",
                    "applyMaxToMarket": False,
                    "avgPriceMins": 5,
                },
                {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            ],
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": "NONE",
            "allowedSelfTradePreventionModes": ["NONE"],
        }

    def _order_doc(self, o: EngineOrder) -> dict[str, Any]:
        return {
            "symbol": o.symbol,
            "orderId": o.order_id,
            "orderListId": -1,
            "clientOrderId": o.client_order_id,
            "price": _fmt(o.price),
            "origQty": _fmt(o.orig_qty),
            "executedQty": _fmt(o.executed_qty),
            "cummulativeQuoteQty": _fmt(o.cumm_quote_qty),
            "status": o.status.value,
            "timeInForce": o.time_in_force.value,
            "type": o.type.value,
            "side": o.side.value,
            "stopPrice": _fmt(Decimal(0)),
            "icebergQty": _fmt(Decimal(0)),
            "time": o.time_ms,
            "updateTime": o.update_ms,
            "isWorking": True,
            "workingTime": o.time_ms,
            "origQuoteOrderQty": _fmt(o.orig_quote_qty),
            "selfTradePreventionMode": "NONE",
        }

    def _new_order_doc(self, o: EngineOrder, resp_type: str) -> dict[str, Any]:
        ack = {
            "symbol": o.symbol,
            "orderId": o.order_id,
            "orderListId": -1,
            "clientOrderId": o.client_order_id,
            "transactTime": o.update_ms,
        }
        if resp_type == "ACK":
            return ack
        doc = {
            **ack,
            "price": _fmt(o.price),
            "origQty": _fmt(o.orig_qty),
            "executedQty": _fmt(o.executed_qty),
            "origQuoteOrderQty": _fmt(o.orig_quote_qty),
            "cummulativeQuoteQty": _fmt(o.cumm_quote_qty),
            "status": o.status.value,
            "timeInForce": o.time_in_force.value,
            "type": o.type.value,
            "side": o.side.value,
            "workingTime": o.time_ms,
            "selfTradePreventionMode": "NONE",
        }
        if resp_type == "FULL":
            doc["fills"] = [
                {
                    "price": _fmt(f.price),
                    "qty": _fmt(f.qty),
                    "commission": _fmt(f.commission),
                    "commissionAsset": f.commission_asset,
                    "tradeId": f.trade_id,
                }
                for f in o.fills
            ]
        return doc

    @staticmethod
    def _trade_doc(t: Trade) -> dict[str, Any]:
        return {
            "id": t.trade_id,
            "price": _fmt(t.price),
            "qty": _fmt(t.qty),
            "quoteQty": _fmt(t.quote_qty),
            "time": t.time_ms,
            "isBuyerMaker": t.buyer_is_maker,
            "isBestMatch": True,
        }

    @staticmethod
    def _my_trade_doc(t: MyTrade) -> dict[str, Any]:
        return {
            "symbol": t.symbol,
            "id": t.trade_id,
            "orderId": t.order_id,
            "orderListId": -1,
            "price": _fmt(t.price),
            "qty": _fmt(t.qty),
            "quoteQty": _fmt(t.quote_qty),
            "commission": _fmt(t.commission),
            "commissionAsset": t.commission_asset,
            "time": t.time_ms,
            "isBuyer": t.side is OrderSide.BUY,
            "isMaker": t.is_maker,
            "isBestMatch": True,
        }

    @staticmethod
    def _kline_doc(b: Kline) -> list[Any]:
        return [
            b.open_ms,
            _fmt(b.open),
            _fmt(b.high),
            _fmt(b.low),
            _fmt(b.close),
            _fmt(b.volume),
            b.close_ms,
            _fmt(b.quote_volume),
            b.trades,
            _fmt(b.taker_buy_volume),
            _fmt(b.taker_buy_quote_volume),
            "0",
        ]

    def _ticker_doc(self, symbol: str, now: int) -> dict[str, Any]:
        t = self.engine.ticker(symbol)
        zero = _fmt(Decimal(0))
        if t is None:
            return {
                "symbol": symbol,
                **dict.fromkeys(
                    (
                        "priceChange",
                        "priceChangePercent",
                        "weightedAvgPrice",
                        "prevClosePrice",
                        "lastPrice",
                        "lastQty",
                        "bidPrice",
                        "bidQty",
                        "askPrice",
                        "askQty",
                        "openPrice",
                        "highPrice",
                        "lowPrice",
                        "volume",
                        "quoteVolume",
                    ),
                    zero,
                ),
                "openTime": now,
                "closeTime": now,
                "firstId": -1,
                "lastId": -1,
                "count": 0,
            }
        change = t.last - t.open
        bid = t.bid or (Decimal(0), Decimal(0))
        ask = t.ask or (Decimal(0), Decimal(0))
        return {
            "symbol": symbol,
            "priceChange": _fmt(change),
            "priceChangePercent": f"{(change / t.open * 100).quantize(Decimal('0.001')):f}",
            "weightedAvgPrice": _fmt(t.quote_volume / t.volume if t.volume else t.last),
            "prevClosePrice": _fmt(t.prev_close),
            "lastPrice": _fmt(t.last),
            "lastQty": _fmt(t.last_qty),
            "bidPrice": _fmt(bid[0]),
            "bidQty": _fmt(bid[1]),
            "askPrice": _fmt(ask[0]),
            "askQty": _fmt(ask[1]),
            "openPrice": _fmt(t.open),
            "highPrice": _fmt(t.high),
            "lowPrice": _fmt(t.low),
            "volume": _fmt(t.volume),
            "quoteVolume": _fmt(t.quote_volume),
            "openTime": t.open_ms,
            "closeTime": t.close_ms,
            "firstId": t.first_id,
            "lastId": t.last_id,
            "count": t.count,
        }

    def _selected_symbols(self, params: Mapping[str, str]) -> list[str] | None:
        """`symbol=X` or `symbols=["X","Y"]` (each checked), or None for every market."""
        if params.get("symbol"):
            return [self._symbol(params)]
        if params.get("symbols"):
            names = _symbols_param(params["symbols"])
            for name in names:
                self.engine.market(name)
            return names
        return None

    # ------------------------------------------------------------------ handlers (under lock)

    def _ping(self, params: dict[str, str], now: int) -> Any:
        return {}

    def _time(self, params: dict[str, str], now: int) -> Any:
        return {"serverTime": now}

    def _system_status(self, params: dict[str, str], now: int) -> Any:
        return {"status": 0, "msg": "normal"}

    def _exchange_info(self, params: dict[str, str], now: int) -> Any:
        chosen = self._selected_symbols(params) or list(self.engine.markets)
        return {
            "timezone": "UTC",
            "serverTime": now,
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": 6000,
                },
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
            ],
            "exchangeFilters": [],
            "symbols": [self._market_doc(self.engine.market(s)) for s in chosen],
        }

    def _depth(self, params: dict[str, str], now: int) -> Any:
        symbol = self._symbol(params)
        depth = self.engine.depth(symbol, _limit(params, 100, 5000))
        return {
            "lastUpdateId": depth.update_id,
            "bids": [[_fmt(p), _fmt(q)] for p, q in depth.bids],
            "asks": [[_fmt(p), _fmt(q)] for p, q in depth.asks],
        }

    def _trades(self, params: dict[str, str], now: int) -> Any:
        symbol = self._symbol(params)
        trades = self.engine.trades(symbol, limit=_limit(params, 500, 1000))
        return [self._trade_doc(t) for t in trades]

    def _historical_trades(self, params: dict[str, str], now: int) -> Any:
        symbol = self._symbol(params)
        trades = self.engine.trades(
            symbol, limit=_limit(params, 500, 1000), from_id=_int(params, "fromId")
        )
        return [self._trade_doc(t) for t in trades]

    def _agg_trades(self, params: dict[str, str], now: int) -> Any:
        """One aggregate trade per trade (each fill of the emulator is its own price level)."""
        symbol = self._symbol(params)
        trades = self.engine.trades(
            symbol,
            limit=_limit(params, 500, 1000),
            from_id=_int(params, "fromId"),
            start_ms=_int(params, "startTime"),
            end_ms=_int(params, "endTime"),
        )
        return [
            {
                "a": t.trade_id,
                "p": _fmt(t.price),
                "q": _fmt(t.qty),
                "f": t.trade_id,
                "l": t.trade_id,
                "T": t.time_ms,
                "m": t.buyer_is_maker,
                "M": True,
            }
            for t in trades
        ]

    def _klines(self, params: dict[str, str], now: int) -> Any:
        symbol = self._symbol(params)
        interval = _required(params, "interval")
        if interval not in INTERVALS_MS:
            raise EngineError(-1120, "Invalid interval.")
        bars = self.engine.bars(
            symbol,
            INTERVALS_MS[interval],
            start_ms=_int(params, "startTime"),
            end_ms=_int(params, "endTime"),
            limit=_limit(params, 500, 1000),
            offset_ms=WEEK_OFFSET_MS if interval == "1w" else 0,
        )
        return [self._kline_doc(b) for b in bars]

    def _avg_price(self, params: dict[str, str], now: int) -> Any:
        symbol = self._symbol(params)
        mark = self.engine.mark(symbol) or Decimal(0)
        return {"mins": 5, "price": _fmt(mark), "closeTime": now}

    def _ticker_24hr(self, params: dict[str, str], now: int) -> Any:
        chosen = self._selected_symbols(params)
        if chosen is not None and params.get("symbol"):
            return self._ticker_doc(chosen[0], now)
        return [self._ticker_doc(s, now) for s in chosen or self.engine.markets]

    def _ticker_price(self, params: dict[str, str], now: int) -> Any:
        chosen = self._selected_symbols(params)

        def doc(symbol: str) -> dict[str, str]:
            return {"symbol": symbol, "price": _fmt(self.engine.mark(symbol) or Decimal(0))}

        if chosen is not None and params.get("symbol"):
            return doc(chosen[0])
        return [doc(s) for s in chosen or self.engine.markets]

    def _book_ticker(self, params: dict[str, str], now: int) -> Any:
        chosen = self._selected_symbols(params)

        def doc(symbol: str) -> dict[str, str]:
            bid, ask = self.engine.top(symbol)
            b = bid or (Decimal(0), Decimal(0))
            a = ask or (Decimal(0), Decimal(0))
            return {
                "symbol": symbol,
                "bidPrice": _fmt(b[0]),
                "bidQty": _fmt(b[1]),
                "askPrice": _fmt(a[0]),
                "askQty": _fmt(a[1]),
            }

        if chosen is not None and params.get("symbol"):
            return doc(chosen[0])
        return [doc(s) for s in chosen or self.engine.markets]

    def _account(self, params: dict[str, str], now: int) -> Any:
        cfg = self.engine.config
        omit_zero = params.get("omitZeroBalances", "").lower() == "true"
        balances = [
            {"asset": a, "free": _fmt(b.free), "locked": _fmt(b.locked)}
            for a, b in self.engine.balances().items()
            if not (omit_zero and b.total == 0)
        ]
        return {
            "makerCommission": int(cfg.maker_fee_bps),
            "takerCommission": int(cfg.taker_fee_bps),
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": _fmt(cfg.maker_fee_bps / 10_000),
                "taker": _fmt(cfg.taker_fee_bps / 10_000),
                "buyer": _fmt(Decimal(0)),
                "seller": _fmt(Decimal(0)),
            },
            "canTrade": True,
            "canWithdraw": False,
            "canDeposit": False,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": now,
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": 1,
        }

    def _new_order(self, params: dict[str, str], now: int) -> Any:
        symbol = self._symbol(params)
        side_raw = _required(params, "side")
        type_raw = _required(params, "type")
        try:
            side = OrderSide(side_raw)
        except ValueError:
            raise EngineError(-1117, "Invalid side.") from None
        try:
            order_type = OrderType(type_raw)
        except ValueError:
            raise EngineError(-1116, "Invalid orderType.") from None
        tif_raw = params.get("timeInForce") or None
        tif: TimeInForce | None = None
        if tif_raw is not None:
            try:
                tif = TimeInForce(tif_raw)
            except ValueError:
                raise EngineError(-1115, "Invalid timeInForce.") from None
        resp_type = params.get("newOrderRespType") or "FULL"
        if resp_type not in ("ACK", "RESULT", "FULL"):
            raise EngineError(-1100, "Illegal characters found in parameter 'newOrderRespType'.")
        order = self.engine.place(
            symbol,
            side,
            order_type,
            now_ms=now,
            quantity=_decimal(params, "quantity"),
            price=_decimal(params, "price"),
            time_in_force=tif,
            client_order_id=_client_id(params, "newClientOrderId"),
            quote_order_qty=_decimal(params, "quoteOrderQty"),
        )
        return self._new_order_doc(order, resp_type)

    def _order_ref(self, params: Mapping[str, str]) -> tuple[str, int | None, str | None]:
        symbol = self._symbol(params)
        order_id = _int(params, "orderId")
        client_id = params.get("origClientOrderId") or None
        if order_id is None and client_id is None:
            raise EngineError(
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        return symbol, order_id, client_id

    def _query_order(self, params: dict[str, str], now: int) -> Any:
        symbol, order_id, client_id = self._order_ref(params)
        found = self.engine.order(symbol, order_id=order_id, client_order_id=client_id)
        if not self._lags(found, now):
            return self._order_doc(found)
        # Binance's eventually consistent lookup: a fresh order is not seen yet; an older
        # order that carried the same client order id still is.
        if order_id is None and client_id is not None:
            for older in reversed(self.engine.orders_with_client_id(symbol, client_id)[:-1]):
                if not self._lags(older, now):
                    return self._order_doc(older)
        raise EngineError.of(NO_SUCH_ORDER)

    def _lags(self, o: EngineOrder, now: int) -> bool:
        """Whether this lookup of `o` answers -2013 (`LookupLag`; counted per order)."""
        hidden = self._hidden.get(o.order_id, 0)
        if not self.lookup_lag.hides(now - o.time_ms, hidden):
            return False  # the count stays: once seen, an order is seen from then on
        self._hidden[o.order_id] = hidden + 1
        return True

    def _cancel_doc(self, o: EngineOrder, cancel_id: str | None, now: int) -> dict[str, Any]:
        doc = self._order_doc(o)
        for key in ("stopPrice", "icebergQty", "time", "updateTime", "isWorking", "workingTime"):
            doc.pop(key)
        return {
            **doc,
            "origClientOrderId": o.client_order_id,
            "clientOrderId": cancel_id or f"cancel-{o.order_id}",
            "transactTime": now,
        }

    def _cancel_order(self, params: dict[str, str], now: int) -> Any:
        symbol, order_id, client_id = self._order_ref(params)
        cancel_id = _client_id(params, "newClientOrderId")
        order = self.engine.cancel(symbol, now_ms=now, order_id=order_id, client_order_id=client_id)
        return self._cancel_doc(order, cancel_id, now)

    def _open_orders(self, params: dict[str, str], now: int) -> Any:
        symbol = self._symbol(params) if params.get("symbol") else None
        return [self._order_doc(o) for o in self.engine.open_orders(symbol)]

    def _cancel_open_orders(self, params: dict[str, str], now: int) -> Any:
        symbol = self._symbol(params)
        return [self._cancel_doc(o, None, now) for o in self.engine.cancel_all(symbol, now_ms=now)]

    def _all_orders(self, params: dict[str, str], now: int) -> Any:
        symbol = self._symbol(params)
        orders = self.engine.all_orders(
            symbol,
            from_order_id=_int(params, "orderId"),
            start_ms=_int(params, "startTime"),
            end_ms=_int(params, "endTime"),
            limit=_limit(params, 500, 1000),
        )
        return [self._order_doc(o) for o in orders]

    def _my_trades(self, params: dict[str, str], now: int) -> Any:
        symbol = self._symbol(params)
        trades = self.engine.my_trades(
            symbol,
            order_id=_int(params, "orderId"),
            from_id=_int(params, "fromId"),
            start_ms=_int(params, "startTime"),
            end_ms=_int(params, "endTime"),
            limit=_limit(params, 500, 1000),
        )
        return [self._my_trade_doc(t) for t in trades]
