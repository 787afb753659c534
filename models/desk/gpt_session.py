"""The desk's conversation with GPT: questions out, cooldown, coalescing, timeouts, follow-ups,
the daily budget and the news digest.

One question per symbol at a time (`pending`): a strategic trigger while the symbol's question is
out is coalesced into it, and one soon after the last question (`cooldown`) leaves the running
strategy in charge. A question unanswered after `max_wait` of event time falls back to the local
engine.

Every question is hashed here, once (`request`): the `GptRequest` carries its prompt hash to
the gateway, the answer store and the call row, none of which hashes again.

Every question costs budget: calls in flight are reserved at the estimate, so concurrent
questions cannot overshoot the daily cap, and a replayed run (answers from the store) costs
nothing and stays reproducible. This is the desk's one budget check (`affordable`, by event
day: deterministic); the gateway's spend guard applies the same rule
(`models.gpt.cost.budget_allows`) to real money by wall-clock day, and its refusal comes back
as the outcome `budget_exhausted` of an answer, which the desk handles like its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from models.config.base import parse_duration_ms
from models.config.settings import Settings
from models.core.events import BarEvent, TextEvent
from models.core.messages import (
    AdjustRound,
    Alert,
    GptCall,
    GptOutcome,
    GptRequest,
    gpt_call_id,
)
from models.gpt.cost import DailyBudget, utc_day
from models.gpt.decider import STRICT_SCHEMA_NAME, GptDecider, Question
from models.gpt.news_digest import NewsBuffer
from models.gpt.prompt import DigestItem, digest_from, prompt_hash
from models.monitoring.alerts import budget_alert
from models.strategy.spec import GptDecision


@dataclass(slots=True)
class PendingGpt:
    """A decision waiting for GPT: where it started, what was asked, what was refused."""

    event: BarEvent  # the trigger
    decision_id: str
    request: GptRequest
    question: Question
    rounds: list[AdjustRound] = field(default_factory=list)


@dataclass(slots=True)
class GptSession:
    settings: Settings
    decider: GptDecider | None = None  # None: GPT is not asked (no endpoint, or local mode)
    pending: dict[str, PendingGpt] = field(default_factory=dict)  # by symbol
    texts: NewsBuffer = field(default_factory=NewsBuffer)  # kept news/posts by symbol
    budget: DailyBudget = field(default_factory=lambda: DailyBudget(Decimal(0)))
    last_asked: dict[str, int] = field(default_factory=dict)  # symbol -> bar end of last question
    local_only: set[str] = field(default_factory=set)  # symbols the safe_local fallback took
    max_wait_ms: int = 0
    digest_window_ms: int = 0
    cooldown_ms: int = 0

    @classmethod
    def create(cls, settings: Settings, *, ask: bool) -> GptSession:
        return cls(
            settings=settings,
            decider=GptDecider(settings) if ask else None,
            budget=DailyBudget(settings.gpt.daily_budget_usd),
            max_wait_ms=parse_duration_ms(settings.gpt.max_wait),
            digest_window_ms=parse_duration_ms(settings.gpt.digest_window),
            cooldown_ms=parse_duration_ms(settings.gpt.cooldown),
        )

    # ---------------------------------------------------------------- when to ask
    def asks_about(self, symbol: str) -> bool:
        """GPT decides strategic triggers of `symbol` (not after a safe_local fallback)."""
        return self.decider is not None and symbol not in self.local_only

    def cooling_down(self, symbol: str, now_ms: int) -> bool:
        last = self.last_asked.get(symbol)
        return last is not None and now_ms - last < self.cooldown_ms

    def timed_out(self, symbol: str, now_ms: int) -> PendingGpt | None:
        """The symbol's question, when it has waited longer than `max_wait` of event time."""
        pending = self.pending.get(symbol)
        if pending is not None and now_ms - pending.event.bar.end_ms > self.max_wait_ms:
            return pending
        return None

    def answered(self, request_id: str) -> PendingGpt | None:
        """The decision still waiting for this request's answer, if any."""
        return next((p for p in self.pending.values() if p.request.request_id == request_id), None)

    def digest(self, symbol: str, now_ms: int) -> tuple[DigestItem, ...]:
        return digest_from(
            self.texts.get(symbol, ()),
            symbol,
            now_ms,
            self.digest_window_ms,
            self.settings.gpt.digest_items,
        )

    def keep_text(self, event: TextEvent, clock_ms: int | None) -> None:
        """Keep recent news/posts per symbol for the digest (only when GPT is asked); the
        buffer's rules are in `models.gpt.news_digest`. Age is judged by the bars' clock,
        never by an item's own (perhaps forged) time."""
        if self.decider is None or self.settings.gpt.digest_items == 0:
            return
        item = event.item
        symbols = [s for s in dict.fromkeys(item.symbols) if s in self.settings.symbols]
        keep = 4 * self.settings.gpt.digest_items
        self.texts.add(item, symbols, clock_ms, self.digest_window_ms, keep)

    # ---------------------------------------------------------------- the budget
    def affordable(
        self, ts_ms: int, calls: int, alert_ms: int | None = None
    ) -> tuple[bool, Alert | None]:
        """Whether `calls` more calls fit the budget of `ts_ms`'s day at the estimate (always,
        replaying recorded answers), and the day's one budget alert (stamped `alert_ms`) when
        this check crossed the cap."""
        if self.settings.gpt.cache_mode == "replay":  # costs nothing, stays reproducible
            return True, None
        estimate = self.settings.gpt.cost_estimate_usd * calls
        ok = self.budget.can_spend(utc_day(ts_ms), estimate)
        crossed = not ok and self.budget.crossed_now
        return ok, (self.budget_alert(ts_ms if alert_ms is None else alert_ms) if crossed else None)

    def billed(self, call: GptCall) -> Alert | None:
        """Record money a call really cost; the day's alert if that crossed the cap."""
        self.budget.record(utc_day(call.ts_ms), call.cost)
        return self.budget_alert(call.ts_ms) if self.budget.crossed_now else None

    def budget_alert(self, ts_ms: int) -> Alert:
        day = utc_day(ts_ms)
        return budget_alert(day, self.budget.cap, self.budget.spent(day), ts_ms)

    # ---------------------------------------------------------------- questions
    def request(
        self, decision_id: str, symbol: str, round_no: int, ts_ms: int, question: Question
    ) -> GptRequest:
        """The request of one round, with the question's prompt hash: the one place it is
        computed (model, messages and the strict schema the gateway sends, so the hash names
        exactly what is asked)."""
        decider = self.decider
        assert decider is not None
        return GptRequest(
            request_id=gpt_call_id(decision_id, round_no),
            decision_id=decision_id,
            symbol=symbol,
            round=round_no,
            ts_ms=ts_ms,
            messages=question.messages,
            prompt_hash=prompt_hash(
                self.settings.gpt.model,
                question.messages,
                GptDecision,
                decider.schema,
                STRICT_SCHEMA_NAME,
            ),
            model=self.settings.gpt.model,
        )

    def asked(self, pending: PendingGpt) -> None:
        symbol = pending.event.bar.symbol
        self.pending[symbol] = pending
        self.last_asked[symbol] = pending.event.bar.end_ms

    def call_row(self, request: GptRequest, outcome: GptOutcome, detail: str) -> GptCall:
        """The `gpt_calls` row of a call that was not made (the request's own hash)."""
        return GptCall.of_request(
            request, model=self.settings.gpt.model, outcome=outcome, detail=detail
        )
