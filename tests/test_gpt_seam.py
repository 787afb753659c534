"""The GPT seam has one of each (issue 10, item 7): one chat message type, one outcome
vocabulary, one answer path in the gateway, the prompt hash computed once and carried, the
budget checked by one rule. Each test here pins one of them."""

from __future__ import annotations

import enum
import importlib

import pytest

from models.core.messages import GptCall, GptOutcome
from models.gpt.decider import Fallback, GptAnswer, fallback_controller

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
