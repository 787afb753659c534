"""A Binance-compatible spot exchange on 127.0.0.1 that an unmodified `ccxt.binance` talks to.

The order executor must be tested through the real ccxt client (its request signing, its
parsing, its mapping of exchange errors to exception classes are part of what we rely on), yet
the tests must not need a network, an account or money, and must be able to make the exchange
misbehave on purpose. This server speaks the Binance spot REST endpoints ccxt uses, checks the
request signing as Binance does (`X-MBX-APIKEY`, HMAC-SHA256 `signature`, `timestamp` within
`recvWindow`) and answers with Binance-shaped JSON and error bodies, with the HTTP statuses
Binance uses, so ccxt raises the same exception classes it would against the real exchange.

Behind it is `models.sim.matching.MatchingEngine` (one lock around it: the HTTP server is
threaded), fed by `set_price` (replayed or generated prices move a synthetic market maker).
Faults are scripted per endpoint (`script("POST /api/v3/order", Fault.lost_response())`) or
drawn at random with a seed (`chaos(seed=7, probability=0.1)`): 5xx, a response held past the
client's timeout, 429 with Retry-After, insufficient funds, a dropped connection, and an order
that is placed although its response is lost. Every request is recorded.

Split by job: this module is the HTTP layer (server, signing, faults carried out, request log);
the endpoints' handlers and Binance's documents are `connectors.sim.emulator_api`; the endpoints
table, faults, chaos and Binance's lagging lookup are `connectors.sim.emulator_faults`.

Point a client at it with `emulator.client()` or `ccxt.binance(ccxt_config(...))`: every URL
of the client is rewritten to this server, so nothing a test does can reach binance.com.
`stratflow exchange` runs one by hand.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import functools
import hashlib
import hmac
import html
import json
import math
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from connectors.sim.emulator_api import (
    BinanceApi,
    _int,
    _mandatory,
    _Reply,
)
from connectors.sim.emulator_faults import (
    ANY_ENDPOINT,
    DEFAULT_CHAOS_FAULTS,
    ENDPOINTS,
    SERVER_ERROR_MESSAGES,
    Chaos,
    Fault,
    FaultKind,
    FaultSchedule,
    LookupLag,
    Security,
)
from models.sim.matching import (
    EngineConfig,
    EngineError,
    MarketSpec,
    MatchingEngine,
    Trade,
)

__all__ = [
    "ANY_ENDPOINT",
    "ENDPOINTS",
    "Chaos",
    "ExchangeEmulator",
    "ExchangeEmulatorError",
    "Fault",
    "FaultKind",
    "LookupLag",
    "RecordedCall",
    "ccxt_config",
    "emulator_urls",
    "market_for",
]

HOST: Final = "127.0.0.1"
MAX_RECV_WINDOW_MS: Final = 60_000
DEFAULT_RECV_WINDOW_MS: Final = 5_000

# Well-known prices, so `stratflow exchange` and tests start near a believable market.
DEFAULT_PRICES: Final = {"BTC": "60000", "ETH": "3000", "BNB": "600", "SOL": "150"}
MAKER_LEVEL_NOTIONAL: Final = Decimal(20_000)


class ExchangeEmulatorError(RuntimeError):
    """A server problem phrased as one line the user can act on (no traceback needed)."""


REQUEST_LOG_LIMIT: Final = 100_000  # a hand-run emulator polled for days stays bounded


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One request as the server saw it. Header names are lower-case."""

    method: str
    path: str
    endpoint: str | None
    """`METHOD /path` when it is a supported endpoint, else None (answered 404)."""
    params: dict[str, str]
    """Query string and form body merged (the signature included)."""
    headers: dict[str, str]
    status: int
    """The HTTP status answered; 0 when nothing was answered (dropped, timed out, lost)."""
    error_code: int | None
    """Binance's error code of the answer, if it was one."""
    fault: FaultKind | None
    received_at: float = field(default=0.0)


def market_for(pair: str, price: Decimal | None = None, **overrides: Any) -> MarketSpec:
    """A `MarketSpec` for BASE/QUOTE whose maker levels hold about 20,000 quote units each at
    `price` (so a market of any price level has comparable depth), unless overridden."""
    spec = MarketSpec.from_pair(pair)
    if price is not None and "maker_level_qty" not in overrides:
        qty = (MAKER_LEVEL_NOTIONAL / price / spec.step_size).to_integral_value() * spec.step_size
        overrides["maker_level_qty"] = max(qty, spec.min_qty)
    return MarketSpec.model_validate({**spec.model_dump(), **overrides}) if overrides else spec


def default_price(pair: str) -> Decimal:
    """A believable starting price for a pair (100 for an unknown base asset)."""
    base = pair.upper().partition("/")[0]
    return Decimal(DEFAULT_PRICES.get(base, "100"))


@functools.cache
def _binance_api_urls() -> dict[str, str]:
    import ccxt  # imported here: the server itself does not need ccxt

    urls: dict[str, Any] = ccxt.binance().urls["api"]
    return {k: v for k, v in urls.items() if isinstance(v, str)}


def emulator_urls(base_url: str) -> dict[str, str]:
    """Every API base URL of `ccxt.binance` (`public`, `private`, `v1`, `sapi`, `fapiPublic`,
    ...) moved to `base_url`, keeping its path (`/api/v3`, `/sapi/v1`, ...): spot calls reach
    the emulator, anything else gets its 404 instead of reaching the internet."""
    base = base_url.rstrip("/")
    return {k: base + urlsplit(v).path for k, v in _binance_api_urls().items()}


def ccxt_config(
    base_url: str,
    api_key: str | None,
    secret: str | None,
    /,
    *,
    timeout_ms: int = 5_000,
    options: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The config for `ccxt.binance(...)` that points it at an emulator at `base_url`.

    Spot only (`fetchMarkets` types `['spot']`: no futures exchangeInfo calls), no currency list
    (`fetchCurrencies` needs sapi's capital endpoint, which is not emulated), ccxt's own rate
    limiter off (nothing to protect locally, and it would slow tests down), and
    `fetchOpenOrders` without a symbol allowed. `options` and `extra` (any ccxt config key,
    `apiKey` and `secret` included) override.
    """
    return {
        "apiKey": api_key,
        "secret": secret,
        "timeout": timeout_ms,
        "enableRateLimit": False,
        "urls": {"api": emulator_urls(base_url)},
        "options": {
            "fetchMarkets": {"types": ["spot"]},
            "fetchCurrencies": False,
            "fetchMargins": False,
            "fetchOpenOrders": {"warnWithoutSymbol": False},
            **(options or {}),
        },
        **extra,
    }


# ---------------------------------------------------------------------------------- server


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler still holding a timed-out request never blocks exit
    owner: ExchangeEmulator


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so no idle keep-alive thread can outlive stop().
    protocol_version = "HTTP/1.0"
    server_version = "stratflow-exchange-emulator/1"
    timeout = 30  # a client that connects and sends nothing cannot pin a thread forever
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests and the CLI report what matters themselves."""

    def do_GET(self) -> None:
        self.server.owner._handle(self, "GET")

    def do_POST(self) -> None:
        self.server.owner._handle(self, "POST")

    def do_DELETE(self) -> None:
        self.server.owner._handle(self, "DELETE")

    def do_PUT(self) -> None:
        self.server.owner._handle(self, "PUT")

    def send_body(
        self,
        status: int,
        data: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class ExchangeEmulator:
    """A Binance-compatible spot exchange in a background thread on 127.0.0.1.

    `with ExchangeEmulator(["BTC/USDT"], balances={"USDT": 10_000}) as ex:` then
    `client = ex.client()` (a real `ccxt.binance` pointed at `ex.base_url` with `ex.api_key` /
    `ex.secret`). Move the market with `ex.set_price("BTC/USDT", 61_000)`; read the exchange's
    books with `ex.engine` (hold `ex.lock` while reading if requests may be in flight).
    """

    def __init__(
        self,
        markets: Sequence[str | MarketSpec] = ("BTC/USDT", "ETH/USDT"),
        *,
        balances: Mapping[str, Decimal | int | str] | None = None,
        prices: Mapping[str, Decimal | int | str] | None = None,
        config: EngineConfig | None = None,
        api_key: str | None = None,
        secret: str | None = None,
        port: int | None = None,
        clock_ms: Callable[[], int] | None = None,
        chaos: Chaos | None = None,
        lookup_lag: LookupLag | None = None,
    ) -> None:
        """`markets`: BASE/QUOTE strings (depth sized by `market_for` at the starting price) or
        specs. `prices`: starting price per market (BASE/QUOTE or Binance id); markets not
        given one start at `default_price`. `api_key`/`secret`: generated when None.
        `clock_ms`: the server's clock (wall clock by default; skew it to test recvWindow).
        `lookup_lag`: Binance's eventually consistent order lookup (none by default)."""
        given = {k.upper().replace("/", ""): Decimal(str(v)) for k, v in (prices or {}).items()}

        def start_price(pair: str) -> Decimal:
            return given.get(pair.replace("/", "")) or default_price(pair)

        specs = [
            m if isinstance(m, MarketSpec) else market_for(m, start_price(m.upper()))
            for m in markets
        ]
        unknown = set(given) - {s.symbol for s in specs}
        if unknown:
            raise ValueError(f"prices for markets not listed: {', '.join(sorted(unknown))}")
        self.engine = MatchingEngine(specs, config)
        self.lock = threading.RLock()
        self.api_key = api_key or secrets.token_hex(32)
        self.secret = secret or secrets.token_hex(32)
        self._clock = clock_ms or _wall_ms
        now = self._clock()
        for spec in specs:
            self.engine.set_price(spec.symbol, start_price(spec.pair), now)
        for asset, amount in (balances or {}).items():
            self.engine.deposit(asset, Decimal(str(amount)))
        self._requested_port = port or 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._meta = threading.Lock()  # the request log
        self.faults = FaultSchedule(chaos)
        self.api = BinanceApi(self.engine, lookup_lag)
        self._requests: collections.deque[RecordedCall] = collections.deque(
            maxlen=REQUEST_LOG_LIMIT
        )
        self._weight_minute = 0
        self._weight = 0
        self._walker: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        if self._server is None:
            raise ExchangeEmulatorError("exchange emulator is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT (the API paths /api/v3/... hang below it)."""
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> ExchangeEmulator:
        if self._server is not None:
            return self
        try:
            server = _Server((HOST, self._requested_port), _Handler)
        except OSError as exc:
            where = f"{HOST}:{self._requested_port}" if self._requested_port else HOST
            raise ExchangeEmulatorError(f"cannot listen on {where}: {exc.strerror}") from None
        server.owner = self
        self._stopping.clear()
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},  # how fast stop() returns
            name=f"exchange-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving; held requests are woken and answer nothing; the price walk stops."""
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        self._stopping.set()
        walker, self._walker = self._walker, None
        if walker is not None:
            walker.join(timeout_s)
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout_s)

    def __enter__(self) -> ExchangeEmulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.base_url if self._server is not None else "stopped"
        return f"ExchangeEmulator({where}, markets={sorted(self.engine.markets)})"

    # ------------------------------------------------------------------ clients and the market

    def ccxt_config(self, **overrides: Any) -> dict[str, Any]:
        """`ccxt_config(...)` for this emulator (its URL and keys); keywords override, e.g.
        `secret="wrong"`, `timeout_ms=300`, `options={...}`."""
        return ccxt_config(self.base_url, self.api_key, self.secret, **overrides)

    def client(self, **overrides: Any) -> Any:
        """A real `ccxt.binance` talking to this emulator (keywords as for `ccxt_config`)."""
        import ccxt

        return ccxt.binance(self.ccxt_config(**overrides))

    def symbol_id(self, name: str) -> str:
        """BTC/USDT or BTCUSDT -> BTCUSDT (ValueError for a market this exchange lacks)."""
        key = name.strip().upper().replace("/", "")
        if key in self.engine.markets:
            return key
        raise ValueError(f"no market {name} (markets: {', '.join(self.engine.markets)})")

    def set_price(
        self,
        market: str,
        price: Decimal | int | str,
        ts_ms: int | None = None,
        volume: Decimal | int | str = 0,
    ) -> list[Trade]:
        """Move a market (BTC/USDT or BTCUSDT) to `price` at `ts_ms` (default: now); see
        `MatchingEngine.set_price`."""
        symbol = self.symbol_id(market)
        with self.lock:
            return self.engine.set_price(
                symbol,
                Decimal(str(price)),
                self._clock() if ts_ms is None else ts_ms,
                Decimal(str(volume)),
            )

    def deposit(self, asset: str, amount: Decimal | int | str) -> None:
        with self.lock:
            self.engine.deposit(asset, Decimal(str(amount)))

    def start_price_walk(
        self, seed: int, *, interval_s: float = 1.0, step_bps: float = 5.0
    ) -> None:
        """Generated prices for a hand-run exchange: every `interval_s` each market moves by a
        seeded random step (standard deviation `step_bps`) and prints a small outside trade."""
        if self._walker is not None:
            return
        rng = random.Random(seed)

        def walk() -> None:
            while not self._stopping.wait(interval_s):
                with self.lock:
                    for symbol, spec in self.engine.markets.items():
                        mark = self.engine.mark(symbol) or default_price(spec.pair)
                        factor = Decimal(str(round(math.exp(rng.gauss(0, step_bps / 1e4)), 8)))
                        ticks = (mark * factor / spec.tick_size).to_integral_value()
                        price = max(ticks, Decimal(1)) * spec.tick_size
                        volume = spec.maker_level_qty * Decimal(str(round(rng.random(), 3)))
                        volume = (volume / spec.step_size).to_integral_value() * spec.step_size
                        self.engine.set_price(symbol, price, self._clock(), volume)

        self._walker = threading.Thread(target=walk, name="exchange-price-walk", daemon=True)
        self._walker.start()

    # ------------------------------------------------------------------ scripting

    def script(self, endpoint: str, *faults: Fault) -> None:
        """Queue faults for an endpoint ("POST /api/v3/order", or "*" for any request); each
        request to it consumes the next one (the endpoint's own queue before "*")."""
        self.faults.script(endpoint, faults)

    def chaos(
        self,
        seed: int,
        probability: float,
        *,
        faults: Sequence[Fault] = DEFAULT_CHAOS_FAULTS,
        endpoints: Sequence[str] | None = None,
    ) -> None:
        """Random faults from now on (see `Chaos`); `calm()` ends them."""
        chaos = Chaos(
            seed, probability, tuple(faults), None if endpoints is None else frozenset(endpoints)
        )
        self.faults.set_chaos(chaos)

    def calm(self) -> None:
        """No more random faults (scripted ones stay queued)."""
        self.faults.set_chaos(None)

    def reset(self) -> None:
        """Forget queued faults, chaos and recorded requests (the engine's state stays)."""
        self.faults.clear()
        with self._meta:
            self._requests.clear()

    def pending(self, endpoint: str | None = None) -> int:
        """Scripted faults not consumed yet (for one endpoint, or all)."""
        return self.faults.pending(endpoint)

    @property
    def requests(self) -> list[RecordedCall]:
        """Requests received so far (the newest `REQUEST_LOG_LIMIT`), in arrival order (a
        copy)."""
        with self._meta:
            return list(self._requests)

    # ------------------------------------------------------------------ serving

    def _handle(self, h: _Handler, method: str) -> None:
        received = time.time()
        split = urlsplit(h.path)
        path = split.path.rstrip("/") or "/"
        headers = {k.lower(): v for k, v in h.headers.items()}
        length = int(headers.get("content-length", "0") or 0)
        raw_body = h.rfile.read(length).decode("utf-8", "replace") if length > 0 else ""
        query = split.query
        endpoint = f"{method} {path}"
        known = endpoint in ENDPOINTS
        content_type = headers.get("content-type", "application/x-www-form-urlencoded")
        form = content_type.startswith("application/x-www-form-urlencoded")
        pairs = parse_qsl(query, keep_blank_values=True)
        if form:  # Binance reads parameters from the query string and a form body only
            pairs += parse_qsl(raw_body, keep_blank_values=True)
        params = dict(pairs)
        fault: Fault | None = None

        def record(status: int, code: int | None) -> None:
            rec = RecordedCall(
                method,
                path,
                endpoint if known else None,
                params,
                headers,
                status,
                code,
                fault.kind if fault else None,
                received,
            )
            with self._meta:
                self._requests.append(rec)

        try:
            if not known:
                record(404, None)
                where = html.escape(f"{method} {path}")
                body = f"<html><body><h1>404 Not Found</h1><p>{where}</p></body></html>"
                h.send_body(404, body.encode(), "text/html")
                return
            fault = self.faults.next(endpoint)
            executed = (FaultKind.LOST_RESPONSE, FaultKind.REWRITE)
            if fault is not None and fault.kind not in executed:
                self._answer_fault(h, fault, record)
                return
            status, doc, code = self._dispatch(endpoint, params, pairs, headers, query, raw_body)
            if fault is not None and fault.kind is FaultKind.REWRITE:
                if status == 200 and fault.edit is not None:
                    doc = fault.edit(copy.deepcopy(doc))
            elif fault is not None:  # lost response: executed, the answer never arrives
                record(0, code)  # before holding: a test sees it while the client times out
                if fault.delay_s > 0:
                    self._stopping.wait(fault.delay_s)
                h.drop()
                return
            record(status, code)
            h.send_body(
                status,
                json.dumps(doc).encode(),
                "application/json;charset=UTF-8",
                {"X-MBX-USED-WEIGHT-1M": str(self._weight_used())},
            )
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. its timeout fired): nothing left to answer

    def _weight_used(self) -> int:
        """Requests in the current wall-clock minute, one weight each (Binance's header)."""
        minute = int(time.time() // 60)
        with self._meta:
            if minute != self._weight_minute:
                self._weight_minute, self._weight = minute, 0
            self._weight += 1
            return self._weight

    def _answer_fault(
        self, h: _Handler, fault: Fault, record: Callable[[int, int | None], None]
    ) -> None:
        kind = fault.kind
        if kind is FaultKind.DROP:
            record(0, None)
            h.drop()
        elif kind is FaultKind.TIMEOUT:
            record(0, None)
            self._stopping.wait(fault.delay_s)
            h.drop()
        elif kind is FaultKind.SERVER_ERROR:
            record(fault.status, fault.code)
            if fault.code is None:
                page = f"<html><body><h1>{fault.status} Server Error</h1></body></html>"
                h.send_body(fault.status, page.encode(), "text/html")
            else:
                doc = {"code": fault.code, "msg": SERVER_ERROR_MESSAGES[fault.code]}
                h.send_body(fault.status, json.dumps(doc).encode(), "application/json")
        elif kind is FaultKind.RATE_LIMITED:
            record(fault.status, -1003)
            msg = (
                "Way too much request weight used; IP banned until "
                f"{self._clock() + fault.retry_after_s * 1000}. Please use WebSocket Streams for"
                " live updates to avoid bans."
                if fault.status == 418
                else "Too much request weight used; current limit is 6000 request weight per"
                " 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the"
                " API."
            )
            h.send_body(
                fault.status,
                json.dumps({"code": -1003, "msg": msg}).encode(),
                "application/json",
                {"Retry-After": str(fault.retry_after_s)},
            )
        elif kind is FaultKind.INSUFFICIENT_FUNDS:
            code, msg = -2010, "Account has insufficient balance for requested action."
            record(400, code)
            h.send_body(400, json.dumps({"code": code, "msg": msg}).encode(), "application/json")
        else:  # pragma: no cover - LOST_RESPONSE and REWRITE are handled by the caller
            raise AssertionError(kind)

    def _dispatch(
        self,
        endpoint: str,
        params: dict[str, str],
        pairs: list[tuple[str, str]],
        headers: Mapping[str, str],
        query: str,
        raw_body: str,
    ) -> tuple[int, Any, int | None]:
        """(status, JSON document, Binance error code or None) for a supported endpoint."""
        security, handler_name = ENDPOINTS[endpoint]
        try:
            if len({k for k, _ in pairs}) != len(pairs):
                raise EngineError(-1101, "Duplicate values for a parameter detected.")
            if security is not Security.NONE:
                self._authenticate(security, params, headers, query, raw_body)
            handler: Callable[[dict[str, str], int], Any] = getattr(self.api, handler_name)
            with self.lock:
                doc = handler(params, self._clock())
            return 200, doc, None
        except _Reply as err:
            return err.status, {"code": err.code, "msg": err.msg}, err.code
        except EngineError as err:
            return 400, {"code": err.code, "msg": err.msg}, err.code

    def _authenticate(
        self,
        security: Security,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        query: str,
        raw_body: str,
    ) -> None:
        """Binance's checks, in Binance's order: key, mandatory parameters, recvWindow,
        signature, then the timestamp window."""
        key = headers.get("x-mbx-apikey")
        if not key:
            raise _Reply(401, -2014, "API-key format invalid.")
        if not hmac.compare_digest(key, self.api_key):
            raise _Reply(401, -2015, "Invalid API-key, IP, or permissions for action.")
        if security is Security.API_KEY:
            return
        for name in ("signature", "timestamp"):
            if not params.get(name):
                raise _mandatory(name)
        timestamp = _int(params, "timestamp")
        recv_window = _int(params, "recvWindow", DEFAULT_RECV_WINDOW_MS)
        assert timestamp is not None and recv_window is not None
        if not 0 < recv_window <= MAX_RECV_WINDOW_MS:
            raise EngineError(-1131, "recvWindow must be less than 60000")
        # The signed payload is the query string followed by the body, without the signature.
        payload = "&".join(
            part for part in query.split("&") if part and not part.startswith("signature=")
        ) + "&".join(
            part for part in raw_body.split("&") if part and not part.startswith("signature=")
        )
        expected = hmac.new(self.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, params["signature"].lower()):
            raise EngineError(-1022, "Signature for this request is not valid.")
        now = self._clock()
        if timestamp >= now + 1000:
            raise EngineError(
                -1021, "Timestamp for this request was 1000ms ahead of the server's time."
            )
        if now - timestamp > recv_window:
            raise EngineError(-1021, "Timestamp for this request is outside of the recvWindow.")
