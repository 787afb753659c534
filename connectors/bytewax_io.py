"""Bytewax sources and sinks: the Kafka input and the ClickHouse output of the pipeline."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from bytewax.connectors.kafka import KafkaSource
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from pydantic import BaseModel

from connectors.clickhouse_store import ROW_CONVERTERS, Store
from models.config import ClickHouseConfig


def market_source(
    bootstrap: str, topics: list[str], *, tail: bool, starting_offset: int, batch_size: int
) -> KafkaSource:
    """Bytewax's KafkaSource assigns partitions itself (no consumer-group join), and its offsets
    are part of the recovery snapshot, which is what makes a restart resume exactly."""
    return KafkaSource(
        [bootstrap],
        topics,
        tail=tail,
        starting_offset=starting_offset,
        batch_size=batch_size,
        raise_on_errors=False,
        add_config={"statistics.interval.ms": "0"},
    )


class _StorePartition(StatelessSinkPartition[Any]):
    def __init__(self, cfg: ClickHouseConfig) -> None:
        self.store = Store.open(cfg)
        self.store.apply_schema()
        self.written: dict[str, int] = defaultdict(int)

    def write_batch(self, items: list[Any]) -> None:
        rows: list[BaseModel] = [i for i in items if type(i) in ROW_CONVERTERS]
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
