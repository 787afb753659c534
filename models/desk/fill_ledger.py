"""Which exchange fills the book has taken, which wait, and which orders need another look.

An exchange may report the same fill twice (a restart re-asks it), report a sell before the buy
it depends on, or report an order the executor had given up on. The ledger remembers fills
already booked (`seen`, newest 100,000), holds fills that do not fit the book yet
(`models.execution.fill_holdback`), orders whose fallback already ran (`fallen_back`, so a
reopened order that fails again does not fall back twice) and orders reported `failed` that are
looked up once more before the book is reconciled (`given_up`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.execution.fill_holdback import FillHoldback

SEEN_KEPT = 100_000
KEPT = 1_000  # fallen-back and given-up orders remembered (newest)


@dataclass(slots=True)
class FillLedger:
    seen: dict[str, None] = field(default_factory=dict)  # exchange fills booked (newest)
    held: FillHoldback = field(default_factory=FillHoldback)  # not fitting the book yet
    fallen_back: dict[str, None] = field(default_factory=dict)  # orders whose fallback ran
    # Orders reported `failed` (not found after an error that may have placed them): looked up
    # once more before the book is reconciled, so a late fill is booked at its own price.
    given_up: dict[str, str] = field(default_factory=dict)  # client order id -> decision id

    def booked(self, fill_id: str) -> None:
        self.seen[fill_id] = None
        if len(self.seen) > SEEN_KEPT:
            del self.seen[next(iter(self.seen))]

    def fell_back(self, client_order_id: str) -> None:
        self.fallen_back[client_order_id] = None
        if len(self.fallen_back) > KEPT:
            del self.fallen_back[next(iter(self.fallen_back))]

    def gave_up(self, client_order_id: str, decision_id: str) -> None:
        self.given_up[client_order_id] = decision_id
        if len(self.given_up) > KEPT:
            del self.given_up[next(iter(self.given_up))]
