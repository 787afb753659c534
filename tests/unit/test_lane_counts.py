"""The progress counts of a flow (dataflows/lanes.py): `count_rows` counts a lane at once, and
must leave the counters exactly as `count_row` for each of its rows does, on generated lanes of
every counted table (bars and positions as rows and as column sets, versions of decisions,
rejected orders, several symbols). And the write batches (dataflows/adapters.py
`RowBatchLogic`), which keep a running count of the rows they hold."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dataflows.adapters import RowBatchLogic
from dataflows.lanes import count_row, count_rows
from dataflows.progress import FlowCounters
from models.core.blocks import BarColumns, PositionColumns, count_of
from models.core.messages import PositionSnapshot
from tests.support import builders
from tests.support import row_strategies as rs

SYMBOLS = st.sampled_from(["AAA", "BBB"])
MONEY = st.integers(-(10**6), 10**6).map(lambda n: Decimal(n).scaleb(-2))


@st.composite
def positions(draw: st.DrawFn) -> Any:
    symbol = draw(SYMBOLS)
    if draw(st.booleans()):
        return PositionSnapshot(
            ts_ms=draw(st.integers(0, 10**9)),
            symbol=symbol,
            quantity=Decimal(1),
            avg_cost=Decimal(1),
            mark_price=Decimal(1),
            realized_pnl=draw(MONEY),
            unrealized_pnl=draw(MONEY),
            cash=Decimal(1),
            equity=Decimal(1),
        )
    n = draw(st.integers(0, 3))
    return PositionColumns(
        symbol,
        Decimal(1),
        Decimal(1),
        draw(MONEY),
        Decimal(1),
        list(range(n)),
        [Decimal(1)] * n,
        draw(st.lists(MONEY, min_size=n, max_size=n)),
        [Decimal(1)] * n,
    )


@st.composite
def bars(draw: st.DrawFn) -> Any:
    n = draw(st.integers(1, 3))
    rows = [builders.bar(draw(SYMBOLS), 60_000 * i, 10) for i in range(n)]
    return rows[0] if draw(st.booleans()) else BarColumns.of_bars(rows)


LANES = st.one_of(
    st.tuples(st.just("bars"), st.lists(bars(), max_size=4)),
    st.tuples(st.just("decisions"), st.lists(rs.decisions, max_size=3)),
    st.tuples(st.just("dead_letters"), st.lists(st.just(None), max_size=3)),
    st.tuples(st.just("orders"), st.lists(rs.orders(), max_size=4)),
    st.tuples(st.just("fills"), st.lists(rs.fills(), max_size=4)),
    st.tuples(st.just("positions"), st.lists(positions(), max_size=5)),
    st.tuples(st.just("alerts"), st.lists(rs.alerts, max_size=2)),
)


def _state(c: FlowCounters) -> tuple[Any, ...]:
    return (c.records, c.bars, c.decisions, c.dead_letters, c.orders, c.fills, c.pnl)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(st.lists(LANES, max_size=6))
def test_a_lane_counts_as_its_rows_one_by_one(lanes: list[tuple[str, list[Any]]]) -> None:
    per_row, per_lane = FlowCounters(), FlowCounters()
    for table, rows in lanes:
        for row in rows:
            count_row(per_row, (table, row))
        count_rows(per_lane, (table, rows))
    assert _state(per_lane) == _state(per_row)


@settings(derandomize=True, max_examples=40, deadline=None)
@given(st.lists(st.lists(positions(), max_size=4), max_size=8), st.integers(1, 12), st.data())
def test_row_batches_hold_rows_until_enough(
    batches: list[list[Any]], max_rows: int, data: st.DataObject
) -> None:
    """`RowBatchLogic` gives back every row, in order, as soon as it holds `max_rows` (a column
    set counts its rows) and never before; a restart from its snapshot counts what it held."""
    logic = RowBatchLogic(timedelta(hours=1), max_rows, None)
    pending: list[Any] = []
    for rows in batches:
        got, _ = logic.on_batch([rows])
        pending += rows
        if count_of(pending) >= max_rows:
            assert [r for batch in got for r in batch] == pending
            pending = []
        else:
            assert list(got) == []
        if data.draw(st.booleans()):  # restart from the snapshot
            logic = RowBatchLogic(timedelta(hours=1), max_rows, logic.snapshot())
        assert logic.count == count_of(pending)
    tail, _ = logic.on_eof()
    assert [r for batch in tail for r in batch] == pending
