"""The wall-clock spending guard: a backtest over many event days, or several runs in one day,
never pays more than the daily budget today; answers from the recording stay free."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from connectors.gpt.cache import AnswerStore
from connectors.gpt.client import GptClient
from connectors.gpt.gateway import AnswerPath, AnswerSource, GptGateway
from connectors.gpt.spend import SPEND_FILE, SpendGuard, SpendLedger, utc_today
from connectors.sim.openai_server import LocalOpenAIServer, Scenario
from dataflows.adapters import DeskLogic
from models.core.messages import Alert, Branch, ChatTurn, DecisionRecord, GptCall, GptOutcome
from models.gpt.decider import fallback_controller
from models.gpt.prompt import prompt_hash
from models.strategy.spec import GptDecision
from tests.support.gpt import GOOD, MODEL, PRICES, ev, make_settings, of

D = Decimal
DAY_S = 86_400.0
DAY_MS = 86_400_000
NOW = 1_790_000_000.0  # a wall-clock second inside some UTC day


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_ledger_totals_per_day_across_writers_and_skips_a_torn_line(tmp_path: Path) -> None:
    a, b = SpendLedger(tmp_path), SpendLedger(tmp_path)  # two runs on one store
    a.record("2026-11-25", D("0.003"), "m")
    b.record("2026-11-25", D("0.004"), "m")
    b.record("2026-11-26", D("1"), "m")
    a.record("2026-11-25", D(0), "m")  # a free answer is not a line
    assert a.spent("2026-11-25") == D("0.007") and b.spent("2026-11-25") == D("0.007")
    with (tmp_path / SPEND_FILE).open("a") as f:
        f.write('not json\n{"day": "2026-11-25", "usd": "NaN"}\n{"day": "2026-11-25", "us')
    assert a.spent("2026-11-25") == D("0.007")  # garbage skipped, the torn tail waits
    with (tmp_path / SPEND_FILE).open("a") as f:
        f.write('d": "0.001"}\n')
    assert a.spent("2026-11-25") == D("0.008")  # completed by its writer: now counted
    assert SpendLedger(tmp_path).spent("2026-11-26") == D(1)  # a new run reads it all


def test_the_endpoint_is_not_called_once_today_is_spent(
    openai_server: LocalOpenAIServer, tmp_path: Path
) -> None:
    openai_server.script(*[Scenario.answer(GOOD, usage=(1000, 1000))] * 4)  # 0.003 each
    client = GptClient(openai_server.base_url, openai_server.api_key, MODEL, max_retries=0)
    clock = Clock(NOW)

    def path() -> AnswerPath:  # no answer store: every question goes as far as the guard
        guard = SpendGuard(SpendLedger(tmp_path), D("0.005"), clock)
        return AnswerPath(client, guard=guard, prices=PRICES)

    messages = [ChatTurn(role="user", content="decide")]
    phash = prompt_hash(MODEL, messages, GptDecision)
    asker = path()
    first = asker.ask(messages, GptDecision, prompt_hash=phash)
    second = asker.ask(messages, GptDecision, prompt_hash=phash)
    assert first.ok and second.ok  # 0.003 spent before the second: under 0.005
    assert first.cost.usd == D("0.003")  # costed once: the row and the ledger say the same
    third = asker.ask(messages, GptDecision, prompt_hash=phash)
    assert third.failure is GptOutcome.BUDGET_EXHAUSTED and "0.006 spent" in third.detail
    assert third.source is AnswerSource.ENDPOINT and third.prompt_hash == phash
    assert len(openai_server.chat_requests) == 2
    assert SpendLedger(tmp_path).spent(utc_today(NOW)) == D("0.006")
    # Another run on the same store the same day is refused too; the next UTC day may spend.
    again = path()
    refused = again.ask(messages, GptDecision, prompt_hash=phash)
    assert refused.failure is GptOutcome.BUDGET_EXHAUSTED
    clock.t += DAY_S
    assert again.ask(messages, GptDecision, prompt_hash=phash).ok
    assert len(openai_server.chat_requests) == 3
    client.close()


def test_a_backtest_over_many_event_days_pays_one_daily_budget(
    openai_server: LocalOpenAIServer, tmp_path: Path
) -> None:
    """The desk's own budget is per event day (deterministic backtests); the guard is per day
    of the wall clock, so five event days of questions cannot spend five budgets today."""
    settings = make_settings(tmp_path, gpt={"daily_budget_usd": "0.005"})
    openai_server.script(*[Scenario.answer(GOOD, usage=(1000, 1000))] * 5)
    client = GptClient(openai_server.base_url, openai_server.api_key, MODEL, max_retries=0)
    with AnswerStore(tmp_path / "answers") as store:
        gateway = GptGateway(
            settings, client, store, prices=PRICES, ledger=SpendLedger(tmp_path / "answers")
        )
        logic = DeskLogic(settings, frozenset({"market#0"}), None, gateway, True)
        out: list[object] = []
        for day in range(5):  # one strategic trigger per event day, each a new question
            sym = "ABC" if day % 2 == 0 else "XYZ"
            event = ev(day * DAY_MS // 60_000, str(100 + day), symbol=sym, branch=Branch.STRATEGIC)
            got, _ = logic.on_batch([event])  # type: ignore[list-item]
            out.extend(got)
        gateway.close()
    assert len(openai_server.chat_requests) == 2  # 0.006 paid today; then no more calls
    calls = of(GptCall, out)
    assert [c.outcome for c in calls] == [GptOutcome.OK] * 2 + [GptOutcome.BUDGET_EXHAUSTED] * 3
    spend_alerts = [a for a in of(Alert, out) if "GPT spending on" in a.message]
    assert spend_alerts and "daily budget 0.005 USD" in spend_alerts[0].message
    assert len({a.alert_id for a in spend_alerts}) == 1  # one alert, however many refusals
    refused = [r for r in of(DecisionRecord, out) if r.rounds and r.version > 1]
    controllers = {r.rounds[0].proposal.controller for r in refused}
    assert fallback_controller("budget_exhausted") in controllers
