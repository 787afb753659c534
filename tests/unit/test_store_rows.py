"""Rows for the store (connectors/store/rows.py): the padded `str()` shortcut of `_dec_text`
against quantizing (`_dec_quantized`), on every kind of finite Decimal; the direct JSON lines
of the per-bar tables (`LINE_WRITERS`) against `model_to_row`'s rows."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.store.clickhouse import _row_json
from connectors.store.rows import (
    LINE_WRITERS,
    ROW_CONVERTERS,
    _dec_quantized,
    _dec_text,
    direct_lines,
    model_to_row,
)
from models.core.messages import Bar, PositionSnapshot

_digits = st.text("0123456789", min_size=1, max_size=30)
_texts = st.builds(
    lambda sign, i, f, e: f"{sign}{i}{'' if f is None else '.' + f}{e}",
    st.sampled_from(["", "-", "+"]),
    _digits,
    st.none() | st.text("0123456789", min_size=0, max_size=16),
    st.sampled_from(["", "", "", "E3", "E-3", "e+20", "E-20", "E25"]),
)


def _either(value: Decimal) -> tuple[str | type, str | type]:
    try:
        fast: str | type = _dec_text(value)
    except ValueError as err:
        fast = type(err)
    try:
        slow: str | type = _dec_quantized(value)
    except ValueError as err:
        slow = type(err)
    return fast, slow


@given(st.one_of(_texts.map(Decimal), st.decimals(allow_nan=False, allow_infinity=False)))
def test_padded_text_is_the_quantized_text(value: Decimal) -> None:
    fast, slow = _either(value)
    assert fast == slow


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "-0",
        "-0.0",
        "100.1234",
        "1E+2",
        "1E-7",
        "0.0000000000005",
        "0.0000000000015",
        "9" * 26,
        "9" * 27,
        "9" * 26 + ".9999999999995",
        "-" + "9" * 26 + ".5",
    ],
)
def test_edges(text: str) -> None:
    fast, slow = _either(Decimal(text))
    assert fast == slow


_A_BAR = Bar(
    symbol="SIMA",
    start_ms=0,
    end_ms=60_000,
    open=Decimal(1),
    high=Decimal(1),
    low=Decimal(1),
    close=Decimal(1),
    volume=Decimal(0),
    trades=1,
    vwap=Decimal(1),
)
_money = st.decimals(Decimal("-1e20"), Decimal("1e20"), allow_nan=False, places=14)


@given(
    st.builds(
        Bar,
        symbol=st.sampled_from(["SIMA", "BRK.B", "A/B:C-D"]),
        start_ms=st.integers(-(2**40), 2**42),
        end_ms=st.integers(-(2**40), 2**42),
        open=_money,
        high=_money,
        low=_money,
        close=_money,
        volume=_money,
        trades=st.integers(0, 2**31),
        vwap=_money,
    ),
    st.text(max_size=20),
)
def test_bar_line_is_the_row(bar: Bar, run_id: str) -> None:
    _same_line(bar, run_id)


@given(
    st.builds(
        PositionSnapshot,
        ts_ms=st.integers(-(2**40), 2**42),
        symbol=st.sampled_from(["SIMA", "X"]),
        quantity=_money,
        avg_cost=_money,
        mark_price=_money,
        realized_pnl=_money,
        unrealized_pnl=_money,
        cash=_money,
        equity=_money,
    ),
    st.text(max_size=20),
)
def test_position_line_is_the_row(snap: PositionSnapshot, run_id: str) -> None:
    _same_line(snap, run_id)


def _same_line(model: Bar | PositionSnapshot, run_id: str) -> None:
    """The direct line and `model_to_row`'s row with the run id are the same JSON object, or
    both refuse the model (a value beyond the column)."""
    table, _ = ROW_CONVERTERS[type(model)]
    tail = f',"run_id":{json.dumps(run_id)}}}\n'
    try:
        line: Any = json.loads(LINE_WRITERS[type(model)](model, tail))
    except ValueError as err:
        line = type(err)
    try:
        row: Any = json.loads(_row_json({**model_to_row(model)[1], "run_id": run_id}))
    except ValueError as err:
        row = type(err)
    assert line == row
    text = direct_lines(table, [model, model], run_id)
    # Rows end at "\n" only, as ClickHouse reads JSONEachRow: str.splitlines() would also
    # break inside a string holding NEL or U+2028, which JSON leaves unescaped.
    assert text is None or [json.loads(x) for x in text.split("\n") if x] == [row, row]
    assert direct_lines("signals", [model], run_id) is None  # not its table
    if isinstance(model, PositionSnapshot):
        assert direct_lines(table, [model, _A_BAR], run_id) is None  # mixed models
