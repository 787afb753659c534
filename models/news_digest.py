"""The desk's per-symbol news buffer: what the GPT digest chooses from, kept sorted as it grows.

The desk keeps, per configured symbol, the newest `keep` news items and social posts (sorted by
time, kind, id) so a prompt can show a digest of them. A news flood must not stall the bars
behind it: an item about 64 symbols used to rebuild and re-sort 64 lists and convert every kept
item's timestamp again, O(keep log keep) per symbol. Here each item's time is converted once,
and each symbol's list is kept sorted incrementally (entries that carry their sort key): an item in
time order is an append, a late one a bisect, and what falls out of the window or over the cap
is cut off an end. The result is the same list the old rebuild produced, item for item:

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

from models.messages import NewsItem, SocialPost, to_ms

__all__ = ["NewsBuffer", "TextItem", "text_key"]

TextItem = NewsItem | SocialPost
# (time ms, kind, id, arrival number, item): the arrival number is unique, so tuples compare
# without ever reaching the item, and equal (time, kind, id) keep their arrival order, as the
# stable sort of (old + new) did.
Entry = tuple[int, str, str, int, TextItem]


def text_key(item: TextItem) -> tuple[int, str, str]:
    """The buffer's order: time (epoch ms), then kind, then id (a total order for ties)."""
    return (to_ms(item.ts), item.type, item.id)


@dataclass(slots=True)
class NewsBuffer:
    """Per symbol, the kept items as sorted entries; `arrivals` numbers the items added."""

    entries: dict[str, list[Entry]] = field(default_factory=dict)
    arrivals: int = 0

    @classmethod
    def from_lists(cls, texts: dict[str, list[TextItem]]) -> NewsBuffer:
        """A buffer from the plain per-symbol lists older snapshots hold (already sorted)."""
        buffer = cls()
        for sym, kept in texts.items():
            entries = []
            for item in kept:
                buffer.arrivals += 1
                entries.append((*text_key(item), buffer.arrivals, item))
            buffer.entries[sym] = sorted(entries)
        return buffer

    def get(self, symbol: str, default: Sequence[TextItem] = ()) -> Sequence[TextItem]:
        """The symbol's kept items, oldest first."""
        kept = self.entries.get(symbol)
        return default if kept is None else [e[4] for e in kept]

    def __getitem__(self, symbol: str) -> Sequence[TextItem]:
        return [e[4] for e in self.entries[symbol]]

    def __len__(self) -> int:
        return sum(len(v) for v in self.entries.values())

    def add(
        self,
        item: TextItem,
        symbols: Iterable[str],
        clock_ms: int | None,
        window_ms: int,
        keep: int,
    ) -> None:
        """Add one item to each of `symbols` (distinct), then trim each to the rules above.
        `clock_ms`: the bars' clock (None before the first bar); `keep` > 0. Per symbol an
        append (or a bisect for a late item) and cuts at the ends: no re-sort, no rebuild."""
        self.arrivals += 1
        # The time is converted once per item, not once per symbol and kept item.
        entry: Entry = (to_ms(item.ts), item.type, item.id, self.arrivals, item)
        lists = self.entries
        if clock_ms is None:  # before the first bar: the newest `keep`, whatever their age
            for sym in symbols:
                kept = lists.setdefault(sym, [])
                if len(kept) >= keep and entry < kept[0]:
                    continue  # older than all `keep` kept: the cap would drop it at once
                if not kept or kept[-1] < entry:
                    kept.append(entry)
                else:
                    insort(kept, entry)
                if len(kept) > keep:
                    del kept[: len(kept) - keep]
            return
        ts = entry[0]
        lo = clock_ms - window_ms
        hi = clock_ms + window_ms
        for sym in symbols:
            kept = lists.setdefault(sym, [])
            if kept and kept[0][0] < lo:  # too old for any digest from now on
                del kept[: bisect_left(kept, (lo,))]
            n = len(kept)
            # the items dated up to `hi` (the current ones) come first
            current = n if not n or kept[-1][0] <= hi else bisect_left(kept, (hi + 1,))
            if ts < lo:
                pass  # too old itself
            elif ts <= hi and current >= keep and entry < kept[0]:
                pass  # older than `keep` current items: the cap would drop it at once
            else:
                if not n or kept[-1] < entry:  # in time order: the common case
                    kept.append(entry)
                else:
                    insort(kept, entry)
                n += 1
                current += ts <= hi
            dropped = current - keep if current > keep else 0
            room = keep - current + dropped  # what the far-future items may take
            if n - current > room:
                del kept[current + room :]
            if dropped:
                del kept[:dropped]
