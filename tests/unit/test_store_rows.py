"""Decimal text for the store (connectors/store/rows.py): the padded `str()` shortcut of
`_dec_text` against quantizing (`_dec_quantized`), on every kind of finite Decimal."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.store.rows import _dec_quantized, _dec_text

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
