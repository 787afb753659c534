"""Column sets written columnar store exactly what their rows store, on a real engine.

Each generated batch (bars and positions as `BarColumns` / `PositionColumns`, plain rows mixed
in, decimals at the column's limits, digits that must round, zeros, negative P&L) is written
twice into one store: as columns under one run id and as `insert_models(expand_rows(...))`
under another; both runs' rows are read back and compared column by column. Through both
clients (chdb's session API, and clickhouse-connect on the same embedded engine by a `chdb://`
DSN); a real server only when CLICKHOUSE_URL is set.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.store.clickhouse import Store
from models.config.settings import ClickHouseConfig
from models.core.blocks import BarColumns, PositionColumns, expand_rows

LIMIT = Decimal("99999999999999999999999999.999999999999")
TABLE_KEYS = {"bars": "symbol, start_ms", "positions": "symbol, ts_ms"}

edge = st.sampled_from(
    [
        Decimal(0),
        Decimal("-0"),
        LIMIT,
        LIMIT.copy_negate(),
        Decimal("99999999999999999999999999.9999999999994"),
        Decimal("1.0000000000015"),
        Decimal("-2.1234567890125000001"),
        Decimal("5E-13"),
        Decimal("2.5E-12"),
        Decimal("1.0000000000000000000"),
        Decimal("0.1666666666666666666666666667"),
        Decimal("1E+25"),
    ]
)
amount = st.one_of(
    edge,
    st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=0, max_value=10**6),
    st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**20), max_value=10**20),
)
signed = st.one_of(amount, amount.map(Decimal.copy_negate))

_starts = itertools.count(1)


@st.composite
def bar_columns(draw: st.DrawFn) -> BarColumns:
    n = draw(st.integers(1, 6))
    symbol = draw(st.sampled_from(["AAPL", "MSFT", "BTC/USDT"]))
    first = next(_starts) * 10_000_000  # keys never repeat within a batch
    starts = [first + 60_000 * i for i in range(n)]

    def col() -> list[Decimal]:
        return draw(st.lists(amount, min_size=n, max_size=n))

    return BarColumns(
        symbol,
        starts,
        [s + 60_000 for s in starts],
        col(),
        col(),
        col(),
        col(),
        col(),
        draw(st.lists(st.integers(0, 2**62), min_size=n, max_size=n)),
        col(),
    )


@st.composite
def position_columns(draw: st.DrawFn) -> PositionColumns:
    n = draw(st.integers(1, 6))
    first = next(_starts) * 10_000_000

    def col() -> list[Decimal]:
        return draw(st.lists(signed, min_size=n, max_size=n))

    return PositionColumns(
        draw(st.sampled_from(["AAPL", "MSFT"])),
        draw(signed),
        draw(amount),
        draw(signed),
        draw(signed),
        [first + 60_000 * i for i in range(n)],
        col(),
        col(),
        col(),
    )


batches = st.lists(
    st.one_of(
        bar_columns(),
        position_columns(),
        bar_columns().map(lambda c: c.bar(0)),
        position_columns().map(lambda c: c.row(0)),
    ),
    min_size=1,
    max_size=5,
)


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


def _run(store: Store, table: str, run_id: str) -> list[dict[str, Any]]:
    rows = store.query(
        f"SELECT * FROM {store.table(table)} FINAL WHERE run_id = {{run:String}}"
        f" ORDER BY {TABLE_KEYS[table]}",
        {"run": run_id},
    )
    for r in rows:
        r.pop("run_id")
    return rows


def _as_columns(rows: list[dict[str, Any]], names: list[str]) -> dict[str, list[Any]]:
    return {name: [r[name] for r in rows] for name in names}


def _same_values(got: list[Any], expected: list[Any]) -> bool:
    """Equal, of the same types, and decimals at the same exponent (the column's scale)."""
    return (
        got == expected
        and [type(v) for v in got] == [type(v) for v in expected]
        and all(
            g.as_tuple().exponent == e.as_tuple().exponent
            for g, e in zip(got, expected, strict=True)
            if isinstance(g, Decimal)
        )
    )


def _both(store: Store, items: list[Any]) -> tuple[str, str]:
    col, row = f"col-{uuid.uuid4().hex[:8]}", f"row-{uuid.uuid4().hex[:8]}"
    store.run_id = col
    counts = store.insert_models(items)
    store.run_id = row
    assert store.insert_models(list(expand_rows(items))) == counts
    return col, row


@settings(
    derandomize=True,
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(batches)
def test_columns_store_what_their_rows_store(store: Store, items: list[Any]) -> None:
    col, row = _both(store, items)
    for table in TABLE_KEYS:
        got, expected = _run(store, table, col), _run(store, table, row)
        assert got == expected
        for g, e in zip(got, expected, strict=True):
            assert _same_values(list(g.values()), list(e.values()))
        # Read back as columns: the values `query` gives, column by column.
        names = [str(r["name"]) for r in store.query(f"DESCRIBE TABLE {store.table(table)}")]
        names = [n for n in names if n not in ("run_id", "ts")]
        columns = store.query_columns(
            f"SELECT {', '.join(names)} FROM {store.table(table)} FINAL"
            f" WHERE run_id = {{run:String}} ORDER BY {TABLE_KEYS[table]}",
            {"run": col},
        )
        assert list(columns) == names
        for name, values in _as_columns(expected, names).items():
            assert _same_values(columns[name], values), name


def test_query_columns_of_no_rows_names_the_columns(store: Store) -> None:
    assert store.query_columns(
        f"SELECT symbol, open FROM {store.table('bars')} WHERE run_id = 'none'"
    ) == {"symbol": [], "open": []}


def test_read_run_reads_each_symbols_bars_in_time_order(store: Store) -> None:
    from api.backtest import read_run

    store.run_id = run = f"read-{uuid.uuid4().hex[:8]}"
    sets = [
        _two_bars("MSFT", Decimal("-2.5")),
        _two_bars("AAPL", LIMIT),
        _two_bars("ZZ", Decimal(0)),
    ]
    store.insert_models(sets)
    got = read_run(store, run).bars
    assert list(got) == ["AAPL", "MSFT", "ZZ"]
    for s in sets:
        expected = [
            (r["start_ms"], r["end_ms"], r["open"], r["high"], r["low"], r["close"])
            for r in store.query(
                f"SELECT * FROM {store.table('bars')} FINAL WHERE run_id = {{run:String}}"
                " AND symbol = {s:String} ORDER BY start_ms",
                {"run": run, "s": s.symbol},
            )
        ]
        assert len(expected) == 2
        assert all(
            _same_values(list(g), list(e)) for g, e in zip(got[s.symbol], expected, strict=True)
        )
    assert read_run(store, "no-such-run").bars == {}


def _bad_positions() -> PositionColumns:
    return PositionColumns(
        "AAPL",
        Decimal(1),
        Decimal(1),
        Decimal(0),
        Decimal(0),
        [60_000, 120_000],
        [Decimal(1), Decimal(2)],
        [Decimal(0), Decimal("1E+26")],  # one past Decimal(38, 12)
        [Decimal(1), Decimal(2)],
    )


def _two_bars(symbol: str, second_open: Decimal) -> BarColumns:
    one = [Decimal(1), Decimal(1)]
    return BarColumns(
        symbol,
        [0, 60_000],
        [60_000, 120_000],
        [Decimal(1), second_open],
        one,
        one,
        one,
        one,
        [1, 2],
        one,
    )


@pytest.mark.parametrize("value", ["1E+26", "-1E+26", "99999999999999999999999999.9999999999995"])
def test_a_value_beyond_the_column_is_refused_like_its_row(store: Store, value: str) -> None:
    bars = _two_bars("ZZZ", Decimal(value))
    store.run_id = run = f"bad-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ValueError, match="does not fit") as columnar:
        store.insert_models([bars])
    with pytest.raises(ValueError, match="does not fit") as rows:
        store.insert_models(list(expand_rows([bars])))
    assert str(columnar.value) == str(rows.value)
    assert _run(store, "bars", run) == []


def test_reinserting_columns_is_idempotent(store: Store) -> None:
    bars = _two_bars("IDEM", Decimal(2))
    store.run_id = run = f"idem-{uuid.uuid4().hex[:8]}"
    store.insert_models([bars])
    store.insert_models([bars])
    store.insert_models(bars.bars())  # the row path lands on the same rows
    assert len(_run(store, "bars", run)) == 2


@pytest.mark.skipif(not os.environ.get("CLICKHOUSE_URL"), reason="CLICKHOUSE_URL is not set")
def test_server_columns_store_what_their_rows_store() -> None:
    url = os.environ["CLICKHOUSE_URL"]
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        url = urlunsplit((parts.scheme, parts.netloc, "", parts.query, ""))
    database = f"stratflow_test_{uuid.uuid4().hex[:12]}"
    with Store.open(ClickHouseConfig(url=url, database=database)) as s:
        try:
            s.apply_schema()
            items = [
                BarColumns(
                    "AAPL",
                    [0, 60_000],
                    [60_000, 120_000],
                    [LIMIT, Decimal("1.0000000000015")],
                    [Decimal(0), Decimal("-0")],
                    [Decimal("2.5E-12"), Decimal("5E-13")],
                    [LIMIT.copy_negate(), Decimal("0.1666666666666666666666666667")],
                    [Decimal(1), Decimal(2)],
                    [1, 2**62],
                    [Decimal("1E+25"), Decimal("-2.1234567890125000001")],
                ),
                _bad_positions().row(0),
                PositionColumns(
                    "MSFT",
                    Decimal("-3"),
                    Decimal("1.333333333333333333"),
                    Decimal("-12.5"),
                    LIMIT,
                    [60_000],
                    [Decimal("2")],
                    [Decimal("-0.6666666666666666667")],
                    [Decimal("1E+20")],
                ),
            ]
            col, row = _both(s, items)
            for table in TABLE_KEYS:
                assert _run(s, table, col) == _run(s, table, row) != []
        finally:
            s.execute(f"DROP DATABASE IF EXISTS {database}")


class _OldChdbSession:
    """A chdb session as releases before streaming inserts had it (no `send_insert`)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def query(self, *args: Any, **kwargs: Any) -> Any:
        return self._inner.query(*args, **kwargs)

    def close(self) -> None:
        self._inner.close()


def test_a_chdb_without_streaming_inserts_writes_through_a_file(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    if store.backend != "chdb":
        pytest.skip("the chdb session API only")
    shared = store._backend._shared  # type: ignore[union-attr]
    monkeypatch.setattr(shared, "session", _OldChdbSession(shared.session))
    store.run_id = run = f"old-{uuid.uuid4().hex[:8]}"
    bars = _two_bars("OLD", Decimal("1.0000000000015"))
    store.insert_models([bars])
    store.run_id = rows = f"oldrows-{uuid.uuid4().hex[:8]}"
    store.insert_models(bars.bars())
    assert _run(store, "bars", run) == _run(store, "bars", rows) != []
