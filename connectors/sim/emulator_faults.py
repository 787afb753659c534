"""What the exchange emulator serves and what it does wrong on purpose: its endpoints, the
faults a test scripts or draws at random, and Binance's eventually consistent order lookup.

Split from `connectors.sim.exchange_emulator` (the HTTP layer) so the misbehaviour is one job:
`FaultSchedule` decides, per request, which fault (if any) it meets; `LookupLag` decides
whether a lookup of a freshly created order still answers -2013 "Order does not exist." as
Binance can for a short time after a create. The HTTP layer carries the decisions out.
"""

from __future__ import annotations

import collections
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

__all__ = [
    "ANY_ENDPOINT",
    "DEFAULT_CHAOS_FAULTS",
    "ENDPOINTS",
    "SERVER_ERROR_MESSAGES",
    "Chaos",
    "Fault",
    "FaultKind",
    "FaultSchedule",
    "LookupLag",
    "Security",
    "check_endpoint",
]


class Security(StrEnum):
    NONE = "NONE"
    API_KEY = "API_KEY"
    """The key header is required, no signature (Binance's MARKET_DATA, e.g. historicalTrades)."""
    SIGNED = "SIGNED"


# "METHOD /path" -> (security, handler name). The keys are what `script()` accepts.
ENDPOINTS: Final[dict[str, tuple[Security, str]]] = {
    "GET /api/v3/ping": (Security.NONE, "_ping"),
    "GET /api/v3/time": (Security.NONE, "_time"),
    "GET /api/v3/exchangeInfo": (Security.NONE, "_exchange_info"),
    "GET /api/v3/depth": (Security.NONE, "_depth"),
    "GET /api/v3/trades": (Security.NONE, "_trades"),
    "GET /api/v3/historicalTrades": (Security.API_KEY, "_historical_trades"),
    "GET /api/v3/aggTrades": (Security.NONE, "_agg_trades"),
    "GET /api/v3/klines": (Security.NONE, "_klines"),
    "GET /api/v3/uiKlines": (Security.NONE, "_klines"),
    "GET /api/v3/avgPrice": (Security.NONE, "_avg_price"),
    "GET /api/v3/ticker/24hr": (Security.NONE, "_ticker_24hr"),
    "GET /api/v3/ticker/price": (Security.NONE, "_ticker_price"),
    "GET /api/v3/ticker/bookTicker": (Security.NONE, "_book_ticker"),
    "GET /api/v3/account": (Security.SIGNED, "_account"),
    "POST /api/v3/order": (Security.SIGNED, "_new_order"),
    "GET /api/v3/order": (Security.SIGNED, "_query_order"),
    "DELETE /api/v3/order": (Security.SIGNED, "_cancel_order"),
    "GET /api/v3/openOrders": (Security.SIGNED, "_open_orders"),
    "DELETE /api/v3/openOrders": (Security.SIGNED, "_cancel_open_orders"),
    "GET /api/v3/allOrders": (Security.SIGNED, "_all_orders"),
    "GET /api/v3/myTrades": (Security.SIGNED, "_my_trades"),
    "GET /sapi/v1/system/status": (Security.NONE, "_system_status"),
}
ANY_ENDPOINT: Final = "*"


# ---------------------------------------------------------------------------------- faults


class FaultKind(StrEnum):
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    DROP = "drop"
    LOST_RESPONSE = "lost_response"
    REWRITE = "rewrite"


SERVER_ERROR_MESSAGES: Final = {
    -1000: "An unknown error occurred while processing the request.",
    -1001: "Internal error; unable to process your request. Please try your request again.",
    -1008: "Server is currently overloaded with other requests. Please try again in a few minutes.",
}


@dataclass(frozen=True, slots=True)
class Fault:
    """What the server does to one request instead of (or after) answering it normally. Build
    it with the class methods; the ccxt exception each one produces is in the spec."""

    kind: FaultKind
    status: int = 0
    delay_s: float = 0.0
    retry_after_s: int = 0
    code: int | None = None
    edit: Callable[[Any], Any] | None = field(default=None, compare=False)

    @classmethod
    def server_error(cls, status: int = 503, code: int | None = None) -> Fault:
        """HTTP 5xx, not executed. Without `code` the body is an HTML error page (what a
        gateway in front of Binance sends); with one of -1000/-1001/-1008 it is Binance's JSON
        error with that code."""
        if not 500 <= status <= 599:
            raise ValueError(f"server_error needs a 5xx status, got {status}")
        if code is not None and code not in SERVER_ERROR_MESSAGES:
            raise ValueError(f"server_error code must be one of {sorted(SERVER_ERROR_MESSAGES)}")
        return cls(FaultKind.SERVER_ERROR, status=status, code=code)

    @classmethod
    def timeout(cls, delay_s: float = 2.0) -> Fault:
        """Hold the request `delay_s` seconds, then close the connection unanswered; the
        request never reaches the engine. Set the client's timeout below `delay_s`."""
        if not delay_s > 0:
            raise ValueError("timeout needs delay_s > 0")
        return cls(FaultKind.TIMEOUT, delay_s=delay_s)

    @classmethod
    def rate_limited(cls, retry_after_s: int = 1, status: int = 429) -> Fault:
        """HTTP 429 (or 418, Binance's IP ban) with `Retry-After` and code -1003; not executed."""
        if status not in (418, 429):
            raise ValueError(f"rate_limited status is 429 or 418, got {status}")
        return cls(FaultKind.RATE_LIMITED, status=status, retry_after_s=max(0, retry_after_s))

    @classmethod
    def insufficient_funds(cls) -> Fault:
        """HTTP 400 code -2010 "Account has insufficient balance for requested action.", whatever
        the balance; not executed."""
        return cls(FaultKind.INSUFFICIENT_FUNDS, status=400)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection at once without an answer; not executed."""
        return cls(FaultKind.DROP)

    @classmethod
    def lost_response(cls, hold_s: float = 0.0) -> Fault:
        """Execute the request (an order IS placed), then lose the answer: close the connection
        at once (`hold_s` 0) or after holding it `hold_s` seconds (a client timeout)."""
        if hold_s < 0:
            raise ValueError("hold_s must be >= 0")
        return cls(FaultKind.LOST_RESPONSE, delay_s=hold_s)

    @classmethod
    def rewrite(cls, edit: Callable[[Any], Any]) -> Fault:
        """Execute the request (an order IS placed), then answer `edit(document)` instead of
        the document: odd-but-possible payloads (a trade without id, a status ccxt maps oddly,
        numbers in scientific notation...). `edit` gets a deep copy of the JSON document and
        returns the one to send (it may change it in place and return it); an error answer
        (4xx) is sent unchanged."""
        if not callable(edit):
            raise ValueError("rewrite needs a callable")
        return cls(FaultKind.REWRITE, edit=edit)


DEFAULT_CHAOS_FAULTS: Final = (
    Fault.server_error(503),
    Fault.rate_limited(0),
    Fault.drop(),
    Fault.lost_response(),
)


@dataclass(frozen=True, slots=True)
class Chaos:
    """Random faults for soak tests: each request to one of `endpoints` (None: any) gets, with
    `probability`, a fault drawn from `faults`; the draws come from `random.Random(seed)`, so the
    same sequence of requests meets the same faults."""

    seed: int
    probability: float
    faults: tuple[Fault, ...] = DEFAULT_CHAOS_FAULTS
    endpoints: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be within [0, 1], got {self.probability}")
        if not self.faults:
            raise ValueError("chaos needs at least one fault")
        for endpoint in self.endpoints or ():
            check_endpoint(endpoint)


def check_endpoint(endpoint: str) -> str:
    if endpoint != ANY_ENDPOINT and endpoint not in ENDPOINTS:
        raise ValueError(
            f"unknown endpoint {endpoint!r}; use '*' or one of: {', '.join(sorted(ENDPOINTS))}"
        )
    return endpoint


class FaultSchedule:
    """Which fault each request meets: the endpoint's scripted queue first, then the "*"
    queue, then chaos (seeded draws). Thread-safe: the server is threaded."""

    def __init__(self, chaos: Chaos | None = None) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, collections.deque[Fault]] = {}
        self._chaos = chaos
        self._rng = random.Random(chaos.seed if chaos else 0)

    def script(self, endpoint: str, faults: Sequence[Fault]) -> None:
        check_endpoint(endpoint)
        with self._lock:
            self._queues.setdefault(endpoint, collections.deque()).extend(faults)

    def set_chaos(self, chaos: Chaos | None) -> None:
        with self._lock:
            self._chaos = chaos
            if chaos is not None:
                self._rng = random.Random(chaos.seed)

    def clear(self) -> None:
        with self._lock:
            self._queues.clear()
            self._chaos = None

    def pending(self, endpoint: str | None = None) -> int:
        with self._lock:
            if endpoint is not None:
                return len(self._queues.get(check_endpoint(endpoint), ()))
            return sum(len(q) for q in self._queues.values())

    def next(self, endpoint: str) -> Fault | None:
        with self._lock:
            for key in (endpoint, ANY_ENDPOINT):
                queue = self._queues.get(key)
                if queue:
                    return queue.popleft()
            chaos = self._chaos
            if chaos is None or (chaos.endpoints is not None and endpoint not in chaos.endpoints):
                return None
            if self._rng.random() >= chaos.probability:
                return None
            return self._rng.choice(chaos.faults)


@dataclass(frozen=True, slots=True)
class LookupLag:
    """Binance's eventually consistent order lookup: `GET /api/v3/order` may answer -2013
    "Order does not exist." for a short time after the order was created. Here an order is
    hidden from lookups while it is younger than `ms` (the emulator's clock) or until it has
    been hidden from `lookups` lookups (deterministic in tests: no clock needed). A hidden
    order whose client order id an older, visible order also carried shows that older one
    (what a lagging replica still holds). Nothing else lags: creates, cancels, open orders,
    trades and balances are current (never stricter than Binance)."""

    ms: int = 0
    lookups: int = 0

    def __post_init__(self) -> None:
        if self.ms < 0 or self.lookups < 0:
            raise ValueError("lookup lag ms and lookups must be >= 0")

    def hides(self, age_ms: int, hidden_so_far: int) -> bool:
        """Whether a lookup of an order `age_ms` old, already hidden `hidden_so_far` times,
        answers "does not exist"."""
        return age_ms < self.ms or hidden_so_far < self.lookups
