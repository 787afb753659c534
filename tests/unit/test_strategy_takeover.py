"""The running GPT strategy keeps its actions while GPT is asked, and an answer takes over
from it by stated rules (issue 9, item 7; models/strategy/takeover.py): the strategy acts on a
strategic bar and on every bar while a question is out; an answer that repeats it keeps it
running with its state; another strategy replaces it from the next bar, warmed so that its
crosses_* see the bars before it. Answers are fed to the desk directly."""

from __future__ import annotations

import dataclasses
import pickle
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from models.core.commands import AskGpt
from models.core.events import BarEvent
from models.core.messages import (
    Branch,
    DecisionRecord,
    DecisionStatus,
    GptRequest,
    Order,
    OrderStatus,
    StrategyRecord,
    StrategyStatus,
)
from models.desk.desk import TradingDesk
from models.strategy.spec import GptDecision
from tests.support import builders as build
from tests.support.gpt import MIN, T0, answer, decision, make_settings, of

D = Decimal

# Buys while rsi < 30 and sells once rsi > 70: a strategy whose actions are easy to place.
RSI = GptDecision.model_validate(
    decision(
        entry={"left": "rsi", "op": "<", "right": 30.0},
        exit={"left": "rsi", "op": ">", "right": 70.0},
        stop_loss_pct=None,
    )
)
CROSS = GptDecision.model_validate(
    decision(
        name="ema-cross",
        entry={"left": "ema", "op": "crosses_above", "right": "vwap"},
        exit={"left": "ema", "op": "crosses_below", "right": "vwap"},
        stop_loss_pct=None,
    )
)


def ev(i: int, branch: Branch | None = None, **values: float) -> BarEvent:
    bar = build.bar("ABC", T0 + i * MIN, 100, volume=10, trades=3)
    signals = (
        []
        if branch is None
        else [
            build.signal(
                "ABC",
                bar.end_ms,
                "breakout",
                kind="breakout",
                strategic=branch is Branch.STRATEGIC,
            )
        ]
    )
    return build.bar_event(bar, signals, branch, values={"rsi": 50.0, **values})


def asked(out: list[Any]) -> list[GptRequest]:
    """The questions the desk asks in `out`."""
    return [c.request for c in of(AskGpt, out)]


def end(i: int) -> int:
    return T0 + (i + 1) * MIN


@pytest.fixture
def desk(tmp_path: Path) -> TradingDesk:
    """A desk whose strategy (RSI) runs and holds 99 ABC after bar 1 (ordered: an estimate of
    100 at the close, 10 % of equity; bought: what 10 % of equity pays at the open, fee
    included)."""
    settings = make_settings(tmp_path, gpt={"cooldown": "0s"})
    desk = TradingDesk.create(settings, gpt=True)
    (request,) = asked(desk.on_bar_event(ev(0, Branch.STRATEGIC, rsi=20.0)))
    out = desk.on_gpt_answer(answer(request, RSI))
    assert [(o.side.value, o.quantity) for o in of(Order, out)] == [("buy", D(100))]
    desk.on_bar_event(ev(1))  # filled at this bar's open
    assert desk.portfolio.quantity("ABC") == D(99)
    return desk


def orders_of(out: list[Any]) -> list[tuple[str, str, Decimal]]:
    """The orders placed (not the updates of earlier ones)."""
    return [
        (o.decision_id, o.side.value, o.quantity)
        for o in of(Order, out)
        if o.status is OrderStatus.PENDING
    ]


def test_the_running_strategy_acts_on_the_bar_where_gpt_is_asked(desk: TradingDesk) -> None:
    out = desk.on_bar_event(ev(2, Branch.STRATEGIC, rsi=75.0))
    assert orders_of(out) == [(f"ABC@{end(2)}/strategy", "sell", D(99))]
    (request,) = asked(out)
    assert request.decision_id == f"ABC@{end(2)}"
    records = {r.decision_id: r for r in of(DecisionRecord, out)}
    assert records[f"ABC@{end(2)}/strategy"].status is DecisionStatus.EXECUTED
    assert records[f"ABC@{end(2)}"].status is DecisionStatus.PENDING


def test_the_running_strategy_acts_while_a_question_is_out(desk: TradingDesk) -> None:
    (request,) = asked(desk.on_bar_event(ev(2, Branch.STRATEGIC)))
    # A routine bar, then a strategic one (coalesced: one question at a time), both while
    # the answer is still out: the strategy's exit is not lost.
    out = desk.on_bar_event(ev(3, Branch.STRATEGIC, rsi=75.0))
    assert orders_of(out) == [(f"ABC@{end(3)}/strategy", "sell", D(99))]
    (coalesced,) = [r for r in of(DecisionRecord, out) if r.decision_id == f"ABC@{end(3)}"]
    assert coalesced.status is DecisionStatus.NO_ACTION and "still pending" in coalesced.note
    out = desk.on_bar_event(ev(4, Branch.ROUTINE, rsi=20.0))  # sold at the open: flat
    assert [(i, side) for i, side, _ in orders_of(out)] == [(f"ABC@{end(4)}", "buy")]
    assert desk.gpt.pending  # the question is still out all the while
    desk.on_gpt_answer(answer(request, RSI))
    assert not desk.gpt.pending


def test_an_answer_repeating_the_running_strategy_keeps_it_running(desk: TradingDesk) -> None:
    running = desk.strategies.strategies["ABC"]
    bars_before = running.bars
    out = desk.on_bar_event(ev(2, Branch.STRATEGIC, rsi=75.0))
    (request,) = asked(out)
    out = desk.on_gpt_answer(answer(request, RSI))
    assert orders_of(out) == []  # the running strategy already sold on this bar
    (final,) = of(DecisionRecord, out)
    assert final.status is DecisionStatus.NO_ACTION and "keeps running" in final.note
    assert of(StrategyRecord, out) == []  # neither replaced nor started again
    assert desk.strategies.strategies["ABC"] is running and running.bars == bars_before + 1
    # Its state and track record go on: the sell fills and counts as its trade.
    desk.on_bar_event(ev(3))
    assert running.trades == 1


def test_another_strategy_takes_over_from_the_next_bar_warmed(desk: TradingDesk) -> None:
    # ema below vwap on bars 2 and 3; the answer arrives after bar 3; ema crosses above on
    # bar 4: the new strategy must see it (it never ran on bars 2-3, it was warmed with them).
    desk.on_bar_event(ev(2, Branch.ROUTINE, rsi=75.0, ema=99.0, vwap=100.0))  # RSI sells
    out = desk.on_bar_event(ev(3, Branch.STRATEGIC, ema=99.0, vwap=100.0))
    (request,) = asked(out)
    out = desk.on_gpt_answer(answer(request, CROSS))
    assert orders_of(out) == []  # it starts on the next bar
    (final,) = of(DecisionRecord, out)
    assert "takes over from the next bar" in final.note
    statuses = [(s.strategy_id.split("@")[0], s.status) for s in of(StrategyRecord, out)]
    assert statuses == [
        ("rsi-swing", StrategyStatus.REPLACED),
        ("ema-cross", StrategyStatus.ACTIVE),
    ]
    # The desk's state (feature history included) survives a snapshot.
    restored = TradingDesk.create(desk.settings, gpt=True)
    restored.restore(pickle.loads(pickle.dumps(desk.state())))
    for d in (desk, restored):
        out = d.on_bar_event(ev(4, ema=101.0, vwap=100.0))
        assert orders_of(out) == [(f"ABC@{end(4)}", "buy", D(99))]  # fees paid: 99 fit
        assert of(DecisionRecord, out)[0].rounds[0].proposal.strategy.startswith("ema-cross")


def test_a_new_strategy_where_none_runs_crosses_on_its_first_bar(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, gpt={"cooldown": "0s"})
    desk = TradingDesk.create(settings, gpt=True)
    desk.on_bar_event(ev(0, ema=99.0, vwap=100.0))
    desk.on_bar_event(ev(1, ema=100.0, vwap=100.0))  # a tie keeps "below"
    (request,) = asked(desk.on_bar_event(ev(2, Branch.STRATEGIC, ema=101.0, vwap=100.0)))
    out = desk.on_gpt_answer(answer(request, CROSS))
    assert orders_of(out) == [(f"ABC@{end(2)}", "buy", D(100))]


@pytest.mark.parametrize("failure", ["server_error", "timeout", "rejected"])
def test_a_failed_answer_leaves_the_running_strategy_in_charge(
    desk: TradingDesk, failure: str
) -> None:
    """GPT could not decide while a strategy runs: it has acted on the bar, and the local
    engine does not trade the same trigger again on top of it."""
    out = desk.on_bar_event(ev(2, Branch.STRATEGIC, rsi=75.0))
    (request,) = asked(out)
    if failure == "rejected":  # an answer the compiler refuses (a symbol not configured)
        bad = decision(universe=["NOPE"])
        got = answer(request, GptDecision.model_validate(bad))
    else:
        got = dataclasses.replace(answer(request, RSI), decision=None, failure=failure)
    out = desk.on_gpt_answer(got)
    assert orders_of(out) == []
    (final,) = of(DecisionRecord, out)
    assert final.status is DecisionStatus.NO_ACTION
    assert final.note.startswith("gpt fallback (") and "keeps running" in final.note
    assert desk.strategies.strategies["ABC"].strategy.strategy_id.startswith("rsi-swing")
