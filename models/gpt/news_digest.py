"""The desk's per-symbol news buffer: what the GPT digest chooses from, kept sorted as it grows.

The desk keeps, per configured symbol, the newest `keep` news items and social posts (sorted by
time, kind, id) so a prompt can show a digest of them. A news flood must not stall the bars
behind it: an item about 64 symbols used to rebuild and re-sort 64 lists and convert every kept
item's timestamp again, O(keep log keep) per symbol. Here each item's time is converted once,
and each symbol's items are kept sorted incrementally (entries carrying their sort key, in a
current and a far-future run): an item in time order is an append, a late one a bisect, and
what falls out of the window or over the cap is cut off an end. The result is the same list
the old rebuild produced, item for item:

- items older than `window_ms` before the bars' clock are dropped (the clock is the newest bar
  end seen; before the first bar nothing is dropped by age and the newest `keep` are kept);
- items dated more than `window_ms` after the clock (a forged or broken clock) only fill the
  room the current items leave, earliest first, so a flood of them cannot push current news out;
- of the current items the newest `keep` stay.
Memory stays bounded by `keep` items per symbol, as before.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from models.core.messages import NewsItem, SocialPost, to_ms

__all__ = ["NewsBuffer", "TextItem", "text_key"]

TextItem = NewsItem | SocialPost
# (time ms, kind, id, arrival number, item): the arrival number is unique, so tuples compare
# without ever reaching the item, and equal (time, kind, id) keep their arrival order, as the
# stable sort of (old + new) did.
Entry = tuple[int, str, str, int, TextItem]


def text_key(item: TextItem) -> tuple[int, str, str]:
    """The buffer's order: time (epoch ms), then kind, then id (a total order for ties)."""
    return (to_ms(item.ts), item.type, item.id)


NO_EDGE = 1 << 62  # the edge before the first bar: every item counts as current


@dataclass(slots=True)
class NewsBuffer:
    """Per symbol a slot `[current, future, edge]`: the kept items as sorted entries in two
    runs, `current` (dated up to `edge`, the clock + window when the symbol was last trimmed)
    and `future` (after it); `arrivals` numbers the items added."""

    slots: dict[str, list[Any]] = field(default_factory=dict)
    arrivals: int = 0

    @classmethod
    def from_lists(cls, texts: dict[str, list[TextItem]]) -> NewsBuffer:
        """A buffer from the plain per-symbol lists older snapshots hold (the next `add`
        splits them by its own clock, as the old rebuild did)."""
        buffer = cls()
        for sym, kept in texts.items():
            entries = []
            for item in kept:
                buffer.arrivals += 1
                entries.append((*text_key(item), buffer.arrivals, item))
            buffer.slots[sym] = [sorted(entries), [], NO_EDGE]
        return buffer

    def get(self, symbol: str, default: Sequence[TextItem] = ()) -> Sequence[TextItem]:
        """The symbol's kept items, oldest first."""
        slot = self.slots.get(symbol)
        return default if slot is None else [e[4] for e in slot[0] + slot[1]]

    def __getitem__(self, symbol: str) -> Sequence[TextItem]:
        cur, fut, _ = self.slots[symbol]
        return [e[4] for e in cur + fut]

    def __len__(self) -> int:
        return sum(len(cur) + len(fut) for cur, fut, _ in self.slots.values())

    def add(
        self,
        item: TextItem,
        symbols: Iterable[str],
        clock_ms: int | None,
        window_ms: int,
        keep: int,
    ) -> None:
        """Add one item to each of `symbols` (distinct), then trim each to the rules above.
        `clock_ms`: the bars' clock (None before the first bar); `window_ms` >= 0; `keep` > 0.
        Per symbol: an append (a bisect for a late item) and cuts at the ends; items move
        between the current and future runs only when the clock moves."""
        self.arrivals += 1
        # The time is converted once per item, not once per symbol and kept item.
        entry: Entry = (to_ms(item.ts), item.type, item.id, self.arrivals, item)
        ts = entry[0]
        if clock_ms is None:
            lo, hi = -NO_EDGE, NO_EDGE
        else:
            lo, hi = clock_ms - window_ms, clock_ms + window_ms
        slots = self.slots
        for sym in symbols:
            slot = slots.get(sym)
            if slot is None:
                slot = slots[sym] = [[], [], hi]
            cur, fut, edge = slot
            if hi != edge:  # the clock moved: items change runs
                if hi > edge:
                    if fut and fut[0][0] <= hi:
                        k = bisect_left(fut, (hi + 1,))
                        cur.extend(fut[:k])
                        del fut[:k]
                elif cur and cur[-1][0] > hi:
                    k = bisect_left(cur, (hi + 1,))
                    fut[:0] = cur[k:]
                    del cur[k:]
                slot[2] = hi
            if cur and cur[0][0] < lo:  # too old for any digest from now on
                del cur[: bisect_left(cur, (lo,))]
            if ts > hi:  # dated far ahead: only the room the current items leave
                if not fut or fut[-1] < entry:
                    fut.append(entry)
                else:
                    insort(fut, entry)
            elif ts < lo:
                pass  # too old itself
            elif len(cur) >= keep and entry < cur[0]:
                pass  # older than `keep` current items: the cap would drop it at once
            elif not cur or cur[-1] < entry:  # in time order: the common case
                cur.append(entry)
            else:
                insort(cur, entry)
            over = len(cur) - keep
            if over > 0:
                del cur[:over]
            if fut and len(fut) > keep - len(cur):
                del fut[keep - len(cur) :]
