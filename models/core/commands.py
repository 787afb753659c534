"""What the desk asks the outside world to do, as opposed to the rows it logs.

A command leaves the desk and is carried out by a driver (`dataflows/`): orders go to the venue,
questions to the GPT gateway. Keeping commands apart from records means the decision log never
has to guess whether a row is a fact or a request.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ExchangeCommand:
    """Something the desk wants done on the exchange besides placing an order (a fallback)."""

    kind: str  # "cancel_open"
    symbol: str
    reason: str
