"""The GPT gateway: answers the desk's `GptRequest`s through the answer store and the openai SDK.

The desk (pure) only ever emits requests and takes answers; this is where the I/O happens, on
one answer path (`AnswerPath.ask`), whatever runs it:
1. the answer store, by the prompt hash the request carries (`record` skips it; `replay` never
   goes further: a question not in the recording is `replay_miss`);
2. the spend guard (real money per wall-clock day, `connectors.gpt.spend`): `budget_exhausted`
   without a call once today is spent;
3. the endpoint (`connectors.gpt.client`);
4. costing, once: the call row's cost and the spend ledger's booking are the same number;
5. recording a good answer, with the call that paid for it.
`GptGateway.answer(request)` is the one function from a `GptRequest` to its `GptAnswer` (the
path, then the answer and its costed `gpt_calls` row); inline and the workers differ only in
where it runs:
- `answer(request)` blocks: a backtest asks inline, so an answer lands on the bar that asked
  and a re-run (answered from the recording) decides identically.
- `submit(request)` + `ready()`: a live flow hands requests to a bounded pool of worker
  threads and collects the answers later, so other symbols keep flowing while a call is out.
  A request already in flight is not sent twice (a restart resubmits what was pending).
Whether to ask at all (the desk's budget, one question per symbol) is the desk's decision.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, Generic, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from connectors.gpt.cache import AnswerRecord, AnswerStore, CacheMode
from connectors.gpt.client import GptClient, GptResult, GptUsage
from connectors.gpt.spend import SpendGuard, SpendLedger
from connectors.workers.keyed_worker import KeyedWorker
from models.config.base import parse_duration_ms
from models.config.settings import Settings
from models.core.messages import ChatTurn, GptCall, GptOutcome, GptRequest
from models.gpt.cost import DEFAULT_PRICE_TABLE, CallCost, PriceTable
from models.gpt.decider import STRICT_SCHEMA_NAME, GptAnswer, GptDecider
from models.strategy.spec import GptDecision

__all__ = ["AnswerPath", "AnswerSource", "Asker", "GptGateway", "Reply", "gpt_status"]

_LOG: Final = logging.getLogger(__name__)
T = TypeVar("T", bound=BaseModel)

UNHASHED: Final = (
    "request carries no prompt hash (from a snapshot of an earlier version): not asked"
)
NOTHING_PRICED: Final = CallCost(Decimal(0), price_known=True)
"""The cost of a gateway error's row: nothing was asked, so nothing was priced."""


class Asker(Protocol):
    """What the answer path needs of a client; `connectors.gpt.client.GptClient` is one."""

    model: str

    def ask(
        self,
        messages: Sequence[ChatTurn],
        response_model: type[T],
        *,
        schema: Mapping[str, Any] | None = None,
        schema_name: str | None = None,
        model: str | None = None,
    ) -> GptResult[T]: ...


class AnswerSource(StrEnum):
    ENDPOINT = "endpoint"
    """Past the store: the client was asked (whatever it answered, its own failures included),
    or the spend guard in front of it refused."""
    STORE = "store"
    """Answered from the recording: no request was made."""
    NONE = "none"
    """Neither: a replay miss, or the gateway could not ask (an error, an unhashed request)."""


@dataclass(frozen=True, slots=True)
class Reply(Generic[T]):
    """What the answer path produced for one question.

    `outcome` is the value for the call log (`ok`, `cached`, `replayed` or the failure, in the
    one vocabulary `GptOutcome`); `failure` is the outcome unless an answer came back; `source`
    says how far the path went. `usage` is what this call was billed: zero for an answer from
    the store (the original cost is in the `AnswerRecord`), except when `paid`: the store
    answered with the recording this very call made in this run (paid, then a crash before its
    row was written; the restarted run asks again), so the reply is that paid call: outcome
    `ok`, its recorded usage and cost. `cost` is `usage` at the price table's rate, computed
    once by the path (the spend ledger booked this same amount).
    """

    model: str
    prompt_hash: str
    source: AnswerSource
    outcome: GptOutcome
    cost: CallCost
    parsed: T | None = None
    detail: str = ""
    usage: GptUsage = field(default_factory=GptUsage)
    latency_s: float = 0.0
    raw_text: str | None = None
    request_id: str | None = None
    paid: bool = False

    @property
    def failure(self) -> GptOutcome | None:
        return None if self.outcome.answered else self.outcome

    @property
    def billed(self) -> bool:
        """Whether this reply is a call paid for in this run (its cost is logged)."""
        return self.source is AnswerSource.ENDPOINT or self.paid

    @property
    def ok(self) -> bool:
        return self.failure is None and self.parsed is not None

    def to_call(self, request: GptRequest) -> GptCall:
        """The `gpt_calls` row of this reply to `request` (its cost only when billed)."""
        return GptCall.of_request(
            request,
            model=self.model,
            prompt_tokens=self.usage.prompt_tokens,
            completion_tokens=self.usage.completion_tokens,
            latency_ms=round(self.latency_s * 1000),
            cost=self.cost.usd if self.billed else Decimal(0),
            price_known=self.cost.price_known,
            outcome=self.outcome,
            answer=self.raw_text or "",
            detail=self.detail,
        )


def _parse(
    record: AnswerRecord, response_model: type[T]
) -> tuple[T | None, GptOutcome | None, str]:
    """A recorded answer parsed exactly as the client parses a live one (pydantic's
    `model_validate_json` on the content), so a replay yields equal objects."""
    try:
        return response_model.model_validate_json(record.answer), None, ""
    except ValidationError:
        try:
            json.loads(record.answer)
        except ValueError:
            return None, GptOutcome.MALFORMED, "recorded answer is not valid JSON"
        detail = f"recorded answer is outside the schema of {response_model.__name__}"
        return None, GptOutcome.SCHEMA_VIOLATION, detail


@dataclass(frozen=True, slots=True)
class AnswerPath:
    """The one way from a question to a `Reply`: store, spend guard, endpoint, costing,
    recording (in that order; see the module docstring).

    `store` None: no recording at all (every question goes to the endpoint). `mode`: `record`
    always calls and stores the good answers, `replay` never calls, `auto` answers from the
    store when it can and otherwise calls and records. `max_age_ms` (auto only): a recording
    older than this (wall clock) is a miss, so a live run reuses an answer to the identical
    question only inside that window; replay ignores it. `run`: the run asking (its id),
    recorded with each good answer; a hit on a recording made by the same call id in the same
    run is that paid call (`paid`), not a free `cached` answer: a restart that redoes its last
    epoch asks again the calls it had paid but not yet logged, and the log's cost must equal
    what was spent. Any other hit costs nothing. `guard` None: no wall-clock spend guard.

    Never raises for what the endpoint does; a store that cannot write raises
    `AnswerStoreError` (a recording with holes is worse than a stopped backtest).
    """

    client: Asker
    store: AnswerStore | None = None
    mode: CacheMode = CacheMode.AUTO
    guard: SpendGuard | None = None
    prices: PriceTable = DEFAULT_PRICE_TABLE
    max_age_ms: int | None = None
    run: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", CacheMode(self.mode))

    def ask(
        self,
        messages: Sequence[ChatTurn],
        response_model: type[T],
        *,
        prompt_hash: str,
        schema: Mapping[str, Any] | None = None,
        schema_name: str | None = None,
        call_id: str = "",
        model: str = "",
    ) -> Reply[T]:
        """Answer one question; `prompt_hash` is the question's (computed once by its asker,
        never here, with the model it is for), `call_id` its `gpt_calls` id, `model` the model
        to ask ("": the client's)."""
        asked = model or self.client.model
        t0 = time.perf_counter()
        # 1. The answer store.
        if self.store is not None and self.mode is not CacheMode.RECORD:
            record = self.store.lookup(prompt_hash)
            if (
                record is not None
                and self.mode is CacheMode.AUTO
                and self.max_age_ms is not None
                and time.time() * 1000 - record.recorded_ms > self.max_age_ms
            ):
                record = None  # too old to stand for an answer to this moment
            if record is not None:
                hit = self._recorded(record, prompt_hash, response_model, call_id, t0)
                if hit.ok or self.mode is CacheMode.REPLAY:
                    return hit  # auto: a recording that no longer validates is asked again
            elif self.mode is CacheMode.REPLAY:
                return self.not_asked(
                    prompt_hash,
                    GptOutcome.REPLAY_MISS,
                    f"no recorded answer for prompt {prompt_hash[:12]} (replay never calls)",
                    latency_s=time.perf_counter() - t0,
                )
        # 2. The spend guard: real money, by the wall clock.
        day = ""
        if self.guard is not None:
            day = self.guard.today()
            refused = self.guard.refusal(day)
            if refused is not None:
                return Reply(
                    model=asked,
                    prompt_hash=prompt_hash,
                    source=AnswerSource.ENDPOINT,
                    outcome=GptOutcome.BUDGET_EXHAUSTED,
                    cost=self.prices.cost(asked, 0, 0),
                    detail=refused,
                )
        # 3. The endpoint.
        other = {} if asked == self.client.model else {"model": asked}  # a changed gpt.model
        result = self.client.ask(
            messages, response_model, schema=schema, schema_name=schema_name, **other
        )
        # 4. Costing, once: booked against the guard's day, logged on the call row.
        usage = result.usage
        cost = self.prices.cost(result.model, usage.prompt_tokens, usage.completion_tokens)
        if self.guard is not None:
            self.guard.book(day, cost.usd, result.model)
        # 5. Recording a good answer, with the call that paid for it.
        if self.store is not None and result.ok and result.raw_text is not None:
            self.store.put(
                prompt_hash, result.model, result.raw_text, usage, call_id=call_id, run=self.run
            )
        return Reply(
            model=result.model,
            prompt_hash=prompt_hash,
            source=AnswerSource.ENDPOINT,
            outcome=result.failure or GptOutcome.OK,
            cost=cost,
            parsed=result.parsed,
            detail=result.detail,
            usage=usage,
            latency_s=result.latency_s,
            raw_text=result.raw_text,
            request_id=result.request_id,
        )

    def _recorded(
        self,
        record: AnswerRecord,
        prompt_hash: str,
        response_model: type[T],
        call_id: str,
        t0: float,
    ) -> Reply[T]:
        paid_by = (record.run, record.call_id)
        own = bool(self.run) and bool(call_id) and paid_by == (self.run, call_id)
        parsed, failure, detail = _parse(record, response_model)
        outcome = GptOutcome.REPLAYED if self.mode is CacheMode.REPLAY else GptOutcome.CACHED
        if own:
            outcome = GptOutcome.OK
            detail = detail or "paid in this run before a restart; answer from its recording"
        usage = record.usage if own else GptUsage()
        return Reply(
            model=record.model,
            prompt_hash=prompt_hash,
            source=AnswerSource.STORE,
            outcome=failure or outcome,
            cost=self.prices.cost(record.model, usage.prompt_tokens, usage.completion_tokens),
            parsed=parsed,
            detail=detail,
            usage=usage,
            latency_s=time.perf_counter() - t0,
            raw_text=record.answer,
            paid=own,
        )

    def not_asked(
        self,
        prompt_hash: str,
        outcome: GptOutcome,
        detail: str,
        *,
        latency_s: float = 0.0,
        cost: CallCost | None = None,
    ) -> Reply[Any]:
        """The reply to a question the path did not take to the endpoint nor found answered."""
        model = self.client.model
        return Reply(
            model=model,
            prompt_hash=prompt_hash,
            source=AnswerSource.NONE,
            outcome=outcome,
            cost=self.prices.cost(model, 0, 0) if cost is None else cost,
            detail=detail,
            latency_s=latency_s,
        )


def to_answer(reply: Reply[GptDecision], request: GptRequest) -> GptAnswer:
    """The desk's answer to `request`: the decision (or why there is none) and the call row."""
    ok = reply.ok
    return GptAnswer(
        request_id=request.request_id,
        decision=reply.parsed if ok else None,
        failure=None if ok else (reply.failure or GptOutcome.NO_ANSWER),
        detail=reply.detail,
        call=reply.to_call(request),
        billed=reply.billed,
        raw_text=reply.raw_text,
    )


class GptGateway:
    """Turns requests into answers; thread-safe for `submit`/`ready` (the client and the
    store lock themselves)."""

    def __init__(
        self,
        settings: Settings,
        client: Asker,
        store: AnswerStore | None,
        *,
        mode: CacheMode | str = CacheMode.AUTO,
        prices: PriceTable = DEFAULT_PRICE_TABLE,
        max_age_ms: int | None = None,
        ledger: SpendLedger | None = None,
        run: str = "",
    ) -> None:
        if client.model != settings.gpt.model:
            # The desk hashes each question with `gpt.model`: another model would be answered
            # from (and recorded under) the hash of a question it was never asked.
            raise ValueError(
                f"client model {client.model!r} is not gpt.model {settings.gpt.model!r}"
            )
        self.client = client
        self.store = store
        # Who "this run" is for the answer store: the run id (`dataflows.run.open_run_state`,
        # kept across the run's restarts); "" = no identity, every recorded answer is a free
        # `cached` one. With a ledger, the endpoint is called only while today's real
        # spending (wall clock, every run on the ledger) passes the budget rule.
        self.path = AnswerPath(
            client,
            store,
            CacheMode(mode),
            None if ledger is None else SpendGuard(ledger, settings.gpt.daily_budget_usd),
            prices,
            max_age_ms,
            run,
        )
        self.schema: dict[str, Any] = GptDecider(settings).schema
        self._worker: KeyedWorker[GptAnswer] = KeyedWorker(settings.gpt.max_concurrency, "gpt")

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        environ: Mapping[str, str] | None = None,
        *,
        live: bool = False,
        run: str = "",
    ) -> GptGateway | None:
        """A gateway when answers can come from somewhere: an endpoint (OPENAI_API_KEY or
        OPENAI_BASE_URL) or, in replay mode, the recording; else None (local engine only).
        `live`: recorded answers count only inside `gpt.cache_window` (a backtest re-run
        reuses every recorded answer, however old). `run`: the run id, so a call this run paid
        for and asks again after a restart is logged as paid, once."""
        if settings.strategy.controller == "local":
            return None
        cfg = settings.gpt
        client = GptClient.from_env(
            cfg.model, env=environ, timeout_s=cfg.timeout_s, max_retries=cfg.max_retries
        )
        mode = CacheMode(cfg.cache_mode)
        if not client.enabled and mode is not CacheMode.REPLAY:
            return None
        store = AnswerStore(Path(cfg.cache_dir))
        window = parse_duration_ms(cfg.cache_window) if live else None
        ledger = SpendLedger(Path(cfg.cache_dir))
        return cls(settings, client, store, mode=mode, max_age_ms=window, ledger=ledger, run=run)

    # ------------------------------------------------------------------ answering

    def answer(self, request: GptRequest) -> GptAnswer:
        """The one function from a request to its answer, blocking: the answer path with the
        request's carried prompt hash. Never raises for what the endpoint does."""
        if not request.prompt_hash:
            reply: Reply[GptDecision] = self.path.not_asked("", GptOutcome.CLIENT_ERROR, UNHASHED)
        else:
            reply = self.path.ask(
                request.messages,
                GptDecision,
                prompt_hash=request.prompt_hash,
                schema=self.schema,
                schema_name=STRICT_SCHEMA_NAME,
                call_id=request.request_id,
                model=request.model,
            )
        return to_answer(reply, request)

    def _answer_safely(self, request: GptRequest) -> GptAnswer:
        """The worker's body: a bug must still produce an answer, or the decision would wait
        for its timeout; a store that cannot write is such a case too."""
        try:
            return self.answer(request)
        except Exception as err:
            _LOG.exception("gpt request %s failed", request.request_id)
            detail = f"gateway error: {type(err).__name__}: {err}"
            reply = self.path.not_asked(
                request.prompt_hash, GptOutcome.CLIENT_ERROR, detail, cost=NOTHING_PRICED
            )
            return to_answer(reply, request)

    def submit(self, request: GptRequest) -> None:
        """Start answering in the background (no-op if this request is already out)."""
        self._worker.submit(request.request_id, self._answer_safely, request)

    def ready(self) -> list[GptAnswer]:
        """The answers that arrived since the last call, in arrival order."""
        return self._worker.ready()

    @property
    def in_flight(self) -> int:
        return self._worker.in_flight

    def wait(self, timeout_s: float | None = None) -> None:
        """Block until every request out now has its answer (end of a bounded run)."""
        self._worker.wait(timeout_s)

    def close(self) -> None:
        self._worker.shutdown(wait=False)
        if isinstance(self.client, GptClient):
            self.client.close()
        if self.store is not None:
            self.store.close()

    def describe(self) -> str:
        if isinstance(self.client, GptClient) and self.client.enabled:
            line = self.client.describe()
        else:
            line = "gpt: replaying recorded answers only (no endpoint)"
        where = self.store.path if self.store is not None else "-"
        return f"{line}; answers {self.path.mode.value} in {where}"


def gpt_status(settings: Settings, gateway: GptGateway | None) -> str:
    """The one line a run prints at start about who writes the strategies."""
    if settings.strategy.controller == "local":
        return "strategies: local engine (strategy.controller = local)"
    if gateway is None:
        return (
            "strategies: local engine only: no OPENAI_API_KEY or OPENAI_BASE_URL set "
            "(set one to let GPT write strategies on strategic triggers)"
        )
    return "strategies: GPT on strategic triggers, local engine otherwise; " + gateway.describe()
