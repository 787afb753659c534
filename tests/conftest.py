"""Fixtures for all three lanes: tests/unit (pure), tests/integration (a real broker, chdb, the
exchange emulator or the OpenAI-compatible server) and tests/e2e (whole runs).

One broker serves the whole session; tests isolate by topic, not by broker. The services are
imported inside their fixtures, so the pure lane never pays for importing them.
"""

from __future__ import annotations

import decimal
import os
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from tests.support.webhook import webhook  # noqa: F401 - a fixture for every test module

if TYPE_CHECKING:
    from connectors.sim.exchange_emulator import ExchangeEmulator
    from connectors.sim.openai_server import LocalOpenAIServer

# A developer's real key must never reach a test (nor a flow the tests start in a subprocess):
# tests that want GPT point OPENAI_BASE_URL at the project's local server themselves.
for _name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL"):
    os.environ.pop(_name, None)


@pytest.fixture(autouse=True)
def _own_decimal_context() -> Iterator[None]:
    """ccxt changes the thread's decimal rounding when it formats amounts; a test must not
    inherit that from the one before it (expected values here are computed in Decimal)."""
    with decimal.localcontext():
        yield


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """KAFKA_BOOTSTRAP when set (e.g. CI with a real Kafka), else a local in-memory Tansu."""
    from connectors.kafka.broker import LocalBroker, wait_for_broker

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
    from connectors.kafka.broker import ensure_topics

    def make(name: str = "t", partitions: int = 1) -> str:
        topic = f"test.{name}.{uuid.uuid4().hex[:10]}"
        ensure_topics(kafka_bootstrap, [topic], partitions)
        return topic

    return make


@pytest.fixture
def openai_server() -> Iterator[LocalOpenAIServer]:
    """A fresh OpenAI-compatible server on 127.0.0.1 per test (empty scenario queue, no recorded
    requests); it requires the bearer key `openai_server.api_key`. Starts in milliseconds."""
    from connectors.sim.openai_server import LocalOpenAIServer

    with LocalOpenAIServer(api_key="sk-test-9f8e7d6c5b4a") as server:
        yield server


@pytest.fixture
def exchange_emulator() -> Iterator[ExchangeEmulator]:
    """A fresh Binance-compatible spot exchange on 127.0.0.1 per test: BTC/USDT at 60,000 and
    ETH/USDT at 3,000 (synthetic maker, 5 levels a side), 100,000 USDT and 2 BTC in the account,
    fees 10 bps. `exchange_emulator.client()` is the factory of real `ccxt.binance` clients
    pointed at it (keywords override the config, e.g. `secret="wrong"`, `timeout_ms=300`)."""
    from connectors.sim.exchange_emulator import ExchangeEmulator

    with ExchangeEmulator(
        ["BTC/USDT", "ETH/USDT"],
        prices={"BTC/USDT": "60000", "ETH/USDT": "3000"},
        balances={"USDT": "100000", "BTC": "2"},
    ) as emulator:
        yield emulator
