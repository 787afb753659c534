"""Bytewax (0.21.1) sends a stateful step's key to the worker `dataflows.placement.worker_of`
says: measured on real workers, since the whole cluster layout (desk and store in process 0,
ingest elsewhere) rests on it. Workers here are threads of one process; Bytewax routes keys
between processes by the same worker index (process * workers per process + thread)."""

from __future__ import annotations

import threading
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.run import cli_main
from bytewax.testing import TestingSource

from dataflows.placement import pinned, worker_of

KEYS = [
    "desk",
    "market#0",
    "news#0",
    "social#0",
    "control#0",
    "bars",
    "decisions",
    "positions",
    "market.run-1#0",
    "a",
    "abcdefgh",  # one full SipHash word
    "abcdefghi",
    "",
]


class _Seen(StatelessSinkPartition[Any]):
    def __init__(self, worker: int, seen: dict[str, int], lock: threading.Lock) -> None:
        self.worker, self.seen, self.lock = worker, seen, lock

    def write_batch(self, items: list[Any]) -> None:
        with self.lock:
            for key, _value in items:
                self.seen[key] = self.worker


class _WhereSink(DynamicSink[Any]):
    """Each worker's partition notes the keys it was given (a stateful step's output stays on
    its worker, and a dynamic sink writes where the item is)."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Seen:
        return _Seen(worker_index, self.seen, self.lock)


def where(keys: list[str], workers: int) -> dict[str, int]:
    flow = Dataflow("routing")
    items = op.input("in", flow, TestingSource([(k, 1) for k in keys]))
    kept = op.stateful_map("keyed", items, lambda state, v: (state, v))
    sink = _WhereSink()
    op.output("out", kept, sink)
    cli_main(flow, workers_per_process=workers)  # type: ignore[no-untyped-call]
    return sink.seen


@pytest.mark.parametrize("workers", [2, 3])
def test_keys_land_where_worker_of_says(workers: int) -> None:
    pinned_keys = [pinned(k, w, workers) for k in ("desk", "bars") for w in range(workers)]
    keys = KEYS + pinned_keys
    seen = where(keys, workers)
    assert seen == {k: worker_of(k, workers) for k in keys}
    assert len(set(seen.values())) == workers  # the keys reach every worker, not one
