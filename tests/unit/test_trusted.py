"""`trusted` builds what the validating constructor builds, for the per-bar records."""

from __future__ import annotations

import pickle
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from models.core.messages import (
    Bar,
    FeatureVector,
    Order,
    OrderStatus,
    PositionSnapshot,
    RiskCheck,
    Side,
)
from models.core.trusted import replaced, trusted

CASES: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (
        Bar,
        {
            "symbol": "SIMA",
            "start_ms": 60_000,
            "end_ms": 120_000,
            "open": Decimal("100.10"),
            "high": Decimal("101"),
            "low": Decimal("99.5"),
            "close": Decimal("100.25"),
            "volume": Decimal("12"),
            "trades": 3,
            "vwap": Decimal("100.1"),
        },
    ),
    (
        FeatureVector,
        {"symbol": "SIMA", "ts_ms": 120_000, "close": 100.25, "values": {"a": 1.5, "b": None}},
    ),
    (
        PositionSnapshot,
        {
            "ts_ms": 120_000,
            "symbol": "SIMA",
            "quantity": Decimal("3"),
            "avg_cost": Decimal("99.9"),
            "mark_price": Decimal("100.25"),
            "realized_pnl": Decimal("0"),
            "unrealized_pnl": Decimal("1.05"),
            "cash": Decimal("99700.3"),
            "equity": Decimal("100001.05"),
        },
    ),
]


@pytest.mark.parametrize(("cls", "fields"), CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_trusted_equals_the_validated_model(cls: type[BaseModel], fields: dict[str, Any]) -> None:
    assert set(fields) == set(cls.model_fields)  # the cases cover every field
    validated = cls(**fields)
    fast = trusted(cls, dict(fields))
    assert type(fast) is cls
    assert fast == validated
    assert fast.model_dump() == validated.model_dump()
    assert fast.model_dump_json() == validated.model_dump_json()
    assert fast.model_fields_set == validated.model_fields_set
    assert pickle.loads(pickle.dumps(fast)) == validated
    assert fast.model_copy(update={"symbol": "X"}) == validated.model_copy(update={"symbol": "X"})
    with pytest.raises(Exception, match="frozen"):
        setattr(fast, "symbol", "X")  # noqa: B010 (the model is frozen either way)


def test_given_fields_are_the_fields_set() -> None:
    """`given`: the fields a validating call was passed, the rest left at their defaults."""
    fields = {"name": "cash", "passed": False, "limit": None, "value": None, "message": "m"}
    validated = RiskCheck(name="cash", passed=False, message="m")
    fast = trusted(RiskCheck, dict(fields), ("name", "passed", "message"))
    assert fast == validated
    assert fast.model_fields_set == validated.model_fields_set
    assert fast.model_dump_json() == validated.model_dump_json()
    assert fast.model_dump(exclude_unset=True) == validated.model_dump(exclude_unset=True)


ORDER = Order(
    client_order_id="c",
    decision_id="d",
    symbol="SIMA",
    side=Side.BUY,
    quantity=Decimal("3"),
    status=OrderStatus.PENDING,
    placed_ms=1,
    updated_ms=1,
    size_fraction=Decimal("0.5"),
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    update=st.dictionaries(
        st.sampled_from(["quantity", "status", "updated_ms", "reason", "version"]),
        st.sampled_from([Decimal("2.50"), OrderStatus.FILLED, 7, "why", 2]),
        max_size=4,
    )
)
def test_replaced_is_model_copy(update: dict[str, Any]) -> None:
    """`replaced` is `model_copy(update=...)`: values (unchecked, as model_copy leaves them),
    fields set, pickling and equality."""
    fast = replaced(ORDER, update)
    slow = ORDER.model_copy(update=update)
    assert type(fast) is Order
    assert fast.__dict__ == slow.__dict__
    assert list(fast.__dict__) == list(slow.__dict__)
    assert fast.model_fields_set == slow.model_fields_set
    assert fast == slow
    assert pickle.loads(pickle.dumps(fast)).__dict__ == slow.__dict__
    assert ORDER.quantity == Decimal("3")  # the original is left as it was


def test_a_shared_fields_set_is_never_seen_changing() -> None:
    """Frozen records built with the same fields share one fields set (`trusted`, `replaced`);
    nothing done to one record (a copy, an update, pickling) shows in another's."""
    fields = dict(CASES[2][1])
    first, second = trusted(PositionSnapshot, dict(fields)), trusted(PositionSnapshot, fields)
    assert first.__pydantic_fields_set__ is second.__pydantic_fields_set__  # shared
    copied = first.model_copy(update={"symbol": "X"})
    assert copied.__pydantic_fields_set__ is not first.__pydantic_fields_set__
    assert second.model_fields_set == set(PositionSnapshot.model_fields)
    order = trusted(Order, dict(ORDER.__dict__), frozenset(ORDER.model_fields_set | {"version"}))
    listed = trusted(Order, dict(ORDER.__dict__), sorted(order.model_fields_set))  # not hashable
    assert listed.model_fields_set == order.model_fields_set
    one, two = replaced(order, {"version": 2}), replaced(order, {"version": 2})
    assert one.model_fields_set is two.model_fields_set  # the update of a shared set: shared
    three = replaced(one, {"reason": "x"})
    assert three.model_fields_set == order.model_fields_set | {"reason"}
    assert one.model_fields_set == order.model_fields_set  # untouched by the next update
    restored = pickle.loads(pickle.dumps(one))
    assert restored.model_fields_set == one.model_fields_set
    assert restored.model_fields_set is not one.model_fields_set  # its own after a restore
    with pytest.raises(Exception, match="frozen"):
        setattr(one, "version", 3)  # noqa: B010 (refused: the shared set stays as it is)
    assert one.model_fields_set == order.model_fields_set


def test_a_model_that_is_not_frozen_gets_a_fields_set_of_its_own() -> None:
    class Loose(BaseModel):
        a: int
        b: int = 0

    first, second = trusted(Loose, {"a": 1, "b": 0}), trusted(Loose, {"a": 2, "b": 0})
    assert first.model_fields_set == second.model_fields_set == {"a", "b"}
    assert first.__pydantic_fields_set__ is not second.__pydantic_fields_set__
    first.a = 3  # pydantic adds to the fields set of a record that is not frozen
    assert second.model_fields_set == {"a", "b"}
