"""Record and replay GPT answers by prompt hash, so a backtest re-run makes no call.

A backtest must be reproducible and must not pay twice: the first run records every good
answer under the hash of the question (`connectors.gpt.client.prompt_hash`: model, messages and
schema, canonical), and a re-run answers the same questions from the recording, without a
network, a key or money, and with exactly the same parsed answers. The same store serves as a
persistent answer cache for live runs (`auto`).

`AnswerStore` keeps the recording as one append-only JSONL file in a directory, loaded into
memory when opened. Every `put` writes one whole line, then fsyncs, before it returns, so a
crash loses at most the answer being written: a torn last line (no newline yet) was never
acknowledged and is cut off at the next open. A later record for the same hash wins.

`ask_with_cache` puts a store in front of a client: `record` always calls and stores the good
answers, `replay` never calls (a question not in the recording is the failure `replay_miss`),
`auto` answers from the store when it can and otherwise calls and records. It depends on the
client only through `model` and `ask` (see `Asker`), so this module has no opinion on retries,
breakers or budgets: the caller decides whether to ask at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Generic, Protocol, Self, TypeVar

from pydantic import BaseModel, ValidationError

from connectors.gpt.client import GptResult, GptUsage, prompt_hash
from models.core.messages import ChatTurn, GptCall, GptOutcome, gpt_call_id
from models.gpt.cost import DEFAULT_PRICE_TABLE, PriceTable

__all__ = [
    "ANSWERS_FILE",
    "AnswerRecord",
    "AnswerSource",
    "AnswerStore",
    "AnswerStoreError",
    "Asker",
    "CacheMode",
    "CachedResult",
    "ask_with_cache",
]

ANSWERS_FILE: Final = "answers.jsonl"
"""The recording's file name inside the store's directory."""

FORMAT_VERSION: Final = 1

T = TypeVar("T", bound=BaseModel)


class AnswerStoreError(RuntimeError):
    """The recording cannot be used (unreadable directory, a corrupt line inside the file); the
    message is one line naming the file and what is wrong."""


class CacheMode(StrEnum):
    RECORD = "record"
    """Always call; store every good answer (a new recording, or refreshing one)."""
    REPLAY = "replay"
    """Never call: answer from the recording; a missing answer is `replay_miss`."""
    AUTO = "auto"
    """Answer from the recording when it has the question, else call and record."""


class AnswerSource(StrEnum):
    ENDPOINT = "endpoint"
    """The client was asked (whatever it answered, including its own failures)."""
    STORE = "store"
    """Answered from the recording: no request was made."""
    NONE = "none"
    """Neither: a replay miss."""


@dataclass(frozen=True, slots=True)
class AnswerRecord:
    """One recorded answer: the answer text as the endpoint sent it, the model that was asked,
    what the original call was billed, and when it was recorded (wall clock, for audits).
    `call_id` and `run` (optional, "" when unknown) name the call that paid for it and the
    run it was paid in: that call asked again by the same run (a restart redoing its last
    epoch) is the paid call itself, logged with its cost (see `ask_with_cache`)."""

    prompt_hash: str
    model: str
    answer: str
    usage: GptUsage
    recorded_ms: int
    call_id: str = ""
    run: str = ""

    def to_json(self) -> str:
        doc: dict[str, object] = {
            "v": FORMAT_VERSION,
            "prompt_hash": self.prompt_hash,
            "model": self.model,
            "answer": self.answer,
            "prompt_tokens": self.usage.prompt_tokens,
            "completion_tokens": self.usage.completion_tokens,
            "recorded_ms": self.recorded_ms,
        }
        if self.call_id or self.run:  # optional: lines without them read as before
            doc["call_id"] = self.call_id
            doc["run"] = self.run
        # One line by construction: json.dumps escapes every newline inside the strings.
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, line: str) -> AnswerRecord:
        """Parse one line; ValueError says what is wrong with it."""
        doc = json.loads(line)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        if doc.get("v") != FORMAT_VERSION:
            raise ValueError(f"unknown format version {doc.get('v')!r}")
        strings = {k: doc.get(k) for k in ("prompt_hash", "model", "answer")}
        ints = {k: doc.get(k) for k in ("prompt_tokens", "completion_tokens", "recorded_ms")}
        for k, s in strings.items():
            if not isinstance(s, str):
                raise ValueError(f"{k} must be a string")
        if not strings["prompt_hash"]:
            raise ValueError("prompt_hash must not be empty")
        for k, n in ints.items():
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise ValueError(f"{k} must be an int >= 0")
        paid_by = {k: doc.get(k, "") for k in ("call_id", "run")}
        for k, s in paid_by.items():
            if not isinstance(s, str):
                raise ValueError(f"{k} must be a string")
        return cls(
            prompt_hash=str(strings["prompt_hash"]),
            model=str(strings["model"]),
            answer=str(strings["answer"]),
            usage=GptUsage(int(doc["prompt_tokens"]), int(doc["completion_tokens"])),
            recorded_ms=int(doc["recorded_ms"]),
            call_id=str(paid_by["call_id"]),
            run=str(paid_by["run"]),
        )


def _fsync_dir(directory: Path) -> None:
    """Make a newly created file's directory entry durable too (else a crash can lose the
    whole file even though its data was fsynced)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AnswerStore:
    """Recorded answers by prompt hash: an append-only JSONL file, held in memory.

    Opening loads the whole file (the last record of a hash wins) and cuts off a torn last
    line; a damaged line anywhere else raises `AnswerStoreError` rather than silently
    replaying a different history. Thread-safe; several processes may append to one file
    (each line is written under an exclusive `flock`), but each sees only the answers that
    were in the file when it opened it, plus its own.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / ANSWERS_FILE
        self._lock = threading.Lock()
        self._records: dict[str, AnswerRecord] = {}
        self.torn_bytes = 0
        """Bytes of a torn last line cut off at open (0 normally); for a log line."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            self._fd: int | None = os.open(
                self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
            )
        except OSError as err:
            raise AnswerStoreError(
                f"answer store {self.path} is not usable: {err.strerror or err}"
            ) from None
        try:
            if created:
                _fsync_dir(self.directory)
            self._load(self._fd)
        except BaseException:
            os.close(self._fd)
            self._fd = None
            raise

    def _load(self, fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            size = os.fstat(fd).st_size
            data = os.pread(fd, size, 0) if size else b""
            end = data.rfind(b"\n") + 1  # 0 when there is no complete line at all
            if end < len(data):
                # Never acknowledged (put() returns after the newline is fsynced): drop it, so
                # the next record starts on a line of its own.
                self.torn_bytes = len(data) - end
                os.ftruncate(fd, end)
                os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        for number, raw in enumerate(data[:end].split(b"\n")[:-1], start=1):
            if not raw.strip():
                continue
            try:
                record = AnswerRecord.from_json(raw.decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as err:
                raise AnswerStoreError(
                    f"answer store {self.path} line {number} is damaged: {err}"
                ) from None
            self._records[record.prompt_hash] = record

    # ------------------------------------------------------------------ reading

    def get(self, prompt_hash: str) -> str | None:
        """The recorded answer text for a prompt hash, or None."""
        record = self.lookup(prompt_hash)
        return None if record is None else record.answer

    def lookup(self, prompt_hash: str) -> AnswerRecord | None:
        """The whole record (model, original usage, time), or None."""
        with self._lock:
            return self._records.get(prompt_hash)

    def __contains__(self, prompt_hash: object) -> bool:
        with self._lock:
            return prompt_hash in self._records

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    # ------------------------------------------------------------------ writing

    def put(
        self,
        prompt_hash: str,
        model: str,
        answer_text: str,
        usage: GptUsage | None = None,
        *,
        call_id: str = "",
        run: str = "",
    ) -> AnswerRecord:
        """Append one answer durably (write, fsync) and make it the hash's answer; `call_id`
        and `run`: the call that paid for it, in which run.

        Returns only once the line is on disk. A failed write is rolled back (the file is cut
        to its previous length) and raises `AnswerStoreError`; memory is then unchanged.
        """
        if not prompt_hash:
            raise ValueError("prompt_hash must not be empty")
        record = AnswerRecord(
            prompt_hash=prompt_hash,
            model=model,
            answer=answer_text,
            usage=usage if usage is not None else GptUsage(),
            recorded_ms=time.time_ns() // 1_000_000,
            call_id=call_id,
            run=run,
        )
        line = (record.to_json() + "\n").encode("utf-8")
        with self._lock:
            fd = self._fd
            if fd is None:
                raise AnswerStoreError(f"answer store {self.path} is closed")
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                before = os.fstat(fd).st_size
                try:
                    view = memoryview(line)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                except OSError as err:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, before)
                    raise AnswerStoreError(
                        f"answer store {self.path}: write failed: {err.strerror or err}"
                    ) from None
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            self._records[prompt_hash] = record
        return record

    # ------------------------------------------------------------------ lifecycle

    @property
    def closed(self) -> bool:
        return self._fd is None

    def close(self) -> None:
        """Close the file; reading from memory still works, `put` raises. Idempotent."""
        with self._lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"AnswerStore({str(self.path)!r}, {len(self)} answers, {state})"


# --------------------------------------------------------------------------------------------
# In front of a client
# --------------------------------------------------------------------------------------------


class Asker(Protocol):
    """What `ask_with_cache` needs of a client; `connectors.gpt.client.GptClient` is one."""

    model: str

    def ask(
        self,
        messages: Sequence[ChatTurn],
        response_model: type[T],
        *,
        schema: Mapping[str, Any] | None = None,
        schema_name: str | None = None,
    ) -> GptResult[T]: ...


@dataclass(frozen=True, slots=True)
class CachedResult(Generic[T]):
    """A `GptResult` plus where the answer came from and how to log it.

    The fields mean what they mean in `GptResult`; in addition `source` says whether a request
    was made, and `outcome` is the value for the call log (`ok`, `cached`, `replayed` or the
    failure, `replay_miss` included); `failure` is the outcome unless an answer came back.
    `usage` is what this call was billed: zero for an answer from the store (the original
    cost is in the `AnswerRecord`), except when `paid`: the store answered with the recording
    this very call made in this run (paid, then a crash before its row was written; the
    restarted run asks again), so the result is that paid call: outcome `ok`, its recorded
    usage and cost.
    """

    model: str
    prompt_hash: str
    source: AnswerSource
    outcome: GptOutcome
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
        """Whether this result is a call paid for in this run (its cost is logged)."""
        return self.source is AnswerSource.ENDPOINT or self.paid

    @property
    def ok(self) -> bool:
        return self.failure is None and self.parsed is not None

    def to_call(
        self,
        *,
        decision_id: str,
        round_no: int,
        symbol: str,
        ts_ms: int,
        prices: PriceTable = DEFAULT_PRICE_TABLE,
    ) -> GptCall:
        """The `gpt_calls` row of this result, costed from `prices` (billed usage only)."""
        billed = prices.cost(self.model, self.usage.prompt_tokens, self.usage.completion_tokens)
        return GptCall(
            call_id=gpt_call_id(decision_id, round_no),
            ts_ms=ts_ms,
            decision_id=decision_id,
            round=round_no,
            symbol=symbol,
            model=self.model,
            prompt_hash=self.prompt_hash,
            prompt_tokens=self.usage.prompt_tokens,
            completion_tokens=self.usage.completion_tokens,
            latency_ms=round(self.latency_s * 1000),
            cost=billed.usd if self.billed else Decimal(0),
            price_known=billed.price_known,
            outcome=self.outcome,
            answer=self.raw_text or "",
            detail=self.detail,
        )


def _from_store(
    record: AnswerRecord, response_model: type[T], mode: CacheMode, t0: float, paid: bool
) -> CachedResult[T]:
    """Parse a recorded answer exactly as the client parses a live one (pydantic's
    `model_validate_json` on the content), so a replay yields equal objects. `paid`: the
    recording is this call's own, paid in this run: logged as that call."""
    outcome = GptOutcome.REPLAYED if mode is CacheMode.REPLAY else GptOutcome.CACHED
    if paid:
        outcome = GptOutcome.OK
    failure: GptOutcome | None = None
    detail = ""
    parsed: T | None = None
    try:
        parsed = response_model.model_validate_json(record.answer)
    except ValidationError:
        try:
            json.loads(record.answer)
        except ValueError:
            failure, detail = GptOutcome.MALFORMED, "recorded answer is not valid JSON"
        else:
            failure = GptOutcome.SCHEMA_VIOLATION
            detail = f"recorded answer is outside the schema of {response_model.__name__}"
    return CachedResult(
        model=record.model,
        prompt_hash=record.prompt_hash,
        source=AnswerSource.STORE,
        outcome=outcome if failure is None else failure,
        parsed=parsed,
        detail=detail
        or ("paid in this run before a restart; answer from its recording" if paid else ""),
        usage=record.usage if paid else GptUsage(),
        latency_s=time.perf_counter() - t0,
        raw_text=record.answer,
        paid=paid,
    )


def ask_with_cache(
    client: Asker,
    store: AnswerStore,
    mode: CacheMode | str,
    messages: Sequence[ChatTurn],
    response_model: type[T],
    *,
    schema: Mapping[str, Any] | None = None,
    schema_name: str | None = None,
    max_age_ms: int | None = None,
    call_id: str = "",
    run: str = "",
) -> CachedResult[T]:
    """Answer from `store` or `client` according to `mode`; record good answers.

    `call_id` and `run` (optional): the call asking (its `gpt_calls` id) and the run asking it.
    A good answer is recorded with both; a hit on a recording made by the same call id in the
    same run is that paid call (`paid`: outcome `ok`, its recorded usage, so its cost), not a
    free `cached` answer: a restart that redoes its last epoch asks again the calls it had paid
    but not yet logged, and the decision log's cost must equal what was spent. Any other hit
    (another run, another call with the same question) costs nothing.

    `max_age_ms` (auto only): a recording older than this (wall clock) is a miss, so a live
    run reuses an answer to the identical question only inside that window; replay ignores it.

    No request at all when the store answers. In `auto`, a recorded answer that no longer
    validates is treated as a miss (asked again and overwritten); in `replay` it is reported
    with the failure the client would have given (`malformed` or `schema_violation`). Only
    answers that parsed are recorded: a failed call replays as `replay_miss`, and the caller
    falls back to the local engine either way. Never raises for what the endpoint does; a
    store that cannot write raises `AnswerStoreError` (a recording with holes is worse than
    a stopped backtest).
    """
    mode = CacheMode(mode)
    t0 = time.perf_counter()
    phash = prompt_hash(client.model, messages, response_model, schema, schema_name)
    if mode is not CacheMode.RECORD:
        record = store.lookup(phash)
        if (
            record is not None
            and mode is CacheMode.AUTO
            and max_age_ms is not None
            and time.time() * 1000 - record.recorded_ms > max_age_ms
        ):
            record = None  # too old to stand for an answer to this moment
        if record is not None:
            own = bool(run) and bool(call_id) and (record.run, record.call_id) == (run, call_id)
            hit = _from_store(record, response_model, mode, t0, own)
            if hit.ok or mode is CacheMode.REPLAY:
                return hit
        elif mode is CacheMode.REPLAY:
            return CachedResult(
                model=client.model,
                prompt_hash=phash,
                source=AnswerSource.NONE,
                outcome=GptOutcome.REPLAY_MISS,
                detail=f"no recorded answer for prompt {phash[:12]} (replay never calls)",
                latency_s=time.perf_counter() - t0,
            )
    result = client.ask(messages, response_model, schema=schema, schema_name=schema_name)
    if result.ok and result.raw_text is not None:
        store.put(phash, result.model, result.raw_text, result.usage, call_id=call_id, run=run)
    return CachedResult(
        model=result.model,
        prompt_hash=phash,
        source=AnswerSource.ENDPOINT,
        outcome=result.failure or GptOutcome.OK,
        parsed=result.parsed,
        detail=result.detail,
        usage=result.usage,
        latency_s=result.latency_s,
        raw_text=result.raw_text,
        request_id=result.request_id,
    )
