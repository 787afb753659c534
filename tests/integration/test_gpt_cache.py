"""Record/replay of GPT answers: the answer store (connectors/gpt/cache.py) and the gateway's
answer path in front of it (connectors/gpt/gateway.py), through the real SDK and local server.

What matters for a backtest: a re-run from the recording sends no request at all (the local
server's request count proves it) and yields the same parsed answers; the recording survives a
crash mid-write (a torn last line is dropped, acknowledged answers are all there).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from connectors.gpt.cache import ANSWERS_FILE, AnswerStore, AnswerStoreError, CacheMode
from connectors.gpt.client import GptClient, GptUsage
from connectors.gpt.gateway import AnswerPath, AnswerSource, Asker, Reply
from connectors.sim.openai_server import LocalOpenAIServer, Scenario
from models.core.messages import ChatTurn, GptCall, GptOutcome, GptRequest, gpt_call_id
from models.gpt.cost import DEFAULT_PRICE_TABLE, PriceTable
from models.gpt.prompt import prompt_hash

ROOT = Path(__file__).resolve().parents[2]
MODEL = "stratflow-local"


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["buy", "sell", "hold"]
    weight: float = Field(ge=0, le=1)
    rationale: str


GOOD = {"action": "buy", "weight": 0.25, "rationale": "momentum"}


def _messages(text: str = "ABC closed at 101.0, rsi 55.") -> list[ChatTurn]:
    return [
        ChatTurn(role="system", content="Answer with a plan."),
        ChatTurn(role="user", content=text),
    ]


def _client(server: LocalOpenAIServer) -> GptClient:
    return GptClient(server.base_url, server.api_key, MODEL, timeout_s=2.0, max_retries=0)


def _offline() -> GptClient:
    """A client with neither key nor URL: any call it made would be `no_key`."""
    return GptClient(None, None, MODEL)


def _hash(messages: list[ChatTurn]) -> str:
    return prompt_hash(MODEL, messages, Plan)


def ask_via_path(
    client: Asker,
    store: AnswerStore,
    mode: CacheMode | str,
    messages: list[ChatTurn],
    response_model: type[Plan],
    *,
    schema: dict[str, object] | None = None,
    max_age_ms: int | None = None,
    prices: PriceTable = DEFAULT_PRICE_TABLE,
) -> Reply[Plan]:
    """The gateway's answer path in front of `store`, the question hashed once here (as the
    desk does for its requests)."""
    path = AnswerPath(client, store, CacheMode(mode), prices=prices, max_age_ms=max_age_ms)
    phash = prompt_hash(client.model, messages, response_model, schema)
    return path.ask(messages, response_model, prompt_hash=phash, schema=schema)


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


def test_round_trip_survives_reopen(tmp_path: Path) -> None:
    tricky = '{"rationale": "line\\nbreak, ünïcödé 🚀, \\"quotes\\""}\n'
    with AnswerStore(tmp_path / "rec") as store:
        assert store.get("h1") is None and len(store) == 0
        rec = store.put("h1", "gpt-4o", '{"a": 1}', GptUsage(10, 3))
        store.put("h2", "gpt-4o", tricky)
        assert rec.usage == GptUsage(10, 3) and rec.recorded_ms > 0
        assert store.get("h1") == '{"a": 1}' and "h2" in store
    again = AnswerStore(tmp_path / "rec")
    assert len(again) == 2
    assert again.get("h2") == tricky
    assert again.lookup("h1") == rec
    assert again.torn_bytes == 0
    # One line per record, whatever the text holds.
    assert len((tmp_path / "rec" / ANSWERS_FILE).read_bytes().splitlines()) == 2
    again.close()
    again.close()  # idempotent
    assert again.get("h1") == '{"a": 1}'  # memory still readable
    with pytest.raises(AnswerStoreError, match="closed"):
        again.put("h3", "m", "x")


def test_last_record_for_a_hash_wins(tmp_path: Path) -> None:
    with AnswerStore(tmp_path) as store:
        store.put("h", "m", "first")
        store.put("other", "m", "x")
        store.put("h", "m", "second")
        assert store.get("h") == "second"
    with AnswerStore(tmp_path) as store:
        assert store.get("h") == "second" and len(store) == 2


@pytest.mark.parametrize(
    "tail", [b'{"v":1,"prompt_hash":"h3","mod', b"\x00" * 37, b"{", b'{"v":1}']
)
def test_torn_last_line_is_dropped_and_appends_continue(tmp_path: Path, tail: bytes) -> None:
    with AnswerStore(tmp_path) as store:
        store.put("h1", "m", "a")
        store.put("h2", "m", "b")
    path = tmp_path / ANSWERS_FILE
    good = path.read_bytes()
    with path.open("ab") as f:  # a crash in the middle of the third write
        f.write(tail)
    with AnswerStore(tmp_path) as store:
        assert store.torn_bytes == len(tail)
        assert path.read_bytes() == good  # cut back to the last whole line
        assert [store.get(h) for h in ("h1", "h2", "h3")] == ["a", "b", None]
        store.put("h3", "m", "c")
    with AnswerStore(tmp_path) as store:
        assert store.torn_bytes == 0 and len(store) == 3 and store.get("h3") == "c"


def test_a_file_with_only_a_torn_line_opens_empty(tmp_path: Path) -> None:
    (tmp_path / ANSWERS_FILE).write_bytes(b'{"v":1,"pro')
    with AnswerStore(tmp_path) as store:
        assert len(store) == 0 and store.torn_bytes == 11
        store.put("h", "m", "x")
    assert AnswerStore(tmp_path).get("h") == "x"


@pytest.mark.parametrize(
    "bad",
    [b"not json", b'{"v":2,"prompt_hash":"h"}', b"[1,2]", b'{"v":1,"prompt_hash":"h"}'],
)
def test_a_damaged_complete_line_is_an_error(tmp_path: Path, bad: bytes) -> None:
    with AnswerStore(tmp_path) as store:
        store.put("h1", "m", "a")
    path = tmp_path / ANSWERS_FILE
    path.write_bytes(path.read_bytes() + bad + b"\n" + path.read_bytes())
    with pytest.raises(AnswerStoreError, match="line 2 is damaged"):
        AnswerStore(tmp_path)


def test_unusable_directory_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(AnswerStoreError, match="not usable"):
        AnswerStore(blocker / "sub")


def test_concurrent_puts_all_land_whole(tmp_path: Path) -> None:
    store = AnswerStore(tmp_path)

    def writer(t: int) -> None:
        for i in range(25):
            store.put(f"h{t}-{i}", "m", f"answer {t} {i} " + "x" * 500)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    store.close()
    again = AnswerStore(tmp_path)
    assert len(again) == 200
    assert again.get("h7-24") == "answer 7 24 " + "x" * 500


def test_every_acknowledged_answer_survives_a_kill(tmp_path: Path) -> None:
    """A writer process is SIGKILLed mid-stream: every put() it reported done is in the store,
    and the store opens cleanly."""
    code = textwrap.dedent(
        f"""
        import sys
        from connectors.gpt.cache import AnswerStore
        store = AnswerStore({str(tmp_path)!r})
        i = 0
        while True:
            store.put(f"h{{i}}", "m", "a" * 3000 + str(i))
            print(i, flush=True)
            i += 1
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    acknowledged = [proc.stdout.readline() for _ in range(30)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    with AnswerStore(tmp_path) as store:
        for line in acknowledged:
            i = int(line)
            assert store.get(f"h{i}") == "a" * 3000 + str(i)


# --------------------------------------------------------------------------------------------
# The answer path over the store, against the local OpenAI-compatible server
# --------------------------------------------------------------------------------------------


def test_no_request_at_all_on_a_hit(openai_server: LocalOpenAIServer, tmp_path: Path) -> None:
    messages = _messages()
    with AnswerStore(tmp_path) as store, _client(openai_server) as client:
        store.put(_hash(messages), MODEL, '{"action":"hold","weight":0,"rationale":"flat"}')
        for mode in (CacheMode.AUTO, CacheMode.REPLAY):
            result = ask_via_path(client, store, mode, messages, Plan)
            assert result.ok and result.source is AnswerSource.STORE
            assert result.parsed == Plan(action="hold", weight=0, rationale="flat")
            assert result.usage == GptUsage()  # nothing billed now
        assert openai_server.requests == []


def test_auto_calls_once_then_answers_from_the_store(
    openai_server: LocalOpenAIServer, tmp_path: Path
) -> None:
    messages = _messages()
    openai_server.script(Scenario.answer(GOOD, usage=(120, 30)))
    with AnswerStore(tmp_path) as store, _client(openai_server) as client:
        first = ask_via_path(client, store, "auto", messages, Plan)
        assert first.ok and first.source is AnswerSource.ENDPOINT
        assert first.outcome is GptOutcome.OK and first.usage == GptUsage(120, 30)
        assert store.lookup(first.prompt_hash) is not None
        second = ask_via_path(client, store, CacheMode.AUTO, messages, Plan)
        assert second.outcome is GptOutcome.CACHED and second.parsed == first.parsed
        assert second.prompt_hash == first.prompt_hash == _hash(messages)
    assert len(openai_server.chat_requests) == 1


def test_auto_reuses_an_answer_only_inside_the_window(
    openai_server: LocalOpenAIServer, tmp_path: Path
) -> None:
    messages = _messages()
    openai_server.script(Scenario.answer(GOOD), Scenario.answer(GOOD))
    with AnswerStore(tmp_path) as store, _client(openai_server) as client:
        ask_via_path(client, store, "auto", messages, Plan)
        inside = ask_via_path(client, store, "auto", messages, Plan, max_age_ms=3_600_000)
        assert inside.outcome is GptOutcome.CACHED
        time.sleep(0.01)
        stale = ask_via_path(client, store, "auto", messages, Plan, max_age_ms=5)
        assert stale.source is AnswerSource.ENDPOINT and stale.outcome is GptOutcome.OK
        replayed = ask_via_path(client, store, "replay", messages, Plan, max_age_ms=0)
        assert replayed.outcome is GptOutcome.REPLAYED  # a recording never expires in replay
    assert len(openai_server.chat_requests) == 2


def test_replay_of_a_recording_is_identical_and_makes_no_call(
    openai_server: LocalOpenAIServer, tmp_path: Path
) -> None:
    questions = [_messages(f"ABC closed at {100 + i}.0") for i in range(4)]
    answers = [{"action": "buy", "weight": 0.1 * i, "rationale": f"step {i} — ✓"} for i in range(4)]
    openai_server.script(*(Scenario.answer(a) for a in answers))
    with AnswerStore(tmp_path / "rec") as store, _client(openai_server) as client:
        recorded = [ask_via_path(client, store, "record", q, Plan) for q in questions]
    assert all(r.ok and r.outcome is GptOutcome.OK for r in recorded)
    assert len(openai_server.chat_requests) == 4
    openai_server.reset()

    # A new process of the backtest: fresh store object, and a client that could not call.
    with AnswerStore(tmp_path / "rec") as store:
        replayed = [ask_via_path(_offline(), store, "replay", q, Plan) for q in questions]
        # ...and with a live client the replay still sends nothing.
        with _client(openai_server) as client:
            again = [ask_via_path(client, store, "replay", q, Plan) for q in questions]
    assert [r.parsed for r in replayed] == [r.parsed for r in recorded]
    assert [r.parsed for r in again] == [r.parsed for r in recorded]
    assert [r.raw_text for r in replayed] == [r.raw_text for r in recorded]
    assert all(r.outcome is GptOutcome.REPLAYED for r in replayed + again)
    assert openai_server.requests == []


def test_replay_miss_is_a_failure_without_a_call(
    openai_server: LocalOpenAIServer, tmp_path: Path
) -> None:
    with AnswerStore(tmp_path) as store, _client(openai_server) as client:
        result = ask_via_path(client, store, CacheMode.REPLAY, _messages(), Plan)
    assert not result.ok and result.parsed is None
    assert result.failure is GptOutcome.REPLAY_MISS
    assert result.outcome is GptOutcome.REPLAY_MISS and result.source is AnswerSource.NONE
    assert result.prompt_hash[:12] in result.detail
    assert openai_server.requests == []


def test_record_mode_always_calls_and_the_newest_answer_wins(
    openai_server: LocalOpenAIServer, tmp_path: Path
) -> None:
    messages = _messages()
    newer = {**GOOD, "rationale": "newer"}
    openai_server.script(Scenario.answer(GOOD), Scenario.answer(newer))
    with AnswerStore(tmp_path) as store, _client(openai_server) as client:
        ask_via_path(client, store, "record", messages, Plan)
        second = ask_via_path(client, store, "record", messages, Plan)
        assert second.source is AnswerSource.ENDPOINT
    assert len(openai_server.chat_requests) == 2
    with AnswerStore(tmp_path) as store:
        hit = ask_via_path(_offline(), store, "replay", messages, Plan)
    assert hit.parsed == Plan.model_validate(newer)


def test_failures_are_not_recorded(openai_server: LocalOpenAIServer, tmp_path: Path) -> None:
    messages = _messages()
    openai_server.script(
        Scenario.server_error(503), Scenario.schema_violation({"action": "moon", "weight": 7})
    )
    with AnswerStore(tmp_path) as store, _client(openai_server) as client:
        down = ask_via_path(client, store, "auto", messages, Plan)
        assert down.failure is GptOutcome.SERVER_ERROR
        assert down.outcome is GptOutcome.SERVER_ERROR
        bad = ask_via_path(client, store, "record", messages, Plan)
        assert bad.failure is GptOutcome.SCHEMA_VIOLATION
        assert len(store) == 0
        miss = ask_via_path(client, store, "replay", messages, Plan)
        assert miss.failure is GptOutcome.REPLAY_MISS
    assert len(openai_server.chat_requests) == 2


def test_a_recorded_answer_that_no_longer_parses(
    openai_server: LocalOpenAIServer, tmp_path: Path
) -> None:
    messages = _messages()
    with AnswerStore(tmp_path) as store, _client(openai_server) as client:
        store.put(_hash(messages), MODEL, '{"action": "moon"}')
        replayed = ask_via_path(client, store, "replay", messages, Plan)
        assert replayed.failure is GptOutcome.SCHEMA_VIOLATION
        assert replayed.source is AnswerSource.STORE and openai_server.requests == []
        store.put(_hash(messages), MODEL, '{"action": "bu')
        assert ask_via_path(client, store, "replay", messages, Plan).failure is (
            GptOutcome.MALFORMED
        )
        # auto: a miss, asked again and overwritten.
        openai_server.script(Scenario.answer(GOOD))
        fixed = ask_via_path(client, store, "auto", messages, Plan)
        assert fixed.ok and fixed.source is AnswerSource.ENDPOINT
        again = ask_via_path(client, store, "auto", messages, Plan)
        assert again.outcome is GptOutcome.CACHED
    assert len(openai_server.chat_requests) == 1


def test_explicit_schema_is_part_of_the_key(
    openai_server: LocalOpenAIServer, tmp_path: Path
) -> None:
    messages = _messages()
    narrow = {
        "type": "object",
        "properties": {
            "action": {"type": "string", "enum": ["buy", "hold"]},
            "weight": {"type": "number"},
            "rationale": {"type": "string"},
        },
        "required": ["action", "weight", "rationale"],
        "additionalProperties": False,
    }
    openai_server.script(Scenario.answer(GOOD))
    with AnswerStore(tmp_path) as store, _client(openai_server) as client:
        live = ask_via_path(client, store, "auto", messages, Plan, schema=narrow)
        assert live.ok and live.prompt_hash == prompt_hash(MODEL, messages, Plan, narrow)
        # Without the schema it is another question: not in the recording.
        assert ask_via_path(client, store, "replay", messages, Plan).failure is (
            GptOutcome.REPLAY_MISS
        )
        hit = ask_via_path(client, store, "replay", messages, Plan, schema=narrow)
        assert hit.parsed == live.parsed
    assert len(openai_server.chat_requests) == 1


def test_bad_mode_is_refused(tmp_path: Path) -> None:
    with AnswerStore(tmp_path) as store, pytest.raises(ValueError):
        AnswerPath(_offline(), store, "sometimes")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# The call log row
# --------------------------------------------------------------------------------------------


def test_results_become_gpt_call_rows(openai_server: LocalOpenAIServer, tmp_path: Path) -> None:
    messages = _messages()
    openai_server.script(*[Scenario.answer(GOOD, usage=(1000, 200))] * 2)
    prices = PriceTable.from_mapping({MODEL: {"input": "0.15", "output": "0.60"}})
    with AnswerStore(tmp_path) as store, _client(openai_server) as client:
        live = ask_via_path(client, store, "auto", messages, Plan)
        cached = ask_via_path(client, store, "auto", messages, Plan, prices=prices)
        priced_live = ask_via_path(client, store, "record", messages, Plan, prices=prices)

    def request(decision_id: str, round_no: int, ts_ms: int) -> GptRequest:
        return GptRequest(
            request_id=gpt_call_id(decision_id, round_no),
            decision_id=decision_id,
            symbol="ABC",
            round=round_no,
            ts_ms=ts_ms,
            messages=tuple(messages),
            prompt_hash=_hash(messages),
        )

    row = live.to_call(request("ABC@1709303400000", 0, 1_709_303_400_000))
    assert isinstance(row, GptCall)
    assert row.call_id == "ABC@1709303400000/gpt0" and row.outcome is GptOutcome.OK
    assert (row.decision_id, row.round, row.symbol) == ("ABC@1709303400000", 0, "ABC")
    assert row.ts_ms == 1_709_303_400_000
    assert (row.prompt_tokens, row.completion_tokens) == (1000, 200)
    # stratflow-local is not in the default table: default price (2.50 / 10.00), flagged.
    assert row.cost == Decimal("0.0045") and not row.price_known
    assert row.answer == live.raw_text and row.prompt_hash == live.prompt_hash
    priced = priced_live.to_call(request("d", 1, 0))
    assert priced.cost == Decimal("0.00027") and priced.price_known
    free = cached.to_call(request("d", 2, 0))
    assert free.outcome is GptOutcome.CACHED and free.cost == 0 and free.prompt_tokens == 0


def test_gpt_call_clips_long_text_and_rejects_bad_values() -> None:
    long = GptCall(
        call_id="d/gpt0",
        ts_ms=0,
        decision_id="d",
        symbol="ABC",
        model="m",
        prompt_hash="h",
        outcome=GptOutcome.OK,
        answer="x" * 50_000,
    )
    assert len(long.answer) == 16_000 and long.answer.endswith("[clipped]")
    assert GptCall.model_validate(long.model_dump()) == long  # clipping is idempotent
    with pytest.raises(ValueError):
        long.model_validate({**long.model_dump(), "cost": Decimal("-0.01")})
    with pytest.raises(ValueError):
        long.model_validate({**long.model_dump(), "outcome": "maybe"})


def test_a_changed_model_is_the_one_asked_recorded_and_answered_again(
    openai_server: LocalOpenAIServer, tmp_path: Path
) -> None:
    """`gpt.model` changed while the flow runs: the request carries the new model, the endpoint
    is asked for it, the answer is recorded under it and its question's hash; the client's own
    model is untouched for the next question."""
    other = "gpt-other-model"
    store = AnswerStore(tmp_path)
    path = AnswerPath(_client(openai_server), store, CacheMode.AUTO)
    messages = _messages()
    changed = prompt_hash(other, messages, Plan)
    openai_server.script(Scenario.answer(GOOD), Scenario.answer(GOOD))
    reply = path.ask(messages, Plan, prompt_hash=changed, call_id="c1", model=other)
    assert reply.ok and reply.model == other
    (first,) = openai_server.chat_requests
    assert first.body["model"] == other
    recorded = store.lookup(changed)
    assert recorded is not None and recorded.model == other
    again = path.ask(messages, Plan, prompt_hash=changed, call_id="c2", model=other)
    assert again.ok and again.source is AnswerSource.STORE  # the same question: no new call
    plain = path.ask(messages, Plan, prompt_hash=_hash(messages), call_id="c3")
    assert plain.ok and [r.body["model"] for r in openai_server.chat_requests] == [other, MODEL]
