"""The flow's stateful steps: thin Bytewax adapters around `models/` objects and the driver.

Each adapter does what Bytewax asks of a `StatefulBatchLogic` (take a batch, say when to be
woken, snapshot and restore its state) and delegates the work:
- `IngestLogic`: one topic partition's `models.market.ingest.PartitionIngest`;
- `DeskLogic`: the partition merge (`models.market.merge.OrderedMerge`) in front of the desk,
  and the desk itself run by its driver (`dataflows.driver.DeskDriver`: commands, answers,
  reports, timers);
- `RowBatchLogic`: one table's rows gathered for one ClickHouse insert.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.operators import StatefulBatchLogic
from pydantic import BaseModel

from connectors.exchange.gateway import ExecutionGateway
from connectors.store.rows import ROW_CONVERTERS, table_for
from dataflows.driver import SYSTEM_CLOCK, Clock, DeskDriver, GptLine
from dataflows.lanes import DESK_KEY, DeskInput
from models.config.settings import Settings, with_min_notional
from models.control.commands import ControlEvent
from models.core.blocks import COLUMN_TABLES, BarBlock, count_of
from models.core.events import BarEvent, TextEvent
from models.desk.desk import DeskRow, TradingDesk
from models.market.ingest import IngestOutput, PartitionIngest, RawBatch
from models.market.merge import OrderedMerge, PartitionMark


def _wall_ms() -> int:
    return int(time.time() * 1000)


class IngestLogic(StatefulBatchLogic[RawBatch, IngestOutput, Any]):
    """Adapter: hands each batch to `PartitionIngest`; snapshots exclude the settings.

    The clock guard's clock for producer-stamped records: the wall clock when following
    topics; in a bounded run the wall clock when this state began, kept in the snapshot, so a
    restarted backtest judges every record exactly as the first run did."""

    def __init__(
        self,
        settings: Settings,
        resume: bytes | None,
        *,
        follow: bool = False,
        market_partitions: int = 1,
    ) -> None:
        self.state = st = PartitionIngest(
            settings, market_partitions=market_partitions, blocks=True
        )
        self.started_ms = _wall_ms()
        if resume is not None:
            saved = pickle.loads(resume)
            st.symbols, st.clock_ms, st.seq, st.key = saved[:4]
            if len(saved) > 4:
                st.guard, st.alarm, self.started_ms = saved[4:7]
        if follow:
            st.now_ms, st.clock_name = _wall_ms, "the wall clock at ingest"
        else:
            started = self.started_ms
            st.now_ms, st.clock_name = (lambda: started), "the wall clock when the run started"

    def on_batch(self, values: list[RawBatch]) -> tuple[Iterable[IngestOutput], bool]:
        out: list[IngestOutput] = []
        for batch in values:
            self.state.process_batch(batch, out)
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[IngestOutput], bool]:
        return self.state.flush(), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return None

    def snapshot(self) -> bytes:
        # Pickled here, at the epoch boundary: an immutable copy, cheaper than a deepcopy.
        st = self.state
        state = (st.symbols, st.clock_ms, st.seq, st.key, st.guard, st.alarm, self.started_ms)
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


class DeskLogic(StatefulBatchLogic[DeskInput, DeskRow, Any]):
    """Adapter: bars and news pass the partition merge, then the desk, in that order; the
    driver carries out the desk's commands, so only rows come out.

    `inline`: GPT questions and orders answered before the next event (a backtest), else by
    workers while the flow goes on (`dataflows.driver` says how). The snapshot is the desk's
    state and the merge's; what was still out at a restart is derived from the desk's state
    by the driver."""

    def __init__(
        self,
        settings: Settings,
        partitions: frozenset[str],
        resume: bytes | None,
        gateway: GptLine | None = None,
        inline: bool = True,
        orders: ExecutionGateway | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ):
        venue = "exchange" if orders is not None else "sim"
        if orders is not None and orders.min_notional:
            settings = with_min_notional(settings, orders.min_notional)
        desk = TradingDesk.create(settings, gpt=gateway is not None, venue=venue)
        self.merge: OrderedMerge[BarEvent | BarBlock | TextEvent | ControlEvent] = OrderedMerge(
            partitions
        )
        if resume is not None:
            state, merge = pickle.loads(resume)
            desk.restore(state)
            self.merge = OrderedMerge(partitions, merge.marks, merge.pending)
        self.driver = DeskDriver(desk, gpt=gateway, orders=orders, inline=inline, clock=clock)

    @property
    def desk(self) -> TradingDesk:
        return self.driver.desk

    def on_batch(self, values: list[DeskInput]) -> tuple[Iterable[DeskRow], bool]:
        out: list[DeskRow] = []
        driver, merge = self.driver, self.merge
        driver.poll(out)
        for item in values:
            if isinstance(item, PartitionMark):
                driver.run(merge.mark(item), out)
            elif isinstance(item, BarBlock):  # whole, or cut where another partition's bar sorts
                driver.run(merge.push_block(item), out)
            else:
                driver.run(merge.push(item.partition, item.clock_ms, item.seq, item), out)
        return out, StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[DeskRow], bool]:
        out: list[DeskRow] = []
        self.driver.poll(out)
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[DeskRow], bool]:
        out: list[DeskRow] = []
        self.driver.poll(out)
        self.driver.run(self.merge.flush(), out)
        self.driver.drain(out)
        return out, StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        wake = self.driver.wake_in()
        return None if wake is None else datetime.now(UTC) + wake

    def snapshot(self) -> bytes:
        state = (self.desk.state(), self.merge)
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


class RowBatchLogic(StatefulBatchLogic[list[BaseModel], list[BaseModel], tuple[BaseModel, ...]]):
    """Gathers one table's rows until `max_rows` or `every` has passed since the first one.

    Rows arrive in lists (one per upstream batch, `grouped`). Bytewax's `collect` does this
    too but deep-copies its buffer at every snapshot; the rows are frozen models, so a tuple
    of them is already an immutable snapshot.
    """

    def __init__(self, every: timedelta, max_rows: int, resume: tuple[BaseModel, ...] | None):
        self.every = every
        self.max_rows = max_rows
        self.rows: list[BaseModel] = list(resume or ())
        self.count = count_of(self.rows)
        """Rows held (a column set counts its rows), kept as they come: not recounted."""
        self.due: datetime | None = datetime.now(UTC) + every if self.rows else None

    def _emit(self) -> tuple[Iterable[list[BaseModel]], bool]:
        rows, self.rows, self.due, self.count = self.rows, [], None, 0
        return ([rows] if rows else []), StatefulBatchLogic.DISCARD

    def on_batch(self, values: list[list[BaseModel]]) -> tuple[Iterable[list[BaseModel]], bool]:
        if self.due is None:
            self.due = datetime.now(UTC) + self.every
        for rows in values:
            self.rows.extend(rows)
            self.count += count_of(rows)
        if self.count >= self.max_rows:
            return self._emit()
        return [], StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[list[BaseModel]], bool]:
        return self._emit()

    def on_eof(self) -> tuple[Iterable[list[BaseModel]], bool]:
        return self._emit()

    def notify_at(self) -> datetime | None:
        return self.due

    def snapshot(self) -> tuple[BaseModel, ...]:
        return tuple(self.rows)


# ------------------------------------------------------------------------ batched lanes
Lane = tuple[str, list[Any]]
"""(lane, items): the desk's inputs under `DESK_KEY`, else one table's rows under its name.
Between the flow's steps items travel in these lists, one per lane per batch, so Bytewax's
per-item cost (a Python call in every operator on the way) is paid per batch, not per row."""


def grouped(items: Iterable[Any]) -> list[Lane]:
    """Items in lanes, each lane in the items' order: desk inputs first, then rows by table."""
    lanes: dict[str, list[Any]] = {}
    table_of = _TABLE_OF
    for item in items:
        kind = type(item)
        lane = table_of.get(kind)
        if lane is None:
            lane = DESK_KEY if kind in _DESK_TYPES else table_for(item)  # raises for a stranger
        got = lanes.get(lane)
        if got is None:
            lanes[lane] = [item]
        else:
            got.append(item)
    desk = lanes.pop(DESK_KEY, None)
    return ([(DESK_KEY, desk)] if desk is not None else []) + list(lanes.items())


_TABLE_OF: dict[type, str] = {kind: table for kind, (table, _) in ROW_CONVERTERS.items()}
_TABLE_OF.update(COLUMN_TABLES)
_DESK_TYPES: frozenset[type] = frozenset(
    (BarEvent, BarBlock, TextEvent, ControlEvent, PartitionMark)
)


class IngestLanes(StatefulBatchLogic[RawBatch, Lane, Any]):
    """An `IngestLogic` whose output leaves in lanes (`grouped`); snapshots are its own.

    `together`: everything in the desk's lane instead, rows too (a cluster whose desk and
    store share a process: one crossing, in which a bar block and the bars' rows share their
    columns, instead of the columns packed and unpacked twice); `DeskLanes(rows_through=True)`
    passes the rows on."""

    def __init__(self, inner: IngestLogic, *, together: bool = False) -> None:
        self.inner = inner
        self.together = together

    def _lanes(self, out: list[Any]) -> list[Lane]:
        if self.together:
            return [(DESK_KEY, out)] if out else []
        return grouped(out)

    def on_batch(self, values: list[RawBatch]) -> tuple[Iterable[Lane], bool]:
        out, keep = self.inner.on_batch(values)
        return self._lanes(list(out)), keep

    def on_eof(self) -> tuple[Iterable[Lane], bool]:
        out, keep = self.inner.on_eof()
        return self._lanes(list(out)), keep

    def notify_at(self) -> datetime | None:
        return self.inner.notify_at()

    def snapshot(self) -> Any:
        return self.inner.snapshot()


class DeskLanes(StatefulBatchLogic[list[DeskInput], Lane, Any]):
    """A `DeskLogic` fed lists of desk inputs (one per ingest batch), whose rows leave in lanes
    by table (`grouped`); snapshots are its own. `rows_through`: the lists may hold ingest's
    rows too (`IngestLanes(together=True)`), which leave with the desk's own, in lanes by
    table."""

    def __init__(self, inner: DeskLogic, *, rows_through: bool = False) -> None:
        self.inner = inner
        self.rows_through = rows_through

    def on_batch(self, values: list[list[DeskInput]]) -> tuple[Iterable[Lane], bool]:
        items = [item for batch in values for item in batch]
        if not self.rows_through:
            out, keep = self.inner.on_batch(items)
            return grouped(out), keep
        desk = _DESK_TYPES
        inputs = [item for item in items if type(item) in desk]
        out, keep = self.inner.on_batch(inputs)
        rows = [item for item in items if type(item) not in desk]
        return grouped([*out, *rows]), keep

    def on_notify(self) -> tuple[Iterable[Lane], bool]:
        out, keep = self.inner.on_notify()
        return grouped(out), keep

    def on_eof(self) -> tuple[Iterable[Lane], bool]:
        out, keep = self.inner.on_eof()
        return grouped(out), keep

    def notify_at(self) -> datetime | None:
        return self.inner.notify_at()

    def snapshot(self) -> Any:
        return self.inner.snapshot()
