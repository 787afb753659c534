"""What the desk asks the outside world to do, as opposed to the rows it logs.

The desk's output is a mix of rows (decision records, orders, fills, ... : facts, logged as
they are) and commands (place this order on the exchange, cancel that symbol's open orders, ask
GPT this question: requests, carried out by a driver in `dataflows/`, never logged). Keeping
them in separate types means nothing downstream has to guess whether an item is a fact or a
request: `is_command` tells them apart, and an `Order` row is only ever a row, even the first
version of an order that must still leave for the exchange (that is a `PlaceOrder`).

Commands are plain frozen dataclasses, not pydantic models: they never cross a topic or a table,
and they are never snapshotted (what is still to be done after a restart is derived from the
desk's state: `TradingDesk.pending_requests`, `TradingDesk.unreported_orders`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypeGuard, final

from models.core.messages import GptRequest, Order


@final
@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """Send this order to a real exchange (the simulated venue fills inside the desk and
    needs none). The same order also leaves the desk as an `Order` row, just before."""

    order: Order


@final
@dataclass(frozen=True, slots=True)
class CancelOpen:
    """Cancel every open order of `symbol` on the exchange (the `cancel_open` fallback after
    a failed order)."""

    symbol: str
    reason: str


@final
@dataclass(frozen=True, slots=True)
class AskGpt:
    """Ask GPT this question; the answer comes back through `TradingDesk.on_gpt_answer`.
    `request` is the message itself (kept in the desk's pending state, so a restart can ask
    it again); this wrapper is what makes it a command."""

    request: GptRequest


Command = PlaceOrder | CancelOpen | AskGpt

COMMAND_TYPES: Final[frozenset[type]] = frozenset((PlaceOrder, CancelOpen, AskGpt))


def is_command(item: object) -> TypeGuard[Command]:
    """Whether `item` is a command (the command types are final: an exact type check)."""
    return type(item) in COMMAND_TYPES
