"""The GPT seam has one of each (issue 10, item 7): one chat message type, one outcome
vocabulary, one answer path in the gateway, the prompt hash computed once and carried, the
budget checked by one rule. Each test here pins one of them."""

from __future__ import annotations

import enum
import importlib
import pickle
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import models.gpt.prompt as prompt_module
from connectors.gpt.cache import AnswerStore, CacheMode
from connectors.gpt.client import GptClient
from connectors.gpt.gateway import AnswerPath, GptGateway
from connectors.gpt.spend import SpendGuard, SpendLedger
from connectors.sim.openai_server import LocalOpenAIServer, Scenario
from models.core.commands import AskGpt
from models.core.messages import Branch, GptCall, GptOutcome, GptRequest
from models.desk.desk import TradingDesk
from models.desk.gpt_session import GptSession
from models.gpt.cost import DailyBudget, budget_allows
from models.gpt.decider import Fallback, GptAnswer, Question, fallback_controller
from tests.support.gpt import (
    GOOD,
    MODEL,
    PRICES,
    T0,
    Desk,
    decision,
    ev,
    make_settings,
    of,
)

D = Decimal
DAY = date(2026, 11, 25)
NOON_S = 1_795_608_000.0  # 2026-11-25 12:00 UTC

# ------------------------------------------------------------------ one outcome vocabulary

TABLE_VALUES = {
    "ok", "timeout", "rate_limited", "server_error", "client_error", "connection", "malformed",
    "schema_violation", "refusal", "circuit_open", "no_key", "cached", "replayed",
    "replay_miss", "budget_exhausted",
}  # fmt: skip
"""What `gpt_calls.outcome` held before the seam had one vocabulary: unchanged."""
FALLBACK_ONLY = {"rejected", "risk_refused", "no_answer"}
"""Reasons only a fallback gives (`local (gpt fallback: ...)`), never a call row's outcome."""
SEAM_MODULES = (
    "connectors.gpt.cache",
    "connectors.gpt.client",
    "connectors.gpt.gateway",
    "connectors.gpt.spend",
    "models.gpt.cost",
    "models.gpt.decider",
    "models.gpt.prompt",
    "models.desk.gpt_session",
    "models.desk.gpt_decisions",
)


def test_one_vocabulary_with_the_values_the_tables_had() -> None:
    assert {o.value for o in GptOutcome} == TABLE_VALUES | FALLBACK_ONLY
    assert {o for o in GptOutcome if o.answered} == {
        GptOutcome.OK,
        GptOutcome.CACHED,
        GptOutcome.REPLAYED,
    }


@pytest.mark.parametrize("module", SEAM_MODULES)
def test_no_module_of_the_seam_keeps_a_vocabulary_of_its_own(module: str) -> None:
    """No mirror enum (the client's `FailureKind`, the cache's `CacheFailure` were ones): an
    enum of the seam sharing a value with `GptOutcome` would be a second vocabulary."""
    mod = importlib.import_module(module)
    for name, value in vars(mod).items():
        defined_here = isinstance(value, type) and value.__module__ == module
        if defined_here and issubclass(value, enum.Enum):
            shared = {str(m.value) for m in value} & {o.value for o in GptOutcome}
            assert not shared, f"{module}.{name} repeats outcome values {shared}"


@pytest.mark.parametrize("kind", list(GptOutcome))
def test_fallback_controller_names_keep_their_text(kind: GptOutcome) -> None:
    assert fallback_controller(kind) == f"local (gpt fallback: {kind.value})"
    assert f"gpt fallback ({Fallback(kind, '').kind})" == f"gpt fallback ({kind.value})"


def test_an_answer_without_a_decision_or_failure_falls_back_as_no_answer() -> None:
    from models.config.settings import Settings
    from models.gpt.decider import GptDecider

    call = GptCall(
        call_id="x/gpt0", ts_ms=0, decision_id="x", symbol="ABC", model="m",
        prompt_hash="h", outcome=GptOutcome.OK,
    )  # fmt: skip
    settings = Settings.model_validate({"symbols": {"ABC": {}}})
    why = GptDecider(settings).interpret(GptAnswer("x/gpt0", None, None, "", call, False), None)
    assert isinstance(why, Fallback) and why.kind is GptOutcome.NO_ANSWER
    failed = GptAnswer("x/gpt0", None, GptOutcome.REFUSAL, "no", call, False)
    why = GptDecider(settings).interpret(failed, None)
    assert isinstance(why, Fallback) and why.kind is GptOutcome.REFUSAL and why.detail == "no"


# ------------------------------------------------------------------ the prompt hash, once


@pytest.fixture
def hash_counter(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every computation of a prompt hash, by the module that asked for it: the function is
    replaced in every loaded module of the project that holds it."""
    real = prompt_module.prompt_hash
    callers: list[str] = []

    def counting(*args: Any, **kwargs: Any) -> str:
        callers.append(sys._getframe(1).f_globals["__name__"])
        return real(*args, **kwargs)

    for name, module in list(sys.modules.items()):
        ours = name.startswith(("models.", "connectors.", "dataflows.", "api."))
        if ours and getattr(module, "prompt_hash", None) is real:
            monkeypatch.setattr(module, "prompt_hash", counting)
    return callers


@pytest.fixture
def requests_built(monkeypatch: pytest.MonkeyPatch) -> list[GptRequest]:
    built: list[GptRequest] = []
    real = GptSession.request

    def request(self: GptSession, *args: Any) -> GptRequest:
        built.append(real(self, *args))
        return built[-1]

    monkeypatch.setattr(GptSession, "request", request)
    return built


def test_the_prompt_hash_is_computed_once_per_request_and_carried(
    openai_server: LocalOpenAIServer,
    tmp_path: Path,
    hash_counter: list[str],
    requests_built: list[GptRequest],
) -> None:
    """Asked, refused by the risk gate and asked again, recorded, replayed, refused by the
    budget: every `gpt_calls` row and every recording carries the hash of its request, and
    the only hash ever computed is the desk's, one per request."""
    events = [ev(0, branch=Branch.STRATEGIC), ev(1, symbol="XYZ", branch=Branch.STRATEGIC)]
    big = decision(position_fraction=0.2)
    openai_server.script(Scenario.answer(big), Scenario.answer(GOOD), Scenario.answer(GOOD))
    settings = make_settings(tmp_path, risk={"max_order_notional": "15000"})
    rows: list[GptCall] = []
    with AnswerStore(tmp_path / "rec") as store:
        first = Desk(openai_server, settings, store=store, mode=CacheMode.AUTO)
        first.feed(*events)
        rows += of(GptCall, first.out)
        assert len(openai_server.chat_requests) == 3  # ABC twice (refused, then approved), XYZ
        assert all(r.prompt_hash in store for r in requests_built)
    with AnswerStore(tmp_path / "rec") as store:
        again = Desk(openai_server, settings, store=store, mode=CacheMode.REPLAY)
        again.feed(*events)
        rows += of(GptCall, again.out)
    broke = make_settings(
        tmp_path, risk={"max_order_notional": "15000"}, gpt={"daily_budget_usd": "0"}
    )
    poor = Desk(openai_server, broke)
    poor.feed(*events)
    rows += of(GptCall, poor.out)

    assert len(openai_server.chat_requests) == 3  # the replay and the refusals called nothing
    outcomes = [r.outcome for r in rows]
    assert (
        outcomes
        == [GptOutcome.OK] * 3 + [GptOutcome.REPLAYED] * 3 + [GptOutcome.BUDGET_EXHAUSTED] * 2
    )
    assert len(requests_built) == len(rows) == 8
    for row, request in zip(rows, requests_built, strict=True):
        assert row.call_id == request.request_id and row.prompt_hash == request.prompt_hash
    assert hash_counter == ["models.desk.gpt_session"] * len(requests_built)
    assert len({r.prompt_hash for r in requests_built}) == 3  # the same 3 questions each time


def test_a_request_restored_without_its_hash_is_not_asked(
    openai_server: LocalOpenAIServer, tmp_path: Path, requests_built: list[GptRequest]
) -> None:
    """A request pickled by an earlier version (no `prompt_hash`) restores with an empty
    one; the gateway answers it `client_error` without a call (the desk then falls back)
    rather than ask, record or log a question under a hash nobody computed."""
    desk = Desk(openai_server, make_settings(tmp_path), inline=False)
    desk.feed(ev(0, branch=Branch.STRATEGIC))  # asked: out to a worker
    desk.gateway.wait(5)
    (request,) = requests_built
    old_state = request.__getstate__()
    old_state["__dict__"] = {k: v for k, v in old_state["__dict__"].items() if k != "prompt_hash"}
    legacy = GptRequest.__new__(GptRequest)
    legacy.__setstate__(old_state)
    assert legacy.prompt_hash == "" and legacy.messages == request.messages
    assert pickle.loads(pickle.dumps(legacy)) == legacy
    openai_server.reset()
    answer = desk.gateway.answer(legacy)
    assert answer.failure is GptOutcome.CLIENT_ERROR and "no prompt hash" in answer.detail
    assert answer.call.prompt_hash == "" and not answer.billed
    assert openai_server.requests == []
    desk.gateway.close()


# ------------------------------------------------------------------ one answer path


@pytest.fixture
def path_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The prompt hash of every question that went through `AnswerPath.ask`."""
    seen: list[str] = []
    real = AnswerPath.ask

    def ask(self: AnswerPath, *args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["prompt_hash"])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(AnswerPath, "ask", ask)
    return seen


def test_inline_and_worker_answers_come_from_the_one_path(
    openai_server: LocalOpenAIServer,
    tmp_path: Path,
    path_calls: list[str],
    requests_built: list[GptRequest],
) -> None:
    """The same question answered inline (a backtest) and by a worker (live) gives the same
    answer and row, through the same path: inline and the workers only decide where it runs."""
    openai_server.script(*[Scenario.answer(GOOD, usage=(1000, 200))] * 2)
    inline = Desk(openai_server, make_settings(tmp_path), inline=True)
    inline.feed(ev(0, branch=Branch.STRATEGIC))
    live = Desk(openai_server, make_settings(tmp_path), inline=False)
    live.feed(ev(0, branch=Branch.STRATEGIC))
    live.poll()
    a, b = requests_built
    assert a == b and path_calls == [a.prompt_hash, b.prompt_hash]
    (row_inline,) = of(GptCall, inline.out)
    (row_live,) = of(GptCall, live.out)
    assert row_inline.model_copy(update={"latency_ms": 0}) == row_live.model_copy(
        update={"latency_ms": 0}
    )
    assert row_live.outcome is GptOutcome.OK and row_live.cost == D("0.0014")
    inline.gateway.close()
    live.gateway.close()


class Exploding:
    """A client whose every call is a bug."""

    model = MODEL

    def ask(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")


def test_a_gateway_error_is_an_answer_with_the_carried_hash(
    tmp_path: Path, path_calls: list[str], requests_built: list[GptRequest]
) -> None:
    """Inline, the error stops the run (as an unwritable recording does); a worker turns it
    into a `client_error` answer, its row carrying the request's hash, billed nothing."""
    settings = make_settings(tmp_path)
    gateway = GptGateway(settings, Exploding(), None, prices=PRICES)
    desk = TradingDesk.create(settings, gpt=True)
    (ask,) = of(AskGpt, desk.on_bar_event(ev(0, branch=Branch.STRATEGIC)))
    request = ask.request
    with pytest.raises(RuntimeError, match="boom"):
        gateway.answer(request)
    gateway.submit(request)
    gateway.wait(5)
    (answer,) = gateway.ready()
    assert answer.failure is GptOutcome.CLIENT_ERROR and not answer.billed
    assert answer.detail == "gateway error: RuntimeError: boom"
    assert answer.call.prompt_hash == request.prompt_hash and answer.call.cost == 0
    assert answer.call.price_known and answer.call.outcome is GptOutcome.CLIENT_ERROR
    assert path_calls == [request.prompt_hash] * 2
    gateway.close()


def test_the_gateway_refuses_a_client_of_another_model(tmp_path: Path) -> None:
    """The desk hashes with `gpt.model`: a client of another model would be answered from the
    recording of a question it was never asked."""
    client = GptClient(None, None, "another-model")
    with pytest.raises(ValueError, match="another-model"):
        GptGateway(make_settings(tmp_path), client, None)


# ------------------------------------------------------------------ the budget rule


AMOUNTS = [D(x) for x in ("0", "0.001", "0.002", "0.003", "0.005", "0.0050", "1")]


@pytest.mark.parametrize("cap", AMOUNTS)
def test_both_budgets_apply_the_one_rule(cap: Decimal, tmp_path: Path) -> None:
    """The desk's event-day budget and the gateway's wall-clock guard decide by
    `budget_allows`; the guard reserves no estimate."""
    for spent in AMOUNTS:
        for estimate in AMOUNTS:
            budget = DailyBudget(cap, spent_by_day={DAY: spent})
            assert budget.can_spend(DAY, estimate) == budget_allows(spent, cap, estimate)
        ledger = SpendLedger(tmp_path / f"{cap}-{spent}")
        ledger.record(DAY.isoformat(), spent, "m")
        guard = SpendGuard(ledger, cap, lambda: NOON_S)
        assert (guard.refusal(guard.today()) is None) == budget_allows(spent, cap)
        assert budget_allows(spent, cap) == (spent < cap)


def test_the_rule_decides_for_both_budgets(
    openai_server: LocalOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Change the rule and both budgets change with it: the desk asks nothing, and a gateway
    asked anyway calls nothing."""
    import connectors.gpt.spend as spend_module
    import models.gpt.cost as cost_module

    def never(spent: Decimal, cap: Decimal, estimate: Decimal | None = None) -> bool:
        return False

    settings = make_settings(tmp_path, gpt={"daily_budget_usd": "1000"})
    desk = TradingDesk.create(settings, gpt=True)
    request = desk.gpt.request(f"ABC@{T0}", "ABC", 0, T0, Question((), None))
    monkeypatch.setattr(cost_module, "budget_allows", never)
    monkeypatch.setattr(spend_module, "budget_allows", never)
    out = desk.on_bar_event(ev(0, branch=Branch.STRATEGIC))
    assert of(AskGpt, out) == []
    assert [c.outcome for c in of(GptCall, out)] == [GptOutcome.BUDGET_EXHAUSTED]
    client = GptClient(openai_server.base_url, openai_server.api_key, MODEL, max_retries=0)
    ledger = SpendLedger(tmp_path / "spend")
    gateway = GptGateway(settings, client, None, prices=PRICES, ledger=ledger)
    answer = gateway.answer(request)
    assert answer.failure is GptOutcome.BUDGET_EXHAUSTED and "not called" in answer.detail
    assert openai_server.requests == []
    gateway.close()
