"""Publishing items to the news and social topics: record time = publication time, key = the
first symbol (or none).

The record time is what a replay of the topic orders by and what the ingest's future-skew check
judges, so it is the item's own time, never the time it was fetched or loaded; the key puts an
item beside its symbol's market records when the topic has several partitions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from connectors.kafka.broker import BrokerError
from connectors.kafka.io import DeliveryCounter, make_producer, publish
from models.config.settings import TopicsConfig
from models.core.messages import NewsItem, to_ms
from models.news.entries import TextItem

__all__ = ["ItemSink", "KafkaItemSink", "record_of", "send_items"]


class ItemSink(Protocol):
    def send(self, topic: str, key: bytes | None, value: bytes, ts_ms: int) -> None: ...

    def flush(self) -> None:
        """Wait for every record sent; raise `BrokerError` when one was not delivered."""


def record_of(item: TextItem, topics: TopicsConfig) -> tuple[str, bytes | None, bytes, int]:
    """(topic, key, value, record time) of one item."""
    topic = topics.news if isinstance(item, NewsItem) else topics.social
    key = item.symbols[0].encode() if item.symbols else None
    return topic, key, item.model_dump_json().encode(), to_ms(item.ts)


def send_items(sink: ItemSink, items: Iterable[TextItem], topics: TopicsConfig) -> int:
    sent = 0
    for item in items:
        sink.send(*record_of(item, topics))
        sent += 1
    sink.flush()
    return sent


class KafkaItemSink:
    def __init__(self, bootstrap: str, flush_s: float = 30.0) -> None:
        self.bootstrap = bootstrap
        self.flush_s = flush_s
        self.producer = make_producer(bootstrap, **{"linger.ms": 5})
        self.counter = DeliveryCounter()

    def send(self, topic: str, key: bytes | None, value: bytes, ts_ms: int) -> None:
        publish(self.producer, topic, key, value, ts_ms, on_delivery=self.counter)

    def flush(self) -> None:
        remaining = self.producer.flush(self.flush_s)
        failed, errors = self.counter.failed, self.counter.errors
        self.counter = DeliveryCounter()
        if failed or remaining:
            detail = "; ".join(errors) or f"{remaining} not delivered within {self.flush_s:g} s"
            raise BrokerError(f"news not delivered to {self.bootstrap}: {detail}")
