"""Dedupe by content in a bounded window, and the counts a load or a poll reports.

The same story comes from several feeds, or back under a new id after an edit; a key of its
normalised text (`models.news.entries.content_key`) publishes it once. The window is a count of
keys (oldest forgotten first), so memory stays bounded however long a poller runs; a story
repeated after the window has forgotten it is published again, which the store's one row per
id absorbs when the id is the same.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from models.news.entries import Refused, TextItem, Undated, content_key

__all__ = ["BoundedSet", "NewsCounts", "Sifter"]


@dataclass
class BoundedSet:
    """The last `limit` keys added, oldest forgotten first."""

    limit: int
    keys: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("limit must be >= 1")

    def __contains__(self, key: object) -> bool:
        return key in self.keys

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, key: str) -> bool:
        """Remember `key`; False when it was already there (it then counts as recent again)."""
        if key in self.keys:
            self.keys.move_to_end(key)
            return False
        self.keys[key] = None
        while len(self.keys) > self.limit:
            self.keys.popitem(last=False)
        return True

    def items(self) -> list[str]:
        return list(self.keys)

    @classmethod
    def of(cls, limit: int, keys: Iterable[str]) -> BoundedSet:
        out = cls(limit)
        for key in keys:
            out.add(key)
        return out


@dataclass
class NewsCounts:
    """What a load or a poll did with its entries."""

    published: int = 0
    duplicates: int = 0
    undated: int = 0
    refused: Counter[str] = field(default_factory=Counter)

    def merge(self, other: NewsCounts) -> None:
        self.published += other.published
        self.duplicates += other.duplicates
        self.undated += other.undated
        self.refused.update(other.refused)

    def line(self) -> str:
        refused = sum(self.refused.values())
        return (
            f"published {self.published}, duplicates {self.duplicates}, "
            f"undated dropped {self.undated}, refused {refused}"
        )


@dataclass
class Sifter:
    """Keeps the items to publish: new content, dated; counts the rest."""

    window: BoundedSet
    counts: NewsCounts = field(default_factory=NewsCounts)

    @classmethod
    def of(cls, window: int) -> Sifter:
        return cls(BoundedSet(window))

    def take(
        self, outcome: TextItem | Undated | Refused, counts: NewsCounts | None = None
    ) -> TextItem | None:
        """The item when it is to be published, else None; counted in `counts` (default: the
        sifter's own)."""
        tally = self.counts if counts is None else counts
        if isinstance(outcome, Undated):
            tally.undated += 1
            return None
        if isinstance(outcome, Refused):
            tally.refused[outcome.reason] += 1
            return None
        if not self.window.add(content_key(outcome)):
            tally.duplicates += 1
            return None
        tally.published += 1
        return outcome

    def forget(self, key: str) -> None:
        """Drop a content key again (its item was not delivered after all)."""
        self.window.keys.pop(key, None)

    def refuse(self, reason: str) -> None:
        self.counts.refused[reason] += 1
