"""The one place that talks to a GPT endpoint: the official `openai` SDK, structured outputs.

Any OpenAI-compatible server works (OpenAI, vLLM, llama.cpp server, Ollama) through `base_url`.
`GptClient.ask(messages, ResponseModel)` sends the pydantic model as a strict JSON Schema
(`chat.completions.parse(response_format=ResponseModel)`) and returns a `GptResult`: the parsed
answer, or a failure (a `GptOutcome`, the seam's one outcome vocabulary). The messages are
`ChatTurn`s, the project's one chat message type, turned into the SDK's dicts only where the
request is sent. It never raises for what an endpoint or a model can do wrong (timeout, 429,
5xx, a dropped connection, malformed JSON, an answer outside the schema, a refusal, an answer
too long or nested too deep, a key written twice, a tool call instead of an answer, a response
body of another shape), because the caller's answer to all of them is the same: log it and let
the local engine decide. HTTP-level failures are retried by the SDK's own
policy (`max_retries`, exponential back-off, `Retry-After` honoured) before they are reported;
a bad answer is not retried here (the adjust loop decides whether to ask again).

A `CircuitBreaker` (models/gpt/circuit_breaker.py) stops calling an endpoint that keeps failing:
while it is open, `ask` returns `circuit_open` at once instead of waiting out another timeout.

Without an API key and without a base URL nothing is called: every `ask` reports `no_key`, so
the pipeline runs on the local engine (`describe()` gives the one line to say so at start).
The key never appears in `repr`, `str`, a result or a log line.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ValidationError

from models.core.messages import ChatTurn, GptOutcome
from models.gpt.circuit_breaker import BreakerState, CircuitBreaker
from models.strategy.spec import duplicate_key

if TYPE_CHECKING:
    # The SDK is imported where it is used: a process that never calls an endpoint (a backtest
    # without a key, every `stratflow` command but gpt-check) does not pay ~0.7 s to load it.
    import openai
    from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
    from openai.types.shared_params import ResponseFormatJSONSchema

__all__ = [
    "DEFAULT_MODEL",
    "ENDPOINT_FAILURES",
    "GptClient",
    "GptResult",
    "GptUsage",
]

DEFAULT_MODEL = "gpt-4o-mini"
OPENAI_URL = "https://api.openai.com/v1"
# OpenAI-compatible local servers (Ollama, vLLM, llama.cpp) ignore the key, but the SDK insists
# on one; this placeholder is what is sent when only a base URL is configured.
NO_KEY_PLACEHOLDER = "no-key"
# The longest answer content read (UTF-8 bytes): a strategy answer is a few KiB, and a runaway
# or hostile answer must be refused before a parser spends time or memory on it.
DEFAULT_MAX_ANSWER_BYTES = 64 * 1024
MAX_TOKENS = 2**53  # a billed token count above this is a broken endpoint, not usage

T = TypeVar("T", bound=BaseModel)

_LOG = logging.getLogger("stratflow.gpt")
_LOG.addHandler(logging.NullHandler())  # silent unless the application configures logging


ENDPOINT_FAILURES: frozenset[GptOutcome] = frozenset(
    {
        GptOutcome.TIMEOUT,
        GptOutcome.RATE_LIMITED,
        GptOutcome.SERVER_ERROR,
        GptOutcome.CLIENT_ERROR,
        GptOutcome.CONNECTION,
    }
)
"""Failures that count against the circuit breaker. A malformed, off-schema or refused answer
means the endpoint works (and answered); it resets the count like a good answer does."""


@dataclass(frozen=True, slots=True)
class GptUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class GptResult(Generic[T]):
    """The outcome of one `ask`: `parsed` on success, else `failure` with a one-line `detail`.

    `usage` is what the endpoint billed (zero when nothing was answered); `latency_s` covers the
    whole call including the SDK's retries; `raw_text` is the answer content as received (the
    refusal text for a refusal; None when nothing was answered). No prompt hash: the question's
    hash is the caller's, computed once by the desk and carried on its `GptRequest`.
    """

    model: str
    parsed: T | None = None
    failure: GptOutcome | None = None
    detail: str = ""
    usage: GptUsage = field(default_factory=GptUsage)
    latency_s: float = 0.0
    raw_text: str | None = None
    request_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None and self.parsed is not None


class _Secret:
    """Holds the API key so that no repr, str or f-string can show it by accident."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def redact(self, text: str) -> str:
        return text.replace(self._value, "***") if len(self._value) >= 4 else text

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("an API key is not pickled")


def _safe_url(url: str) -> str:
    """The URL without user:password, for display."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def _tokens(value: Any) -> int:
    """A token count as billed: an int >= 0, at most `MAX_TOKENS`. A negative, fractional,
    boolean or absurd count from a broken endpoint would otherwise crash the costing (or
    overflow a UInt64 column); it counts as 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return min(value, MAX_TOKENS)


def _peek(body: str) -> tuple[str | None, GptUsage]:
    """Content (or refusal) and usage from a raw chat-completion body, tolerating any shape:
    used when the SDK could not parse the answer, so the log still shows what came back and
    what it cost. A body nested too deep for the JSON parser counts as not JSON."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return (body or None), GptUsage()
    if not isinstance(doc, dict):
        return body, GptUsage()
    usage = GptUsage()
    u = doc.get("usage")
    if isinstance(u, dict):
        usage = GptUsage(_tokens(u.get("prompt_tokens")), _tokens(u.get("completion_tokens")))
    text: str | None = None
    choices = doc.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        msg = choices[0].get("message")
        if isinstance(msg, dict):
            content, refusal = msg.get("content"), msg.get("refusal")
            if isinstance(content, str):
                text = content
            elif isinstance(refusal, str):
                text = refusal
    return text, usage


def _is_malformed(exc: ValidationError) -> bool:
    """True when pydantic could not even read the JSON (syntax, truncation, nesting too deep,
    trailing data such as a second object or a markdown fence), false for a value problem."""
    return any(e["type"] == "json_invalid" for e in exc.errors(include_url=False))


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return "invalid"
    e = errors[0]
    where = ".".join(str(p) for p in e.get("loc", ())) or "answer"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {e.get('msg', 'invalid')}{more}"


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one SDK call produced, before timing and the breaker are applied."""

    parsed: BaseModel | None = None
    failure: GptOutcome | None = None
    detail: str = ""
    usage: GptUsage = field(default_factory=GptUsage)
    raw_text: str | None = None
    request_id: str | None = None


class GptClient:
    """A GPT endpoint behind the official SDK, with a circuit breaker and no exceptions.

    `base_url=None` means OpenAI itself; `api_key=None` with a base URL sends a placeholder key
    (local servers ignore it); neither means disabled (`no_key`). `timeout_s` bounds each HTTP
    attempt; `max_retries` is the SDK's retry budget (so the worst case is about
    `(max_retries + 1) * timeout_s` plus back-off). `clock` drives the breaker's cool-down only.
    `max_answer_bytes` caps the answer content read (longer is `malformed`, never parsed).
    Thread-safe: calls may run concurrently from a pool.
    """

    def __init__(
        self,
        base_url: str | None,
        api_key: str | None,
        model: str = DEFAULT_MODEL,
        timeout_s: float = 20.0,
        max_retries: int = 2,
        *,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if max_answer_bytes < 1:
            raise ValueError(f"max_answer_bytes must be >= 1, got {max_answer_bytes}")
        self.model = model
        self.max_answer_bytes = max_answer_bytes
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.base_url = base_url
        self._key = _Secret(api_key) if api_key else None
        self._breaker = breaker if breaker is not None else CircuitBreaker()
        self._clock = clock
        self._lock = threading.Lock()
        self._sdk: openai.OpenAI | None = None
        if self._key is not None or base_url:
            import openai

            # Everything is passed explicitly so the SDK does not pick up OPENAI_API_KEY or
            # OPENAI_BASE_URL behind our back: `from_env` is the one place that reads them.
            self._sdk = openai.OpenAI(
                base_url=base_url or OPENAI_URL,
                api_key=self._key.reveal() if self._key is not None else NO_KEY_PLACEHOLDER,
                timeout=timeout_s,
                max_retries=max_retries,
            )

    @classmethod
    def from_env(
        cls,
        model: str | None = None,
        *,
        env: Mapping[str, str] | None = None,
        timeout_s: float = 20.0,
        max_retries: int = 2,
        breaker: CircuitBreaker | None = None,
    ) -> GptClient:
        """Configured by OPENAI_API_KEY, OPENAI_BASE_URL and the model (`model`, else
        OPENAI_MODEL, else DEFAULT_MODEL). Empty values count as unset. Never fails for a
        missing key: the client is then disabled and every `ask` reports `no_key`."""
        source = os.environ if env is None else env
        return cls(
            base_url=source.get("OPENAI_BASE_URL") or None,
            api_key=source.get("OPENAI_API_KEY") or None,
            model=model or source.get("OPENAI_MODEL") or DEFAULT_MODEL,
            timeout_s=timeout_s,
            max_retries=max_retries,
            breaker=breaker,
        )

    # ------------------------------------------------------------------ state

    @property
    def enabled(self) -> bool:
        """False without key and base URL: nothing will ever be called."""
        return self._sdk is not None

    @property
    def breaker_state(self) -> BreakerState:
        with self._lock:
            return self._breaker.state_at(self._clock())

    def describe(self) -> str:
        """One line for the start-up log: where calls go, or that the local engine decides."""
        if not self.enabled:
            return "gpt: disabled (no OPENAI_API_KEY or OPENAI_BASE_URL); local engine only"
        key = "key set" if self._key is not None else "no key"
        where = _safe_url(self.base_url or OPENAI_URL)
        return (
            f"gpt: model {self.model} at {where} ({key}, timeout {self.timeout_s:g} s, "
            f"{self.max_retries} retries)"
        )

    def __repr__(self) -> str:
        where = _safe_url(self.base_url) if self.base_url else None
        key = "set" if self._key is not None else "none"
        return (
            f"GptClient(base_url={where!r}, model={self.model!r}, api_key={key}, "
            f"timeout_s={self.timeout_s:g}, max_retries={self.max_retries})"
        )

    __str__ = __repr__

    def close(self) -> None:
        """Release the HTTP connection pool."""
        if self._sdk is not None:
            self._sdk.close()

    def __enter__(self) -> GptClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ calls

    def ask(
        self,
        messages: Sequence[ChatTurn],
        response_model: type[T],
        *,
        schema: Mapping[str, Any] | None = None,
        schema_name: str | None = None,
        model: str | None = None,
    ) -> GptResult[T]:
        """Ask for an answer shaped like `response_model`, as strict structured output.

        `model`: the model to ask this time (a settings change of `gpt.model` while the flow
        runs); default the client's.

        By default the SDK derives the strict JSON Schema from `response_model`. A caller that
        must send a narrower schema (e.g. enums of the features that exist) passes it as
        `schema` (sent with `strict: true` under `schema_name`, default the model's name); the
        answer is still validated by `response_model`. Never raises for endpoint or answer
        failures; a response model the SDK cannot make strict is a bug and raises TypeError.
        """
        response_format: ResponseFormatJSONSchema | None = None
        if schema is not None:
            response_format = {
                "type": "json_schema",
                "json_schema": {
                    "name": schema_name or response_model.__name__,
                    "schema": dict(schema),
                    "strict": True,
                },
            }
        if self._sdk is None:
            return self._finish(
                _Outcome(
                    failure=GptOutcome.NO_KEY,
                    detail="no OPENAI_API_KEY or OPENAI_BASE_URL: not called",
                ),
                0.0,
                model,
            )
        with self._lock:
            now = self._clock()
            allowed = self._breaker.allow(now)
            wait = self._breaker.retry_in(now)
            failures = self._breaker.consecutive_failures
        if not allowed:
            return self._finish(
                _Outcome(
                    failure=GptOutcome.CIRCUIT_OPEN,
                    detail=f"circuit open after {failures} endpoint failures; "
                    f"next try in {wait:.1f} s",
                ),
                0.0,
                model,
            )
        t0 = time.perf_counter()
        # An exception escaping here is a bug (not an endpoint failure); the breaker then never
        # hears back from this call, and a half-open trial it held expires after a cool-down.
        outcome = self._call(
            self._sdk, messages, response_model, response_format, model or self.model
        )
        latency = time.perf_counter() - t0
        with self._lock:
            before = self._breaker.state
            if outcome.failure in ENDPOINT_FAILURES:
                self._breaker.record_failure(self._clock())
            else:
                self._breaker.record_success(self._clock())
            after = self._breaker.state
            failures = self._breaker.consecutive_failures
        if after is not before and after is BreakerState.OPEN:
            _LOG.warning(
                "gpt circuit opened after %d endpoint failures; no calls for %g s",
                failures,
                self._breaker.cooldown_s,
            )
        elif after is not before and after is BreakerState.CLOSED:
            _LOG.info("gpt circuit closed: the endpoint answers again")
        return self._finish(outcome, latency, model)

    def _finish(self, outcome: _Outcome, latency: float, model: str | None = None) -> GptResult[T]:
        detail = outcome.detail
        raw_text = outcome.raw_text
        if self._key is not None:
            detail = self._key.redact(detail)
            raw_text = None if raw_text is None else self._key.redact(raw_text)
        result: GptResult[T] = GptResult(
            model=model or self.model,
            parsed=cast("T | None", outcome.parsed),
            failure=outcome.failure,
            detail=detail,
            usage=outcome.usage,
            latency_s=latency,
            raw_text=raw_text,
            request_id=outcome.request_id,
        )
        level = logging.DEBUG if result.failure is None else logging.WARNING
        if result.failure in (GptOutcome.NO_KEY, GptOutcome.CIRCUIT_OPEN):
            level = logging.DEBUG  # said once elsewhere (describe(), the circuit-opened line)
        _LOG.log(
            level,
            "gpt call model=%s outcome=%s latency=%.3fs tokens=%d/%d%s",
            result.model,
            result.failure.value if result.failure else "ok",
            latency,
            result.usage.prompt_tokens,
            result.usage.completion_tokens,
            f": {detail}" if detail else "",
        )
        return result

    def _send(
        self,
        sdk: openai.OpenAI,
        messages: Sequence[ChatTurn],
        response_model: type[T],
        response_format: ResponseFormatJSONSchema | None,
        model: str,
    ) -> tuple[str, str | None, Callable[[], ChatCompletion]]:
        """One HTTP exchange (the SDK's retries included): body text, request id, and a parser.

        The raw-response variants are used so the body is still at hand when parsing fails: the
        log then shows what the model said and what it cost. Without an explicit schema the SDK's
        `parse()` derives the strict schema from the model and parses the answer; with one,
        `create()` sends it as given and the answer is validated here."""
        msgs = cast(
            "list[ChatCompletionMessageParam]",
            [{"role": t.role, "content": t.content} for t in messages],
        )
        if response_format is None:
            parsed = sdk.chat.completions.with_raw_response.parse(
                model=model, messages=msgs, response_format=response_model
            )
            return parsed.text, parsed.request_id, parsed.parse
        plain = sdk.chat.completions.with_raw_response.create(
            model=model, messages=msgs, response_format=response_format
        )
        return plain.text, plain.request_id, plain.parse

    def _call(
        self,
        sdk: openai.OpenAI,
        messages: Sequence[ChatTurn],
        response_model: type[T],
        response_format: ResponseFormatJSONSchema | None,
        model: str,
    ) -> _Outcome:
        """One call, classified into an answer or a `GptOutcome`."""
        import openai
        from openai.types.chat import ChatCompletionMessage
        from openai.types.chat.chat_completion import Choice

        try:
            body, request_id, parse = self._send(
                sdk, messages, response_model, response_format, model
            )
        except openai.APITimeoutError:
            return _Outcome(
                failure=GptOutcome.TIMEOUT,
                detail=f"no answer within {self.timeout_s:g} s ({self.max_retries + 1} attempt(s))",
            )
        except openai.APIConnectionError as exc:
            cause = exc.__cause__
            why = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
            return _Outcome(failure=GptOutcome.CONNECTION, detail=f"connection failed: {why}")
        except openai.APIStatusError as exc:
            return self._status_outcome(exc)
        except openai.APIError as exc:  # e.g. a 200 body that is not a chat completion
            return _Outcome(failure=GptOutcome.MALFORMED, detail=f"unusable response: {exc}")
        text, usage = _peek(body)

        def failed(kind: GptOutcome, detail: str, raw_text: str | None = text) -> _Outcome:
            if raw_text is not None and len(raw_text) > self.max_answer_bytes:
                raw_text = raw_text[: self.max_answer_bytes]  # what the log needs, not more
            return _Outcome(
                failure=kind, detail=detail, usage=usage, raw_text=raw_text, request_id=request_id
            )

        # Before any parser sees it (the SDK's parse() reads the content too): a runaway answer
        # is refused whole, never truncated into something that trades.
        if text is not None and len(text.encode("utf-8", "replace")) > self.max_answer_bytes:
            return failed(GptOutcome.MALFORMED, f"answer longer than {self.max_answer_bytes} bytes")
        try:
            completion = parse()
            # The SDK builds the completion without validating it: a body of another shape
            # (choices null, a choice or message that is not an object, ...) is checked here.
            choices = getattr(completion, "choices", None)
            if not isinstance(choices, list) or not choices:
                return failed(GptOutcome.MALFORMED, "response has no choices")
            choice = choices[0]
            message = getattr(choice, "message", None)
            if not isinstance(choice, Choice) or not isinstance(message, ChatCompletionMessage):
                return failed(GptOutcome.MALFORMED, "response choice has no message")
            # parse() raises for these two; create() does not, so they are checked here too.
            if choice.finish_reason == "length":
                return failed(GptOutcome.MALFORMED, "answer truncated (finish_reason=length)")
            if choice.finish_reason == "content_filter":
                return failed(GptOutcome.REFUSAL, "answer stopped by the content filter")
            if message.refusal:
                refusal = message.refusal if isinstance(message.refusal, str) else text
                return failed(GptOutcome.REFUSAL, "the model refused", refusal)
            tool_call = choice.finish_reason in ("tool_calls", "function_call")
            if tool_call or message.tool_calls or message.function_call:
                return failed(GptOutcome.MALFORMED, "a tool call instead of an answer")
            content = message.content
            if not isinstance(content, str):
                return failed(GptOutcome.MALFORMED, "answer content is not text")
            if not content.strip():
                return failed(GptOutcome.MALFORMED, "empty answer")
            duplicate = duplicate_key(content)
            if duplicate is not None:
                return failed(
                    GptOutcome.MALFORMED, f"answer repeats the key {duplicate[:40]!r}", content
                )
            answer = getattr(message, "parsed", None)
            if not isinstance(answer, response_model):
                answer = response_model.model_validate_json(content)
        except openai.LengthFinishReasonError:
            return failed(GptOutcome.MALFORMED, "answer truncated (finish_reason=length)")
        except openai.ContentFilterFinishReasonError:
            return failed(GptOutcome.REFUSAL, "answer stopped by the content filter")
        except ValidationError as exc:
            if _is_malformed(exc):
                return failed(GptOutcome.MALFORMED, "answer is not valid JSON")
            return failed(GptOutcome.SCHEMA_VIOLATION, f"outside the schema: {_first_error(exc)}")
        except (
            ValueError,
            TypeError,
            AttributeError,
            RecursionError,
            openai.OpenAIError,
        ) as exc:  # a body the SDK cannot read as a chat completion
            return failed(GptOutcome.MALFORMED, f"unusable response: {type(exc).__name__}")
        return _Outcome(parsed=answer, usage=usage, raw_text=content, request_id=request_id)

    def _status_outcome(self, exc: openai.APIStatusError) -> _Outcome:
        import openai

        status = exc.status_code
        if isinstance(exc, openai.RateLimitError):
            kind = GptOutcome.RATE_LIMITED
        elif status >= 500:
            kind = GptOutcome.SERVER_ERROR
        elif status == 408:
            kind = GptOutcome.TIMEOUT
        else:
            kind = GptOutcome.CLIENT_ERROR
        message = exc.message.splitlines()[0] if exc.message else ""
        return _Outcome(
            failure=kind, detail=f"HTTP {status}: {message}"[:300], request_id=exc.request_id
        )
