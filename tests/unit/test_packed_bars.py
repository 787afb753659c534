"""Bars read from a batch as columns (`PackedBars`, models/core/packed.py) are the per-bar
path's bars: the lists a `BarColumns` makes of them, one bar at a time or all, its slices and
pickles, the vwap computed from the integers (stored value and float) against the Decimal
steps, and the bars table written from the packed columns against the lists."""

from __future__ import annotations

import pickle
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import models.core.packed as packed_mod
from connectors.store.columns import bars_table, decimal_array
from connectors.store.rows import DECIMAL_SCALE
from models.core.blocks import BarColumns
from models.core.packed import SCALE, PackedBars, vwap_columns, vwap_decimals


@st.composite
def number_texts(draw: st.DrawFn, low: int = -12, high: int = 6) -> str:
    """A plain decimal text of at most 12 places, between 10**low and 10**high."""
    places = draw(st.integers(0, 12))
    unscaled = draw(st.integers(max(1, 10 ** max(0, low + places)), 10 ** (high + places)))
    text = str(unscaled)
    if places:
        text = text.rjust(places + 1, "0")
        text = f"{text[:-places]}.{text[-places:]}"
    return text


@st.composite
def packed_bars(draw: st.DrawFn, high: int = 6) -> tuple[PackedBars, list[list[str]]]:
    n = draw(st.integers(1, 40))
    rows = []
    for _ in range(n):
        a, b = draw(number_texts(high=high)), draw(number_texts(high=high))
        lo, hi = sorted((a, b), key=Decimal)
        o = draw(st.sampled_from([lo, hi, a]))
        c = draw(st.sampled_from([lo, hi, b]))
        v = draw(st.one_of(st.sampled_from(["0", "0.000", "1", "3"]), number_texts(-8, 9)))
        rows.append([o, hi, lo, c, v])
    texts = [list(col) for col in zip(*rows, strict=True)]
    start = [60_000 * i for i in range(n)]
    return PackedBars.of_texts(start, [s + 60_000 for s in start], texts), texts


def _lists(symbol: str, packed: PackedBars, texts: list[list[str]]) -> BarColumns:
    o, h, lo, c, v = ([Decimal(t) for t in col] for col in texts)
    start, end = packed.start_ms.tolist(), packed.end_ms.tolist()
    return BarColumns(symbol, start, end, o, h, lo, c, v, [1] * len(o), vwap_decimals(h, lo, c, v))


def _bits(values: Any) -> list[str]:
    return [float(x).hex() for x in values]


def test_the_scale_is_the_bars_tables() -> None:
    assert SCALE == DECIMAL_SCALE


@settings(max_examples=200, derandomize=True, deadline=None)
@given(packed_bars())
def test_vwap_from_the_integers_is_the_decimal_steps(drawn: tuple[PackedBars, Any]) -> None:
    packed, texts = drawn
    h, lo, c, v = ([Decimal(t) for t in texts[k]] for k in (1, 2, 3, 4))
    steps = vwap_decimals(h, lo, c, v)
    got = vwap_columns(packed)
    assert got is not None  # prices below ~2e6 with 12 places: always from the integers
    stored, floats = got
    assert stored.equals(decimal_array(steps))
    assert _bits(floats) == _bits(float(x) for x in steps)


@settings(max_examples=40, derandomize=True, deadline=None)
@given(packed_bars(high=14))
def test_large_prices_take_the_decimal_steps_or_agree(drawn: tuple[PackedBars, Any]) -> None:
    packed, texts = drawn
    cols = BarColumns.of_packed("S", packed)
    steps = vwap_decimals(*([Decimal(t) for t in texts[k]] for k in (1, 2, 3, 4)))
    assert _bits(cols.vwap_floats()) == _bits(float(x) for x in steps)
    assert cols.vwap == steps


def test_a_bar_near_a_float_tie_takes_the_decimal_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    packed = PackedBars.of_texts([0], [60_000], [["1"], ["2"], ["1"], ["1.5"], ["7"]])
    assert vwap_columns(packed) is not None
    monkeypatch.setattr(packed_mod, "_TIE_MARGIN", 1.0)  # every bar "near" a tie
    assert vwap_columns(packed) is None
    cols = BarColumns.of_packed("S", packed)
    assert cols.vwap_floats().tolist() == [float(cols.vwap[0])]


def test_a_decimal_context_other_than_the_default_takes_the_decimal_steps() -> None:
    import decimal

    packed = PackedBars.of_texts([0], [60_000], [["1"], ["2"], ["1"], ["1.5"], ["7"]])
    with decimal.localcontext() as ctx:
        ctx.prec = 40
        assert vwap_columns(packed) is None


@settings(max_examples=60, derandomize=True, deadline=None)
@given(packed_bars(), st.data())
def test_packed_columns_are_the_lists(drawn: tuple[PackedBars, Any], data: st.DataObject) -> None:
    """One bar at a time (an acting bar: only its Decimals made), all of them, slices (with
    and without lists made), pickles (no list made on either side), equality and repr."""
    packed, texts = drawn
    plain = _lists("SIMA", packed, texts)
    n = len(plain)
    cols = BarColumns.of_packed("SIMA", packed)
    i = data.draw(st.integers(0, n - 1))
    assert repr(cols.bar(i)) == repr(plain.bar(i))
    lo = data.draw(st.integers(0, n))
    hi = data.draw(st.integers(lo, n))
    if data.draw(st.booleans()):
        cols.close  # noqa: B018 - one list made before slicing
    part = cols.slice(lo, hi)
    assert len(part) == hi - lo
    assert [repr(b) for b in part.bars()] == [repr(b) for b in plain.slice(lo, hi).bars()]
    fresh = BarColumns.of_packed("SIMA", packed)
    restored = pickle.loads(pickle.dumps(fresh))
    assert restored.packed is not None and not restored._lists
    assert [repr(b) for b in restored.bars()] == [repr(b) for b in plain.bars()]
    assert cols == plain and repr(cols) == repr(plain)
    assert _bits(cols.vwap_floats()) == _bits(float(x) for x in plain.vwap)
    assert pickle.loads(pickle.dumps(part)) == plain.slice(lo, hi)


def test_a_pickled_slice_holds_its_own_values_only() -> None:
    n = 5000
    texts = [[f"{100 + i / 100:.2f}" for i in range(n)] for _ in range(5)]
    packed = PackedBars.of_texts(range(n), range(1, n + 1), texts)
    whole = len(pickle.dumps(BarColumns.of_packed("S", packed)))
    part = len(pickle.dumps(BarColumns.of_packed("S", packed).slice(0, 50)))
    assert part < whole / 20


@settings(max_examples=60, derandomize=True, deadline=None)
@given(st.lists(packed_bars(), min_size=1, max_size=3), st.data())
def test_the_bars_table_of_packed_columns_is_the_lists(
    runs: list[tuple[PackedBars, Any]], data: st.DataObject
) -> None:
    packed_items: list[Any] = []
    list_items: list[Any] = []
    for k, (packed, texts) in enumerate(runs):
        symbol = f"S{k % 2}"
        plain = _lists(symbol, packed, texts)
        packed_items.append(BarColumns.of_packed(symbol, packed))
        list_items.append(plain)
        if data.draw(st.booleans()):  # a plain bar between sets
            packed_items.append(plain.bar(0))
            list_items.append(plain.bar(0))
    assert bars_table(packed_items, "r").equals(bars_table(list_items, "r"))


def test_float_texts_convert_as_python_does() -> None:
    """Arrow's string-to-double cast is correctly rounded, as `float(text)` is: checked on
    texts near halfway cases, long digit strings and powers of two."""
    rng = np.random.default_rng(7)
    texts = [repr(x) for x in rng.uniform(0, 1e6, 2000).tolist()]
    texts += [f"{x:.12f}" for x in rng.uniform(0, 1e6, 2000).tolist()]
    texts += [str(2**k) for k in range(66)] + [str(2**53 + 1), "9007199254740993.000000000001"]
    texts += ["".join(rng.choice(list("0123456789"), 20)) + "." + "5" * 12 for _ in range(500)]
    texts = [t for t in texts if "e" not in t and len(t.partition(".")[2]) <= 12]
    packed = PackedBars.of_texts([0] * len(texts), [0] * len(texts), [texts] * 5)
    assert _bits(packed.floats.close) == _bits(float(t) for t in texts)
