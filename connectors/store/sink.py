"""The Bytewax sink that writes the pipeline's records to ClickHouse."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from pydantic import BaseModel

from connectors.notify.notifier import Notifier
from connectors.store.clickhouse import Store
from models.config.settings import ClickHouseConfig
from models.core.blocks import Columns, expand_rows
from models.core.messages import Alert, Severity


class _StorePartition(StatelessSinkPartition[Any]):
    def __init__(self, cfg: ClickHouseConfig, run_id: str) -> None:
        self.store = Store.open(cfg, run_id=run_id)
        self.store.apply_schema()
        self.written: dict[str, int] = defaultdict(int)

    def write_batch(self, items: list[tuple[str, list[BaseModel | Columns]]]) -> None:
        """Items are (table, rows) lists gathered upstream; one INSERT per table per call.

        Column sets (`BarColumns`, `PositionColumns`) are written as columns, never as a row
        per bar. A row that cannot be represented (a value beyond the columns' range) must not
        take the whole pipeline down, and on restart again: the batch is then expanded to rows
        and written row by row, and each unwritable row is replaced by a critical alert naming
        it.
        """
        rows = [row for _, group in items for row in group]
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


class ClickHouseSink(DynamicSink[Any]):
    """Idempotent writes: every table replaces rows by their natural id, so the re-emitted
    outputs of a resumed epoch land on the same rows instead of adding new ones. Every row is
    stamped with the run's id (set once here, so the models need not carry it)."""

    def __init__(self, cfg: ClickHouseConfig, run_id: str = "") -> None:
        self.cfg = cfg
        self.run_id = run_id

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _StorePartition:
        return _StorePartition(self.cfg, self.run_id)


class _NotifyPartition(StatelessSinkPartition[Any]):
    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def write_batch(self, items: list[Any]) -> None:
        for alert in items:
            self.notifier.send(alert)  # queues; never blocks or raises


class NotifierSink(DynamicSink[Any]):
    """Alerts to the user (apprise: webhook, mail, Slack, Telegram...). The notifier drops
    what is below its severity, repeated or over its rate limit, in its own thread."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _NotifyPartition:
        return _NotifyPartition(self.notifier)
