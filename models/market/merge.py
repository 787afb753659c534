"""Deterministic merge of the per-partition bar streams in front of the desk.

Each market partition emits its bars in its own order, stamped with the partition's clock (the
newest event time it has accepted, never decreasing) and a sequence number, and after every
poll it reports that clock in a `PartitionMark`. The desk must see bars in an order that does
not depend on how the engine interleaved partitions, or a restarted run could decide
differently. So bars wait here and leave in `(clock, partition, seq)` order once every partition
has reported a clock beyond theirs: no partition can still send something that sorts earlier.

With one partition the merge is the identity (its own order is already canonical) and nothing
waits. A partition that ended (bounded input) or is idle (live, nothing for a while) stops
holding the others back; the idle rule depends on the wall clock, so it only matters live.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

OPEN_END = 2**62  # a clock beyond any event time: the partition holds nothing back


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

    def mark(self, mark: PartitionMark) -> list[T]:
        if len(self.partitions) <= 1:
            return []
        self.marks[mark.partition] = mark.clock_ms  # an idle partition's OPEN_END is temporary
        return self._release()

    def flush(self) -> list[T]:
        """End of all input: everything left, in order."""
        out = [entry[3] for entry in sorted(self.pending, key=lambda e: e[:3])]
        self.pending.clear()
        return out

    def _release(self) -> list[T]:
        if not self.pending:
            return []
        horizon = min((self.marks.get(p, -(2**62)) for p in self.partitions), default=OPEN_END)
        out: list[T] = []
        while self.pending and self.pending[0][0] < horizon:
            out.append(heapq.heappop(self.pending)[3])
        return out
