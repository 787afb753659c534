"""The pure half of the GPT strategy controller: the question, and what an answer is worth.

The desk never talks to an endpoint. For a strategic decision it asks this module for the
question (`GptDecider.question`: chat messages built from the decision context, optionally
anonymised), hands it to the flow as a `GptRequest`, and gets back a `GptAnswer` from the
gateway (`connectors/gpt/gateway.py`): inline in a backtest, from a worker live. Then
`interpret` turns the answer into a checked `CompiledDecision`, or into the reason the local
engine must decide instead (`Fallback`), and `to_proposal` sizes the orders. Keeping all of that
here, without I/O, means a backtest and a live run judge an answer by the same code, and the
desk's state (pending questions, anonymisation maps) pickles with its snapshots.

Why some choices:
- Limits in the prompt come from the configuration only (`PromptContext.from_decision`); news
  text is fenced by `build_messages`, so a headline cannot move a limit.
- GPT answers data, never code; `compile_decision` checks it against the configured symbols
  and caps, so an out-of-bounds answer cannot trade, and every reason goes back in one round.
- In anonymised mode the schema only admits the aliases (`ASSET-1`..), numbered in the
  configured symbol order, so an id means the same instrument in every prompt of a backtest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from models.config.settings import Settings
from models.core.messages import (
    ChatTurn,
    GptCall,
    GptOutcome,
    Proposal,
    RiskCheck,
    RiskVerdict,
    Side,
    TradeIntent,
)
from models.gpt.anonymize import ALIAS_PREFIX, AnonymizationMap, build_map
from models.gpt.prompt import (
    CurrentStrategy,
    DigestItem,
    PositionInfo,
    PromptContext,
    StrategyPerformance,
    build_messages,
)
from models.strategy.compiler import (
    CompiledDecision,
    CompiledStrategy,
    Rejection,
    StrategyLimits,
    compile_decision,
)
from models.strategy.engine import DecisionContext
from models.strategy.intents import to_intent
from models.strategy.spec import STRICT_SCHEMA_NAME, GptDecision, strict_json_schema

__all__ = [
    "GPT_CONTROLLER",
    "STRICT_SCHEMA_NAME",
    "Fallback",
    "GptAnswer",
    "GptDecider",
    "Question",
    "fallback_controller",
]

GPT_CONTROLLER: Final = "gpt"
_MAX_RATIONALE: Final = 2000  # `Proposal.rationale`
_MAX_INTENT_REASON: Final = 500  # `TradeIntent.reason`
_MAX_FEEDBACK_CHECKS: Final = 20
_QUANTITY_CHECKS: Final = ("long_only:",)  # checks whose limit and value are units held
_MAX_FEEDBACK_CHARS: Final = 2000
_VALIDATION_CHECKS: Final = "validation:"  # the validation gate's checks (figures as messages)
_MAX_FALLBACK_DETAIL: Final = 4000


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def fallback_controller(kind: GptOutcome) -> str:
    """The `controller` of a proposal the local engine made because GPT could not: the
    decision log then shows at a glance that GPT was asked and why its answer was not used
    (`kind` in the seam's one vocabulary, written as its value)."""
    return f"local (gpt fallback: {kind})"


def _reasons(rejection: Rejection) -> str:
    """Every reason on one line, bounded: a 500-comparison answer can have a thousand."""
    return clip("; ".join(rejection.reasons), _MAX_FALLBACK_DETAIL)


def _dec_text(value: Decimal | None) -> str:
    return "none" if value is None else str(value)


def _aliased(text: str, amap: AnonymizationMap) -> str:
    """Real symbols in our own text replaced by their ids, whole symbols only (a symbol "A"
    must not turn "limit" into "limASSET-1t"), longest first ("BTC/USD" before "BTC")."""
    aliases = amap.aliases
    if not aliases:
        return text
    alternatives = "|".join(re.escape(s) for s in sorted(aliases, key=lambda s: (-len(s), s)))
    pattern = re.compile(rf"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])")
    return pattern.sub(lambda m: aliases[m.group(0)], text)


@dataclass(frozen=True, slots=True)
class GptAnswer:
    """What the gateway got for one `GptRequest`: the parsed decision, or the failure (never an
    answered outcome) and its detail; `call` is the costed `gpt_calls` row; `billed` says
    the endpoint was really called (a cached or replayed answer costs nothing)."""

    request_id: str
    decision: GptDecision | None
    failure: GptOutcome | None
    detail: str
    call: GptCall
    billed: bool
    raw_text: str | None = None


@dataclass(frozen=True, slots=True)
class Question:
    """The messages of one request and, when anonymised, the map to read the answer back."""

    messages: tuple[ChatTurn, ...]
    amap: AnonymizationMap | None


@dataclass(frozen=True, slots=True)
class Fallback:
    """Why the local engine decides instead: a failure (`GptOutcome`) and its one-line detail."""

    kind: GptOutcome
    detail: str


class GptDecider:
    """Builds questions and judges answers for one configuration (no state of its own)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.symbols: tuple[str, ...] = tuple(sorted(settings.symbols))
        # A symbol a configured strategy runs is not GPT's to trade.
        self.allowed: frozenset[str] = frozenset(self.symbols) - settings.standing_symbols()
        self.limits = StrategyLimits.from_config(settings.strategy, settings.execution)
        self.anonymize = settings.gpt.anonymize
        # Non-keyed aliases are numbered in `known_symbols` order: ASSET-1 is always the first
        # configured symbol, so the narrowed schema is the same for every question.
        names = (
            [f"{ALIAS_PREFIX}{i}" for i in range(1, len(self.symbols) + 1)]
            if self.anonymize
            else list(self.symbols)
        )
        self.schema: dict[str, Any] = strict_json_schema(symbols=names)

    # ------------------------------------------------------------------ the question

    def question(
        self,
        dctx: DecisionContext,
        *,
        positions: Mapping[str, PositionInfo],
        performance: StrategyPerformance | None,
        current: CompiledStrategy | None,
        digest: Iterable[DigestItem],
    ) -> Question:
        """System + user message of a decision; limits only ever come from the settings."""
        pctx = PromptContext.from_decision(
            dctx,
            positions=positions,
            strategy_cfg=self.settings.strategy,
            performance=performance,
            strategy=None
            if current is None
            else CurrentStrategy(
                strategy_id="S-" + current.spec.fingerprint()[:16], spec=current.spec
            ),
            digest=digest,
        )
        amap: AnonymizationMap | None = None
        if self.anonymize:
            amap = build_map(pctx, known_symbols=self.symbols)
            pctx = amap.anonymize_context(pctx)
        return Question(build_messages(pctx), amap)

    def follow_up(
        self, question: Question, answer_text: str | None, verdict: RiskVerdict
    ) -> Question:
        """The next round of a refused answer: GPT's own answer, then the gate's verdict."""
        turns = list(question.messages)
        if answer_text is not None:
            turns.append(ChatTurn(role="assistant", content=answer_text))
        text = self.feedback(verdict, anonymized=question.amap is not None)
        if question.amap is not None:  # check names carry real symbols: show the aliases
            text = _aliased(text, question.amap)
        turns.append(ChatTurn(role="user", content=text))
        return Question(tuple(turns), question.amap)

    @staticmethod
    def feedback(verdict: RiskVerdict, *, anonymized: bool = False) -> str:
        """The risk gate's refusal as one bounded user message: name, limit, value and message
        of each failed check (our own text, never a third party's). Anonymised, a check that
        counts units (`long_only`) shows no numbers: real quantities beside the rebased prices
        of the prompt would give the price level away."""

        def figures(c: RiskCheck) -> str:
            if anonymized and c.name.startswith(_QUANTITY_CHECKS):
                return "quantities not shown"
            return f"limit {_dec_text(c.limit)}, value {_dec_text(c.value)}"

        failed = verdict.failures
        lines = [
            f"- {c.name}: {figures(c)}" + (f" ({c.message})" if c.message else "")
            for c in failed[:_MAX_FEEDBACK_CHECKS]
        ]
        if len(failed) > _MAX_FEEDBACK_CHECKS:
            lines.append(f"- ... {len(failed) - _MAX_FEEDBACK_CHECKS} more failed checks")
        gate = "risk gate"
        advice = ""
        if any(c.name.startswith(_VALIDATION_CHECKS) for c in failed):  # models.review.validation
            gate = "review (risk gate and validation gate)"
            advice = (
                "\nvalidation: your strategy was backtested on the symbol's recent bars and on "
                "stress scenarios built from them; change its rules, position_fraction or "
                "stop_loss_pct so that every figure keeps within its limit."
            )
        text = (
            f"The {gate} refused your previous decision. Failed checks:\n"
            + "\n".join(lines)
            + advice
            + "\nAnswer with a corrected GptDecision that fits every limit in CONTEXT."
        )
        return clip(text, _MAX_FEEDBACK_CHARS)

    # ------------------------------------------------------------------ the answer

    def interpret(
        self, answer: GptAnswer, amap: AnonymizationMap | None
    ) -> CompiledDecision | Fallback:
        """A checked decision, or why it cannot be used (the endpoint failed, the answer
        does not translate back, or the compiler rejects it, with every reason)."""
        if answer.decision is None:
            return Fallback(answer.failure or GptOutcome.NO_ANSWER, answer.detail)
        decision = answer.decision
        if amap is not None:
            restored = amap.restore_decision(decision)
            if isinstance(restored, Rejection):
                return Fallback(GptOutcome.REJECTED, _reasons(restored))
            decision = restored
        compiled = compile_decision(decision, self.allowed, self.limits)
        if isinstance(compiled, Rejection):
            return Fallback(GptOutcome.REJECTED, _reasons(compiled))
        return compiled

    def to_proposal(
        self,
        dctx: DecisionContext,
        decision: CompiledDecision,
        *,
        positions: Mapping[str, Decimal],
        prices: Mapping[str, Decimal],
        lot_sizes: Mapping[str, Decimal],
        entry_price: Decimal | None,
    ) -> Proposal:
        """The decision's orders: a new strategy's first bar on the decision symbol, a
        rebalance over its whole universe, or the exit of the decision symbol on derisk."""
        strategy = decision.strategy
        intents: list[TradeIntent] = []
        if decision.action == "create" and strategy is not None:
            for action in strategy.on_bar(dctx.symbol, dctx.features, dctx.position, entry_price):
                intent = to_intent(action, dctx.position, dctx.price, dctx.equity, dctx.lot_size)
                if intent is not None:
                    intents.append(intent)
        elif decision.action == "rebalance" and strategy is not None:
            intents = strategy.rebalance(positions, prices, dctx.equity, lot_sizes)
        elif decision.action == "derisk" and dctx.position > 0:
            intents.append(
                TradeIntent(
                    symbol=dctx.symbol,
                    side=Side.SELL,
                    quantity=dctx.position,
                    reason=clip(f"gpt derisk: {decision.rationale}", _MAX_INTENT_REASON),
                )
            )
        return Proposal(
            controller=GPT_CONTROLLER,
            strategy=strategy.strategy_id if strategy is not None else f"gpt-{decision.action}",
            intents=intents,
            rationale=clip(decision.rationale, _MAX_RATIONALE),
            confidence=decision.confidence,
        )

    @staticmethod
    def fallback(local: Proposal, why: Fallback) -> Proposal:
        """The local engine's proposal, marked as a GPT fallback with the reason."""
        note = f"; gpt fallback ({why.kind})" + (f": {why.detail}" if why.detail else "")
        return local.model_copy(
            update={
                "controller": fallback_controller(why.kind),
                "rationale": clip(local.rationale + note, _MAX_RATIONALE),
            }
        )
