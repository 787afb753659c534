"""The whole dataflow (dataflows/pipeline.py) run in-process by `bytewax.testing.run_main`, fed
by a `TestingSource` of `(partition key, RawBatch)` items and writing to a capturing sink: no
broker, no store. The flow must log exactly what the plain loop logs (the same batches through
`PartitionIngest` and `TradingDesk`, every GPT question answered in place), table by table, in
order; inline, a GPT answer lands on the bar that asked."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bytewax.testing import TestingSink, TestingSource, run_main
from pydantic import BaseModel

import dataflows.pipeline as pipeline
from connectors.files.replay import publish_order
from connectors.kafka.source import partition_key
from connectors.sim.scenario import generate_scenario, past_start_ms
from connectors.store.rows import table_for
from dataflows.lanes import is_desk_input
from dataflows.pipeline import FlowSource, FlowSpec, build_flow
from models.config.settings import Settings
from models.core.commands import AskGpt, is_command
from models.core.events import BarEvent, TextEvent
from models.core.messages import DecisionRecord, GptRequest, StrategyRecord
from models.desk.desk import DeskOutput, TradingDesk
from models.gpt.decider import GptAnswer
from models.market.ingest import PartitionIngest, RawBatch
from models.strategy.spec import GptDecision
from tests.support.gpt import decision as gpt_decision
from tests.unit.test_strategy_parity import CROSS, SYMBOLS, answer, settings

Rows = dict[str, list[BaseModel]]


def market_batches(cfg: Settings, seed: int, per_batch: int = 700) -> list[tuple[str, RawBatch]]:
    """A generated market stream as the Kafka source delivers it: batches of one partition
    (record time = the tick's time, as a producer stamps it), then its end."""
    duration = 4 * 3600
    ticks = generate_scenario(list(SYMBOLS), past_start_ms(duration), duration, 0.5, seed=seed)
    topic = cfg.kafka.topics.market
    records = [
        (offset, int(t.ts.timestamp() * 1000), t.model_dump_json().encode(), None)
        for offset, t in enumerate(publish_order(ticks))
    ]
    key = partition_key(topic, 0)
    batches = [
        (key, RawBatch(topic, 0, records[i : i + per_batch]))
        for i in range(0, len(records), per_batch)
    ]
    return [*batches, (key, RawBatch(topic, 0, [], end="final"))]


def plain_loop(
    cfg: Settings, batches: list[tuple[str, RawBatch]], decision: GptDecision | None
) -> Rows:
    """The models alone: ingest, then the desk; each question answered before the next event."""
    ingest = PartitionIngest(cfg)
    started = int(time.time() * 1000)
    ingest.now_ms = lambda: started  # as a bounded run's ingest judges producer times
    items: list[Any] = []
    for _, batch in batches:
        ingest.process_batch(batch, items)
    items.extend(ingest.flush())
    desk = TradingDesk.create(cfg, gpt=decision is not None)
    rows: Rows = defaultdict(list)

    def emit(outputs: list[DeskOutput]) -> None:
        for x in outputs:
            if isinstance(x, AskGpt):
                assert decision is not None
                emit(desk.on_gpt_answer(answer(x.request, decision)))
            else:
                rows[table_for(x)].append(x)

    for item in items:
        if isinstance(item, BarEvent):
            emit(desk.on_bar_event(item))
        elif isinstance(item, TextEvent):
            desk.on_text(item)
        elif not is_desk_input(item):
            rows[table_for(item)].append(item)
    return rows


class AnsweringGateway:
    """A GPT gateway that answers every question with one decision, inline only."""

    def __init__(self, decision: GptDecision) -> None:
        self.decision = decision
        self.in_flight = 0
        self.asked: list[str] = []

    def answer(self, request: GptRequest) -> GptAnswer:
        self.asked.append(request.request_id)
        return answer(request, self.decision)

    def submit(self, request: GptRequest) -> None:
        raise AssertionError("a bounded run asks inline")

    def ready(self) -> list[GptAnswer]:
        return []

    def wait(self, timeout_s: float | None = None) -> None:
        pass


def no_broker(*_args: Any, **_kwargs: Any) -> Any:
    raise AssertionError("the flow reached for Kafka or ClickHouse")


def run_flow(
    cfg: Settings,
    batches: list[tuple[str, RawBatch]],
    monkeypatch: pytest.MonkeyPatch,
    gateway: AnsweringGateway | None = None,
) -> Rows:
    for name in ("RawKafkaSource", "LaneKafkaSink", "ClickHouseSink"):
        monkeypatch.setattr(pipeline, name, no_broker)
    written: list[tuple[str, list[BaseModel]]] = []
    flow = build_flow(
        cfg,
        FlowSpec(bootstrap="", tail=False, kafka_out=False),
        store_sink=TestingSink(written),
        gateway=gateway,
        source=FlowSource(TestingSource(batches), ((cfg.kafka.topics.market, 0),)),
    )
    run_main(flow)
    rows: Rows = defaultdict(list)
    for table, batch in written:
        rows[table].extend(batch)
    return rows


def same(got: Rows, want: Rows) -> None:
    """Table by table, in order; alerts come from ingest and desk, so only as a set."""
    assert set(got) == set(want)
    for table in want:
        key: Callable[[list[BaseModel]], Any] = (
            (lambda rs: sorted(r.model_dump_json() for r in rs)) if table == "alerts" else list
        )
        assert key(got[table]) == key(want[table]), table


@pytest.mark.parametrize("seed", [1, 2])
def test_the_flow_logs_what_the_plain_loop_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    cfg = settings(tmp_path, [CROSS], "local", "0s")
    batches = market_batches(cfg, seed)
    want = plain_loop(cfg, batches, None)
    assert len(want["decisions"]) >= 5 and want["fills"]  # the stream does trade
    same(run_flow(cfg, batches, monkeypatch), want)


def test_an_inline_gpt_answer_lands_on_the_bar_that_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = settings(tmp_path, [{**CROSS, "strategic": True}], "gpt", "0s")
    # A strategy that enters at once and runs 20 bars: answers place orders and start
    # strategies, at the bar the answer finds.
    decision = GptDecision.model_validate(
        gpt_decision(
            universe=list(SYMBOLS),
            entry={"left": "rsi", "op": "<", "right": 101.0},
            exit={"left": "rsi", "op": ">", "right": 101.0},
            stop_loss_pct=None,
            horizon_bars=20,
        )
    )
    batches = market_batches(cfg, 3)
    gateway = AnsweringGateway(decision)
    got = run_flow(cfg, batches, monkeypatch, gateway)
    assert gateway.asked and len(got["gpt_calls"]) == len(gateway.asked)
    same(got, plain_loop(cfg, batches, decision))
    # Answered before the next event: what an answer does is stamped with the asking bar.
    started = [s for s in got["strategies"] if isinstance(s, StrategyRecord) and s.version == 1]
    assert len(started) >= 2
    for s in started:
        assert s.started_ms == int(s.activation_id.rsplit("@", 1)[1])
    records = [r for r in got["decisions"] if isinstance(r, DecisionRecord)]
    placed = [r for r in records if r.orders and r.note.startswith("gpt")]
    assert placed
    for record in placed:
        assert {o.placed_ms for o in record.orders} == {record.ts_ms}
    assert not any(is_command(r) for rows in got.values() for r in rows)
