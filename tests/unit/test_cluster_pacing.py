"""The ingest processes of a cluster read at most `MAX_AHEAD` lanes ahead of the desk
(dataflows/pacing.py): a partition that is ahead reads nothing and asks to be woken later,
and reads again, the same records in the same order, once the desk has taken lanes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from bytewax.inputs import StatefulSourcePartition

from dataflows.pacing import MAX_AHEAD, WAIT, Lag, Paced


class _Records(StatefulSourcePartition[Any, int]):
    def __init__(self, batches: list[list[int]]) -> None:
        self.batches = batches
        self.read = 0

    def next_batch(self) -> Iterable[Any]:
        if self.read == len(self.batches):
            raise StopIteration
        self.read += 1
        return self.batches[self.read - 1]

    def next_awake(self) -> datetime | None:
        return None

    def snapshot(self) -> int:
        return self.read


def test_lag_counts_lanes_sent_by_every_process_against_those_taken() -> None:
    lag = Lag(3)
    lag.sent(1, 4)
    lag.sent(2, 3)
    lag.taken(5)
    assert lag.ahead() == 2


def test_a_partition_ahead_waits_and_then_reads_on() -> None:
    lag = Lag(2)
    inner = _Records([[1, 2], [3], [4, 5]])
    part = Paced(inner, lag)
    assert list(part.next_batch()) == [1, 2]
    assert part.next_awake() is None  # the inner partition's own wish
    lag.sent(1, MAX_AHEAD + 1)
    before = datetime.now(UTC)
    assert list(part.next_batch()) == []
    assert inner.read == 1  # nothing consumed while ahead
    awake = part.next_awake()
    assert awake is not None and awake >= before + WAIT
    assert part.snapshot() == 1
    lag.taken(2)  # the desk takes lanes: MAX_AHEAD - 1 wait
    assert [list(part.next_batch()), list(part.next_batch())] == [[3], [4, 5]]
    assert part.next_awake() is None
