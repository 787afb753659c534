"""The direct JSONEachRow lines of the decision-log tables (connectors/store/rows.py
`LINE_WRITERS`: decisions, orders, fills, alerts) against `model_to_row`'s rows, and the Kafka
lane's messages (dataflows/lanes.py `kafka_messages`) against `model_dump_json()`, on generated
messages (tests/support/row_strategies.py). What the engine stores from either line is checked
in tests/integration/test_store_lines.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from pydantic import BaseModel
from pydantic_core import to_json

from connectors.store import rows as store_rows
from connectors.store.clickhouse import _row_json
from connectors.store.rows import LINE_WRITERS, direct_lines, message_json, model_to_row
from dataflows.lanes import KAFKA_TABLES, kafka_messages, to_kafka
from models.config.settings import TopicsConfig
from models.core.messages import Alert, DecisionRecord, Fill, Order
from tests.support import row_strategies as rs

NESTED = {
    "decisions": ("triggers", "features", "rounds", "orders", "fills", "portfolio_before"),
    "alerts": ("context",),
}
"""String columns a line gives as raw JSON (the engine stores its text)."""


def _line_as_row(table: str, line: str) -> dict[str, Any]:
    """The line's JSON object with each raw nested part as its JSON text. Re-encoding a parsed
    part gives back its text exactly: pydantic-core wrote it, floats in their shortest form,
    decimals as strings, key order kept."""
    obj: dict[str, Any] = json.loads(line)
    for key in NESTED.get(table, ()):
        obj[key] = to_json(obj[key]).decode()
    return obj


def _same_line(model: BaseModel, run_id: str) -> None:
    table, _ = store_rows.ROW_CONVERTERS[type(model)]
    tail = f',"run_id":{to_json(run_id).decode()}}}\n'
    try:
        line: Any = LINE_WRITERS[type(model)](model, tail)
    except ValueError as err:
        line = type(err)
    try:
        row: Any = json.loads(_row_json({**model_to_row(model)[1], "run_id": run_id}))
    except ValueError as err:
        row = type(err)
    if isinstance(line, str):
        assert line.endswith("}\n") and line.count("\n") == 1
        assert _line_as_row(table, line) == row
        assert list(json.loads(line)) != []  # every key once (json.loads keeps the last)
        assert line.count('"run_id":') >= 1
        text = direct_lines(table, [model, model], run_id)
        assert text == line + line
    else:
        assert line is row is ValueError


def _same_kafka(model: BaseModel) -> None:
    table = store_rows.table_for(model)
    topics = TopicsConfig()
    expected = model.model_dump_json().encode()
    got = kafka_messages(topics, (table, [model, model]))
    assert [m.value for m in got] == [expected, expected]
    key = str(getattr(model, KAFKA_TABLES[table])).encode()
    assert [(m.key, m.topic) for m in got] == [(key, getattr(topics, table))] * 2
    one = to_kafka(topics, (table, model))
    assert one is not None and (one.key, one.value, one.topic) == (key, expected, got[0].topic)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(rs.orders(), rs.texts)
def test_order_line_is_the_row(order: Order, run_id: str) -> None:
    _same_line(order, run_id)
    _same_kafka(order)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(rs.fills(rs.decimals | rs.too_big), rs.texts)
def test_fill_line_is_the_row(fill: Fill, run_id: str) -> None:
    _same_line(fill, run_id)
    _same_kafka(fill)


@settings(derandomize=True, max_examples=40, deadline=None)
@given(rs.alerts, rs.texts)
def test_alert_line_is_the_row(alert: Alert, run_id: str) -> None:
    _same_line(alert, run_id)
    _same_kafka(alert)


@settings(derandomize=True, max_examples=15, deadline=None)
@given(rs.decisions, rs.texts)
def test_decision_line_is_the_row(decision: DecisionRecord, run_id: str) -> None:
    _same_line(decision, run_id)
    _same_kafka(decision)


@pytest.mark.slow
@settings(derandomize=True, max_examples=200, deadline=None)
@given(rs.decisions, rs.texts)
def test_decision_line_is_the_row_many(decision: DecisionRecord, run_id: str) -> None:
    _same_line(decision, run_id)
    _same_kafka(decision)


@settings(derandomize=True, max_examples=10, deadline=None)
@given(rs.decisions)
def test_a_decisions_parts_are_serialized_once(decision: DecisionRecord) -> None:
    """A decision's next version shares its rounds, features, triggers and portfolio and holds
    its orders and fills: each part's JSON is made once (the same bytes object is given back),
    an order's or a fill's JSON is its own message's, and every message is still its
    `model_dump_json()` whoever asks first (the store or the Kafka lane)."""
    store_rows.forget_json()
    if not store_rows._DECISION_PARTS:
        return
    later = decision.model_copy(
        update={"version": decision.version + 1, "orders": list(decision.orders)}
    )
    first = store_rows.decision_parts(later)  # the store first, then the Kafka lane
    assert first is not None
    assert message_json(later) == later.model_dump_json().encode()
    assert message_json(decision) == decision.model_dump_json().encode()
    parts = store_rows.decision_parts(decision)
    assert parts is not None
    # The second of the two (the Kafka lane, the store) took the parts: none are held.
    assert store_rows._PARTS_OF.get(decision) is None
    assert store_rows._PARTS_OF.get(later) is None
    for name, a, b in zip(store_rows.DECISION_NESTED, first, parts, strict=True):
        assert a == b
        if name not in ("orders", "fills") and a != b"[]":
            assert a is b, name  # the shared object's JSON, made once
    for order in decision.orders:
        assert message_json(order) is message_json(order)
        assert message_json(order) == order.model_dump_json().encode()
    copy = decision.model_copy(deep=True)  # equal, other objects: serialized anew, same bytes
    assert store_rows.decision_parts(copy) == parts
    assert message_json(copy) == message_json(decision)
    store_rows.forget_json()


def test_recent_json_keeps_a_bounded_number() -> None:
    """Two generations of `size`: the newest entries stay, the oldest go; an equal object
    that is not the same one never takes another's bytes."""
    recent = store_rows._Recent(2)
    fills = [
        Fill(
            fill_id=f"f{i}",
            client_order_id="o",
            decision_id="d",
            symbol="S",
            side="buy",
            quantity=1,
            price=2,
            fee=0,
            ts_ms=i,
        )
        for i in range(5)
    ]
    for i, f in enumerate(fills):
        recent.put(f, b"%d" % i)
    assert [recent.get(f) for f in fills] == [None, None, b"2", b"3", b"4"]
    assert len(recent.new) + len(recent.old) == 3
    assert recent.get(fills[4].model_copy()) is None
    assert recent.take(fills[4].model_copy()) is None
    assert (recent.take(fills[2]), recent.take(fills[4])) == (b"2", b"4")  # either generation
    assert [recent.get(f) for f in fills] == [None, None, None, b"3", None]


def test_a_decision_model_with_other_fields_keeps_the_row_path() -> None:
    """The decision's line is its message JSON only while the model's fields are the table's
    columns of the same names; a model that grew a field (or renamed one) writes rows."""
    assert store_rows._plain_fields(DecisionRecord, store_rows._DECISION_FIELDS)
    assert not store_rows._plain_fields(DecisionRecord, store_rows._DECISION_FIELDS[:-1])
    assert not store_rows._plain_fields(Order, store_rows._DECISION_FIELDS)
