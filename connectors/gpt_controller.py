"""The GPT strategy controller: GPT writes the strategy, the local engine stays the safety net.

`GptStrategyController` answers the same `StrategyController` protocol as the local engine, so
the desk does not know which one it talks to. Why it is shaped this way:
- Only the strategic branch is worth a paid, slow call; the routine branch goes straight to the
  local engine, as does every failure (transport, answer, compiler, budget, replay miss). The
  caller's answer to all of them is the same, so this class never raises for them: it returns
  the local engine's proposal and says in the rationale and the `controller` field why.
- GPT answers data (`GptDecision`), never code; `compile_decision` checks it against the
  configured symbols and caps, so an out-of-bounds answer cannot trade.
- Limits in the prompt come from the configuration only (`PromptContext.from_decision`); news
  text is fenced by `build_messages`, so a headline cannot move a limit.
- Every call, including the ones not made (budget) or answered from a recording, leaves one
  `GptCall` row (`drain_calls`), with ids derived from the decision id and the adjust round, so
  a replayed decision rewrites the same rows.
- Record/replay goes through `ask_with_cache`: a replay run sends no request and, because the
  prompt is a pure function of the context, gets the same answer and the same proposal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from connectors.gpt_cache import (
    AnswerSource,
    AnswerStore,
    Asker,
    CachedResult,
    CacheMode,
    ask_with_cache,
)
from connectors.gpt_client import ChatMessage, prompt_hash
from models.config import Settings
from models.gpt_cost import DEFAULT_PRICE_TABLE, DailyBudget, PriceTable, utc_day
from models.gpt_prompt import DigestItem, PositionInfo, PromptContext, build_messages
from models.messages import (
    Branch,
    GptCall,
    GptOutcome,
    Proposal,
    RiskVerdict,
    Side,
    TradeIntent,
)
from models.strategy import DecisionContext, LocalStrategyEngine, StrategyController
from models.strategy_compiler import (
    CompiledDecision,
    Rejection,
    StrategyLimits,
    compile_decision,
    to_intent,
)
from models.strategy_spec import STRICT_SCHEMA_NAME, GptDecision, strict_json_schema

__all__ = ["GPT_CONTROLLER", "DigestSource", "GptStrategyController", "fallback_controller"]

GPT_CONTROLLER: Final = "gpt"
_MAX_RATIONALE: Final = 2000  # `Proposal.rationale`
_MAX_INTENT_REASON: Final = 500  # `TradeIntent.reason`
_MAX_FEEDBACK_CHECKS: Final = 20
_MAX_FEEDBACK_CHARS: Final = 2000
_ZERO: Final = Decimal(0)

DigestSource = Callable[[DecisionContext], Iterable[DigestItem]]
"""Gives the news/social digest of a decision (already cleaned by `models.gpt_prompt`)."""


def fallback_controller(kind: str) -> str:
    """The `controller` value of a proposal the local engine made because GPT could not:
    the decision log then shows at a glance that GPT was asked and why it was not used."""
    return f"local (gpt fallback: {kind})"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _dec_text(value: Decimal | None) -> str:
    return "none" if value is None else str(value)


@dataclass(frozen=True, slots=True)
class _Thread:
    """The conversation of the latest decision of one symbol, so `adjust` can show GPT its own
    previous answer next to the risk gate's verdict."""

    decision_id: str
    messages: tuple[ChatMessage, ...]
    answer: str | None
    round_no: int


class GptStrategyController:
    """A `StrategyController` that asks GPT on the strategic branch and falls back locally.

    `client` is a `GptClient` (or anything `Asker`-shaped); `store` + `mode` enable
    record/replay (`None`: ask the client directly); `budget` caps the daily spend (`None`: no
    cap); `cost_estimate` is what a call is assumed to cost before it is made; `digest` gives
    the news digest of a decision (default: none). Not thread-safe: the desk calls it in order.
    """

    name = GPT_CONTROLLER

    def __init__(
        self,
        settings: Settings,
        client: Asker,
        *,
        fallback: StrategyController | None = None,
        store: AnswerStore | None = None,
        mode: CacheMode | str = CacheMode.AUTO,
        budget: DailyBudget | None = None,
        prices: PriceTable = DEFAULT_PRICE_TABLE,
        cost_estimate: Decimal = _ZERO,
        digest: DigestSource | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.fallback: StrategyController = fallback or LocalStrategyEngine(settings.strategy)
        self.store = store
        self.mode = CacheMode(mode)
        self.budget = budget
        self.prices = prices
        self.cost_estimate = cost_estimate
        self.digest = digest
        self.allowed_symbols: frozenset[str] = frozenset(settings.symbols)
        self.limits = StrategyLimits.from_config(settings.strategy, settings.execution)
        # Narrowed once: constrained decoding then cannot even name an unknown feature/symbol.
        self.schema: dict[str, Any] = strict_json_schema(symbols=self.allowed_symbols)
        self._calls: list[GptCall] = []
        self._threads: dict[str, _Thread] = {}
        self._budget_alert = False

    # ------------------------------------------------------------------ protocol

    def propose(self, ctx: DecisionContext) -> Proposal:
        """Routine: the local engine. Strategic: one GPT call (round 0), else the fallback."""
        if ctx.branch is not Branch.STRATEGIC:
            return self.fallback.propose(ctx)
        messages = self._base_messages(ctx)
        return self._ask_and_build(ctx, messages, 0, lambda: self.fallback.propose(ctx))

    def adjust(self, ctx: DecisionContext, previous: Proposal, verdict: RiskVerdict) -> Proposal:
        """A GPT proposal goes back to GPT with the failed checks; anything else (a fallback
        proposal) is the local engine's to adjust. The desk bounds the rounds."""
        if previous.controller != GPT_CONTROLLER:
            return self.fallback.adjust(ctx, previous, verdict)
        thread = self._threads.get(ctx.symbol)
        if thread is None or thread.decision_id != ctx.decision_id:
            # State lost (e.g. a restart between rounds): the question is rebuilt, it is a
            # pure function of the context; only GPT's previous answer text is missing.
            thread = _Thread(ctx.decision_id, tuple(self._base_messages(ctx)), None, 0)
        messages = list(thread.messages)
        if thread.answer is not None:
            messages.append({"role": "assistant", "content": thread.answer})
        messages.append({"role": "user", "content": self.feedback(verdict)})
        return self._ask_and_build(
            ctx,
            messages,
            thread.round_no + 1,
            lambda: self.fallback.adjust(ctx, previous, verdict),
        )

    # ------------------------------------------------------------------ log and alert

    def drain_calls(self) -> list[GptCall]:
        """The `gpt_calls` rows since the last drain (oldest first), for the desk to log."""
        calls, self._calls = self._calls, []
        return calls

    @property
    def budget_alert(self) -> bool:
        """True once the daily budget was reached and the alert has not been taken yet."""
        return self._budget_alert

    def take_budget_alert(self) -> bool:
        """Return and clear the budget alert, so the caller raises exactly one alert per day."""
        alert, self._budget_alert = self._budget_alert, False
        return alert

    # ------------------------------------------------------------------ building blocks

    def _base_messages(self, ctx: DecisionContext) -> list[ChatMessage]:
        """System + user message of a decision; limits only ever come from the settings."""
        positions: dict[str, PositionInfo] = {}
        if ctx.position != 0:
            # The desk's context carries no average cost; the mark stands in for it.
            positions[ctx.symbol] = PositionInfo(
                quantity=ctx.position, avg_cost=ctx.price, mark_price=ctx.price
            )
        pctx = PromptContext.from_decision(
            ctx,
            positions=positions,
            strategy_cfg=self.settings.strategy,
            digest=self.digest(ctx) if self.digest is not None else (),
        )
        return [{"role": m["role"], "content": m["content"]} for m in build_messages(pctx)]

    @staticmethod
    def feedback(verdict: RiskVerdict) -> str:
        """The risk gate's refusal as one bounded user message: name, limit, value and message
        of each failed check (our own text, never a third party's)."""
        failed = verdict.failures
        lines = [
            f"- {c.name}: limit {_dec_text(c.limit)}, value {_dec_text(c.value)}"
            + (f" ({c.message})" if c.message else "")
            for c in failed[:_MAX_FEEDBACK_CHECKS]
        ]
        if len(failed) > _MAX_FEEDBACK_CHECKS:
            lines.append(f"- ... {len(failed) - _MAX_FEEDBACK_CHECKS} more failed checks")
        text = (
            "The risk gate refused your previous decision. Failed checks:\n"
            + "\n".join(lines)
            + "\nAnswer with a corrected GptDecision that fits every limit in CONTEXT."
        )
        return _clip(text, _MAX_FEEDBACK_CHARS)

    def _ask(self, messages: Sequence[ChatMessage]) -> CachedResult[GptDecision]:
        if self.store is not None:
            return ask_with_cache(
                self.client,
                self.store,
                self.mode,
                messages,
                GptDecision,
                schema=self.schema,
                schema_name=STRICT_SCHEMA_NAME,
            )
        r = self.client.ask(
            messages, GptDecision, schema=self.schema, schema_name=STRICT_SCHEMA_NAME
        )
        return CachedResult(
            model=r.model,
            prompt_hash=r.prompt_hash,
            source=AnswerSource.ENDPOINT,
            outcome=GptOutcome(r.failure.value) if r.failure else GptOutcome.OK,
            parsed=r.parsed,
            failure=r.failure,
            detail=r.detail,
            usage=r.usage,
            latency_s=r.latency_s,
            raw_text=r.raw_text,
            request_id=r.request_id,
        )

    def _log(
        self,
        ctx: DecisionContext,
        result: CachedResult[GptDecision],
        round_no: int,
        detail: str | None = None,
    ) -> GptCall:
        call = result.to_call(
            decision_id=ctx.decision_id,
            round_no=round_no,
            symbol=ctx.symbol,
            ts_ms=ctx.features.ts_ms,
            prices=self.prices,
        )
        if detail is not None:
            call = call.model_copy(update={"detail": _clip(detail, 1000)})
        self._calls.append(call)
        return call

    def _ask_and_build(
        self,
        ctx: DecisionContext,
        messages: list[ChatMessage],
        round_no: int,
        local: Callable[[], Proposal],
    ) -> Proposal:
        day = utc_day(ctx.features.ts_ms)
        # A replay costs nothing, so the budget does not gate it (and stays reproducible).
        if self.budget is not None and self.mode is not CacheMode.REPLAY:
            allowed = self.budget.can_spend(day, self.cost_estimate)
            self._budget_alert |= self.budget.crossed_now
            if not allowed:
                detail = f"daily budget {self.budget.cap} reached ({self.budget.spent(day)} spent)"
                refused: CachedResult[GptDecision] = CachedResult(
                    model=self.client.model,
                    prompt_hash=prompt_hash(
                        self.client.model, messages, GptDecision, self.schema, STRICT_SCHEMA_NAME
                    ),
                    source=AnswerSource.NONE,
                    outcome=GptOutcome.BUDGET_EXHAUSTED,
                    detail=detail,
                )
                self._log(ctx, refused, round_no)
                return self._fallback(local(), GptOutcome.BUDGET_EXHAUSTED.value, detail)
        result = self._ask(messages)
        self._threads[ctx.symbol] = _Thread(
            ctx.decision_id, tuple(messages), result.raw_text, round_no
        )
        if not result.ok or result.parsed is None:
            self._log(ctx, result, round_no)
            kind = result.failure.value if result.failure is not None else "no_answer"
            return self._fallback(local(), kind, result.detail)
        compiled = compile_decision(result.parsed, self.allowed_symbols, self.limits)
        if isinstance(compiled, Rejection):
            reasons = "; ".join(compiled.reasons)
            call = self._log(ctx, result, round_no, f"rejected by the compiler: {reasons}")
        else:
            call = self._log(ctx, result, round_no)
        if self.budget is not None and result.source is AnswerSource.ENDPOINT:
            self.budget.record(day, call.cost)
            self._budget_alert |= self.budget.crossed_now
        if isinstance(compiled, Rejection):
            return self._fallback(local(), "rejected", "; ".join(compiled.reasons))
        return self.to_proposal(ctx, compiled)

    def _fallback(self, local: Proposal, kind: str, detail: str) -> Proposal:
        why = f"; gpt fallback ({kind})" + (f": {detail}" if detail else "")
        return local.model_copy(
            update={
                "controller": fallback_controller(kind),
                "rationale": _clip(local.rationale + why, _MAX_RATIONALE),
            }
        )

    def to_proposal(self, ctx: DecisionContext, decision: CompiledDecision) -> Proposal:
        """The decision's orders for the decision's symbol, sized like the local engine's."""
        strategy = decision.strategy
        intents: list[TradeIntent] = []
        if decision.action == "create" and strategy is not None:
            for action in strategy.on_bar(ctx.symbol, ctx.features, ctx.position, None):
                intent = to_intent(action, ctx.position, ctx.price, ctx.equity, ctx.lot_size)
                if intent is not None:
                    intents.append(intent)
        elif decision.action == "rebalance" and strategy is not None:
            intents = [
                i
                for i in strategy.rebalance(
                    {ctx.symbol: ctx.position},
                    {ctx.symbol: ctx.price},
                    ctx.equity,
                    {ctx.symbol: ctx.lot_size},
                )
                if i.symbol == ctx.symbol
            ]
        elif decision.action == "derisk" and ctx.position > 0:
            intents.append(
                TradeIntent(
                    symbol=ctx.symbol,
                    side=Side.SELL,
                    quantity=ctx.position,
                    reason=_clip(f"gpt derisk: {decision.rationale}", _MAX_INTENT_REASON),
                )
            )
        return Proposal(
            controller=GPT_CONTROLLER,
            strategy=strategy.strategy_id if strategy is not None else f"gpt-{decision.action}",
            intents=intents,
            rationale=_clip(decision.rationale, _MAX_RATIONALE),
            confidence=decision.confidence,
        )
