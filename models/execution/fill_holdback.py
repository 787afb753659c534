"""Exchange fills that do not fit the book yet, held until the reports they wait for arrive.

A sell fill larger than the position the book holds cannot be booked (the book never goes
short). On an exchange that can be a matter of order: the buy it sells may be reported later
(a lost or malformed answer looked up again, a report that arrives after another). Dropping the
fill lost a real trade for good (issue 9, item 13: "does not fit the book"); it is held here
instead and tried again after each later report, oldest first. Bounded: a fill that still does
not fit after `max_waits` reports, or that the `max_held` newest push out, is given up and the
desk raises its critical "does not fit the book" alert (the reconciliation with the
exchange's balances then repairs the book). Pure: the desk books, this module only keeps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, TypeVar

from models.core.messages import Fill

__all__ = ["MAX_HELD", "MAX_WAITS", "FillHoldback"]

MAX_HELD: Final = 1_000  # fills held at once (the oldest is given up beyond it)
MAX_WAITS: Final = 50  # later reports a fill may wait for before it is given up

T = TypeVar("T")


@dataclass(slots=True)
class _Held:
    fill: Fill
    reason: str
    waits: int = 0


@dataclass(slots=True)
class FillHoldback:
    held: dict[str, _Held] = field(default_factory=dict)  # by fill id, oldest first
    max_held: int = MAX_HELD
    max_waits: int = MAX_WAITS

    def __len__(self) -> int:
        return len(self.held)

    def hold(self, fill: Fill, reason: str) -> list[tuple[Fill, str]]:
        """Keep `fill` (it did not fit for `reason`); returns the fills given up to make room
        (with their reasons). The same fill reported again is kept once."""
        if fill.fill_id in self.held:
            return []
        self.held[fill.fill_id] = _Held(fill, reason)
        dropped: list[tuple[Fill, str]] = []
        while len(self.held) > self.max_held:
            oldest = self.held.pop(next(iter(self.held)))
            dropped.append((oldest.fill, f"{oldest.reason} (held fills full)"))
        return dropped

    def release(
        self, book: Callable[[Fill], Iterable[T]], give_up: Callable[[Fill, str], T]
    ) -> list[T]:
        """Try every held fill again, oldest first: `book(fill)` books it (its outputs are
        returned) or raises `ValueError` when it still does not fit; after `max_waits`
        tries a fill is given up (`give_up(fill, reason)`, e.g. an alert)."""
        out: list[T] = []
        for fill_id, held in list(self.held.items()):
            try:
                out.extend(book(held.fill))
            except ValueError as err:
                held.waits += 1
                held.reason = str(err)
                if held.waits >= self.max_waits:
                    del self.held[fill_id]
                    reason = f"{held.reason} (still after {held.waits} later reports)"
                    out.append(give_up(held.fill, reason))
                continue
            del self.held[fill_id]
        return out
