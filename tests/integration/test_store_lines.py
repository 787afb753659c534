"""The decision-log tables' direct lines (connectors/store/rows.py `LINE_WRITERS`: decisions
with their nested parts as raw JSON, orders, fills, alerts) store exactly what `model_to_row`'s
rows store, on a real engine.

Each generated batch is written twice into one store: through `Store.insert_models` (the
direct lines) under one run id, and as `model_to_row` rows encoded as before
(`clickhouse._row_json`, one JSONEachRow insert) under another; both runs' rows are read back
and compared column by column (types, and decimals at the same exponent). Through both clients
(chdb's session API, and clickhouse-connect on the same embedded engine by a `chdb://` DSN).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from connectors.store.clickhouse import Store, _row_json
from connectors.store.rows import model_to_row
from models.config.settings import ClickHouseConfig
from tests.support import row_strategies as rs

KEYS = {
    "decisions": "decision_id, version",
    "orders": "client_order_id, version",
    "fills": "fill_id",
    "alerts": "alert_id",
}


def _config(kind: str, directory: Path) -> ClickHouseConfig:
    if kind == "chdb":
        return ClickHouseConfig(path=str(directory))
    return ClickHouseConfig(url=f"chdb://{directory}")


@pytest.fixture(scope="module", params=["chdb", "clickhouse-connect"])
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    s = Store.open(_config(request.param, tmp_path_factory.mktemp("ch")))
    try:
        s.apply_schema()
        yield s
    finally:
        s.close()


def _rows_path(store: Store, table: str, models: list[BaseModel]) -> None:
    """The row path: `model_to_row` rows with the run id, encoded one line each."""
    lines = []
    for m in models:
        _, row = model_to_row(m)
        row["run_id"] = store.run_id
        lines.append(_row_json(row))
    backend: Any = store._backend
    backend.insert_json_each_row(store.table(table), b"\n".join(lines).decode() + "\n")


def _read(store: Store, table: str, run_id: str) -> list[dict[str, Any]]:
    # No FINAL: every row written is compared, duplicates of a key included.
    rows = store.query(
        f"SELECT * FROM {store.table(table)} WHERE run_id = {{run:String}}"
        f" ORDER BY {KEYS[table]}, cityHash64(*)",
        {"run": run_id},
    )
    for r in rows:
        r.pop("run_id")
    return rows


def _same(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert got == expected
    for g, e in zip(got, expected, strict=True):
        assert list(g) == list(e)
        for name in g:
            assert type(g[name]) is type(e[name]), name
            if isinstance(g[name], Decimal):
                assert g[name].as_tuple() == e[name].as_tuple(), name


def _check(store: Store, table: str, models: list[BaseModel]) -> None:
    line_run, row_run = f"line-{uuid.uuid4().hex[:8]}", f"row-{uuid.uuid4().hex[:8]}"
    store.run_id = line_run
    try:
        store.insert_models(models)
    except ValueError as line_err:
        store.run_id = row_run
        with pytest.raises(ValueError) as row_err:
            _rows_path(store, table, models)
        assert str(row_err.value) == str(line_err)
        assert _read(store, table, line_run) == []  # nothing of a refused batch
        return
    store.run_id = row_run
    _rows_path(store, table, models)
    got, expected = _read(store, table, line_run), _read(store, table, row_run)
    assert expected  # (rows of one key in one insert may collapse: ReplacingMergeTree)
    _same(got, expected)


_settings = settings(
    derandomize=True,
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_settings
@given(st.lists(rs.decisions, min_size=1, max_size=4))
def test_decision_lines_store_what_rows_store(store: Store, models: list[BaseModel]) -> None:
    _check(store, "decisions", models)


@_settings
@given(st.lists(rs.orders(rs.decimals | rs.too_big), min_size=1, max_size=6))
def test_order_lines_store_what_rows_store(store: Store, models: list[BaseModel]) -> None:
    _check(store, "orders", models)


@_settings
@given(st.lists(rs.fills(rs.decimals | rs.too_big), min_size=1, max_size=6))
def test_fill_lines_store_what_rows_store(store: Store, models: list[BaseModel]) -> None:
    _check(store, "fills", models)


@_settings
@given(st.lists(rs.alerts, min_size=1, max_size=6))
def test_alert_lines_store_what_rows_store(store: Store, models: list[BaseModel]) -> None:
    _check(store, "alerts", models)
