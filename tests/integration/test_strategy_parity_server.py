"""A GPT strategy trades exactly as the same strategy run by the local engine, with the
questions going through the flow's desk adapter, the gateway, the openai SDK and the project's
OpenAI-compatible server (the backtest case without a server is
tests/unit/test_strategy_parity.py)."""

from __future__ import annotations

from pathlib import Path

from connectors.sim.openai_server import LocalOpenAIServer, Scenario
from models.desk.desk import TradingDesk
from tests.support.gpt import Desk  # the flow's desk adapter with a gateway
from tests.unit.test_strategy_parity import CROSS, bar_events, run, settings, sma_cross_doc, trades


def test_through_the_gateway_and_the_local_openai_server(
    openai_server: LocalOpenAIServer, tmp_path: Path
) -> None:
    """The same, with the questions going through the flow's desk adapter, the gateway, the
    openai SDK and the project's OpenAI-compatible server (answered inline, a backtest)."""
    triggers = [{**CROSS, "strategic": True}]
    local_cfg = settings(tmp_path, triggers, "local", "0s")
    gpt_cfg = settings(tmp_path, triggers, "gpt", "0s")
    local = run(TradingDesk.create(local_cfg), bar_events(local_cfg, 5, 300), None)
    openai_server.default = Scenario.answer(sma_cross_doc(0.2, 10_000))
    desk = Desk(openai_server, gpt_cfg)
    for event in bar_events(gpt_cfg, 5, 300):
        desk.feed(event)
    assert len(openai_server.chat_requests) >= 5
    assert trades(desk.out) == trades(local) and len(trades(local)) >= 10
