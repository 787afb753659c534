"""The validation gate end to end across the GPT seam: the flow's desk adapter, the gateway, the
real openai SDK and the project's OpenAI-compatible server. A GPT answer that would have lost
40 % in the flash-crash scenario is sent back with that number and never trades; the better
answer after it passes and trades; the decision log holds both verdicts with their figures."""

from __future__ import annotations

import json
from pathlib import Path

from connectors.sim.openai_server import LocalOpenAIServer, Scenario
from models.core.messages import DecisionRecord, DecisionStatus, Fill, Order
from tests.support.builders import of
from tests.support.gpt import Desk
from tests.support.validation import CAREFUL, RECKLESS, events, gate_settings, walk


def test_a_strategy_losing_40pct_in_a_flash_crash_is_sent_back_and_a_better_one_trades(
    openai_server: LocalOpenAIServer, tmp_path: Path
) -> None:
    settings = gate_settings(tmp_path)
    openai_server.script(Scenario.answer(RECKLESS), Scenario.answer(CAREFUL))
    desk = Desk(openai_server, settings)
    bars = events(settings, walk(21, 320), {299})
    out = desk.feed(*bars[:300])

    _, second = openai_server.chat_requests
    question = second.body["messages"][-1]["content"]
    (line,) = [x for x in question.splitlines() if "validation:ABC:flash_crash_loss" in x]
    lost = float(line.split("lost ")[1].split("%")[0])
    assert 39.0 <= lost <= 41.0, line  # the reckless answer's loss in the crash, as a number
    assert "limit 25%" in line and "limit 0.25" in line
    assert second.body["messages"][-2]["role"] == "assistant"  # GPT's own refused answer
    assert json.loads(second.body["messages"][-2]["content"])["strategy"]["position_fraction"] == 1

    records = [r for r in of(DecisionRecord, out) if r.decision_id == f"ABC@{bars[299].bar.end_ms}"]
    final = records[-1]
    assert final.status is DecisionStatus.EXECUTED
    refused, passed = final.rounds
    assert refused.verdict is not None and not refused.verdict.approved
    assert passed.verdict is not None and passed.verdict.approved
    crash = {c.name: c for c in refused.verdict.checks}["validation:ABC:flash_crash_loss"]
    assert (
        not crash.passed and crash.value is not None and round(float(crash.value) * 100, 1) == lost
    )
    # Only the approved round placed an order: the reckless strategy never traded.
    (order,) = of(Order, out)
    assert order.decision_id == final.decision_id and order.version == 1
    fills = of(Fill, desk.feed(*bars[300:302]))
    assert fills and fills[0].quantity * fills[0].price < 21_000  # a fifth of the equity
