"""GptClient on the real `openai` SDK against the project's local OpenAI-compatible server.

Every failure an endpoint or a model can produce is scripted on the server and must come back
classified, never raised; retries are the SDK's own (checked by counting requests).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import openai
import pytest
from pydantic import BaseModel, ConfigDict, Field

from connectors.gpt.client import (
    ENDPOINT_FAILURES,
    GptClient,
    GptResult,
)
from connectors.sim.openai_server import (
    LocalOpenAIServer,
    OpenAIServerError,
    Scenario,
    ScenarioKind,
)
from models.core.messages import ChatTurn, GptOutcome
from models.gpt.circuit_breaker import BreakerState, CircuitBreaker

ROOT = Path(__file__).resolve().parents[2]
MODEL = "stratflow-local"


class Plan(BaseModel):
    """A tiny stand-in for the strategy schema (strict like the project's messages: an unknown
    field is an error, not silently dropped)."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["buy", "sell", "hold"]
    weight: float = Field(ge=0, le=1)
    rationale: str


GOOD = {"action": "buy", "weight": 0.25, "rationale": "momentum"}
# What a caller with its own strict schema sends (narrower than Plan: no "sell").
NARROW_SCHEMA = {
    "type": "object",
    "properties": {
        "action": {"type": "string", "enum": ["buy", "hold"]},
        "weight": {"type": "number", "minimum": 0, "maximum": 1},
        "rationale": {"type": "string"},
    },
    "required": ["action", "weight", "rationale"],
    "additionalProperties": False,
}
MESSAGES: list[ChatTurn] = [
    ChatTurn(role="system", content="Answer with a plan."),
    ChatTurn(role="user", content="ABC closed at 101.0, rsi 55."),
]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _client(
    server: LocalOpenAIServer,
    *,
    timeout_s: float = 2.0,
    max_retries: int = 0,
    breaker: CircuitBreaker | None = None,
    clock: FakeClock | None = None,
    api_key: str | None = None,
) -> GptClient:
    return GptClient(
        base_url=server.base_url,
        api_key=api_key if api_key is not None else server.api_key,
        model=MODEL,
        timeout_s=timeout_s,
        max_retries=max_retries,
        breaker=breaker,
        clock=clock or FakeClock(),
    )


def _state(client: GptClient) -> BreakerState:
    """Read through a call: mypy would otherwise keep an earlier assert's narrowing."""
    return client.breaker_state


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------ good answers


def test_good_structured_answer_is_parsed(openai_server: LocalOpenAIServer) -> None:
    openai_server.script(Scenario.answer(GOOD, usage=(120, 30)))
    with _client(openai_server) as client:
        result = client.ask(MESSAGES, Plan)
    assert result.ok and result.failure is None
    assert result.parsed == Plan(action="buy", weight=0.25, rationale="momentum")
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (120, 30)
    assert result.usage.total_tokens == 150
    assert result.latency_s > 0
    assert result.raw_text is not None and json.loads(result.raw_text) == GOOD
    assert result.request_id and result.request_id.startswith("chatcmpl-")
    assert result.model == MODEL

    [req] = openai_server.chat_requests
    assert req.headers["authorization"] == f"Bearer {openai_server.api_key}"
    assert req.body["model"] == MODEL
    assert req.body["messages"] == [m.model_dump() for m in MESSAGES]  # what the SDK sends
    fmt = req.body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Plan" and fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == ["action", "rationale", "weight"]


def test_usage_is_reported_for_every_answer(openai_server: LocalOpenAIServer) -> None:
    openai_server.script(Scenario.answer(GOOD))
    result = _client(openai_server).ask(MESSAGES, Plan)
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0


def test_models_endpoint_through_the_sdk(openai_server: LocalOpenAIServer) -> None:
    sdk = openai.OpenAI(base_url=openai_server.base_url, api_key=openai_server.api_key)
    assert [m.id for m in sdk.models.list()] == [MODEL]
    sdk.close()


# ------------------------------------------------------------------------------ failures


@pytest.mark.parametrize(
    ("scenario", "kind"),
    [
        (Scenario.malformed(), GptOutcome.MALFORMED),
        (Scenario.malformed("not json at all"), GptOutcome.MALFORMED),
        (Scenario.schema_violation({"action": "buy"}), GptOutcome.SCHEMA_VIOLATION),
        (Scenario.schema_violation({**GOOD, "action": "short"}), GptOutcome.SCHEMA_VIOLATION),
        (Scenario.schema_violation({**GOOD, "weight": 1.5}), GptOutcome.SCHEMA_VIOLATION),
        (Scenario.schema_violation({**GOOD, "extra": 1}), GptOutcome.SCHEMA_VIOLATION),
        (Scenario.refused(), GptOutcome.REFUSAL),
        (Scenario.server_error(500), GptOutcome.SERVER_ERROR),
        (Scenario.server_error(503), GptOutcome.SERVER_ERROR),
        (Scenario.rate_limited(), GptOutcome.RATE_LIMITED),
        (Scenario.drop(), GptOutcome.CONNECTION),
    ],
    ids=lambda v: v.kind.value if isinstance(v, Scenario) else None,
)
@pytest.mark.parametrize("explicit", [False, True], ids=["sdk_schema", "explicit_schema"])
def test_each_failure_is_classified_and_not_raised(
    openai_server: LocalOpenAIServer, scenario: Scenario, kind: GptOutcome, explicit: bool
) -> None:
    openai_server.script(scenario)
    schema = NARROW_SCHEMA if explicit else None
    result = _client(openai_server).ask(MESSAGES, Plan, schema=schema)
    assert result.failure is kind, result.detail
    assert result.parsed is None and not result.ok
    assert result.detail
    assert len(openai_server.chat_requests) == 1  # max_retries=0: exactly one attempt
    if scenario.kind in {
        ScenarioKind.MALFORMED,
        ScenarioKind.SCHEMA_VIOLATION,
        ScenarioKind.REFUSAL,
    }:
        # The endpoint answered: what it said and what it cost are kept for the log.
        assert result.usage.completion_tokens > 0
        assert result.raw_text == (scenario.content or scenario.refusal)
        assert result.request_id
    else:
        assert result.usage.total_tokens == 0 and result.raw_text is None


def test_schema_violation_names_the_field(openai_server: LocalOpenAIServer) -> None:
    openai_server.script(Scenario.schema_violation({**GOOD, "weight": 1.5}))
    result = _client(openai_server).ask(MESSAGES, Plan)
    assert result.failure is GptOutcome.SCHEMA_VIOLATION
    assert "weight" in result.detail


@pytest.mark.parametrize("explicit", [False, True], ids=["sdk_schema", "explicit_schema"])
def test_truncated_answer_is_malformed(openai_server: LocalOpenAIServer, explicit: bool) -> None:
    cut = Scenario(ScenarioKind.ANSWER, content='{"action": "bu', finish_reason="length")
    openai_server.script(cut)
    schema = NARROW_SCHEMA if explicit else None
    result = _client(openai_server).ask(MESSAGES, Plan, schema=schema)
    assert result.failure is GptOutcome.MALFORMED
    assert "truncated" in result.detail and result.raw_text == '{"action": "bu'


@pytest.mark.parametrize("explicit", [False, True], ids=["sdk_schema", "explicit_schema"])
def test_content_filter_is_a_refusal(openai_server: LocalOpenAIServer, explicit: bool) -> None:
    openai_server.script(Scenario(ScenarioKind.ANSWER, content="", finish_reason="content_filter"))
    schema = NARROW_SCHEMA if explicit else None
    result = _client(openai_server).ask(MESSAGES, Plan, schema=schema)
    assert result.failure is GptOutcome.REFUSAL


def test_explicit_schema_is_sent_as_given_and_answer_validated(
    openai_server: LocalOpenAIServer,
) -> None:
    openai_server.script(Scenario.answer(GOOD))
    client = _client(openai_server)
    result = client.ask(MESSAGES, Plan, schema=NARROW_SCHEMA, schema_name="plan_v2")
    assert result.ok and result.parsed == Plan.model_validate(GOOD)
    [req] = openai_server.chat_requests
    assert req.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "plan_v2", "schema": NARROW_SCHEMA, "strict": True},
    }


def test_rate_limit_then_success_is_retried_by_the_sdk(openai_server: LocalOpenAIServer) -> None:
    openai_server.script(Scenario.rate_limited(retry_after_s=0.05), Scenario.answer(GOOD))
    result = _client(openai_server, max_retries=2).ask(MESSAGES, Plan)
    assert result.ok, result.detail
    reqs = openai_server.chat_requests
    assert [r.status for r in reqs] == [429, 200]
    assert [r.headers["x-stainless-retry-count"] for r in reqs] == ["0", "1"]
    assert reqs[0].body == reqs[1].body


def test_retries_exhausted_then_reported(openai_server: LocalOpenAIServer) -> None:
    openai_server.script(*(Scenario.rate_limited(retry_after_s=0.02) for _ in range(3)))
    result = _client(openai_server, max_retries=2).ask(MESSAGES, Plan)
    assert result.failure is GptOutcome.RATE_LIMITED
    assert len(openai_server.chat_requests) == 3  # first attempt + max_retries


def test_server_error_then_success_is_retried(openai_server: LocalOpenAIServer) -> None:
    openai_server.script(Scenario.server_error(503), Scenario.answer(GOOD))
    result = _client(openai_server, max_retries=1).ask(MESSAGES, Plan)
    assert result.ok, result.detail
    assert len(openai_server.chat_requests) == 2


def test_answer_failures_are_not_retried(openai_server: LocalOpenAIServer) -> None:
    openai_server.script(Scenario.malformed(), Scenario.answer(GOOD))
    result = _client(openai_server, max_retries=2).ask(MESSAGES, Plan)
    assert result.failure is GptOutcome.MALFORMED
    assert len(openai_server.chat_requests) == 1 and openai_server.pending == 1


def test_timeout_is_honoured(openai_server: LocalOpenAIServer) -> None:
    # The answer is held for an hour (the fixture's stop wakes it): a TIMEOUT can only be
    # the client's own 0.5 s, on a loaded machine as on an idle one.
    openai_server.script(Scenario.slow(GOOD, delay_s=3600.0))
    result = _client(openai_server, timeout_s=0.5).ask(MESSAGES, Plan)
    assert result.failure is GptOutcome.TIMEOUT, result.detail
    assert result.latency_s >= 0.45
    assert "0.5 s" in result.detail


def test_slow_but_in_time_is_fine(openai_server: LocalOpenAIServer) -> None:
    openai_server.script(Scenario.slow(GOOD, delay_s=0.1))
    result = _client(openai_server, timeout_s=0.5).ask(MESSAGES, Plan)
    assert result.ok and result.latency_s >= 0.1


def test_concurrent_calls_do_not_wait_for_each_other(openai_server: LocalOpenAIServer) -> None:
    """One client serves several symbols at once: the four answers are held until all four
    questions have reached the server, which calls made one after another never would."""
    openai_server.script(*(Scenario.slow(GOOD, delay_s=3600.0) for _ in range(4)))
    client = _client(openai_server)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(client.ask, MESSAGES, Plan) for _ in range(4)]
        while openai_server.pending and not any(f.done() for f in futures):
            time.sleep(0.01)
        openai_server.release_slow()
        results = [f.result() for f in futures]
    assert all(r.ok for r in results), [r.detail for r in results]


def test_connection_refused() -> None:
    # A timeout far beyond the test's life: CONNECTION (not TIMEOUT) can only be the refusal
    # itself, reported at once, however loaded the machine.
    client = GptClient(f"http://127.0.0.1:{_closed_port()}/v1", "sk-x", MODEL, 600.0, 0)
    result = client.ask(MESSAGES, Plan)
    assert result.failure is GptOutcome.CONNECTION, result.detail


def test_wrong_key_is_a_client_error_and_not_echoed(openai_server: LocalOpenAIServer) -> None:
    wrong = "sk-wrong-0123456789"
    result = _client(openai_server, api_key=wrong).ask(MESSAGES, Plan)
    assert result.failure is GptOutcome.CLIENT_ERROR
    assert "401" in result.detail
    assert wrong not in repr(result)
    assert openai_server.requests[0].status == 401
    assert openai_server.pending == 0  # the queue is not consumed by a refused request


def test_unscripted_request_is_a_clear_client_error(openai_server: LocalOpenAIServer) -> None:
    result = _client(openai_server, max_retries=2).ask(MESSAGES, Plan)
    assert result.failure is GptOutcome.CLIENT_ERROR
    assert "no scenario queued" in result.detail
    assert len(openai_server.chat_requests) == 1


# ------------------------------------------------------------------------------ circuit breaker


def test_circuit_opens_after_repeated_errors_and_stops_calling(
    openai_server: LocalOpenAIServer,
) -> None:
    clock = FakeClock()
    client = _client(
        openai_server, breaker=CircuitBreaker(failure_threshold=3, cooldown_s=30), clock=clock
    )
    openai_server.script(*(Scenario.server_error() for _ in range(3)))
    kinds = [client.ask(MESSAGES, Plan).failure for _ in range(3)]
    assert kinds == [GptOutcome.SERVER_ERROR] * 3
    assert _state(client) is BreakerState.OPEN

    openai_server.script(Scenario.answer(GOOD))
    for _ in range(5):
        result = client.ask(MESSAGES, Plan)
        assert result.failure is GptOutcome.CIRCUIT_OPEN
        assert "next try in" in result.detail
    assert len(openai_server.chat_requests) == 3  # not called while open

    clock.now += 30  # cool-down over: half-open, one trial call goes through
    assert _state(client) is BreakerState.HALF_OPEN
    result = client.ask(MESSAGES, Plan)
    assert result.ok, result.detail
    assert len(openai_server.chat_requests) == 4
    assert _state(client) is BreakerState.CLOSED


def test_failed_trial_reopens_the_circuit(openai_server: LocalOpenAIServer) -> None:
    clock = FakeClock()
    client = _client(
        openai_server, breaker=CircuitBreaker(failure_threshold=2, cooldown_s=10), clock=clock
    )
    openai_server.script(Scenario.drop(), Scenario.drop(), Scenario.server_error(503))
    assert client.ask(MESSAGES, Plan).failure is GptOutcome.CONNECTION
    assert client.ask(MESSAGES, Plan).failure is GptOutcome.CONNECTION
    clock.now += 10
    assert client.ask(MESSAGES, Plan).failure is GptOutcome.SERVER_ERROR  # the trial
    assert _state(client) is BreakerState.OPEN
    assert client.ask(MESSAGES, Plan).failure is GptOutcome.CIRCUIT_OPEN
    assert len(openai_server.chat_requests) == 3


def test_bad_answers_do_not_open_the_circuit(openai_server: LocalOpenAIServer) -> None:
    client = _client(openai_server, breaker=CircuitBreaker(failure_threshold=2, cooldown_s=10))
    openai_server.script(
        Scenario.malformed(), Scenario.refused(), Scenario.schema_violation({"x": 1})
    )
    kinds = {client.ask(MESSAGES, Plan).failure for _ in range(3)}
    assert kinds.isdisjoint(ENDPOINT_FAILURES)
    assert _state(client) is BreakerState.CLOSED


def test_circuit_opening_is_logged_once(
    openai_server: LocalOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = _client(openai_server, breaker=CircuitBreaker(failure_threshold=2, cooldown_s=10))
    openai_server.script(*(Scenario.server_error() for _ in range(2)))
    with caplog.at_level(logging.INFO, logger="stratflow.gpt"):
        for _ in range(5):
            client.ask(MESSAGES, Plan)
    opened = [r for r in caplog.records if "circuit opened" in r.getMessage()]
    assert len(opened) == 1


# ------------------------------------------------------------------------------ secrets, no key


def test_key_is_sent_as_bearer_and_never_shown(
    openai_server: LocalOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    key = openai_server.api_key
    assert key is not None
    openai_server.script(
        Scenario.answer(GOOD), Scenario.server_error(), Scenario.malformed(), Scenario.refused()
    )
    client = _client(openai_server)
    with caplog.at_level(logging.DEBUG):  # every logger, the SDK's and HTTP client's included
        results = [client.ask(MESSAGES, Plan) for _ in range(4)]
    assert all(r.headers["authorization"] == f"Bearer {key}" for r in openai_server.requests)
    assert key not in repr(client) and key not in str(client) and key not in client.describe()
    assert "api_key=set" in repr(client)
    for result in results:
        assert key not in repr(result)
    assert caplog.records  # the calls were logged...
    assert key not in caplog.text  # ...without the key
    for record in caplog.records:
        assert key not in record.getMessage()


def test_no_key_and_no_base_url_reports_no_key() -> None:
    client = GptClient.from_env(env={})
    assert not client.enabled
    assert "local engine" in client.describe()
    result = client.ask(MESSAGES, Plan)
    assert result.failure is GptOutcome.NO_KEY and not result.ok
    assert result.usage.total_tokens == 0


def test_no_key_ignores_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-process-env")
    client = GptClient(base_url=None, api_key=None, model=MODEL, timeout_s=1, max_retries=0)
    assert client.ask(MESSAGES, Plan).failure is GptOutcome.NO_KEY


def test_from_env_reads_key_base_url_and_model(openai_server: LocalOpenAIServer) -> None:
    key = openai_server.api_key
    assert key is not None
    env = {"OPENAI_API_KEY": key, "OPENAI_BASE_URL": openai_server.base_url, "OPENAI_MODEL": "m1"}
    client = GptClient.from_env(env=env, timeout_s=2, max_retries=0)
    assert client.enabled and client.model == "m1"
    assert openai_server.base_url in client.describe()
    openai_server.script(Scenario.answer(GOOD))
    assert client.ask(MESSAGES, Plan).ok
    [req] = openai_server.chat_requests
    assert req.body["model"] == "m1"
    assert GptClient.from_env("m2", env=env).model == "m2"


def test_base_url_without_key_works_for_keyless_servers() -> None:
    with LocalOpenAIServer(api_key=None) as server:
        server.script(Scenario.answer(GOOD))
        client = GptClient.from_env(env={"OPENAI_BASE_URL": server.base_url}, max_retries=0)
        assert client.enabled and "no key" in client.describe()
        assert client.ask(MESSAGES, Plan).ok


def test_credentials_in_the_base_url_are_not_shown() -> None:
    client = GptClient("https://user:hunter2@llm.example/v1", None, MODEL, 1, 0)
    assert "hunter2" not in repr(client) and "hunter2" not in client.describe()


# ------------------------------------------------------------------------------ prompt hash


def test_the_client_never_hashes_a_question() -> None:
    """The prompt hash is the desk's, computed once and carried on the request
    (`models.desk.gpt_session`): the client neither computes nor returns one."""
    import connectors.gpt.client as client_module

    assert "prompt_hash" not in GptResult.__dataclass_fields__
    assert not hasattr(client_module, "prompt_hash")


# ------------------------------------------------------------------------------ the server


def test_server_records_and_resets(openai_server: LocalOpenAIServer) -> None:
    openai_server.script(Scenario.answer(GOOD), Scenario.answer(GOOD))
    _client(openai_server).ask(MESSAGES, Plan)
    assert openai_server.pending == 1 and len(openai_server.requests) == 1
    assert openai_server.requests[0].scenario is ScenarioKind.ANSWER
    openai_server.reset()
    assert openai_server.pending == 0 and openai_server.requests == []


def test_server_stops_promptly_with_a_slow_answer_in_flight() -> None:
    server = LocalOpenAIServer().start()
    server.script(Scenario.slow(GOOD, delay_s=3600))
    before = set(threading.enumerate())
    _client(server, timeout_s=0.2).ask(MESSAGES, Plan)
    held = [t for t in set(threading.enumerate()) - before if "process_request" in t.name]
    assert held, "the slow answer is still held by its handler"
    server.stop()
    for thread in held:
        thread.join()  # it holds for an hour unless stop() woke it
    assert not server.running


def test_server_reports_a_port_in_use() -> None:
    with LocalOpenAIServer() as first, pytest.raises(OpenAIServerError, match="cannot listen"):
        LocalOpenAIServer(port=first.port).start()


def test_server_runs_by_hand() -> None:
    """`python -m connectors.sim.openai_server` prints its base URL and stops on SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "connectors.sim.openai_server", "--port", "0", "--key", "sk-hand"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        client = GptClient(base_url, "sk-hand", MODEL, 2.0, 0)
        result = client.ask(MESSAGES, Plan)  # default answer "{}" is off-schema
        assert result.failure is GptOutcome.SCHEMA_VIOLATION
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
