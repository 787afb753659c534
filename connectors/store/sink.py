"""The Bytewax sinks that write the pipeline's records to ClickHouse and its alerts to people.

Both are fixed-partitioned so that a cluster of processes decides where they live: a partition
is built only in a process that lists it (`list_parts`), and Bytewax routes every item to its
partition's process. Embedded chdb can be opened by one process only, so there the store has one
partition, listed by one process (`dataflows.placement` says which); a process that lists none
never opens the store. One process, as before: one partition each, here.
"""

from __future__ import annotations

import ctypes
import hashlib
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, cast

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from pydantic import BaseModel

from connectors.notify.notifier import Notifier
from connectors.store.clickhouse import PreparedInsert, Store, prepare_inserts
from models.config.settings import ClickHouseConfig
from models.core.blocks import Columns, expand_rows
from models.core.messages import Alert, Severity

_KEPT: set[int] = set()


def keep_thread_state() -> None:
    """Give the calling thread one Python thread state for the rest of its life.

    On a cluster Bytewax runs the flow on a thread Rust started, which has a Python thread
    state only while it holds the GIL: each time it takes the GIL it gets a new one and each
    time it lets go that one is deleted. chdb (pybind11) keeps the thread state it was called
    from, so closing its session later freed a deleted one ("double free or corruption", then a
    hang, every time). One extra `PyGILState_Ensure` that is never released keeps the first
    thread state alive (and saves making one on every call into Python). The main thread has
    its own for good: nothing to do there."""
    ident = threading.get_ident()
    if ident == threading.main_thread().ident or ident in _KEPT:
        return
    ctypes.pythonapi.PyGILState_Ensure()
    _KEPT.add(ident)


STORE_PART = "store-000"
"""The store's one partition in a single process (`ClickHouseSink`'s default)."""


class _StorePartition(StatefulSinkPartition[list[Any], None]):
    def __init__(self, cfg: ClickHouseConfig, run_id: str) -> None:
        keep_thread_state()  # before chdb sees this thread
        self.store = Store.open(cfg, run_id=run_id)
        self.store.apply_schema()
        self.written: dict[str, int] = defaultdict(int)

    def snapshot(self) -> None:
        """Nothing to resume: writes are idempotent (rows replace by id)."""
        return None

    def write_batch(self, items: list[list[BaseModel | Columns | PreparedInsert]]) -> None:
        """Items are one table's rows each, gathered upstream; one INSERT per table per call.
        An item may hold INSERTs prepared where the rows were made (`prepared_rows`): sent
        as they are.

        Column sets (`BarColumns`, `PositionColumns`) are written as columns, never as a row
        per bar. A row that cannot be represented (a value beyond the columns' range) must not
        take the whole pipeline down, and on restart again: the batch is then expanded to rows
        and written row by row, and each unwritable row is replaced by a critical alert naming
        it.
        """
        rows: list[BaseModel | Columns] = []
        for group in items:
            for row in group:
                if type(row) is PreparedInsert:
                    self.written[row.table] += self.store.insert_prepared(row)
                else:
                    rows.append(cast(BaseModel | Columns, row))
        if not rows:
            return
        try:
            written = self.store.insert_models(rows)
        except ValueError:
            written = self._write_row_by_row(list(expand_rows(rows)))
        for table, n in written.items():
            self.written[table] += n

    def _write_row_by_row(self, rows: list[BaseModel]) -> dict[str, int]:
        written: dict[str, int] = defaultdict(int)
        alerts: list[BaseModel] = []
        for row in rows:
            try:
                for table, n in self.store.insert_models([row]).items():
                    written[table] += n
            except ValueError as err:
                alerts.append(unwritable_row_alert(row, err))
        if alerts:
            for table, n in self.store.insert_models(alerts).items():
                written[table] += n
        return written

    def close(self) -> None:
        self.store.close()


def prepared_rows(rows: Sequence[Any], run_id: str, *, embedded: bool = False) -> list[Any]:
    """A batch's INSERTs prepared here (`prepare_insert`) for a store in another process
    (`embedded`: chdb, whose merge on insert lets a batch send only a decision's newest
    version); a batch with a value no column holds stays rows, for the store's row-by-row path
    (which replaces the unwritable row by an alert)."""
    try:
        return list(prepare_inserts(rows, run_id, merged=embedded))
    except ValueError:
        return list(rows)


def unwritable_row_alert(row: BaseModel, err: Exception) -> Alert:
    text = row.model_dump_json()
    ident = hashlib.sha256(text.encode()).hexdigest()[:32]
    return Alert(
        alert_id=f"unwritable-{ident}",
        ts_ms=int(getattr(row, "ts_ms", 0) or getattr(row, "end_ms", 0) or 0),
        severity=Severity.CRITICAL,
        source="clickhouse_sink",
        message=f"{type(row).__name__} not written to the decision log: {err}",
        context={"row": text[:2000]},
    )


class ClickHouseSink(FixedPartitionedSink[list[Any], None]):
    """Idempotent writes: every table replaces rows by their natural id, so the re-emitted
    outputs of a resumed epoch land on the same rows instead of adding new ones. Every row is
    stamped with the run's id (set once here, so the models need not carry it).

    Items are `(key, rows)`: one table's rows under the key they were gathered by. `parts` are
    the store partitions this process holds, `part_of` gives a key's partition (an index into
    all partitions of the cluster, sorted); by default one partition, here, takes everything."""

    def __init__(
        self,
        cfg: ClickHouseConfig,
        run_id: str = "",
        *,
        parts: list[str] | None = None,
        part_of: Callable[[str], int] | None = None,
    ) -> None:
        self.cfg = cfg
        self.run_id = run_id
        self.parts = [STORE_PART] if parts is None else parts
        self.part_of = part_of

    def list_parts(self) -> list[str]:
        return list(self.parts)

    def part_fn(self, item_key: str) -> int:
        return 0 if self.part_of is None else self.part_of(item_key)

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _StorePartition:
        if for_part not in self.parts:  # Bytewax builds listed partitions only
            raise RuntimeError(f"store partition {for_part} asked of a process without it")
        return _StorePartition(self.cfg, self.run_id)


NOTIFY_PART = "notify"


class _NotifyPartition(StatefulSinkPartition[Any, None]):
    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def snapshot(self) -> None:
        return None

    def write_batch(self, items: list[Any]) -> None:
        for alert in items:
            self.notifier.send(alert)  # queues; never blocks or raises


class NotifierSink(FixedPartitionedSink[Any, None]):
    """Alerts to the user (apprise: webhook, mail, Slack, Telegram...). The notifier drops
    what is below its severity, repeated or over its rate limit, in its own thread.

    Items are `(key, alert)`. One partition, in the process that has the notifier: a process
    without one (`notifier` None: it lives in another process of the cluster) lists none, and
    its alerts travel to the one that has it."""

    def __init__(self, notifier: Notifier | None) -> None:
        self.notifier = notifier

    def list_parts(self) -> list[str]:
        return [NOTIFY_PART] if self.notifier is not None else []

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _NotifyPartition:
        if self.notifier is None:
            raise RuntimeError("the notifier was asked of a process without it")
        return _NotifyPartition(self.notifier)
