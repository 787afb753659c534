"""How far the ingest processes of a cluster may run ahead of the desk's.

Bytewax paces a source only by epochs: a source may read one epoch ahead of the slowest step,
and while it waits it is woken again at once, without pause. Ingest is faster than the desk,
so on a cluster the ingest process either spun through most of the run (2 s epochs: 5.7 of
its 7.2 CPU seconds on the 200k-bar run) or, with epochs longer than the run
(`dataflows.run.UNRECOVERED_CLUSTER_EPOCH`), read everything ahead into process 0's queue
(1M bars: 4.1 GB resident in process 0 against 2.3 GB on one process).

`Lag` counts, in memory the processes share (made before the fork), the desk's lanes each
ingest process has sent and the ones process 0 has taken; a `Paced` partition reads no more
while `MAX_AHEAD` lanes wait, and asks to be woken `WAIT` later instead (no spin: Bytewax
sleeps until then). Process 0 always has lanes to take when a reader waits, so it never waits
on this, and what the desk receives, and in what order, does not change.
"""

from __future__ import annotations

import ctypes
import multiprocessing
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.inputs import StatefulSourcePartition

MAX_AHEAD = 8
"""Lanes (one per ingest batch: up to `FlowSpec.batch_size` records) that may wait for the
desk: about 0.3 s of its work, 40,000 bars."""

WAIT = timedelta(milliseconds=10)
"""How long a reader that is ahead waits before it looks again."""


class Lag:
    """Lanes sent to the desk by each process (slot `process`) and taken by the desk (slot 0),
    in shared memory; each slot is written by one process only."""

    def __init__(self, processes: int) -> None:
        self._slots = multiprocessing.get_context("fork").RawArray(ctypes.c_int64, processes)

    def sent(self, process: int, lanes: int = 1) -> None:
        self._slots[process] += lanes

    def taken(self, lanes: int) -> None:
        self._slots[0] += lanes

    def ahead(self) -> int:
        """Lanes sent and not yet taken."""
        slots = self._slots
        return sum(slots[1:]) - slots[0]


class Paced(StatefulSourcePartition[Any, Any]):
    """A partition that reads nothing while more than `MAX_AHEAD` lanes wait for the desk."""

    def __init__(self, inner: StatefulSourcePartition[Any, Any], lag: Lag) -> None:
        self.inner = inner
        self.lag = lag
        self._waiting = False

    def next_batch(self) -> Iterable[Any]:
        self._waiting = self.lag.ahead() > MAX_AHEAD
        return [] if self._waiting else self.inner.next_batch()

    def next_awake(self) -> datetime | None:
        return datetime.now(UTC) + WAIT if self._waiting else self.inner.next_awake()

    def snapshot(self) -> Any:
        return self.inner.snapshot()

    def close(self) -> None:
        self.inner.close()
