"""The columnar writer of the per-bar tables (connectors/store/columns.py), without an engine:
its decimal columns hold what the row path's text stores (or refuse what it refuses), its
tables hold the rows' values in the rows' order, and the server backend hands clickhouse-connect
the Arrow table for the qualified table name. Stored values against a real engine:
tests/integration/test_store_columns.py."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from clickhouse_connect.driver.exceptions import Error as ConnectError
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.store.clickhouse import Store
from connectors.store.columns import (
    BAR_FIELDS,
    DECIMAL_TYPE,
    POSITION_FIELDS,
    bars_table,
    decimal_array,
    decimal_values,
    positions_table,
    python_columns,
)
from connectors.store.rows import decimal_text, model_to_row
from connectors.store.server import ServerBackend
from models.core.blocks import BarColumns, PositionColumns, expand_rows
from models.core.messages import Bar, PositionSnapshot

LIMIT = Decimal("99999999999999999999999999.999999999999")
"""The largest value of `Decimal(38, 12)`."""

EDGES = [
    Decimal(0),
    Decimal("-0"),
    Decimal("0E-30"),
    LIMIT,
    LIMIT.copy_negate(),
    Decimal("99999999999999999999999999.9999999999994"),  # rounds down to the limit
    Decimal("99999999999999999999999999.9999999999995"),  # rounds up past it: refused
    Decimal("1E+26"),
    Decimal("1E+25"),
    Decimal("1E-12"),
    Decimal("5E-13"),  # half to even: 0
    Decimal("1.5E-12"),  # 2E-12
    Decimal("2.5E-12"),  # 2E-12
    Decimal("-2.5E-12"),
    Decimal("1.0000000000000000000"),  # exact with trailing zeros beyond the scale
    Decimal("123.4560000000000000000001"),
    Decimal("-0.1666666666666666666666666667"),
    Decimal("NaN"),
    Decimal("Infinity"),
    Decimal("-Infinity"),
]

decimals = st.one_of(
    st.sampled_from(EDGES),
    st.decimals(
        allow_nan=False, allow_infinity=False, places=2, min_value=-(10**6), max_value=10**6
    ),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.builds(
        lambda digits, exp, neg: Decimal((int(neg), tuple(int(d) for d in digits), exp)),
        st.text("0123456789", min_size=1, max_size=40),
        st.integers(-40, 30),
        st.booleans(),
    ),
)


def _row_path(value: Decimal) -> Decimal | type:
    try:
        return Decimal(decimal_text(value))
    except ValueError as err:
        return type(err)


def _columnar(values: list[Decimal]) -> list[Decimal] | type:
    try:
        return list(decimal_array(values).to_pylist())
    except ValueError as err:
        return type(err)


@settings(derandomize=True, max_examples=400, deadline=None)
@given(st.lists(decimals, min_size=1, max_size=6))
def test_decimal_column_holds_the_row_paths_values(values: list[Decimal]) -> None:
    expected = [_row_path(v) for v in values]
    got = _columnar(values)
    if ValueError in expected:  # a value the column cannot hold refuses the whole column
        assert got is ValueError
    else:
        assert got == expected
        assert all(v.as_tuple().exponent == -12 for v in got if isinstance(v, Decimal))


@pytest.mark.parametrize("value", EDGES, ids=str)
def test_each_edge_alone(value: Decimal) -> None:
    expected = _row_path(value)
    got = _columnar([value])
    assert got == (expected if expected is ValueError else [expected])


def test_exact_values_take_arrows_conversion_and_rounding_values_the_row_text() -> None:
    assert decimal_array([Decimal("1.5")]).type == DECIMAL_TYPE
    assert decimal_array([Decimal("1.0000000000015")]).to_pylist() == [Decimal("1.000000000002")]
    mixed = [Decimal("-0"), LIMIT.copy_negate(), Decimal("-5E-13"), Decimal("1.0000000000015")]
    assert decimal_array(mixed).to_pylist() == [
        Decimal(0),
        LIMIT.copy_negate(),
        Decimal(0),
        Decimal("1.000000000002"),
    ]
    with pytest.raises(ValueError, match="does not fit"):
        decimal_array([Decimal("1"), Decimal("1E+26")])
    with pytest.raises(ValueError, match="non-finite"):
        decimal_array([Decimal("NaN")])


# --------------------------------------------------------------------------------------------
# Whole tables: the rows' values, in the rows' order
# --------------------------------------------------------------------------------------------

prices = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, places=2, min_value=0, max_value=10**5),
    st.sampled_from([Decimal("1.0000000000015"), LIMIT, LIMIT.copy_negate(), Decimal(0)]),
)


@st.composite
def bar_columns(draw: st.DrawFn, start: int = 0) -> BarColumns:
    n = draw(st.integers(1, 5))
    symbol = draw(st.sampled_from(["AAPL", "MSFT", "BTC/USDT"]))
    starts = [start + 60_000 * i for i in range(n)]

    def col() -> list[Decimal]:
        return draw(st.lists(prices, min_size=n, max_size=n))

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
    n = draw(st.integers(1, 5))
    pnl = st.one_of(prices, prices.map(Decimal.copy_negate))

    def col() -> list[Decimal]:
        return draw(st.lists(pnl, min_size=n, max_size=n))

    return PositionColumns(
        draw(st.sampled_from(["AAPL", "MSFT"])),
        draw(pnl),
        draw(prices),
        draw(pnl),
        draw(pnl),
        [60_000 * i for i in range(n)],
        col(),
        col(),
        col(),
    )


def _expected(rows: list[Any], run_id: str) -> list[dict[str, Any]]:
    out = []
    for row in expand_rows(rows):
        _, data = model_to_row(row)
        out.append(
            {
                k: Decimal(v) if k not in ("symbol", "run_id") and isinstance(v, str) else v
                for k, v in {**data, "run_id": run_id}.items()
            }
        )
    return out


@settings(derandomize=True, max_examples=100, deadline=None)
@given(
    st.lists(
        st.one_of(bar_columns(), bar_columns().map(lambda c: c.bar(0))), min_size=1, max_size=4
    )
)
def test_bars_table_holds_the_rows(items: list[Any]) -> None:
    table = bars_table(items, "run-1")
    assert table.column_names == list(BAR_FIELDS)
    assert table.to_pylist() == _expected(items, "run-1")


@settings(derandomize=True, max_examples=100, deadline=None)
@given(
    st.lists(
        st.one_of(position_columns(), position_columns().map(lambda c: c.row(0))),
        min_size=1,
        max_size=4,
    )
)
def test_positions_table_holds_the_rows(items: list[Any]) -> None:
    table = positions_table(items, "r")
    assert table.column_names == list(POSITION_FIELDS)
    assert table.to_pylist() == _expected(items, "r")


def test_a_row_of_another_table_is_refused() -> None:
    pos = PositionColumns(
        "A",
        Decimal(1),
        Decimal(1),
        Decimal(0),
        Decimal(0),
        [1],
        [Decimal(1)],
        [Decimal(0)],
        [Decimal(1)],
    )
    with pytest.raises(TypeError):
        bars_table([pos.row(0)], "r")
    with pytest.raises(TypeError):
        positions_table(
            [
                Bar(
                    symbol="A",
                    start_ms=0,
                    end_ms=1,
                    open=1,
                    high=1,
                    low=1,
                    close=1,
                    volume=1,
                    trades=1,
                    vwap=1,
                )
            ],
            "r",
        )


# --------------------------------------------------------------------------------------------
# The server backend: the clickhouse-connect call
# --------------------------------------------------------------------------------------------


class _FakeClient:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []

    def insert_arrow(self, table: str, data: Any, settings: dict[str, Any] | None = None) -> None:
        self.calls.append((table, data, dict(settings or {})))


def _server_store(client: _FakeClient, run_id: str) -> Store:
    backend = object.__new__(ServerBackend)
    backend.where = "http://fake:8123"
    backend._client = client
    backend._errors = ConnectError
    return Store(backend, "stratflow_db", run_id)


def test_server_insert_hands_clickhouse_connect_the_arrow_table() -> None:
    client = _FakeClient()
    store = _server_store(client, "run-7")
    bars = BarColumns(
        "AAPL",
        [0, 60_000],
        [60_000, 120_000],
        [Decimal("1.5"), Decimal(2)],
        [Decimal(3), Decimal(3)],
        [Decimal(1), Decimal("1.999999999999")],
        [Decimal("2.5"), Decimal("-0")],
        [Decimal(100), Decimal("0.001")],
        [3, 4],
        [Decimal("1.25"), Decimal("1.0000000000015")],
    )
    pos = PositionColumns(
        "AAPL",
        Decimal(1),
        Decimal(2),
        Decimal(0),
        Decimal(-5),
        [60_000],
        [Decimal(3)],
        [Decimal(1)],
        [Decimal(-2)],
    )
    assert store.insert_models([bars, pos]) == {"bars": 2, "positions": 1}
    (t1, data1, s1), (t2, data2, _) = client.calls
    assert (t1, t2) == ("`stratflow_db`.`bars`", "`stratflow_db`.`positions`")
    assert s1 == {"input_format_skip_unknown_fields": 0}
    assert isinstance(data1, pa.Table) and data1.column_names == list(BAR_FIELDS)
    assert data1.schema.field("open").type == DECIMAL_TYPE
    assert data1.schema.field("start_ms").type == pa.int64()
    assert data1.to_pylist() == _expected([bars], "run-7")
    assert data2.to_pylist() == _expected([pos], "run-7")


def test_server_insert_of_an_unwritable_value_sends_nothing() -> None:
    client = _FakeClient()
    store = _server_store(client, "r")
    bad = PositionColumns(
        "A",
        Decimal("1E+30"),
        Decimal(0),
        Decimal(0),
        Decimal(0),
        [1],
        [Decimal(1)],
        [Decimal(0)],
        [Decimal(1)],
    )
    with pytest.raises(ValueError, match="does not fit"):
        store.insert_models([bad])
    assert client.calls == []


def test_plain_rows_alone_keep_the_row_path() -> None:
    class Lines(_FakeClient):
        def raw_insert(self, table: str, insert_block: bytes, fmt: str, settings: Any) -> None:
            self.calls.append((table, fmt, {}))

    client = Lines()
    store = _server_store(client, "r")
    snap = PositionSnapshot(
        ts_ms=1,
        symbol="A",
        quantity=1,
        avg_cost=1,
        mark_price=1,
        realized_pnl=0,
        unrealized_pnl=0,
        cash=0,
        equity=1,
    )
    store.insert_models([snap])
    assert client.calls == [("`stratflow_db`.`positions`", "JSONEachRow", {})]


# --------------------------------------------------------------------------------------------
# Reading back: Arrow decimals as the Decimals `Store.query` gives
# --------------------------------------------------------------------------------------------


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.lists(decimals, min_size=0, max_size=8), st.integers(0, 3), st.integers(0, 3))
def test_decimal_values_are_pyarrows_values_at_the_column_scale(
    values: list[Decimal], lo: int, cut: int
) -> None:
    fitting = [v for v in values if _row_path(v) is not ValueError]
    array = decimal_array(fitting) if fitting else pa.array([], DECIMAL_TYPE)
    sliced = array.slice(min(lo, len(array)))  # a non-zero offset into the buffer
    chunked = pa.chunked_array([sliced[:cut], sliced[cut:]], DECIMAL_TYPE)
    for column in (sliced, chunked):
        got, expected = decimal_values(column), sliced.to_pylist()
        assert got == expected
        assert [v.as_tuple() for v in got] == [v.as_tuple() for v in expected]


def test_python_columns_of_a_table() -> None:
    table = pa.table(
        {
            "symbol": pa.array(["A", "B"]).dictionary_encode(),
            "n": pa.array([1, 2], pa.int64()),
            "d": pa.array([Decimal(0), None], DECIMAL_TYPE),
        }
    )
    assert python_columns(table) == {"symbol": ["A", "B"], "n": [1, 2], "d": [Decimal(0), None]}


@st.composite
def long_position_runs(draw: st.DrawFn) -> PositionColumns:
    """Sets long enough to be checked for a value that does not move, and runs of equal values
    written differently (other exponents, -0), needing rounding, or not storable at all."""
    n = draw(st.integers(1, 20))
    value = st.one_of(
        prices,
        st.sampled_from(
            [Decimal("0E-8"), Decimal("-0"), Decimal("1.50"), Decimal("1.5"), Decimal("1E+26")]
        ),
    )

    def col() -> list[Decimal]:
        if draw(st.booleans()):
            one = draw(value)
            return [draw(st.sampled_from([one, one + 0, +one])) for _ in range(n)]
        return draw(st.lists(value, min_size=n, max_size=n))

    return PositionColumns(
        "AAPL",
        draw(prices),
        draw(prices),
        draw(prices),
        draw(prices),
        [60_000 * i for i in range(n)],
        col(),
        col(),
        col(),
    )


@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(long_position_runs(), long_position_runs().map(lambda c: c.row(0))),
        min_size=1,
        max_size=4,
    )
)
def test_positions_runs_of_one_value_hold_the_rows(items: list[Any]) -> None:
    """`_Spread`: a run that holds one value is converted once and repeated; the table is the
    rows' all the same, and a value no row can hold refuses the table as the rows do."""
    try:
        expected: Any = _expected(items, "r")
    except ValueError:
        expected = ValueError
    try:
        got: Any = positions_table(items, "r").to_pylist()
    except ValueError:
        got = ValueError
    assert got == expected
