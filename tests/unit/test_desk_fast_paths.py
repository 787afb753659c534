"""The acting path's shortcuts against the general code they stand for, on generated input:
`frozen_maker` against a frozen dataclass's constructor, a feature row's values against the
NaN-by-NaN conversion, `same_intents` against list equality, the builtin SHA-256 ids against
hashlib's, a strategy that does not read the close against the general path."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import pickle
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.core.blocks import FeatureColumns
from models.core.events import BarEvent
from models.core.ids import alert_id, client_order_id
from models.core.messages import Side, TradeIntent
from models.core.trusted import frozen_maker
from models.review.loop import Refusal, ReviewContext, RoundResult, same_intents
from models.strategy.engine import DecisionContext
from models.strategy.intents import StrategyAction
from tests.unit.test_strategy_spec import build, cmp, fv, group

FROZEN = [BarEvent, DecisionContext, ReviewContext, RoundResult, Refusal, StrategyAction]


@pytest.mark.parametrize("cls", FROZEN)
@given(data=st.data())
def test_frozen_maker_builds_what_the_constructor_builds(cls: type[Any], data: Any) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    values = data.draw(st.lists(st.integers() | st.text(max_size=5), min_size=len(names)))
    values = values[: len(names)]
    made = frozen_maker(cls)(*values)
    built = cls(*values)
    assert type(made) is cls
    assert made == built and repr(made) == repr(built)
    assert pickle.loads(pickle.dumps(made)) == built
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.__setattr__(names[0], 1)


def test_frozen_maker_takes_only_slotted_dataclasses_without_post_init() -> None:
    @dataclasses.dataclass(frozen=True)
    class Plain:
        a: int

    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        a: int

        def __post_init__(self) -> None:
            assert self.a >= 0

    for cls in (Plain, Checked):
        with pytest.raises(TypeError):
            frozen_maker(cls)


_floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([math.nan, 0.0, -0.0])


@given(st.lists(st.lists(_floats, min_size=4, max_size=4), min_size=1, max_size=6))
def test_feature_values_are_the_rows_with_nan_as_none(rows: list[list[float]]) -> None:
    names = ("a", "b", "c", "d")
    cols = FeatureColumns(names, [tuple(r) for r in rows])
    for i, row in enumerate(rows):
        expected = {n: (None if math.isnan(v) else v) for n, v in zip(names, row, strict=True)}
        got = cols.values(i)
        assert list(got) == list(names)
        assert repr(got) == repr(expected)


_intents = st.builds(
    TradeIntent,
    symbol=st.sampled_from(["AAA", "BBB"]),
    side=st.sampled_from(Side),
    quantity=st.sampled_from([Decimal(1), Decimal("1.0"), Decimal(2), Decimal(3)]),
    reason=st.sampled_from(["x", "y"]),
)


@given(st.lists(_intents, max_size=3), st.lists(_intents, max_size=3), st.booleans())
def test_same_intents_is_list_equality(
    one: list[TradeIntent], other: list[TradeIntent], share: bool
) -> None:
    if share:
        other = one[:1] + other[1:]
    assert same_intents(one, other) == (one == other)
    assert same_intents(one, list(one))


@given(st.text(max_size=30), st.integers(-5, 10_000))
def test_ids_are_hashlibs_sha256(decision_id: str, n: int) -> None:
    assert (
        alert_id("risk", decision_id, n)
        == (hashlib.sha256(f"risk|{decision_id}|{n}".encode()).hexdigest()[:32])
    )
    assert client_order_id(decision_id, n) == (
        "sf-" + hashlib.sha256(f"{decision_id}#{n}".encode()).hexdigest()[:24]
    )


_feature = st.none() | st.floats(90.0, 110.0)


@pytest.mark.parametrize(
    "entry",
    [
        cmp("sma_fast", "crosses_above", "sma_slow"),
        group("any", cmp("rsi", "<", 30.0), cmp("close", "crosses_above", "sma_slow")),
    ],
)
@given(st.lists(st.tuples(_feature, _feature, _feature, st.floats(90.0, 110.0)), max_size=30))
def test_a_strategy_reads_the_features_as_they_are_unless_it_reads_the_close(
    entry: dict[str, Any], bars: list[tuple[float | None, float | None, float | None, float]]
) -> None:
    """Without the close among its names a strategy reads a bar's features dict as it is; the
    same actions as the general path (the features copied, the close added)."""
    fast, general = build(entry=entry), build(entry=entry)
    general._reads_close = True
    assert fast._reads_close == ("close" in str(entry))
    position = Decimal(0)
    for i, (a, b, r, close) in enumerate(bars):
        vector = fv(i, close, sma_fast=a, sma_slow=b, rsi=r)
        got = fast.on_bar("ABC", vector, position, None)
        assert got == general.on_bar("ABC", vector, position, None)
        if got:
            position = Decimal(1) if got[-1].side is Side.BUY else Decimal(0)
