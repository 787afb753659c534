"""The partition merge in front of the desk: canonical order whatever the interleaving."""

from __future__ import annotations

import itertools
import pickle
import random

from models.market.merge import OPEN_END, OrderedMerge, PartitionMark

# (partition, clock, seq) per partition, each partition's own order
STREAMS = {
    "m#0": [(10, 1), (10, 2), (25, 3), (40, 4)],
    "m#1": [(5, 1), (30, 2), (30, 3)],
    "m#2": [(12, 1)],
}
CANONICAL = sorted((c, p, s) for p, items in STREAMS.items() for c, s in items)


def run(interleaving: list[str]) -> list[tuple[int, str, int]]:
    """Feed each partition's bars then its mark, in the given partition interleaving."""
    merge: OrderedMerge[tuple[int, str, int]] = OrderedMerge(frozenset(STREAMS))
    cursors = {p: 0 for p in STREAMS}
    out: list[tuple[int, str, int]] = []
    for p in interleaving:
        items = STREAMS[p]
        if cursors[p] < len(items):
            clock, seq = items[cursors[p]]
            cursors[p] += 1
            out += merge.push(p, clock, seq, (clock, p, seq))
            out += merge.mark(PartitionMark(p, clock))
        else:
            out += merge.mark(PartitionMark(p, OPEN_END))
    return out + merge.flush()


def test_any_interleaving_gives_the_canonical_order() -> None:
    rng = random.Random(7)
    base = [p for p, items in STREAMS.items() for _ in range(len(items) + 1)]
    for _ in range(200):
        order = base[:]
        rng.shuffle(order)
        assert run(order) == CANONICAL


def test_nothing_leaves_before_every_partition_has_passed_it() -> None:
    merge: OrderedMerge[str] = OrderedMerge(frozenset({"a", "b"}))
    assert merge.push("a", 10, 1, "a10") == []
    assert merge.mark(PartitionMark("a", 20)) == []  # b has said nothing yet
    assert merge.mark(PartitionMark("b", 10)) == []  # b could still send clock 10
    assert merge.mark(PartitionMark("b", 11)) == ["a10"]


def test_idle_partition_stops_holding_back_and_may_resume() -> None:
    merge: OrderedMerge[str] = OrderedMerge(frozenset({"a", "b"}))
    merge.push("a", 10, 1, "a10")
    assert merge.mark(PartitionMark("b", OPEN_END)) == []  # a itself is still at 10
    assert merge.mark(PartitionMark("a", 11)) == ["a10"]
    merge.mark(PartitionMark("b", 50))  # b is back
    assert merge.push("a", 60, 2, "a60") == []


def test_single_partition_is_the_identity_and_state_pickles() -> None:
    single: OrderedMerge[int] = OrderedMerge(frozenset({"only"}))
    assert [single.push("only", c, s, s) for c, s in [(5, 1), (3, 2)]] == [[1], [2]]
    multi: OrderedMerge[str] = OrderedMerge(frozenset({"a", "b"}))
    multi.push("a", 1, 1, "x")
    again = pickle.loads(pickle.dumps(multi))
    assert again.mark(PartitionMark("b", 5)) == [] and again.mark(PartitionMark("a", 5)) == ["x"]
    assert list(itertools.chain(again.flush())) == []
