"""What an order became on a real exchange, and what to do when it could not be placed.

The desk places orders with deterministic client order ids; an executor (for real exchanges
`connectors/exchange/ccxt_executor.py`) answers each with one `ExecutionReport`. The rules that
decide
the outcome are here, without I/O, so they are unit-tested and shared by every executor:
- a failure is first reconciled (is the order on the exchange after all?), then retried once
  with the same client order id, so an order whose response was lost is never sent twice;
- an error the exchange will repeat (insufficient funds, invalid order, bad credentials) is not
  retried: it cannot succeed, and a retry only costs rate limit;
- when an order finally fails, the configured `FallbackAction` says what the desk does next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models.core.messages import Fill, Side

__all__ = [
    "ErrorKind",
    "ExchangeState",
    "ExecStatus",
    "ExecutionReport",
    "FallbackAction",
    "next_step",
]


class FallbackAction(StrEnum):
    """What the desk does when an order of a decision could not be placed."""

    HOLD = "hold"  # keep the book as it is; the alert asks a human to look
    CANCEL_OPEN = "cancel_open"  # cancel the symbol's other open orders on the exchange
    FLATTEN = "flatten"  # sell the symbol's whole position (market)
    SAFE_LOCAL = "safe_local"  # stop the GPT strategy of the symbol; the local engine decides


class ExecStatus(StrEnum):
    FILLED = "filled"
    PARTIALLY_FILLED = "partially_filled"  # the exchange filled part and closed the rest
    OPEN = "open"  # accepted, not (fully) filled yet
    REJECTED = "rejected"  # refused by the exchange for a reason a retry cannot change
    FAILED = "failed"  # could not be placed, and not found on the exchange after a retry
    UNKNOWN = "unknown"  # the exchange could not tell whether it has the order: ask later


class ErrorKind(StrEnum):
    """How an executor classifies an error of a call to the exchange."""

    TRANSIENT = "transient"  # network, timeout, 5xx, rate limit: may have happened, may work
    PERMANENT = "permanent"  # the exchange refused; it will refuse again
    DUPLICATE = "duplicate"  # the client order id is already known: the order exists


class ExecutionReport(BaseModel):
    """One order's fate on the exchange: the executor's answer to one placed `Order`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_order_id: str
    decision_id: str
    symbol: str
    side: Side
    quantity: Decimal
    status: ExecStatus
    exchange_order_id: str | None = None
    filled: Decimal = Decimal(0)
    average_price: Decimal | None = None
    fills: list[Fill] = Field(default_factory=list)
    attempts: int = Field(default=1, ge=0, le=2)
    reconciled: bool = False  # found on the exchange by its client order id after an error
    error: str = ""
    ts_ms: int

    @property
    def failed(self) -> bool:
        return self.status in (ExecStatus.REJECTED, ExecStatus.FAILED)


def next_step(kind: ErrorKind, attempts: int, found: bool) -> str:
    """After a failed create call: "adopt" the order found on the exchange, "retry" once, or
    "give_up". `found`: the reconcile lookup by client order id found the order."""
    if found:
        return "adopt"
    # A duplicate id that cannot be found is an order we must not send again either.
    if kind in (ErrorKind.PERMANENT, ErrorKind.DUPLICATE) or attempts >= 2:
        return "give_up"
    return "retry"


@dataclass(frozen=True, slots=True)
class ExchangeState:
    """What the exchange says we own and have open: the truth a restarted desk starts from."""

    balances: dict[str, Decimal]  # asset -> total (free + locked)
    free: dict[str, Decimal]
    open_orders: list[dict[str, Any]] = field(default_factory=list)
    prices: dict[str, Decimal] = field(default_factory=dict)  # BASE/QUOTE -> last price
