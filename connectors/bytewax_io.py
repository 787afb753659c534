"""The Bytewax sink that writes the pipeline's records to ClickHouse."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from pydantic import BaseModel

from connectors.clickhouse_store import Store
from models.config import ClickHouseConfig


class _StorePartition(StatelessSinkPartition[Any]):
    def __init__(self, cfg: ClickHouseConfig) -> None:
        self.store = Store.open(cfg)
        self.store.apply_schema()
        self.written: dict[str, int] = defaultdict(int)

    def write_batch(self, items: list[tuple[str, list[BaseModel]]]) -> None:
        """Items are (table, rows) lists gathered upstream; one INSERT per table per call."""
        rows: list[BaseModel] = [row for _, group in items for row in group]
        for table, n in self.store.insert_models(rows).items():
            self.written[table] += n

    def close(self) -> None:
        self.store.close()


class ClickHouseSink(DynamicSink[Any]):
    """Idempotent writes: every table replaces rows by their natural id, so the re-emitted
    outputs of a resumed epoch land on the same rows instead of adding new ones."""

    def __init__(self, cfg: ClickHouseConfig) -> None:
        self.cfg = cfg

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _StorePartition:
        return _StorePartition(self.cfg)
