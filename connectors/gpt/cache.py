"""The answer store: GPT answers recorded by prompt hash, so a backtest re-run makes no call.

A backtest must be reproducible and must not pay twice: the first run records every good
answer under the hash of the question (`models.gpt.prompt.prompt_hash`: model, messages and
schema, canonical; computed once by the desk and carried on the `GptRequest`), and a re-run
answers the same questions from the recording, without a network, a key or money, and with
exactly the same parsed answers. The same store serves as a persistent answer cache for live
runs (`auto`).

`AnswerStore` keeps the recording as one append-only JSONL file in a directory, loaded into
memory when opened. Every `put` writes one whole line, then fsyncs, before it returns, so a
crash loses at most the answer being written: a torn last line (no newline yet) was never
acknowledged and is cut off at the next open. A later record for the same hash wins.

This module only stores. When the store is asked, how a hit is parsed, what `record`, `replay`
and `auto` (`CacheMode`) mean for a question, and what a hit costs is the gateway's one answer
path (`connectors.gpt.gateway.AnswerPath`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from connectors.gpt.client import GptUsage

__all__ = [
    "ANSWERS_FILE",
    "AnswerRecord",
    "AnswerStore",
    "AnswerStoreError",
    "CacheMode",
]

ANSWERS_FILE: Final = "answers.jsonl"
"""The recording's file name inside the store's directory."""

FORMAT_VERSION: Final = 1


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
