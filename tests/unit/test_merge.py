"""The partition merge in front of the desk: canonical order whatever the interleaving."""

from __future__ import annotations

import itertools
import pickle
import random
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from models.core.blocks import BarBlock, BarColumns, FeatureColumns
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


# ------------------------------------------------------------------ blocks
Key = tuple[int, str, int]


def block_of(partition: str, keys: list[Key]) -> BarBlock:
    """A block standing for bars at these places (the bars' values do not matter here)."""
    n = len(keys)
    d = [Decimal(1)] * n
    ends = [c for c, _, _ in keys]
    cols = BarColumns("S", ends, ends, d, d, d, d, d, [1] * n, d)
    return BarBlock(cols, FeatureColumns((), [()] * n), {}, {}, partition, ends, keys[0][2])


def places(items: list[Any]) -> list[Key]:
    out: list[Key] = []
    for item in items:
        if isinstance(item, BarBlock):
            out += [(item.clock_ms[i], item.partition, item.seq(i)) for i in range(len(item))]
        else:
            out.append(item)
    return out


@st.composite
def partition_streams(draw: st.DrawFn) -> dict[str, list[list[Key]]]:
    """Per partition, its bars (clock never decreasing, seq consecutive) in pushes: one bar, or
    a block of several."""
    streams: dict[str, list[list[Key]]] = {}
    for p in [f"m#{i}" for i in range(draw(st.integers(2, 3)))]:
        clock, seq, pushes = draw(st.integers(0, 5)), 1, []
        for _ in range(draw(st.integers(0, 8))):
            push = []
            for _ in range(draw(st.integers(1, 6))):
                clock += draw(st.integers(0, 3))
                push.append((clock, p, seq))
                seq += 1
            pushes.append(push)
        streams[p] = pushes
    return streams


@settings(max_examples=200, deadline=None, derandomize=True)
@given(streams=partition_streams(), data=st.data())
def test_blocks_leave_as_their_bars_would_in_any_interleaving(
    streams: dict[str, list[list[Key]]], data: st.DataObject
) -> None:
    """After every push, mark and pickle round trip, what leaves (blocks expanded) is what the
    same bars pushed one by one release; blocks are cut only where another bar sorts between."""
    parts = frozenset(streams)
    by_bar: OrderedMerge[Key] = OrderedMerge(parts)
    by_block: OrderedMerge[Any] = OrderedMerge(parts)
    cursor = dict.fromkeys(streams, 0)
    steps = [p for p, pushes in streams.items() for _ in range(len(pushes) + 1)]
    steps = data.draw(st.permutations(steps))
    for p in steps:
        if data.draw(st.booleans()):
            by_block = pickle.loads(pickle.dumps(by_block))
        pushes = streams[p]
        if cursor[p] < len(pushes):
            push = pushes[cursor[p]]
            cursor[p] += 1
            want = [x for key in push for x in by_bar.push(p, key[0], key[2], key)]
            if len(push) == 1 and data.draw(st.booleans()):
                got = by_block.push(p, push[0][0], push[0][2], push[0])
            else:
                got = by_block.push_block(block_of(p, push))
            assert places(got) == want
            mark = PartitionMark(p, push[-1][0])
        else:
            mark = PartitionMark(p, OPEN_END)
        assert places(by_block.mark(mark)) == by_bar.mark(mark)
    assert places(by_block.flush()) == by_bar.flush()


def test_a_block_is_cut_exactly_where_another_partition_interleaves() -> None:
    merge: OrderedMerge[Any] = OrderedMerge(frozenset({"a", "b"}))
    merge.push_block(block_of("a", [(1, "a", 1), (2, "a", 2), (4, "a", 3), (6, "a", 4)]))
    merge.push("b", 3, 1, (3, "b", 1))
    merge.mark(PartitionMark("b", 5))
    got = merge.mark(PartitionMark("a", 7))
    assert [type(x).__name__ for x in got] == ["BarBlock", "tuple", "BarBlock"]
    assert places(got) == [(1, "a", 1), (2, "a", 2), (3, "b", 1), (4, "a", 3)]
    assert places(merge.flush()) == [(6, "a", 4)]


def test_one_partition_passes_a_block_through() -> None:
    merge: OrderedMerge[Any] = OrderedMerge(frozenset({"a"}))
    block = block_of("a", [(1, "a", 1), (2, "a", 2)])
    assert merge.push_block(block) == [block]
