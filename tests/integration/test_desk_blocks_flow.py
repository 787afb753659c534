"""The flow's desk step (`DeskLogic`: the partition merge, the driver, the desk) takes blocks
from several partitions exactly as their bars one by one, across snapshots and restarts.

Two partitions (one symbol each) send their bars in batches, each batch followed by the
partition's mark; the same batches go once as events and once as blocks cut at random places.
The rows (expanded) and the desk's state after must be the same; a restart from a snapshot
taken mid-way (blocks waiting in the merge included) changes nothing.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from dataflows.adapters import DeskLogic
from models.core.blocks import BarBlock, expand_rows
from models.core.events import BarEvent
from models.market.merge import OPEN_END, PartitionMark
from tests.unit.test_desk_blocks import InlineGpt, content, gpt_cross, make_settings, stream

PARTS = {"ABC": "m#0", "XYZ": "m#1"}


def batches(events: list[BarEvent], rng: random.Random) -> list[list[BarEvent]]:
    """Each partition's events in its own order, sent in batches of random size."""
    per: dict[str, list[BarEvent]] = {}
    for e in events:
        part = PARTS[e.bar.symbol]
        moved = BarEvent(e.bar, e.features, e.signals, e.branch, part, e.clock_ms, e.seq)
        per.setdefault(part, []).append(moved)
    out: list[list[BarEvent]] = []
    cursors = dict.fromkeys(per, 0)
    while any(cursors[p] < len(per[p]) for p in per):
        p = rng.choice([p for p in per if cursors[p] < len(per[p])])
        size = rng.randint(1, 60)
        out.append(per[p][cursors[p] : cursors[p] + size])
        cursors[p] += size
    return out


def as_blocks(batch: list[BarEvent], rng: random.Random) -> list[Any]:
    names = tuple(batch[0].features.values)
    out: list[Any] = []
    i = 0
    while i < len(batch):
        size = rng.randint(1, 25)
        part = batch[i : i + size]
        out.append(part[0] if len(part) == 1 else BarBlock.of_events(names, part))
        i += size
    return out


def run(
    cfg: Any, gpt: InlineGpt | None, sent: list[list[Any]], restart_at: int
) -> tuple[list[Any], DeskLogic]:
    logic = DeskLogic(cfg, frozenset(PARTS.values()), None, gpt)
    out: list[Any] = []
    for k, items in enumerate(sent):
        if k == restart_at:
            logic = DeskLogic(cfg, frozenset(PARTS.values()), logic.snapshot(), gpt)
        rows, _ = logic.on_batch(items)
        out += rows
    for part in PARTS.values():
        rows, _ = logic.on_batch([PartitionMark(part, OPEN_END)])
        out += rows
    rows, _ = logic.on_eof()
    return out + list(rows), logic


@pytest.mark.parametrize(("seed", "controller"), [(1, "local"), (2, "local"), (3, "gpt")])
def test_blocks_from_two_partitions_match_their_bars(seed: int, controller: str) -> None:
    files = {"ABC": "cross", "XYZ": "threshold-stops"} if controller == "local" else {}
    cfg = make_settings(files, controller=controller)
    gpt = InlineGpt(gpt_cross(40)) if controller == "gpt" else None
    rng = random.Random(seed)
    sent = batches(stream(cfg, seed, 300), rng)
    blocked = [[*as_blocks(b, rng), PartitionMark(b[-1].partition, b[-1].clock_ms)] for b in sent]
    marked = [
        [e for x in b for e in (x.events() if isinstance(x, BarBlock) else [x])] for b in blocked
    ]
    restart = rng.randrange(len(sent))
    per_bar, one = run(cfg, gpt, marked, restart)
    at_once, many = run(cfg, gpt, blocked, restart)
    assert any(isinstance(r, BarBlock) for b in blocked for r in b)
    assert [repr(r) for r in expand_rows(at_once)] == [repr(r) for r in per_bar]
    assert content(many.desk.state()) == content(one.desk.state())
