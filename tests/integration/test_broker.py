"""The local broker and the Kafka helpers, against a real Tansu process (no mocks)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException

from connectors.kafka.broker import (
    BrokerError,
    LocalBroker,
    ensure_topics,
    resolve_bootstrap,
    wait_for_broker,
)
from connectors.kafka.io import (
    DeliveryCounter,
    make_producer,
    publish,
    read_topic,
    topic_end_offsets,
)
from models.config.settings import KafkaConfig

pytestmark = pytest.mark.kafka


def test_roundtrip_keys_values_timestamps(
    kafka_bootstrap: str, fresh_topics: Callable[..., str]
) -> None:
    topic = fresh_topics("roundtrip", partitions=3)
    producer = make_producer(kafka_bootstrap)
    counter = DeliveryCounter()
    sent = [
        (f"K{i % 7}".encode(), f'{{"n": {i}}}'.encode(), 1_700_000_000_000 + i) for i in range(500)
    ]
    for key, value, ts in sent:
        publish(producer, topic, key, value, ts, on_delivery=counter)
    assert producer.flush(10) == 0
    assert (counter.delivered, counter.failed) == (500, 0)

    records = read_topic(kafka_bootstrap, topic, timeout_s=20)
    assert sorted((r.key, r.value, r.timestamp_ms) for r in records) == sorted(sent)
    # One key, one partition: that is what keeps a symbol's events in order.
    partitions_of_key: dict[bytes | None, set[int]] = {}
    for r in records:
        partitions_of_key.setdefault(r.key, set()).add(r.partition)
    assert all(len(p) == 1 for p in partitions_of_key.values())
    for part in {r.partition for r in records}:
        values = [int(r.value[6:-1]) for r in records if r.partition == part]
        assert values == sorted(values), "per-partition order must be the publish order"


def test_end_offsets_are_exact_after_batched_produce(
    kafka_bootstrap: str, fresh_topics: Callable[..., str]
) -> None:
    # Tansu's ListOffsets(latest) under-reports after multi-record batches; the helper must not.
    topic = fresh_topics("ends", partitions=2)
    producer = make_producer(kafka_bootstrap)
    for i in range(5000):
        publish(producer, topic, b"A" if i % 2 else b"B", b"x" * 20)
    assert producer.flush(10) == 0
    ends = topic_end_offsets(kafka_bootstrap, topic)
    assert sum(ends.values()) == 5000
    assert len(read_topic(kafka_bootstrap, topic)) == 5000


def test_read_empty_topic_and_missing_topic(
    kafka_bootstrap: str, fresh_topics: Callable[..., str]
) -> None:
    topic = fresh_topics("empty", partitions=2)
    assert read_topic(kafka_bootstrap, topic, timeout_s=5) == []
    assert topic_end_offsets(kafka_bootstrap, topic) == {0: 0, 1: 0}
    with pytest.raises(BrokerError, match="does not exist"):
        read_topic(kafka_bootstrap, "test.no-such-topic", timeout_s=5)


def test_ensure_topics_is_idempotent(kafka_bootstrap: str) -> None:
    names = [f"test.idem.{time.time_ns()}.{i}" for i in range(3)]
    assert ensure_topics(kafka_bootstrap, names, 2) == dict.fromkeys(names, 2)
    # Again, with another partition count: existing topics are left as they are.
    assert ensure_topics(kafka_bootstrap, [*names, names[0]], 4) == dict.fromkeys(names, 2)
    extra = f"test.idem.{time.time_ns()}.x"
    assert ensure_topics(kafka_bootstrap, [names[0], extra], 1) == {names[0]: 2, extra: 1}


def test_local_broker_lifecycle_and_errors(tmp_path: Path) -> None:
    with LocalBroker(tmp_path) as broker:
        assert broker.running
        assert broker.started_in_s is not None and broker.started_in_s < 10
        port = int(broker.bootstrap.rsplit(":", 1)[1])
        with pytest.raises(BrokerError, match=f"port {port} .* already in use"):
            LocalBroker(tmp_path, port=port).start()
    assert not broker.running
    assert broker.log_path is not None and "listening on" in broker.log_path.read_text()
    with pytest.raises(BrokerError, match="not running"):
        _ = broker.bootstrap
    with pytest.raises(BrokerError, match="binary missing"):
        LocalBroker(tmp_path, binary=str(tmp_path / "no-tansu")).start()


def _refusing_address() -> Iterator[str]:
    """host:port of a bound socket that does not listen: a connection there is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def refusing() -> Iterator[str]:
    yield from _refusing_address()


def _no_waiting(_s: float) -> None:
    raise AssertionError("waited: a refused connection must be reported at once")


@pytest.mark.parametrize("extra", ["", ",{addr}", " , {addr}"])
def test_a_refused_connection_is_reported_at_once(refusing: str, extra: str) -> None:
    """A timeout far beyond any test's life and a sleep that fails: the error can only come
    from the refusal path, on a loaded machine as on an idle one."""
    bootstrap = refusing + extra.format(addr=refusing)
    with pytest.raises(BrokerError) as info:
        wait_for_broker(bootstrap, 1e9, label="--bootstrap", sleep=_no_waiting)
    assert str(info.value) == f"broker not reachable at --bootstrap={bootstrap}: connection refused"


def test_an_unknown_host_is_reported_at_once() -> None:
    with pytest.raises(BrokerError, match=r"nowhere\.invalid:9092: unknown host$"):
        wait_for_broker("nowhere.invalid:9092", 1e9, sleep=_no_waiting)


def test_a_broker_being_started_is_waited_for_until_the_timeout(refusing: str) -> None:
    """`wait_if_refused` (our own broker starting up): the clock is injected, so the timeout is
    reached after exactly the polls it allows, however slow the machine."""
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    with pytest.raises(BrokerError) as info:
        wait_for_broker(refusing, 0.5, wait_if_refused=True, clock=lambda: now[0], sleep=sleep)
    assert str(info.value) == (
        f"broker not reachable at KAFKA_BOOTSTRAP={refusing} within 0.5 s (connection refused)"
    )
    assert now[0] == pytest.approx(0.5, abs=0.051)


def test_unreachable_bootstrap_is_one_clear_line(refusing: str) -> None:
    cfg = KafkaConfig(bootstrap=refusing)
    with pytest.raises(BrokerError) as info:
        resolve_bootstrap(cfg, timeout_s=1e9)
    assert str(info.value) == (
        f"broker not reachable at KAFKA_BOOTSTRAP={refusing}: connection refused"
    )
    assert resolve_bootstrap(KafkaConfig()) is None
    with pytest.raises(BrokerError, match="not host:port"):
        wait_for_broker("localhost", 0.1)


def test_a_broker_that_does_not_answer_is_asked_once_per_topic_not_per_record() -> None:
    """Publishing a page of keyed records while the broker is down costs one metadata wait,
    not one per record (the market feed used to wait 10 s a trade before failing the page)."""
    producer = make_producer("127.0.0.1:9")
    asked: list[str] = []

    def list_topics(topic: str, timeout: float) -> None:
        asked.append(topic)
        raise KafkaException(KafkaError(KafkaError._TRANSPORT))

    producer.list_topics = list_topics  # type: ignore[method-assign]
    assert [producer.partition_for("t", key) for key in (b"A", b"B", b"A")] == [None] * 3
    assert asked == ["t"]
    assert producer.partition_for("other", b"A") is None
    assert asked == ["t", "other"]
