"""Items crossing processes (dataflows/wire.py): what arrives is what was sent, field for
field and type for type, column sets included (their Decimals with the same digits and
exponent, their floats to the bit)."""

from __future__ import annotations

import math
import pickle
import struct
from decimal import Decimal
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from connectors.store.rows import forget_json, message_json
from dataflows.wire import Packed, packed, shipped, unpacked
from models.core.blocks import BarColumns, PositionColumns
from models.core.messages import Alert, DecisionRecord, Fill, Order, OrderStatus, Severity, Side
from models.core.packed import BarFloats
from tests.support import row_strategies as rs

decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None) | st.sampled_from(
    [Decimal("1.50"), Decimal("-0"), Decimal("1E+3"), Decimal("0.000"), Decimal("NaN")]
)
floats = st.floats(allow_nan=True, allow_infinity=True)


def crossed(item: Any) -> Any:
    """What a step in another process receives: Bytewax unpickles what it pickled."""
    return pickle.loads(pickle.dumps(packed(item)))


def same_decimals(a: list[Decimal], b: list[Decimal]) -> bool:
    return [type(x) for x in a] == [type(x) for x in b] and [str(x) for x in a] == [
        str(x) for x in b
    ]


def same_floats(a: list[float], b: list[float]) -> bool:
    return [struct.pack("<d", x) for x in a] == [struct.pack("<d", x) for x in b]


@st.composite
def bar_columns(draw: st.DrawFn) -> BarColumns:
    n = draw(st.integers(1, 12))
    ints = st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n)
    decs = st.lists(decimals, min_size=n, max_size=n)
    flts = st.lists(floats, min_size=n, max_size=n)
    with_floats = draw(st.booleans())
    return BarColumns(
        draw(st.text(max_size=8)),
        draw(ints),
        draw(ints),
        draw(decs),
        draw(decs),
        draw(decs),
        draw(decs),
        draw(decs),
        draw(st.lists(st.integers(0, 2**70), min_size=n, max_size=n)),  # past int64 too
        draw(decs),
        BarFloats(*(np.array(draw(flts), np.float64) for _ in range(4))) if with_floats else None,
    )


@settings(suppress_health_check=[HealthCheck.too_slow])  # ten columns of values per example
@given(bar_columns())
def test_bar_columns_arrive_as_sent(cols: BarColumns) -> None:
    got = crossed(cols)
    assert type(got) is BarColumns
    assert got.symbol == cols.symbol
    assert got.start_ms == cols.start_ms and got.end_ms == cols.end_ms
    assert got.trades == cols.trades and all(type(t) is int for t in got.trades)
    for name in ("open", "high", "low", "close", "volume", "vwap"):
        assert same_decimals(getattr(got, name), getattr(cols, name)), name
    if cols.floats is None:
        assert got.floats is None
    else:
        assert got.floats is not None
        for name in ("close", "high", "low", "volume"):
            assert same_floats(getattr(got.floats, name), getattr(cols.floats, name)), name


@given(
    st.lists(st.tuples(st.integers(0, 2**40), decimals, decimals, decimals), min_size=1),
    decimals,
)
def test_position_columns_arrive_as_sent(
    rows: list[tuple[int, Decimal, Decimal, Decimal]], q: Decimal
) -> None:
    cols = PositionColumns(
        "SIMA",
        q,
        Decimal("10.5"),
        Decimal(0),
        Decimal("-3.25"),
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
    )
    got = crossed(cols)
    assert type(got) is PositionColumns
    assert str(got.quantity) == str(q) and got.ts_ms == cols.ts_ms
    for name in ("mark_price", "unrealized_pnl", "equity"):
        assert same_decimals(getattr(got, name), getattr(cols, name)), name


def test_mixed_lists_keep_their_types() -> None:
    """A list that is not all Decimals, all ints or all floats travels as it is."""
    mixed = BarColumns(
        "X",
        [1, 2],
        [3, 4],
        [Decimal(1), 2],  # type: ignore[list-item]
        [Decimal(1), Decimal(2)],
        [Decimal(1), Decimal(2)],
        [Decimal(1), Decimal(2)],
        [Decimal(1), Decimal(2)],
        [1, True],
        [Decimal(1), Decimal(2)],
        BarFloats([1.0, 2], [1.0, 2.0], [1.0, 2.0], [math.nan, 2.0]),  # type: ignore[arg-type]
    )
    got = crossed(mixed)
    assert [type(v) for v in got.open] == [Decimal, int]
    assert [type(v) for v in got.trades] == [int, bool]
    # the floats travel as float64 columns (what `BarFloats` holds since ingest parses them)
    assert got.floats is not None and got.floats.close.dtype == np.float64
    assert got.floats.close.tolist() == [1.0, 2.0]


def test_a_lane_arrives_whole_and_packing_is_pickled_once() -> None:
    one = [Decimal("1.25")]
    cols = BarColumns("SIMA", [0], [60_000], one, one, one, one, one, [3], [Decimal("1.2500")])
    lane = [cols, {"other": (1, 2.5, None)}, cols]
    pk = packed(lane)
    assert isinstance(pk, Packed)
    # Bytewax pickles an item twice; a packed item's pickle is its bytes, made once.
    assert len(pickle.dumps(pk)) < len(pk.data) + 100
    got = crossed(lane)
    assert got == lane
    assert got[0] is got[2]  # one object still, as in one pickle
    assert unpacked(pk) == lane and unpacked(lane) is lane
    assert pickle.loads(pickle.dumps(shipped(lane))) == lane


# ------------------------------------------------------------------------------- records
@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=60)
@given(st.lists(rs.decisions, min_size=1, max_size=3), rs.orders(), rs.fills(), rs.alerts)
def test_records_arrive_equal_with_the_same_messages(
    decisions: list[DecisionRecord], order: Order, fill: Fill, alert: Alert
) -> None:
    """The desk's records cross as their fields (`_reduce_model`): what arrives is equal, of
    the same types, serializes to the same bytes and has the same fields set."""
    lane: list[BaseModel] = [*decisions, order, fill, alert]
    want = [r.model_dump_json().encode() for r in lane]
    forget_json()
    got = crossed(lane)
    assert [type(r) for r in got] == [type(r) for r in lane]
    # equal field for field, value types too (`==` fails on a NaN feature: NaN equals nothing)
    assert [repr(r) for r in got] == [repr(r) for r in lane]
    assert [r.model_fields_set for r in got] == [r.model_fields_set for r in lane]
    assert [message_json(r) for r in got] == want
    assert [r.model_dump_json().encode() for r in got] == want


def test_a_model_with_unset_fields_keeps_them_unset() -> None:
    alert = Alert(alert_id="a", ts_ms=1, severity=Severity.INFO, source="s", message="m")
    got = crossed(alert)
    assert got.model_fields_set == alert.model_fields_set != set(type(alert).model_fields)
    assert got.model_dump(exclude_unset=True) == alert.model_dump(exclude_unset=True)


def test_enum_members_arrive_as_themselves() -> None:
    members = [Side.BUY, Side.SELL, OrderStatus.FILLED, Severity.CRITICAL]
    assert all(a is b for a, b in zip(crossed(members), members, strict=True))
