"""GPT cost after a crash: a call paid, then a crash before its `gpt_calls` row was written;
the restarted run redoes its last epoch and asks again. The answer comes from the recording
the paid call made, and its row must be that paid call (outcome `ok`, its cost), exactly once:
the sum of `gpt_calls` cost equals what `spend.jsonl` says was spent."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.gpt.cache import AnswerRecord, AnswerStore
from connectors.gpt.client import GptClient, GptUsage
from connectors.gpt.gateway import GptGateway
from connectors.gpt.spend import SPEND_FILE, SpendLedger
from connectors.sim.openai_server import LocalOpenAIServer, Scenario
from dataflows.adapters import DeskLogic
from dataflows.run import open_run_state
from models.config.settings import Settings
from models.core.events import BarEvent
from models.core.messages import Branch, GptCall, GptOutcome
from tests.support.gpt import GOOD, MODEL, PRICES, ev, make_settings, of

D = Decimal


def _settings(tmp: Path, recovery: str = "recovery") -> Settings:
    return make_settings(
        tmp,
        gpt={"cooldown": "0s"},
        recovery={"enabled": True, "dir": str(tmp / recovery)},
    )


def _events(n: int) -> list[BarEvent]:
    """Strategic triggers, alternating symbols: every one a new question."""
    return [
        ev(i, str(100 + i), symbol="ABC" if i % 2 else "XYZ", branch=Branch.STRATEGIC)
        for i in range(n)
    ]


class Run:
    """One process of a run: the gateway (with the spend ledger) and the flow's desk adapter."""

    def __init__(self, server: LocalOpenAIServer, settings: Settings, resume: bytes | None) -> None:
        cache = Path(settings.gpt.cache_dir)
        client = GptClient(server.base_url, server.api_key, MODEL, max_retries=0)
        self.store = AnswerStore(cache)
        self.gateway = GptGateway(
            settings,
            client,
            self.store,
            prices=PRICES,
            ledger=SpendLedger(cache),
            run=open_run_state(settings).run_id,
        )
        self.logic = DeskLogic(settings, frozenset({"market#0"}), resume, self.gateway, True)

    def feed(self, events: list[BarEvent]) -> list[Any]:
        return list(self.logic.on_batch(list(events))[0])

    def crash(self) -> None:
        self.gateway.close()


def _spent(settings: Settings) -> Decimal:
    path = Path(settings.gpt.cache_dir) / SPEND_FILE
    lines = path.read_text().splitlines() if path.exists() else []
    return sum((D(json.loads(line)["usd"]) for line in lines), D(0))


def _stored(*batches: list[Any]) -> dict[str, GptCall]:
    """The `gpt_calls` table after these flushes: one row per call id, the last one written."""
    table: dict[str, GptCall] = {}
    for batch in batches:
        for call in of(GptCall, batch):
            table[call.call_id] = call
    return table


@pytest.mark.parametrize("flushed", [0, 1, 3])
def test_calls_paid_before_a_crash_are_logged_paid_once_after_the_restart(
    openai_server: LocalOpenAIServer, tmp_path: Path, flushed: int
) -> None:
    """`flushed`: how many of the lost epoch's call rows reached the store before the crash."""
    settings = _settings(tmp_path)
    (tmp_path / "recovery").mkdir()
    (tmp_path / "recovery" / "part-0.sqlite3").touch()  # Bytewax's state of this run
    events = _events(8)
    openai_server.script(*[Scenario.answer(GOOD, usage=(1000, 500))] * 8)
    first = Run(openai_server, settings, None)
    before = first.feed(events[:4])
    snapshot = first.logic.snapshot()  # the last epoch that made it to the recovery store
    lost = first.feed(events[4:])  # paid, then the crash before these rows were all written
    first.crash()
    assert len(of(GptCall, lost)) == 4
    written = of(GptCall, lost)[:flushed]

    again = Run(openai_server, settings, snapshot)  # same recovery dir: the same run
    redone = again.feed(events[4:])
    again.crash()

    assert len(openai_server.chat_requests) == 8  # nothing paid twice
    table = _stored(before, written, redone)
    assert len(table) == 8
    assert all(c.outcome is GptOutcome.OK for c in table.values())
    assert all(c.cost > 0 and c.prompt_tokens == 1000 for c in table.values())
    assert sum(c.cost for c in table.values()) == _spent(settings) > 0
    # The decision itself is unchanged by the crash: the same rows apart from latency.
    for call in of(GptCall, redone):
        paid = next(c for c in of(GptCall, lost) if c.call_id == call.call_id)
        assert call.cost == paid.cost and call.answer == paid.answer


def test_a_new_run_answered_from_the_recording_logs_free_cached_calls(
    openai_server: LocalOpenAIServer, tmp_path: Path
) -> None:
    """The same questions in another run (a backtest re-run, a fresh recovery dir): nothing
    is spent, so nothing is logged as spent."""
    events = _events(4)
    openai_server.script(*[Scenario.answer(GOOD, usage=(1000, 500))] * 4)
    first = Run(openai_server, _settings(tmp_path, "run-1"), None)
    paid = first.feed(events)
    first.crash()
    spent = _spent(_settings(tmp_path))
    second = Run(openai_server, _settings(tmp_path, "run-2"), None)
    rerun = second.feed(events)
    second.crash()
    assert len(openai_server.chat_requests) == 4
    assert [c.outcome for c in of(GptCall, rerun)] == [GptOutcome.CACHED] * 4
    assert sum(c.cost for c in of(GptCall, rerun)) == 0
    assert sum(c.cost for c in of(GptCall, paid)) == spent == _spent(_settings(tmp_path))


def test_the_run_id_is_the_same_across_restarts_and_new_for_a_new_run(tmp_path: Path) -> None:
    """The answer store's "this run" is the run id: kept while the recovery state resumes."""
    settings = _settings(tmp_path)
    first = open_run_state(settings).run_id
    assert open_run_state(settings).run_id == first  # resumed: the same run
    assert open_run_state(settings, fresh=True).run_id != first  # started afresh: a new run
    off = settings.model_copy(
        update={"recovery": settings.recovery.model_copy(update={"enabled": False})}
    )
    assert open_run_state(off).run_id != open_run_state(off).run_id  # nothing resumes


@pytest.mark.parametrize(("call_id", "run"), [("", ""), ("ABC@1/gpt-0", "r1"), ("x", "")])
def test_answer_records_keep_who_paid_and_older_lines_still_read(call_id: str, run: str) -> None:
    record = AnswerRecord("h" * 64, MODEL, '{"a": 1}', GptUsage(3, 4), 5, call_id, run)
    line = record.to_json()
    assert AnswerRecord.from_json(line) == record
    if not (call_id or run):
        assert "call_id" not in json.loads(line)  # the format of older recordings
    with pytest.raises(ValueError, match="run must be a string"):
        AnswerRecord.from_json(json.dumps({**json.loads(line), "call_id": "c", "run": 7}))
