"""Per-feed poll state on disk, so a restarted poller neither refetches nor republishes.

One JSON file per feed (named by a hash of its URL) under `news.state_dir`: the ETag and
Last-Modified of the last answer, the entry ids and content keys already published (bounded by
`news.seen_ids`), and the failure count and next poll time of the backoff. Written to a temporary
file and renamed into place after each poll, so a crash leaves the old state or the new one,
never half of one; an unreadable file starts the feed afresh (its first poll may then republish,
which the store's one row per id absorbs).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["FeedState", "StateStore"]


class FeedState(BaseModel):
    model_config = ConfigDict(extra="ignore")

    url: str
    etag: str | None = None
    last_modified: str | None = None
    seen_ids: list[str] = Field(default_factory=list)
    seen_content: list[str] = Field(default_factory=list)
    failures: int = 0
    next_poll_ms: int = 0


class StateStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, url: str) -> Path:
        return self.directory / f"{hashlib.sha256(url.encode()).hexdigest()[:24]}.json"

    def load(self, url: str) -> FeedState:
        path = self._path(url)
        try:
            state = FeedState.model_validate_json(path.read_bytes())
        except (OSError, ValidationError, ValueError):
            return FeedState(url=url)
        return state if state.url == url else FeedState(url=url)

    def save(self, state: FeedState) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self._path(state.url)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".state-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(state.model_dump_json().encode())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
