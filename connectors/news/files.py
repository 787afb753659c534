"""News files for a backtest: an RSS/Atom document or JSON lines -> items, undated dropped.

A file is read whole, up to `news.max_bytes` (a larger one is refused with one line, like a
feed over the cap); `.jsonl`/`.ndjson`/`.json` are JSON lines (one record a line,
`models.news.entries.record_item`), anything else is read as a feed document
(`models.news.feed.parse_feed`). Nothing here has a fetch time, so an undated entry is
`Undated` (dropped and counted), never placed at the time of the load.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from models.news.entries import Kind, Refused, TextItem, Undated, entry_item, record_item
from models.news.feed import parse_feed
from models.news.tagging import SymbolTagger

__all__ = ["JSONL_SUFFIXES", "NewsFileError", "read_news_file"]

JSONL_SUFFIXES: Final = frozenset({".jsonl", ".ndjson", ".json"})

Outcome = TextItem | Undated | Refused


class NewsFileError(ValueError):
    """A file that cannot be read at all (missing, a directory, unreadable): one line."""


def _jsonl(path: Path, body: bytes, kind: Kind, tagger: SymbolTagger) -> list[Outcome]:
    out: list[Outcome] = []
    for lineno, raw in enumerate(body.split(b"\n"), 1):
        if not raw.strip():
            continue
        where = f"{path.name}:{lineno}"
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            out.append(Refused(f"{where}: not JSON"))
            continue
        if not isinstance(record, Mapping):
            out.append(Refused(f"{where}: not a JSON object"))
            continue
        try:
            outcome = record_item(record, default_kind=kind, tagger=tagger, fetched_ms=None)
        except ValueError as err:  # a message model refusing what cleaning left
            outcome = Refused(f"{where}: {' '.join(str(err).split())[:120]}")
        if isinstance(outcome, Refused):
            outcome = Refused(f"{where}: {outcome.reason}")
        out.append(outcome)
    return out


def read_news_file(
    path: Path, *, kind: Kind, tagger: SymbolTagger, max_bytes: int
) -> list[Outcome]:
    """Every entry of `path` as an item, `Undated` or `Refused` (file-level refusals too)."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise NewsFileError(f"{path}: not a file")
        if size > max_bytes:
            return [Refused(f"{path.name}: {size:,} bytes is over news.max_bytes ({max_bytes:,})")]
        body = path.read_bytes()
    except FileNotFoundError:
        raise NewsFileError(f"{path}: no such file") from None
    except OSError as err:
        raise NewsFileError(f"{path}: cannot read it: {err.strerror or err}") from None
    if path.suffix.lower() in JSONL_SUFFIXES:
        return _jsonl(path, body, kind, tagger)
    parsed = parse_feed(body)
    if isinstance(parsed, Refused):
        return [Refused(f"{path.name}: {parsed.reason}")]
    source = parsed.title or path.stem
    out: list[Outcome] = []
    for entry in parsed.entries:
        try:
            out.append(entry_item(entry, kind=kind, source=source, tagger=tagger, fetched_ms=None))
        except ValueError as err:
            out.append(Refused(f"{path.name}: {' '.join(str(err).split())[:120]}"))
    return out
