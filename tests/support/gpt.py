"""The GPT desk kit shared by the GPT tests: settings with GPT on, bar events, answers, and the
flow's desk adapter wired to a local OpenAI-compatible server.

Everything but `Desk` is pure (the unit lane uses it); `Desk` imports the gateway, the client
and the flow's adapter only when one is made.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from models.config.settings import Settings
from models.core.events import BarEvent, TextEvent
from models.core.messages import (
    Branch,
    DecisionRecord,
    Direction,
    GptCall,
    GptOutcome,
    GptRequest,
)
from models.gpt.cost import ModelPrice, PriceTable
from models.gpt.decider import GptAnswer
from models.strategy.spec import GptDecision
from tests.support import builders as build
from tests.support.builders import MIN, of

if TYPE_CHECKING:
    from connectors.gpt.cache import AnswerStore, CacheMode
    from connectors.sim.openai_server import LocalOpenAIServer

D = Decimal
T0 = 1_700_000_000_000 // MIN * MIN
MODEL = "stratflow-local"
PRICES = PriceTable(prices={MODEL: ModelPrice(D("1"), D("2"))})
T = TypeVar("T")


def make_settings(tmp: Path, **overrides: Any) -> Settings:
    """Two symbols, GPT answers recorded under `tmp`; `overrides` update whole sections.
    The validation gate is off: these desks see a handful of bars, on which it refuses every
    strategy (too little history); its own tests turn it on (`validation={"enabled": True}`)."""
    doc: dict[str, Any] = {
        "symbols": {"ABC": {}, "XYZ": {}},
        "execution": {"initial_cash": "100000", "fee_bps": "10", "slippage_bps": "0"},
        "strategy": {"target_fraction": "0.1", "strategic_fraction": "0.2"},
        "gpt": {"model": MODEL, "cache_dir": str(tmp / "answers"), "max_wait": "10m"},
        "validation": {"enabled": False},
    }
    for section, values in overrides.items():
        doc.setdefault(section, {}).update(values)
    return Settings.model_validate(doc)


def ev(
    i: int,
    close: str = "100",
    *,
    symbol: str = "ABC",
    rsi: float = 50.0,
    branch: Branch | None = None,
    direction: Direction = Direction.LONG,
) -> BarEvent:
    """The `i`-th one-minute bar after T0 at a flat `close`; with a `branch`, one breakout
    signal (strategic on the strategic branch)."""
    bar = build.bar(symbol, T0 + i * MIN, close, volume=10, trades=3)
    signals = (
        [
            build.signal(
                symbol,
                bar.end_ms,
                "breakout",
                kind="breakout",
                direction=direction,
                strength=0.8,
                strategic=branch is Branch.STRATEGIC,
            )
        ]
        if branch is not None
        else []
    )
    return build.bar_event(bar, signals, branch, values={"rsi": rsi})


def decision(action: str = "create", **strategy: Any) -> dict[str, Any]:
    """A GPT answer as JSON: an RSI swing strategy on ABC; `strategy` overrides its fields."""
    spec: dict[str, Any] = {
        "name": "rsi-swing",
        "version": 1,
        "universe": ["ABC"],
        "entry": {"left": "rsi", "op": "<", "right": 60.0},
        "exit": {"left": "rsi", "op": ">", "right": 70.0},
        "position_fraction": 0.1,
        "stop_loss_pct": 0.05,
        "take_profit_pct": None,
        "target_weights": [],
        "horizon_bars": 50,
        "rationale": "momentum with an RSI exit",
        "confidence": 0.7,
    }
    spec.update(strategy)
    return {
        "action": action,
        "strategy": spec if action != "hold" else None,
        "rationale": "breakout on rising volume",
        "confidence": 0.7,
    }


GOOD = decision()


def answer(request: GptRequest, decision: GptDecision) -> GptAnswer:
    """The answer to `request` a backtest gives at once: `decision`, logged as a paid-for call
    that was not billed."""
    call = GptCall(
        call_id=request.request_id,
        ts_ms=request.ts_ms,
        decision_id=request.decision_id,
        round=request.round,
        symbol=request.symbol,
        model=MODEL,
        prompt_hash="-",
        outcome=GptOutcome.OK,
    )
    return GptAnswer(request.request_id, decision, None, "", call, billed=False)


class Desk:
    """The flow's desk adapter with a gateway to the local server (inline unless told)."""

    def __init__(
        self,
        server: LocalOpenAIServer,
        settings: Settings,
        *,
        store: AnswerStore | None = None,
        mode: CacheMode | None = None,
        inline: bool = True,
        timeout_s: float = 2.0,
        resume: bytes | None = None,
    ) -> None:
        from connectors.gpt.cache import CacheMode
        from connectors.gpt.client import GptClient
        from connectors.gpt.gateway import GptGateway
        from dataflows.adapters import DeskLogic

        client = GptClient(
            server.base_url, server.api_key, MODEL, timeout_s=timeout_s, max_retries=0
        )
        self.gateway = GptGateway(
            settings, client, store, mode=mode or CacheMode.AUTO, prices=PRICES
        )
        self.logic = DeskLogic(settings, frozenset({"market#0"}), resume, self.gateway, inline)
        self.out: list[object] = []

    def feed(self, *events: BarEvent | TextEvent) -> list[object]:
        out, _ = self.logic.on_batch(list(events))
        got = list(out)
        self.out.extend(got)
        return got

    def poll(self, until: float = 30.0) -> list[object]:
        """Live mode: wait for the answers out now, as the flow's notify loop does. It returns
        as soon as nothing is in flight; `until` only bounds a wait that a loaded machine makes
        long (the answers themselves are scripted), so it is generous."""
        got: list[object] = []
        deadline = time.monotonic() + until
        while time.monotonic() < deadline:
            out, _ = self.logic.on_notify()
            got.extend(out)
            if not self.gateway.in_flight and not self.logic.desk.gpt.pending:
                break
            time.sleep(0.02)
        out, _ = self.logic.on_notify()
        got.extend(out)
        self.out.extend(got)
        return got

    def records(self) -> dict[str, DecisionRecord]:
        """The newest version of each decision."""
        newest: dict[str, DecisionRecord] = {}
        for r in of(DecisionRecord, self.out):
            if r.decision_id not in newest or r.version >= newest[r.decision_id].version:
                newest[r.decision_id] = r
        return newest
