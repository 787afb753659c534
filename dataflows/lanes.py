"""The flow's lanes: which items go to the desk, and what each stored row also feeds.

Ingest emits two kinds of items: desk inputs (`DeskInput`: bar events, text events, partition
marks), which go to the one desk, and rows, which are logged. The flow splits them once with
`is_desk_input` (a type guard, so each lane is typed). Every row, from ingest or from the desk,
is then keyed by its ClickHouse table once (`connectors.store.rows.table_for`); everything
downstream of the store lane is derived from that key, never from the row's type again:
- `count_row`: the progress display's counts,
- `alert_of`: the alerts for the notifier,
- `to_kafka`: the rows that also go to a Kafka topic (`KAFKA_TABLES`).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final, TypeGuard, cast

from bytewax.connectors.kafka import KafkaSinkMessage
from pydantic import BaseModel

from connectors.kafka.sink import Messages
from connectors.store.rows import message_json
from dataflows.progress import FlowCounters
from models.config.settings import TopicsConfig
from models.control.commands import ControlEvent
from models.core.blocks import BarBlock, BarColumns, PositionColumns
from models.core.events import BarEvent, TextEvent
from models.core.messages import Alert, DecisionRecord, Fill, Order, OrderStatus, PositionSnapshot
from models.market.merge import PartitionMark

DESK_KEY = "desk"  # the one key of the desk step: every desk input meets the one desk

DeskInput = BarEvent | BarBlock | TextEvent | ControlEvent | PartitionMark
_DESK_INPUTS: Final[frozenset[type]] = frozenset(
    (BarEvent, BarBlock, TextEvent, ControlEvent, PartitionMark)
)

KeyedRow = tuple[str, BaseModel]
"""(table, row): a row keyed by the ClickHouse table it is stored in."""

RowLane = tuple[str, list[BaseModel]]
"""(table, rows): rows of one table, in order, as they travel through the flow (one list per
upstream batch; `dataflows.adapters.grouped` makes them)."""


def is_desk_lane(lane: tuple[str, list[Any]]) -> bool:
    """Whether a lane holds the desk's inputs (else it holds one table's rows)."""
    return lane[0] == DESK_KEY


def is_desk_input(item: object) -> TypeGuard[DeskInput]:
    """Whether an ingest output goes to the desk (else it is a row to store)."""
    return type(item) in _DESK_INPUTS


# ---------------------------------------------------------------------------- Kafka topics
KAFKA_TABLES: Final[dict[str, str]] = {
    "decisions": "decision_id",
    "orders": "client_order_id",
    "fills": "fill_id",
    "alerts": "alert_id",
    "dead_letters": "dead_letter_id",
    "control_log": "command_id",
}
"""Tables whose rows also go to the Kafka topic of the same name in `TopicsConfig` (or the one
`TOPIC_OF` names), each keyed by the row's own id (orders and fills also carry their
decision's id: not that one)."""

TOPIC_OF: Final[dict[str, str]] = {"control_log": "control_acks"}
"""Tables whose topic's `TopicsConfig` key is not the table's name."""


def to_kafka(topics: TopicsConfig, keyed: KeyedRow) -> KafkaSinkMessage[bytes, bytes] | None:
    """Decisions, orders, fills, alerts and dead letters also go to topics for other consumers."""
    table, row = keyed
    if table not in KAFKA_TABLES:
        return None
    return kafka_messages(topics, (table, [row]))[0]


def lane_messages(topics: TopicsConfig, lane: RowLane) -> Messages | None:
    """The Kafka messages of a lane's rows as `(topic, keys, values)` (None for a table without
    a topic), for `connectors.kafka.sink.LaneKafkaSink`: the key is the row's id, the value
    `model_dump_json()`'s bytes (`message_json`: made once per message, shared with the store's
    row and with the decision that holds an order or a fill)."""
    table, rows = lane
    key_field = KAFKA_TABLES.get(table)
    if key_field is None:
        return None
    topic = getattr(topics, TOPIC_OF.get(table, table))
    keys = [str(getattr(r, key_field)).encode() for r in rows]
    return topic, keys, [message_json(r) for r in rows]


def kafka_messages(topics: TopicsConfig, lane: RowLane) -> list[KafkaSinkMessage[bytes, bytes]]:
    """`lane_messages` as Bytewax's `KafkaSinkMessage`s (none for a table without a topic)."""
    got = lane_messages(topics, lane)
    if got is None:
        return []
    topic, keys, values = got
    return [
        KafkaSinkMessage(key, value, topic)
        for key, value in zip(cast(list[bytes], keys), cast(list[bytes], values), strict=True)
    ]


# ---------------------------------------------------------------------------- alerts
def alert_of(keyed: KeyedRow) -> Alert | None:
    """The row when it is an alert (for the notifier), else None."""
    table, row = keyed
    return cast(Alert, row) if table == "alerts" else None


def alerts_of(lane: RowLane) -> list[Alert]:
    """The rows of a lane when they are alerts (for the notifier), else none."""
    table, rows = lane
    return cast(list[Alert], rows) if table == "alerts" else []


# ---------------------------------------------------------------------------- progress counts
def _bar(counters: FlowCounters, row: Any) -> None:
    counters.add(bars=len(row) if type(row) is BarColumns else 1)


def _decision(counters: FlowCounters, row: DecisionRecord) -> None:
    if row.version == 1:  # a decision, not its next versions
        counters.add(decisions=1)


def _dead_letter(counters: FlowCounters, _row: Any) -> None:
    counters.add(dead=1)


def _order(counters: FlowCounters, row: Order) -> None:
    if row.status is not OrderStatus.REJECTED:  # a refused order was never placed
        counters.trade(order_id=row.client_order_id)


def _fill(counters: FlowCounters, row: Fill) -> None:
    counters.trade(fill_id=row.fill_id)


def _position(counters: FlowCounters, row: PositionSnapshot | PositionColumns) -> None:
    if isinstance(row, PositionColumns):  # the last bar's P&L stands for the run's
        if len(row):
            counters.trade(symbol=row.symbol, pnl=row.realized_pnl + row.unrealized_pnl[-1])
        return
    counters.trade(symbol=row.symbol, pnl=row.realized_pnl + row.unrealized_pnl)


_COUNTERS: Final[dict[str, Callable[[FlowCounters, Any], None]]] = {
    "bars": _bar,
    "decisions": _decision,
    "dead_letters": _dead_letter,
    "orders": _order,
    "fills": _fill,
    "positions": _position,
}


def count_row(counters: FlowCounters, keyed: KeyedRow) -> None:
    """Count one stored row for the progress display and the stop message."""
    count = _COUNTERS.get(keyed[0])
    if count is not None:
        count(counters, keyed[1])


def count_rows(counters: FlowCounters, lane: RowLane) -> None:
    """`count_row` for every row of a lane, counted per lane (one lock, no call per row)."""
    table, rows = lane
    items: list[Any] = rows
    if table == "bars":
        counters.add(bars=sum(len(r) if type(r) is BarColumns else 1 for r in items))
    elif table == "decisions":
        counters.add(decisions=sum(1 for r in items if r.version == 1))
    elif table == "dead_letters":
        counters.add(dead=len(items))
    elif table == "orders":
        rejected = OrderStatus.REJECTED
        counters.trades(order_ids=[r.client_order_id for r in items if r.status is not rejected])
    elif table == "fills":
        counters.trades(fill_ids=[r.fill_id for r in items])
    elif table == "positions":
        latest: dict[str, Decimal] = {}
        for r in items:  # the last row of each symbol stands for the lane
            if isinstance(r, PositionColumns):
                if len(r):
                    latest[r.symbol] = r.realized_pnl + r.unrealized_pnl[-1]
            else:
                latest[r.symbol] = r.realized_pnl + r.unrealized_pnl
        counters.trades(pnl=latest)
