"""INSERTs prepared where the rows are (connectors/store/clickhouse.py `prepare_insert`,
connectors/store/sink.py `prepared_rows`): a cluster process converts its rows, the store's
process sends them (`Store.insert_prepared`, which `Store.insert` is: what the engine stores
from them is checked by the store's integration tests and the e2e cluster goldens)."""

from __future__ import annotations

import pickle
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.store.clickhouse import PreparedInsert, prepare_insert, prepare_inserts
from connectors.store.rows import model_to_row
from connectors.store.sink import prepared_rows
from dataflows.wire import packed
from models.core.messages import Fill, Order
from tests.support import row_strategies as rs
from tests.support.builders import order


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=40)
@given(st.lists(rs.orders(), min_size=1, max_size=300), st.lists(rs.fills(), max_size=5))
def test_a_batch_prepares_one_insert_per_table_with_every_row(
    orders: list[Order], fills: list[Fill]
) -> None:
    rows = [*orders, *fills]
    got = prepare_inserts(rows, "run-1")
    assert [p.table for p in got] == ["orders", "fills"][: 1 + bool(fills)]
    assert [p.rows for p in got] == [len(orders), len(fills)][: 1 + bool(fills)]
    for p in got:
        assert (p.arrow is None) != (p.text is None)
        if p.text is not None:
            assert p.text.count("\n") == p.rows and '"run_id":"run-1"' in p.text
        else:
            assert p.arrow.num_rows == p.rows and set(p.arrow.column("run_id").to_pylist()) == {
                "run-1"
            }


def test_a_prepared_insert_crosses_processes_whole() -> None:
    rows = [order(f"sf-{i}", f"d-{i}", "SIMA", quantity=i + 1) for i in range(400)]
    (arrow,) = prepare_inserts(rows, "r")
    (text,) = prepare_inserts(rows[:3], "r")
    assert arrow.arrow is not None and text.text is not None  # both kinds
    for p in (arrow, text):
        got = pickle.loads(pickle.dumps(packed(p)))
        assert type(got) is PreparedInsert and (got.table, got.rows) == (p.table, p.rows)
        assert got.text == p.text
        assert (got.arrow is None and p.arrow is None) or got.arrow.equals(p.arrow)


def test_a_batch_no_column_holds_stays_rows_for_the_row_by_row_path() -> None:
    """The store writes such a batch row by row and replaces the bad row by an alert: the
    rows go to it as they are."""
    good = order("sf-1", "d-1", "SIMA")
    bad = order("sf-2", "d-2", "SIMA", quantity=Decimal("1E+40"))
    assert model_to_row(good)[0] == "orders"
    assert prepared_rows([good, bad], "r") == [good, bad]
    assert [type(p) for p in prepared_rows([good], "r")] == [PreparedInsert]


def test_no_rows_prepare_an_empty_insert() -> None:
    assert prepare_insert("orders", [], "r") == PreparedInsert("orders", 0)
