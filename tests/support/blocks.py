"""Ingest's output with its bar events as blocks, for checking the desk's block path in a whole
run before ingest makes blocks itself: consecutive `BarEvent`s of one symbol and partition (seq
consecutive) among the desk's inputs become one `BarBlock` (`BarBlock.of_events`). `blocks_on`
patches `IngestLogic` so (a test's monkeypatch undoes it)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from dataflows.adapters import IngestLogic
from models.core.blocks import BarBlock
from models.core.events import BarEvent, TextEvent
from models.market.merge import PartitionMark

_DESK = (BarEvent, BarBlock, TextEvent, PartitionMark)


def blocked(items: Iterable[Any]) -> list[Any]:
    """The desk's inputs, runs of bar events as blocks, then every other item in order (the
    flow splits them into lanes: the order between lanes does not matter)."""
    desk: list[Any] = []
    rest: list[Any] = []
    run: list[BarEvent] = []

    def close() -> None:
        if len(run) > 1:
            desk.append(BarBlock.of_events(tuple(run[0].features.values), run))
        else:
            desk.extend(run)
        run.clear()

    for item in items:
        if not isinstance(item, _DESK):
            rest.append(item)
            continue
        if isinstance(item, BarEvent) and run:
            last = run[-1]
            if (
                item.bar.symbol == last.bar.symbol
                and item.partition == last.partition
                and item.seq == last.seq + 1
                and tuple(item.features.values) == tuple(last.features.values)
            ):
                run.append(item)
                continue
        close()
        if isinstance(item, BarEvent):
            run.append(item)
        else:
            desk.append(item)
    close()
    return desk + rest


def blocks_on(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make every `IngestLogic` send its bar events as blocks; the sizes of the blocks sent
    are appended to the list returned."""
    on_batch, on_eof = IngestLogic.on_batch, IngestLogic.on_eof
    sizes: list[int] = []

    def counted(out: Iterable[Any]) -> list[Any]:
        items = blocked(out)
        sizes.extend(len(x) for x in items if isinstance(x, BarBlock))
        return items

    def batch(self: IngestLogic, values: list[Any]) -> tuple[Iterable[Any], bool]:
        out, keep = on_batch(self, values)
        return counted(out), keep

    def eof(self: IngestLogic) -> tuple[Iterable[Any], bool]:
        out, keep = on_eof(self)
        return counted(out), keep

    monkeypatch.setattr(IngestLogic, "on_batch", batch)
    monkeypatch.setattr(IngestLogic, "on_eof", eof)
    return sizes
