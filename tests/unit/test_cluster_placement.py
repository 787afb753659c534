"""Where a cluster's keys and partitions live (dataflows/placement.py). Whether Bytewax really
sends a key where `worker_of` says is measured in tests/integration/test_cluster_routing.py."""

from __future__ import annotations

import sys
import types

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflows.cluster import CLUSTER_FROM_MESSAGES, default_processes, store_may_move
from dataflows.placement import Placement, pinned, siphash13, worker_of
from models.config.settings import ClickHouseConfig, Settings, SymbolSpec

keys = st.text(min_size=0, max_size=40)


@pytest.mark.parametrize(
    ("message", "digest"),
    [
        (b"", 0xD1FBA762150C532C),
        (b"siphash", 0x8264CEECCB16BCBE),
        (b"digest-sip_hash", 0xCE31007E34130C0A),  # a full word and a 7-byte tail
    ],
)
def test_siphash13_with_zero_keys_matches_published_vectors(message: bytes, digest: int) -> None:
    assert siphash13(message) == digest


@given(keys, st.integers(1, 6), st.data())
def test_a_pinned_key_lands_on_its_worker(key: str, workers: int, data: st.DataObject) -> None:
    worker = data.draw(st.integers(0, workers - 1))
    placed = pinned(key, worker, workers)
    assert worker_of(placed, workers) == worker
    assert placed == key or placed.startswith(key + "@")
    assert pinned(key, worker, workers) == placed  # the same in every process


@given(keys)
def test_one_worker_keeps_every_key(key: str) -> None:
    assert pinned(key, 0, 1) == key


def test_pinning_outside_the_cluster_is_refused() -> None:
    with pytest.raises(ValueError):
        pinned("desk", 2, 2)
    with pytest.raises(ValueError):
        Placement(2, 2)


PARTS = ["market#0", "market#1", "market#2", "news#0", "social#0", "control#0"]


@pytest.mark.parametrize("processes", [2, 3, 4])
def test_ingest_is_spread_over_the_other_processes(processes: int) -> None:
    places = [Placement(processes, p) for p in range(processes)]
    local = [set(pl.local_parts(PARTS)) for pl in places]
    assert local[0] == set()  # process 0 holds the desk and the store, reads nothing
    assert set().union(*local) == set(PARTS)
    assert sum(len(parts) for parts in local) == len(PARTS)  # each part read once
    keys = places[0].ingest_keys(PARTS)
    for p, parts in enumerate(local):
        assert all(worker_of(keys[part], processes) == p for part in parts)
        assert places[p].ingest_keys(PARTS) == keys  # every process keys them alike


def test_one_process_keeps_the_flow_as_it_was() -> None:
    one = Placement()
    assert one.local_parts(PARTS) == PARTS
    assert one.ingest_keys(PARTS) == {p: p for p in PARTS}
    assert one.desk_key("desk") == "desk"
    assert one.table_key("bars") == "bars"
    assert one.store_parts() == ["store-000"]


@pytest.mark.parametrize("processes", [2, 3])
def test_embedded_store_is_written_in_process_zero_only(processes: int) -> None:
    places = [Placement(processes, p) for p in range(processes)]
    assert [pl.store_parts() for pl in places] == [["store-000"]] + [[]] * (processes - 1)
    for pl in places:
        key = pl.table_key("bars")
        assert worker_of(key, processes) == 0  # gathered where it is written
        assert pl.store_part_of(key) == 0
    assert places[0].desk_key("desk") == places[1].desk_key("desk")
    assert worker_of(places[0].desk_key("desk"), processes) == 0


def test_a_server_store_is_written_where_the_rows_are_made() -> None:
    places = [Placement(3, p, shared_store=True) for p in range(3)]
    parts = sorted(part for pl in places for part in pl.store_parts())
    assert parts == ["store-000", "store-001", "store-002"]
    for p, pl in enumerate(places):
        key = pl.table_key("bars")
        assert worker_of(key, 3) == p
        assert parts[pl.store_part_of(key)] == pl.store_parts()[0]


def test_a_backtest_runs_on_two_processes_when_it_is_long_and_there_are_two_cpus() -> None:
    assert default_processes(CLUSTER_FROM_MESSAGES, cpus=2) == 2
    assert default_processes(CLUSTER_FROM_MESSAGES - 1, cpus=8) == 1  # measured: no gain
    assert default_processes(10 * CLUSTER_FROM_MESSAGES, cpus=1) == 1
    assert default_processes(0) == 1


@pytest.mark.parametrize("processes", [2, 3, 4])
def test_rows_apart_puts_the_embedded_store_in_process_one(processes: int) -> None:
    """A backtest's layout: the store in process 1; every process gathers its own rows
    (nothing crosses as rows) and sends the INSERTs they make to process 1's partition."""
    places = [Placement(processes, p, rows_apart=True) for p in range(processes)]
    assert [pl.store_parts() for pl in places] == [[], ["store-001"]] + [[]] * (processes - 2)
    for p, pl in enumerate(places):
        assert not pl.together  # ingest's rows stay out of the desk's lane
        assert pl.store_process == 1
        key = pl.table_key("decisions")
        assert worker_of(key, processes) == p == pl.gather_process
        assert pl.store_part_of(key) == 0  # the one partition there is
    assert worker_of(places[0].desk_key("desk"), processes) == 0
    assert places[0].local_parts(PARTS) == []  # the desk's process still reads nothing


def test_rows_apart_with_a_server_writes_the_desks_rows_in_process_one() -> None:
    places = [Placement(3, p, shared_store=True, rows_apart=True) for p in range(3)]
    parts = sorted(part for pl in places for part in pl.store_parts())
    assert parts == ["store-001", "store-002"]  # process 0 opens no store
    for p, pl in enumerate(places):
        key = pl.table_key("bars")
        assert worker_of(key, 3) == p
        assert parts[pl.store_part_of(key)] == f"store-00{max(p, 1)}"


def test_the_default_layouts_are_unchanged() -> None:
    """Without `rows_apart` the desk's process writes the embedded store and takes ingest's
    rows with the desk's inputs (one crossing), as before; one process ignores the flag."""
    assert Placement(2, 1).together and not Placement(2, 1, shared_store=True).together
    assert Placement(2, 0).rows_process == 0 == Placement(1, 0, rows_apart=True).rows_process
    assert Placement(1, 0, rows_apart=True).store_parts() == ["store-000"]
    assert not Placement(1, 0).together


def test_the_store_moves_to_a_forked_process_only_where_it_can(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Embedded chdb started in this process cannot be used by a forked child (it crashed);
    a server can always be written from anywhere."""
    embedded = Settings(symbols={"SIMA": SymbolSpec()})
    server = embedded.model_copy(
        update={"clickhouse": ClickHouseConfig(url="http://localhost:8123")}
    )
    monkeypatch.delitem(sys.modules, "chdb", raising=False)
    assert store_may_move(embedded) and store_may_move(server)
    monkeypatch.setitem(sys.modules, "chdb", types.ModuleType("chdb"))
    assert not store_may_move(embedded) and store_may_move(server)
