"""Shared fixtures. One broker serves the whole session; tests isolate by topic, not by broker."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from connectors.broker import LocalBroker, ensure_topics, wait_for_broker


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """KAFKA_BOOTSTRAP when set (e.g. CI with a real Kafka), else a local in-memory Tansu."""
    external = os.environ.get("KAFKA_BOOTSTRAP")
    if external:
        wait_for_broker(external, 10.0)
        yield external
        return
    with LocalBroker(tmp_path_factory.mktemp("broker")) as broker:
        yield broker.bootstrap


@pytest.fixture
def fresh_topics(kafka_bootstrap: str) -> Callable[..., str]:
    """Factory: `fresh_topics("market", partitions=3)` creates and returns a never-used topic."""

    def make(name: str = "t", partitions: int = 1) -> str:
        topic = f"test.{name}.{uuid.uuid4().hex[:10]}"
        ensure_topics(kafka_bootstrap, [topic], partitions)
        return topic

    return make
