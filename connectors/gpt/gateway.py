"""The GPT gateway: answers the desk's `GptRequest`s through the openai SDK and the answer store.

The desk (pure) only ever emits requests and takes answers; this is where the I/O happens:
- `answer(request)` blocks: a backtest asks inline, so an answer lands on the bar that asked
  and a re-run (answered from the recording) decides identically.
- `submit(request)` + `ready()`: a live flow hands requests to a bounded pool of worker
  threads and collects the answers later, so other symbols keep flowing while a call is out.
  A request already in flight is not sent twice (a restart resubmits what was pending).
Every answer carries its costed `gpt_calls` row. Whether to ask at all (budget, one question
per symbol) is the desk's decision, never this module's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from connectors.gpt.cache import (
    AnswerSource,
    AnswerStore,
    Asker,
    CachedResult,
    CacheMode,
    ask_with_cache,
)
from connectors.gpt.client import GptClient
from connectors.gpt.spend import BudgetedAsker, SpendLedger
from connectors.workers.keyed_worker import KeyedWorker
from models.config.settings import Settings, parse_duration_ms
from models.core.messages import GptCall, GptOutcome, GptRequest
from models.gpt.cost import DEFAULT_PRICE_TABLE, PriceTable
from models.gpt.decider import STRICT_SCHEMA_NAME, GptAnswer, GptDecider
from models.strategy.spec import GptDecision

__all__ = ["GptGateway", "gpt_status"]

_LOG: Final = logging.getLogger(__name__)


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
        self.client = client
        # With a ledger, the endpoint is called only while today's real spending (wall clock,
        # every run on the ledger) is under the daily budget; see `connectors.gpt.spend`.
        self._asker: Asker = (
            client
            if ledger is None
            else BudgetedAsker(client, ledger, settings.gpt.daily_budget_usd, prices)
        )
        self.store = store
        self.mode = CacheMode(mode)
        self.prices = prices
        self.max_age_ms = max_age_ms
        # Who "this run" is for the answer store: the run id (`dataflows.run.open_run_state`,
        # kept across the run's restarts); "" = no identity, every recorded answer is a free
        # `cached` one.
        self.run = run
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
        """Ask (or look up) one request, blocking; never raises for what the endpoint does."""
        messages = request.messages
        if self.store is not None:
            result = ask_with_cache(
                self._asker,
                self.store,
                self.mode,
                messages,
                GptDecision,
                schema=self.schema,
                schema_name=STRICT_SCHEMA_NAME,
                max_age_ms=self.max_age_ms,
                call_id=request.request_id,
                run=self.run,
            )
            call = result.to_call(
                decision_id=request.decision_id,
                round_no=request.round,
                symbol=request.symbol,
                ts_ms=request.ts_ms,
                prices=self.prices,
            )
            billed = result.billed  # a call paid in this run (also one asked again)
            parsed, failure, detail = result.parsed, result.failure, result.detail
            raw = result.raw_text
        else:
            r = self._asker.ask(
                messages, GptDecision, schema=self.schema, schema_name=STRICT_SCHEMA_NAME
            )
            cached: CachedResult[GptDecision] = CachedResult(
                model=r.model,
                prompt_hash=r.prompt_hash,
                source=AnswerSource.ENDPOINT,
                outcome=r.failure or GptOutcome.OK,
                parsed=r.parsed,
                detail=r.detail,
                usage=r.usage,
                latency_s=r.latency_s,
                raw_text=r.raw_text,
                request_id=r.request_id,
            )
            call = cached.to_call(
                decision_id=request.decision_id,
                round_no=request.round,
                symbol=request.symbol,
                ts_ms=request.ts_ms,
                prices=self.prices,
            )
            billed = True
            parsed, failure, detail, raw = r.parsed, r.failure, r.detail, r.raw_text
        ok = failure is None and parsed is not None
        return GptAnswer(
            request_id=request.request_id,
            decision=parsed if ok else None,
            failure=None if ok else (failure or GptOutcome.NO_ANSWER),
            detail=detail,
            call=call,
            billed=billed,
            raw_text=raw,
        )

    def _answer_safely(self, request: GptRequest) -> GptAnswer:
        """The worker's body: a bug must still produce an answer, or the decision would wait
        for its timeout; a store that cannot write is such a case too."""
        try:
            return self.answer(request)
        except Exception as err:
            _LOG.exception("gpt request %s failed", request.request_id)
            call = GptCall(
                call_id=request.request_id,
                ts_ms=request.ts_ms,
                decision_id=request.decision_id,
                round=request.round,
                symbol=request.symbol,
                model=getattr(self.client, "model", ""),
                prompt_hash="",
                outcome=GptOutcome.CLIENT_ERROR,
                detail=f"gateway error: {type(err).__name__}: {err}",
            )
            return GptAnswer(
                request_id=request.request_id,
                decision=None,
                failure=GptOutcome.CLIENT_ERROR,
                detail=call.detail,
                call=call,
                billed=False,
            )

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
        return f"{line}; answers {self.mode.value} in {where}"


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
