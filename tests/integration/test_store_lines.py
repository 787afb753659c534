"""The decision-log tables' direct lines (connectors/store/rows.py `LINE_WRITERS`: decisions
with their nested parts as raw JSON, orders, fills, alerts) and their Arrow tables
(connectors/store/model_columns.py `MODEL_TABLES`: decisions, orders, fills, alerts, signals) store
exactly what `model_to_row`'s rows store, on a real engine.

Each generated batch is written twice into one store: through `Store.insert_models` (the
direct lines for a small batch; with `arrow`, every batch as an Arrow table, however small)
under one run id, and as `model_to_row` rows encoded as before
(`clickhouse._row_json`, one JSONEachRow insert) under another; both runs' rows are read back
and compared column by column (types, and decimals at the same exponent). Through both clients
(chdb's session API, and clickhouse-connect on the same embedded engine by a `chdb://` DSN).
"""

from __future__ import annotations

import contextlib
import math
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
from connectors.store.model_columns import MODEL_TABLES
from connectors.store.rows import model_to_row
from models.config.settings import ClickHouseConfig
from models.core.messages import DecisionRecord, Fill
from tests.support import row_strategies as rs

KEYS = {
    "decisions": "decision_id, version",
    "orders": "client_order_id, version",
    "fills": "fill_id",
    "alerts": "alert_id",
    "signals": "symbol, ts_ms, trigger",
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
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert list(g) == list(e)
        for name in g:
            assert type(g[name]) is type(e[name]), name
            if isinstance(g[name], float) and math.isnan(g[name]):
                assert math.isnan(e[name]), name
                continue
            assert g[name] == e[name], name
            if isinstance(g[name], float):
                assert math.copysign(1.0, g[name]) == math.copysign(1.0, e[name]), name
            if isinstance(g[name], Decimal):
                assert g[name].as_tuple() == e[name].as_tuple(), name


@contextlib.contextmanager
def _arrow_always() -> Iterator[None]:
    """Every batch of a `MODEL_TABLES` model as an Arrow table, however small."""
    saved = dict(MODEL_TABLES)
    MODEL_TABLES.update({kind: (build, 1) for kind, (build, _) in saved.items()})
    try:
        yield
    finally:
        MODEL_TABLES.update(saved)


def _check(store: Store, table: str, models: list[BaseModel], arrow: bool = False) -> None:
    line_run, row_run = f"line-{uuid.uuid4().hex[:8]}", f"row-{uuid.uuid4().hex[:8]}"
    store.run_id = line_run
    try:
        with _arrow_always() if arrow else contextlib.nullcontext():
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


@pytest.mark.parametrize("arrow", [False, True])
@_settings
@given(models=st.lists(rs.decisions, min_size=1, max_size=4))
def test_decision_lines_store_what_rows_store(
    store: Store, arrow: bool, models: list[BaseModel]
) -> None:
    _check(store, "decisions", models, arrow)


@pytest.mark.parametrize("arrow", [False, True])
@_settings
@given(models=st.lists(rs.orders(rs.decimals | rs.too_big), min_size=1, max_size=6))
def test_order_lines_store_what_rows_store(
    store: Store, arrow: bool, models: list[BaseModel]
) -> None:
    _check(store, "orders", models, arrow)


@pytest.mark.parametrize("arrow", [False, True])
@_settings
@given(models=st.lists(rs.fills(rs.decimals | rs.too_big), min_size=1, max_size=6))
def test_fill_lines_store_what_rows_store(
    store: Store, arrow: bool, models: list[BaseModel]
) -> None:
    _check(store, "fills", models, arrow)


@pytest.mark.parametrize("arrow", [False, True])
@_settings
@given(models=st.lists(rs.alerts, min_size=1, max_size=6))
def test_alert_lines_store_what_rows_store(
    store: Store, arrow: bool, models: list[BaseModel]
) -> None:
    _check(store, "alerts", models, arrow)


@pytest.mark.parametrize("arrow", [False, True])
@_settings
@given(models=st.lists(rs.signals, min_size=1, max_size=6))
def test_signal_columns_store_what_rows_store(
    store: Store, arrow: bool, models: list[BaseModel]
) -> None:
    _check(store, "signals", models, arrow)


@st.composite
def _versions(draw: st.DrawFn) -> list[BaseModel]:
    """Decisions with later, equal or earlier versions of some in the same batch."""
    firsts = draw(st.lists(rs.decisions, min_size=1, max_size=3))
    out: list[BaseModel] = list(firsts)
    for d in firsts:
        for v in draw(st.lists(st.integers(0, 2**40), min_size=1, max_size=2)):
            out.append(d.model_copy(update={"version": v, "status": draw(rs.decisions).status}))
    return draw(st.permutations(out))


def _held(store: Store, table: str) -> int:
    """Rows in the table's active parts (every run), what a merge on insert left."""
    got = store.query(
        "SELECT sum(rows) AS n FROM system.parts WHERE active AND database = {db:String}"
        " AND table = {t:String}",
        {"db": store.database, "t": table},
    )
    return int(got[0]["n"]) if got and got[0]["n"] is not None else 0


@_settings
@given(models=_versions())
def test_decisions_sent_as_merged_are_what_the_engine_keeps(
    store: Store, models: list[BaseModel]
) -> None:
    """On chdb a batch of decisions sends only the rows the engine's merge on insert keeps
    (`model_columns.merged_rows`): what is stored, and the rows the parts hold, are the row
    path's (every version sent, the engine dropping the older ones)."""
    before = _held(store, "decisions")
    build, fewest = MODEL_TABLES[DecisionRecord]
    asked: list[bool] = []

    def spy(batch: Any, run_id: str, as_merged: bool = False) -> Any:
        asked.append(as_merged)
        return build(batch, run_id, as_merged=as_merged)

    MODEL_TABLES[DecisionRecord] = (spy, fewest)
    try:
        _check(store, "decisions", models, arrow=True)
    finally:
        MODEL_TABLES[DecisionRecord] = (build, fewest)
    assert asked == [store.backend == "chdb"]
    added = _held(store, "decisions") - before
    kept = len(_read(store, "decisions", store.run_id))  # the row path's run, just written
    assert added == 2 * kept  # each run's parts hold what is read back: no row left to merge


def test_a_large_batch_goes_as_arrow_a_small_one_as_lines(store: Store) -> None:
    """The threshold of `MODEL_TABLES`: which path a batch takes (what it stores is the
    tests above)."""
    fills = [
        Fill(
            fill_id=f"f{i}",
            client_order_id="o",
            decision_id="d",
            symbol="S",
            side="buy",
            quantity=Decimal(1),
            price=Decimal("2.5"),
            fee=Decimal(0),
            ts_ms=i,
        )
        for i in range(MODEL_TABLES[Fill][1])
    ]
    backend: Any = store._backend
    used: list[str] = []
    with contextlib.ExitStack() as stack:
        for name in ("insert_arrow", "insert_json_each_row"):
            original = getattr(backend, name)

            def spy(*args: Any, _name: str = name, _original: Any = original) -> Any:
                used.append(_name)
                return _original(*args)

            stack.enter_context(_patched(backend, name, spy))
        store.insert("fills", fills)
        store.insert("fills", fills[:-1])
    assert used == ["insert_arrow", "insert_json_each_row"]


@contextlib.contextmanager
def _patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, original)
