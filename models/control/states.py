"""The desk's trading states, as a risk engine keeps them, and which switches between them are
allowed.

- `ACTIVE`: every reviewed order may be placed.
- `REDUCING` (close-only): only orders that reduce an existing exposure pass.
- `PAUSED`: no new order at all; running strategies keep their state and go on reading bars.
- `HALTED`: open orders are cancelled, and nothing but cancels leaves the desk.

Every switch is allowed except `HALTED` -> `ACTIVE`: a halt is the emergency stop (open orders
were cancelled), so trading is re-armed through `PAUSED` or `REDUCING` first, a deliberate
second step rather than one mistyped command. Asking for the state the desk is already in is
allowed and changes nothing (a retry of a lost acknowledgement must not read as an error).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = ["FORBIDDEN", "TradingState", "transition_refusal"]


class TradingState(StrEnum):
    ACTIVE = "active"
    REDUCING = "reducing"
    PAUSED = "paused"
    HALTED = "halted"


FORBIDDEN: Final[frozenset[tuple[TradingState, TradingState]]] = frozenset(
    {(TradingState.HALTED, TradingState.ACTIVE)}
)
"""The (before, after) switches refused: a halted desk is re-armed through paused or reducing."""


def transition_refusal(before: TradingState, after: TradingState) -> str:
    """Why `before` -> `after` is refused ("" when it is allowed)."""
    if (before, after) in FORBIDDEN:
        return (
            f"{before.value} -> {after.value} is not allowed: a halted desk resumes through "
            "paused or reducing first"
        )
    return ""
