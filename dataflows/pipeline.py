"""The stratflow dataflow: wiring only. Every decision is made by a `models/` object.

    Kafka market/news/social ──► ingest (keyed by partition: parse → dead letters | bars →
    features → triggers → router) ──► desk (one key: controller → risk gate ⇄ adjust →
    simulated exchange → portfolio) ──► ClickHouse tables + Kafka output topics

Live and backtest build this same flow; they differ only in `tail` (follow the topic, or stop at
its end) and, in later releases, the exchange behind the desk.
"""

from __future__ import annotations

import functools
import pickle
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage
from bytewax.dataflow import Dataflow, Stream
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import Sink
from pydantic import BaseModel

from connectors.exchange.gateway import ExecutionGateway
from connectors.gpt.gateway import GptGateway
from connectors.kafka.source import RawKafkaSource
from connectors.notify.notifier import Notifier
from connectors.store.clickhouse import ROW_CONVERTERS, table_for
from connectors.store.sink import ClickHouseSink, NotifierSink
from dataflows.progress import FlowCounters
from models.config.settings import Settings, parse_duration_ms, with_min_notional
from models.core.commands import ExchangeCommand
from models.core.events import BarEvent, TextEvent
from models.core.ids import alert_id
from models.core.messages import (
    Alert,
    Bar,
    DeadLetter,
    DecisionRecord,
    Fill,
    GptRequest,
    Order,
    OrderStatus,
    PositionSnapshot,
    Severity,
)
from models.desk.desk import DeskOutput, TradingDesk
from models.execution.reports import ExecStatus, ExecutionReport
from models.market.ingest import IngestOutput, PartitionIngest, RawBatch
from models.market.merge import OrderedMerge, PartitionMark
from models.monitoring.alerts import desk_error_alert

DESK_KEY = "desk"
ANSWER_POLL = timedelta(milliseconds=50)  # how often a live desk looks for GPT answers
DeskInput = BarEvent | TextEvent | PartitionMark


def _wall_ms() -> int:
    return int(time.time() * 1000)


class IngestLogic(StatefulBatchLogic[RawBatch, IngestOutput, Any]):
    """Adapter: hands each batch to `PartitionIngest`; snapshots exclude the settings.

    The clock guard's clock for producer-stamped records: the wall clock when following
    topics; in a bounded run the wall clock when this state began, kept in the snapshot, so a
    restarted backtest judges every record exactly as the first run did."""

    def __init__(
        self,
        settings: Settings,
        resume: bytes | None,
        *,
        follow: bool = False,
        market_partitions: int = 1,
    ) -> None:
        self.state = st = PartitionIngest(settings, market_partitions=market_partitions)
        self.started_ms = _wall_ms()
        if resume is not None:
            saved = pickle.loads(resume)
            st.symbols, st.clock_ms, st.seq, st.key = saved[:4]
            if len(saved) > 4:
                st.guard, st.alarm, self.started_ms = saved[4:7]
        if follow:
            st.now_ms, st.clock_name = _wall_ms, "the wall clock at ingest"
        else:
            started = self.started_ms
            st.now_ms, st.clock_name = (lambda: started), "the wall clock when the run started"

    def on_batch(self, values: list[RawBatch]) -> tuple[Iterable[IngestOutput], bool]:
        out: list[IngestOutput] = []
        for batch in values:
            self.state.process_batch(batch, out)
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[IngestOutput], bool]:
        return self.state.flush(), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        return None

    def snapshot(self) -> bytes:
        # Pickled here, at the epoch boundary: an immutable copy, cheaper than a deepcopy.
        st = self.state
        state = (st.symbols, st.clock_ms, st.seq, st.key, st.guard, st.alarm, self.started_ms)
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def desk_failure_alert(event: BarEvent, err: Exception) -> Alert:
    bar = event.bar
    return desk_error_alert("desk-error", bar, f"desk failed on {bar.symbol} bar {bar.end_ms}", err)


def flow_error_alert(what: str, err: Exception) -> Alert:
    """A bug outside any bar (a GPT answer, a news item): critical, never silent."""
    return Alert(
        alert_id=alert_id("desk-error", what, type(err).__name__, str(err)),
        ts_ms=int(time.time() * 1000),
        severity=Severity.CRITICAL,
        source="desk",
        message=f"{what} failed: {type(err).__name__}: {err}",
        context={},
    )


class DeskLogic(StatefulBatchLogic[DeskInput, DeskOutput, Any]):
    """Adapter: bars and news pass the partition merge (models/market/merge.py), then the desk, in
    that order; the desk's GPT requests go to the gateway and its answers come back here.

    Inline (backtest) a request is answered before the next event, so results depend on the
    data only; otherwise workers answer it and the answer is applied when it arrives, while
    the flow goes on. Pending questions live in the desk's snapshot: after a restart they are
    asked again (from the answer store when they had been answered)."""

    def __init__(
        self,
        settings: Settings,
        partitions: frozenset[str],
        resume: bytes | None,
        gateway: GptGateway | None = None,
        inline: bool = True,
        orders: ExecutionGateway | None = None,
    ):
        venue = "exchange" if orders is not None else "sim"
        if orders is not None and orders.min_notional:
            settings = with_min_notional(settings, orders.min_notional)
        self.desk = TradingDesk.create(settings, gpt=gateway is not None, venue=venue)
        self.gateway = gateway
        self.orders = orders
        self.inline = inline
        self.merge: OrderedMerge[BarEvent | TextEvent] = OrderedMerge(partitions)
        self._unasked: list[GptRequest] = []
        self._unsent: list[Order] = []
        if resume is not None:
            state, merge = pickle.loads(resume)
            self.desk.restore(state)
            self.merge = OrderedMerge(partitions, merge.marks, merge.pending)
            self._unasked = self.desk.pending_requests()
            self._unsent = self.desk.unreported_orders()
        self._startup: list[DeskOutput] = []
        self._pairs = [s for s in settings.symbols if "/" in s]
        self._check_every_s = parse_duration_ms(settings.execution.reconcile_every) / 1000
        self._next_check = time.monotonic() + self._check_every_s
        if orders is not None:
            # Never trade on a book that was not checked against the exchange (raises when
            # the exchange cannot be asked; the run stops before its first order).
            state = orders.executor.state(self._pairs)
            if self._unsent or (not inline and self.desk.orders_to_look_up()):
                # Orders without a report (or given up on): the balances may already hold
                # their fills, which the re-sent orders' reports will bring; adopting now would
                # count them twice. The periodic check reconciles once they have reported.
                self._next_check = time.monotonic()
            else:
                self._startup = self.desk.on_exchange_state(state, int(time.time() * 1000))

    def _emit(self, outputs: list[DeskOutput], out: list[DeskOutput]) -> None:
        for item in outputs:
            if isinstance(item, GptRequest):
                if self.gateway is None:  # cannot happen: the desk asks only with a gateway
                    continue
                if self.inline:
                    self._emit(self.desk.on_gpt_answer(self.gateway.answer(item)), out)
                else:
                    self.gateway.submit(item)
            elif isinstance(item, ExchangeCommand):
                if self.orders is not None:
                    self.orders.command(item, inline=self.inline)
            else:
                out.append(item)
                if (
                    self.orders is not None
                    and isinstance(item, Order)
                    and item.status is OrderStatus.PENDING
                    and item.version == 1
                ):
                    self._send(item, out)

    def _send(self, order: Order, out: list[DeskOutput], resend: bool = False) -> None:
        assert self.orders is not None
        if self.inline:
            self._report(self.orders.execute(order, resend), out)
        else:
            self.orders.submit(order, resend)

    def _report(self, report: ExecutionReport, out: list[DeskOutput]) -> None:
        if report.status is ExecStatus.UNKNOWN:  # ask the exchange again with the next batch
            self._unsent.extend(
                o
                for o in self.desk.unreported_orders()
                if o.client_order_id == report.client_order_id
            )
        self._emit(self.desk.on_execution(report), out)

    def _busy(self) -> bool:
        gpt = self.gateway is not None and self.gateway.in_flight > 0
        return gpt or (self.orders is not None and self.orders.in_flight > 0)

    def _answers(self, out: list[DeskOutput]) -> None:
        if self._startup:
            out.extend(self._startup)
            self._startup = []
        if self._unasked:
            unasked, self._unasked = self._unasked, []
            self._guarded(lambda: list(unasked), "re-asking pending GPT questions", out)
        if self._unsent and self.orders is not None:
            unsent, self._unsent = self._unsent, []
            for order in unsent:  # found on the exchange by client order id, never duplicated
                self._guarded(functools.partial(self._resend, order), "re-sending orders", out)
        if self.gateway is not None and not self.inline:
            for answer in self.gateway.ready():
                what = f"applying GPT answer {answer.request_id}"
                self._guarded(functools.partial(self.desk.on_gpt_answer, answer), what, out)
        if self.orders is not None and not self.inline:
            for report in self.orders.ready():
                what = f"applying the report of order {report.client_order_id}"
                self._guarded(functools.partial(self._reported, report), what, out)
            self._reconcile(self.orders, out)

    def _reconcile(self, orders: ExecutionGateway, out: list[DeskOutput]) -> None:
        """Live: check the book against the exchange every `execution.reconcile_every` (only
        applied while no order is on its way: balances would be caught mid-change)."""
        for state, mark in orders.states():
            quiet = orders.in_flight == 0 and orders.submitted == mark  # nothing sent since
            settled = not self.desk.unreported_orders() and not self.desk.orders_to_look_up()
            if quiet and settled:
                now_ms = int(time.time() * 1000)
                step = functools.partial(self.desk.on_exchange_state, state, now_ms)
                self._guarded(step, "reconciling with the exchange", out)
        if time.monotonic() >= self._next_check:
            self._next_check = time.monotonic() + self._check_every_s
            for order in self.desk.orders_to_look_up():  # before the balances are read
                orders.submit(order, look_up=True)
            orders.check_state(self._pairs)
            if orders.in_flight == 0 and not self._unsent:
                # Orders the exchange accepted but has not filled (reported `open`): looked
                # up again by client order id, so later fills reach the book while running.
                for order in self.desk.unreported_orders():
                    self._guarded(functools.partial(self._resend, order), "polling orders", out)

    def _reported(self, report: ExecutionReport) -> list[DeskOutput]:
        out: list[DeskOutput] = []
        self._report(report, out)
        return out

    def _resend(self, order: Order) -> list[DeskOutput]:
        out: list[DeskOutput] = []
        self._send(order, out, resend=True)
        return out

    def _guarded(
        self,
        step: Callable[[], list[DeskOutput]],
        where: BarEvent | str,
        out: list[DeskOutput],
    ) -> None:
        try:
            self._emit(step(), out)
        except Exception as err:  # a bug must raise an alarm, not stop every symbol
            if isinstance(where, BarEvent):
                out.append(desk_failure_alert(where, err))
            else:
                out.append(flow_error_alert(where, err))

    def _text(self, event: TextEvent) -> list[DeskOutput]:
        self.desk.on_text(event)
        return []

    def _run(self, events: list[BarEvent | TextEvent], out: list[DeskOutput]) -> None:
        for event in events:
            if isinstance(event, TextEvent):
                what = f"adding {event.item.type} {event.item.id} to the digest"
                self._guarded(functools.partial(self._text, event), what, out)
            else:
                self._guarded(functools.partial(self.desk.on_bar_event, event), event, out)

    def on_batch(self, values: list[DeskInput]) -> tuple[Iterable[DeskOutput], bool]:
        out: list[DeskOutput] = []
        self._answers(out)
        for item in values:
            if isinstance(item, PartitionMark):
                self._run(self.merge.mark(item), out)
            else:
                self._run(self.merge.push(item.partition, item.clock_ms, item.seq, item), out)
        return out, StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[DeskOutput], bool]:
        out: list[DeskOutput] = []
        self._answers(out)
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[DeskOutput], bool]:
        out: list[DeskOutput] = []
        self._answers(out)
        self._run(self.merge.flush(), out)
        while not self.inline and self._busy():
            # The end of the input: the last answers and reports still count.
            if self.gateway is not None:
                self.gateway.wait()
            if self.orders is not None:
                self.orders.wait()
            self._answers(out)
        return out, StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        if not self.inline and self._busy():
            return datetime.now(UTC) + ANSWER_POLL
        if self.orders is not None and not self.inline:  # the next reconciliation
            wait = max(0.0, self._next_check - time.monotonic())
            return datetime.now(UTC) + min(timedelta(seconds=wait), timedelta(seconds=1))
        return None

    def snapshot(self) -> bytes:
        state = (self.desk.state(), self.merge)
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


class RowBatchLogic(StatefulBatchLogic[BaseModel, list[BaseModel], tuple[BaseModel, ...]]):
    """Gathers one table's rows until `max_rows` or `every` has passed since the first one.

    Bytewax's `collect` does this too but deep-copies its buffer at every snapshot; the rows are
    frozen models, so a tuple of them is already an immutable snapshot.
    """

    def __init__(self, every: timedelta, max_rows: int, resume: tuple[BaseModel, ...] | None):
        self.every = every
        self.max_rows = max_rows
        self.rows: list[BaseModel] = list(resume or ())
        self.due: datetime | None = datetime.now(UTC) + every if self.rows else None

    def _emit(self) -> tuple[Iterable[list[BaseModel]], bool]:
        rows, self.rows, self.due = self.rows, [], None
        return ([rows] if rows else []), StatefulBatchLogic.DISCARD

    def on_batch(self, values: list[BaseModel]) -> tuple[Iterable[list[BaseModel]], bool]:
        if self.due is None:
            self.due = datetime.now(UTC) + self.every
        self.rows.extend(values)
        if len(self.rows) >= self.max_rows:
            return self._emit()
        return [], StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[list[BaseModel]], bool]:
        return self._emit()

    def on_eof(self) -> tuple[Iterable[list[BaseModel]], bool]:
        return self._emit()

    def notify_at(self) -> datetime | None:
        return self.due

    def snapshot(self) -> tuple[BaseModel, ...]:
        return tuple(self.rows)


_OUT_TOPIC = {
    DecisionRecord: "decisions",
    Order: "orders",
    Fill: "fills",
    Alert: "alerts",
    DeadLetter: "dead_letters",
}


def _record_key(item: Any) -> bytes:
    # Each record's own id first: orders and fills also carry their decision's id.
    for name in ("fill_id", "client_order_id", "alert_id", "dead_letter_id", "decision_id"):
        value = getattr(item, name, None)
        if value is not None:
            return str(value).encode()
    return b""


def to_kafka(settings: Settings, item: Any) -> KafkaSinkMessage[bytes, bytes] | None:
    """Decisions, orders, fills, alerts and dead letters also go to topics for other consumers."""
    attr = _OUT_TOPIC.get(type(item))  # type: ignore[call-overload]
    if attr is None:
        return None
    topic = getattr(settings.kafka.topics, attr)
    return KafkaSinkMessage(
        key=_record_key(item), value=item.model_dump_json().encode(), topic=topic
    )


def count_record(counters: FlowCounters, item: Any) -> None:
    if isinstance(item, Bar):
        counters.add(bars=1)
    elif isinstance(item, DecisionRecord) and item.version == 1:
        counters.add(decisions=1)
    elif isinstance(item, DeadLetter):
        counters.add(dead=1)
    elif isinstance(item, Order) and item.status is not OrderStatus.REJECTED:
        counters.trade(order_id=item.client_order_id)
    elif isinstance(item, Fill):
        counters.trade(fill_id=item.fill_id)
    elif isinstance(item, PositionSnapshot):
        counters.trade(symbol=item.symbol, pnl=item.realized_pnl + item.unrealized_pnl)


@dataclass(frozen=True)
class FlowSpec:
    """What differs between runs: where the data comes from and whether to follow it."""

    bootstrap: str
    tail: bool
    batch_size: int = 5000
    kafka_out: bool = True
    write_every: timedelta = timedelta(milliseconds=500)
    write_max_rows: int = 50_000
    gpt_inline: bool | None = None  # answer GPT inline (deterministic); None: when not tailing

    @property
    def inline(self) -> bool:
        return (not self.tail) if self.gpt_inline is None else self.gpt_inline


def build_flow(
    settings: Settings,
    spec: FlowSpec,
    store_sink: Sink[Any] | None = None,
    counters: FlowCounters | None = None,
    gateway: GptGateway | None = None,
    orders: ExecutionGateway | None = None,
    notifier: Notifier | None = None,
    run_id: str = "",
) -> Dataflow:
    """The pipeline as a Bytewax dataflow; every row it stores is stamped with `run_id`."""
    topics = settings.kafka.topics
    flow = Dataflow("stratflow")
    source = RawKafkaSource(
        spec.bootstrap,
        [topics.market, topics.news, topics.social],
        tail=spec.tail,
        batch_size=spec.batch_size,
    )
    # Already keyed by topic partition: the unit of order (models/market/ingest.py says why).
    by_partition: Any = op.input("kafka_in", flow, source)
    if counters is not None:
        op.inspect(
            "count_in", by_partition, lambda _s, kb: counters.add(records=len(kb[1].records))
        )
    parts = [p.split("-", 1) for p in source.list_parts()]
    market_parts = sum(1 for _, topic in parts if topic == topics.market)
    ingested = op.stateful_batch(
        "ingest",
        by_partition,
        lambda resume: IngestLogic(
            settings, resume, follow=spec.tail, market_partitions=max(1, market_parts)
        ),
    )
    items = op.key_rm("ingest_out", ingested)
    split = op.branch("to_desk", items, lambda x: isinstance(x, DeskInput))
    bar_events = cast(Stream[DeskInput], split.trues)
    to_desk = op.key_on("desk_key", bar_events, lambda _: DESK_KEY)
    # Every input partition takes part in the merge: bars and news meet the desk in one order.
    input_parts = frozenset(f"{topic}#{index}" for index, topic in parts)
    desk = op.stateful_batch(
        "desk",
        to_desk,
        lambda resume: DeskLogic(settings, input_parts, resume, gateway, spec.inline, orders),
    )
    records = op.merge("records", split.falses, op.key_rm("desk_out", desk))
    if counters is not None:
        op.inspect("count_out", records, lambda _s, item: count_record(counters, item))
    # A chdb/ClickHouse INSERT has a fixed cost of milliseconds, so rows are gathered per table
    # (in operator state, hence snapshotted: a crash loses none) and written in large batches.
    # The wall clock only decides when a batch is written, never what is in the log.
    storable = cast(
        Stream[BaseModel], op.filter("storable", records, lambda x: type(x) in ROW_CONVERTERS)
    )
    by_table = op.key_on("by_table", storable, lambda item: table_for(item))
    batches = op.stateful_batch(
        "write_batches",
        by_table,
        lambda resume: RowBatchLogic(spec.write_every, spec.write_max_rows, resume),
    )
    op.output("clickhouse", batches, store_sink or ClickHouseSink(settings.clickhouse, run_id))
    if notifier is not None:
        alerts = op.filter("alerts", records, lambda x: isinstance(x, Alert))
        op.output("notify", alerts, NotifierSink(notifier))
    if spec.kafka_out:
        kmsgs = op.filter_map("to_kafka", records, lambda item: to_kafka(settings, item))
        op.output("kafka_out", kmsgs, KafkaSink([spec.bootstrap], topic=None))
    return flow
