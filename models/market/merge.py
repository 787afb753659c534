"""Deterministic merge of the per-partition bar streams in front of the desk.

Each market partition emits its bars in its own order, stamped with the partition's clock (the
newest event time it has accepted, never decreasing) and a sequence number, and after every
poll it reports that clock in a `PartitionMark`. The desk must see bars in an order that does
not depend on how the engine interleaved partitions, or a restarted run could decide
differently. So bars wait here and leave in `(clock, partition, seq)` order once every partition
has reported a clock beyond theirs: no partition can still send something that sorts earlier.

A `BarBlock` (a run of one partition's bars, `models.core.blocks`) stands for its bars: it
waits under its first bar's place, and when it leaves, the bars that can leave go as one block
up to the first bar another pending item sorts before (or the horizon); the rest is cut off
(`BarBlock.slice`) and waits under its own first bar's place. So what leaves, expanded, is
exactly what the bars pushed one by one would have released, in the same order.

With one partition the merge is the identity (its own order is already canonical) and nothing
waits. A partition that ended (bounded input) or is idle (live, nothing for a while) stops
holding the others back; the idle rule depends on the wall clock, so it only matters live.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from models.core.blocks import BarBlock

T = TypeVar("T")

OPEN_END = 2**62  # a clock beyond any event time: the partition holds nothing back
_PAST_ALL = 2**63  # a horizon beyond OPEN_END: the end of all input releases everything


@dataclass(frozen=True, slots=True)
class PartitionMark:
    """`partition` will send no bar with a clock below `clock_ms` (OPEN_END: none at all)."""

    partition: str
    clock_ms: int


@dataclass(slots=True)
class OrderedMerge(Generic[T]):
    partitions: frozenset[str]
    marks: dict[str, int] = field(default_factory=dict)
    pending: list[tuple[int, str, int, T]] = field(default_factory=list)

    def push(self, partition: str, clock_ms: int, seq: int, item: T) -> list[T]:
        if len(self.partitions) <= 1:
            return [item]
        heapq.heappush(self.pending, (clock_ms, partition, seq, item))
        return self._release()

    def push_block(self, block: T) -> list[T]:
        """A `BarBlock`: waits under its first bar's place (whole with one partition)."""
        if len(self.partitions) <= 1:
            return [block]
        assert isinstance(block, BarBlock)
        if len(block) == 0:
            return []
        heapq.heappush(self.pending, (block.clock_ms[0], block.partition, block.first_seq, block))
        return self._release()

    def mark(self, mark: PartitionMark) -> list[T]:
        if len(self.partitions) <= 1:
            return []
        self.marks[mark.partition] = mark.clock_ms  # an idle partition's OPEN_END is temporary
        return self._release()

    def flush(self) -> list[T]:
        """End of all input: everything left, in order."""
        return self._release(_PAST_ALL)

    def _release(self, horizon: int | None = None) -> list[T]:
        pending = self.pending
        if not pending:
            return []
        if horizon is None:
            horizon = min((self.marks.get(p, -(2**62)) for p in self.partitions), default=OPEN_END)
        out: list[T] = []
        while pending and pending[0][0] < horizon:
            item: Any = heapq.heappop(pending)[3]
            if type(item) is BarBlock and len(item) > 1:
                cut = _cut(item, horizon, pending[0][:3] if pending else None)
                if cut < len(item):
                    rest: Any = item.slice(cut, len(item))
                    heapq.heappush(
                        pending, (rest.clock_ms[0], rest.partition, rest.first_seq, rest)
                    )
                    item = item.slice(0, cut)
            out.append(item)
        return out


def _cut(block: BarBlock, horizon: int, following: tuple[Any, ...] | None) -> int:
    """How many of the block's first bars leave now (at least one: the first already sorts
    first): those below the horizon that sort before `following`, the next pending place."""
    clocks = block.clock_ms
    cut = bisect_left(clocks, horizon)
    if following is not None:
        part, seq0 = block.partition, block.first_seq
        before = bisect_left(
            range(len(clocks)), following, key=lambda i: (clocks[i], part, seq0 + i)
        )
        cut = min(cut, before)
    return max(cut, 1)
