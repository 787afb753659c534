"""Hostile GPT answers through the real openai SDK and a local server that sends them as
written: bodies of another shape, deep nesting, duplicate keys, tool calls, absurd usage, each a
classified failure, never a crash; and hostile news through the desk and its gateway, which
cannot lift a limit or leave the fence. The cases that need no server are
tests/unit/test_gpt_hardening.py."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.gpt.client import ChatMessage, FailureKind, GptClient
from connectors.sim.openai_server import LocalOpenAIServer, Scenario
from models.core.messages import (
    Branch,
    GptCall,
    GptOutcome,
    NewsItem,
    Order,
    StrategyRecord,
    ms_to_datetime,
)
from models.desk.desk import TextEvent
from models.gpt.decider import fallback_controller
from models.gpt.prompt import (
    SYSTEM_PROMPT,
)
from models.strategy.spec import (
    MAX_ANSWER_BYTES,
    STRICT_SCHEMA_NAME,
    GptDecision,
    strict_json_schema,
)
from tests.support.gpt import MIN, T0, Desk, decision, ev, make_settings, of
from tests.unit.test_gpt_hardening import FENCE_ATTACKS, OTHER_ATTACKS, TEMPLATE_ATTACKS
from tests.unit.test_gpt_prompt import _split

D = Decimal
HOLD = {"action": "hold", "strategy": None, "rationale": "wait", "confidence": 0.3}
QUESTION: list[ChatMessage] = [{"role": "user", "content": "decide"}]


# ------------------------------------------------------------------------------ a raw server


class RawServer(LocalOpenAIServer):
    """The project's server, but each chat answer is a whole response body given by the test
    (the scripted scenario only says "answer"): bodies the SDK was never meant to see."""

    def __init__(self) -> None:
        super().__init__(api_key="sk-raw-test")
        self.bodies: list[Any] = []

    def _completion(self, body: dict[str, Any], scenario: Scenario) -> dict[str, Any]:
        out: dict[str, Any] = self.bodies.pop(0)
        return out

    def send(self, *bodies: Any) -> None:
        self.bodies.extend(bodies)
        self.script(*(Scenario.answer("") for _ in bodies))


@pytest.fixture
def raw_server() -> Any:
    with RawServer() as server:
        yield server


def completion(
    message: Any = None,
    finish_reason: Any = "stop",
    usage: Any = None,
    *,
    choices: Any = ...,
) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": "c", "object": "chat.completion", "created": 0, "model": "m"}
    if choices is ...:
        choices = [{"index": 0, "message": message, "finish_reason": finish_reason}]
    doc["choices"] = choices
    doc["usage"] = usage or {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    return doc


def assistant(content: Any, **extra: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content, "refusal": None, **extra}


def _ask(server: LocalOpenAIServer, explicit: bool) -> Any:
    client = GptClient(server.base_url, server.api_key, "m", timeout_s=5.0, max_retries=0)
    schema = strict_json_schema() if explicit else None
    try:
        return client.ask(QUESTION, GptDecision, schema=schema, schema_name=STRICT_SCHEMA_NAME)
    finally:
        client.close()


# ------------------------------------------------------------------ answers the client refuses

GOOD_TEXT = json.dumps(HOLD)
DEEP = '{"action": "hold", "strategy": ' + '{"a": ' * 5_000 + "1" + "}" * 5_000 + "}"

CONTENT_CASES: list[tuple[str, str, FailureKind, str]] = [
    ("markdown fence", f"```json\n{GOOD_TEXT}\n```", FailureKind.MALFORMED, "not valid JSON"),
    ("two objects", GOOD_TEXT + GOOD_TEXT, FailureKind.MALFORMED, "not valid JSON"),
    ("object then prose", GOOD_TEXT + "\nHope this helps!", FailureKind.MALFORMED, "JSON"),
    ("deep array", "[" * 50_000, FailureKind.MALFORMED, "not valid JSON"),
    ("deep object in a field", DEEP, FailureKind.MALFORMED, "not valid JSON"),
    (
        "duplicate key hides the action",
        '{"action":"hold","action":"create","strategy":null,"rationale":"","confidence":0}',
        FailureKind.MALFORMED,
        "repeats the key 'action'",
    ),
    (
        "oversized answer",
        GOOD_TEXT[:-1] + ', "pad": "' + "x" * MAX_ANSWER_BYTES + '"}',
        FailureKind.MALFORMED,
        "longer than",
    ),
    ("whitespace only", "   \n\t ", FailureKind.MALFORMED, "empty answer"),
    (
        "tool-call shaped JSON",
        json.dumps({"tool_calls": [{"function": {"name": "GptDecision", "arguments": "{}"}}]}),
        FailureKind.SCHEMA_VIOLATION,
        "outside the schema",
    ),
    (
        "refusal written as JSON",
        json.dumps({"refusal": "I cannot help with trading"}),
        FailureKind.SCHEMA_VIOLATION,
        "outside the schema",
    ),
    (
        "answer wrapped in an envelope",
        json.dumps({"decision": HOLD}),
        FailureKind.SCHEMA_VIOLATION,
        "outside the schema",
    ),
    ("lone surrogate", GOOD_TEXT.replace('"wait"', '"\\ud800"'), FailureKind.MALFORMED, "JSON"),
    (
        "integer of ten thousand digits",
        GOOD_TEXT.replace("0.3", "9" * 10_000),
        FailureKind.MALFORMED,
        "",
    ),
]


@pytest.mark.parametrize("explicit", [True, False], ids=["explicit_schema", "sdk_schema"])
@pytest.mark.parametrize(
    ("why", "content", "kind", "detail"), CONTENT_CASES, ids=[c[0] for c in CONTENT_CASES]
)
def test_hostile_answer_content_is_classified_not_raised(
    openai_server: LocalOpenAIServer,
    why: str,
    content: str,
    kind: FailureKind,
    detail: str,
    explicit: bool,
) -> None:
    openai_server.script(Scenario.answer(content))
    result = _ask(openai_server, explicit)
    assert result.failure in (kind, FailureKind.MALFORMED, FailureKind.SCHEMA_VIOLATION), why
    assert result.parsed is None and not result.ok
    if explicit:  # our own validation path: the exact kind and reason
        assert result.failure is kind, (why, result.detail)
        assert detail in result.detail, (why, result.detail)
    assert result.raw_text is None or len(result.raw_text) <= MAX_ANSWER_BYTES


def _raw_cases() -> list[tuple[str, Any, FailureKind, str]]:
    return [
        ("no choices key", {"id": "c", "object": "chat.completion"}, FailureKind.MALFORMED, ""),
        ("empty choices", completion(choices=[]), FailureKind.MALFORMED, "no choices"),
        ("choices null", completion(choices=None), FailureKind.MALFORMED, ""),
        ("choice null", completion(choices=[None]), FailureKind.MALFORMED, ""),
        ("choices a string", completion(choices="stop"), FailureKind.MALFORMED, ""),
        ("message null", completion(None), FailureKind.MALFORMED, ""),
        (
            "message missing",
            completion(choices=[{"index": 0, "finish_reason": "stop"}]),
            FailureKind.MALFORMED,
            "",
        ),
        ("body is a list", [GOOD_TEXT], FailureKind.MALFORMED, ""),
        ("body is a string", GOOD_TEXT, FailureKind.MALFORMED, ""),
        (
            "tool call, no content",
            completion(
                assistant(
                    None,
                    tool_calls=[
                        {
                            "id": "t1",
                            "type": "function",
                            "function": {"name": "GptDecision", "arguments": GOOD_TEXT},
                        }
                    ],
                ),
                "tool_calls",
            ),
            FailureKind.MALFORMED,
            "tool call",
        ),
        (
            "tool call beside a valid content",
            completion(
                assistant(
                    GOOD_TEXT,
                    tool_calls=[
                        {
                            "id": "t1",
                            "type": "function",
                            "function": {"name": "raise_limits", "arguments": "{}"},
                        }
                    ],
                ),
                "tool_calls",
            ),
            FailureKind.MALFORMED,
            "tool call",
        ),
        (
            "refusal beside a valid content",
            completion(assistant(GOOD_TEXT, refusal="I won't")),
            FailureKind.REFUSAL,
            "refused",
        ),
        (
            "valid JSON but finish_reason=length",
            completion(assistant(GOOD_TEXT), "length"),
            FailureKind.MALFORMED,
            "truncated",
        ),
        ("content is an object", completion(assistant(HOLD)), FailureKind.MALFORMED, ""),
        ("content is a number", completion(assistant(5)), FailureKind.MALFORMED, ""),
    ]


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic warns on the odd shapes
@pytest.mark.parametrize("explicit", [True, False], ids=["explicit_schema", "sdk_schema"])
@pytest.mark.parametrize(
    ("why", "body", "kind", "detail"), _raw_cases(), ids=[c[0] for c in _raw_cases()]
)
def test_response_bodies_of_another_shape_are_malformed_not_raised(
    raw_server: RawServer, why: str, body: Any, kind: FailureKind, detail: str, explicit: bool
) -> None:
    raw_server.send(body)
    result = _ask(raw_server, explicit)
    if kind is FailureKind.MALFORMED:
        # The SDK's own parser may report a shape problem as an outside-the-schema answer.
        assert result.failure in (FailureKind.MALFORMED, FailureKind.SCHEMA_VIOLATION), why
    else:
        assert result.failure is kind, (why, result.detail)
    assert result.parsed is None, why
    if explicit:
        assert result.failure is kind and detail in result.detail, (why, result.detail)


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": -5, "completion_tokens": -1}, (0, 0)),
        ({"prompt_tokens": True, "completion_tokens": 2.5}, (0, 0)),
        ({"prompt_tokens": "10", "completion_tokens": None}, (0, 0)),
        ({"prompt_tokens": 10**40, "completion_tokens": 7}, (2**53, 7)),
    ],
)
def test_absurd_usage_is_clamped_so_the_call_can_be_costed(
    raw_server: RawServer, usage: dict[str, Any], expected: tuple[int, int]
) -> None:
    raw_server.send(completion(assistant(GOOD_TEXT), usage=usage))
    result = _ask(raw_server, explicit=True)
    assert result.ok
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == expected


# ----------------------------------------------------------------- end to end, through the desk


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    ("why", "body", "kind"),
    [
        ("deep nesting", completion(assistant(DEEP)), "malformed"),
        (
            "duplicate action",
            completion(
                assistant(json.dumps(decision())[:-1] + ', "action": "create", "action": "create"}')
            ),
            "malformed",
        ),
        ("choice null", completion(choices=[None]), "malformed"),
        (
            "tool call",
            completion(
                assistant(
                    None,
                    tool_calls=[
                        {
                            "id": "t",
                            "type": "function",
                            "function": {"name": "x", "arguments": json.dumps(decision())},
                        }
                    ],
                ),
                "tool_calls",
            ),
            "malformed",
        ),
    ],
)
def test_broken_responses_fall_back_to_the_local_engine_in_the_desk(
    raw_server: RawServer, tmp_path: Path, why: str, body: Any, kind: str
) -> None:
    raw_server.send(body)
    desk = Desk(raw_server, make_settings(tmp_path))
    out = desk.feed(ev(0, branch=Branch.STRATEGIC))
    rec = desk.records()[f"ABC@{T0 + MIN}"]
    assert rec.rounds[0].proposal.controller == fallback_controller(kind), why
    (call,) = of(GptCall, out)
    assert call.outcome == GptOutcome(kind)
    assert of(StrategyRecord, out) == []


def test_negative_usage_does_not_crash_the_desk_and_the_answer_is_used(
    raw_server: RawServer, tmp_path: Path
) -> None:
    usage = {"prompt_tokens": -100, "completion_tokens": -1}
    raw_server.send(completion(assistant(json.dumps(decision())), usage=usage))
    desk = Desk(raw_server, make_settings(tmp_path))
    out = desk.feed(ev(0, branch=Branch.STRATEGIC))
    (call,) = of(GptCall, out)
    assert call.outcome is GptOutcome.OK and call.cost == 0
    assert call.prompt_tokens == 0 and call.completion_tokens == 0
    assert of(Order, out)[0].quantity == D(100)  # 10 % of 100 000 at 100, as asked


def test_hostile_news_through_the_desk_cannot_lift_a_limit_or_leave_the_fence(
    openai_server: LocalOpenAIServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path)
    texts = [*FENCE_ATTACKS, *TEMPLATE_ATTACKS, *OTHER_ATTACKS[:-1]]
    events: list[Any] = [
        TextEvent(
            NewsItem(
                id=f"n{i}",
                ts=ms_to_datetime(T0 + MIN - 1000 * (i + 1)),
                source="wire",
                headline=text[:500] or "x",
                symbols=["ABC"],
            )
        )
        for i, text in enumerate(texts)
    ]
    # The model "obeys" the news: the compiler still holds the configured cap.
    openai_server.script(Scenario.answer(decision(position_fraction=1.0)))
    desk = Desk(openai_server, settings)
    desk.feed(*events, ev(0, branch=Branch.STRATEGIC))
    system, user = (m["content"] for m in openai_server.chat_requests[0].body["messages"])
    assert system == SYSTEM_PROMPT
    before, lines, after = _split(user)
    assert lines and all(json.loads(line)["symbols"] == ["ABC"] for line in lines)
    context_line = before.split("\n")[
        before.split("\n").index(next(ln for ln in before.split("\n") if ln.startswith("CONTEXT")))
        + 1
    ]
    limits = json.loads(context_line)["limits"]
    assert limits["max_position_fraction"] == "0.2"
    assert limits["max_order_notional"] == str(settings.risk.max_order_notional)
    for word in ("lifted", "exceed", "im_start", "INST", "obey", "1e12"):
        assert word not in before + after, word
    rec = desk.records()[f"ABC@{T0 + MIN}"]
    assert rec.rounds[0].proposal.controller == fallback_controller("rejected")
    assert "above the configured cap" in (of(GptCall, desk.out)[0].detail)
    assert of(StrategyRecord, desk.out) == []


def test_a_flood_of_far_future_news_does_not_push_the_current_news_out(
    openai_server: LocalOpenAIServer, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, gpt={"digest_items": 3})
    real = [
        TextEvent(
            NewsItem(
                id=f"real{i}",
                ts=ms_to_datetime(T0 + MIN - 1000 * (i + 1)),
                source="wire",
                headline=f"genuine headline {i}",
                symbols=["ABC"],
            )
        )
        for i in range(3)
    ]
    flood = [
        TextEvent(
            NewsItem(
                id=f"forged{i}",
                ts=ms_to_datetime(4_070_908_800_000 + i),  # 2099
                source="spam",
                headline=f"forged headline {i}",
                symbols=["ABC"],
            )
        )
        for i in range(500)
    ]
    openai_server.script(Scenario.answer(decision()))
    desk = Desk(openai_server, settings)
    desk.feed(ev(-1))  # the bars' clock is known before the news arrive
    desk.feed(*real, *flood, ev(0, branch=Branch.STRATEGIC))
    user = openai_server.chat_requests[0].body["messages"][1]["content"]
    for i in range(3):
        assert f"genuine headline {i}" in user
    assert "forged headline" not in user
    assert len(desk.logic.desk.texts["ABC"]) <= 4 * 3  # the buffer stays bounded
