"""A feed entry (feedparser's dict) or a JSON-lines record -> a `NewsItem` or a `SocialPost`.

Everything in an entry is untrusted: the text is cleaned (`models.news.clean`) and cut to the
message limits, the id is bounded, the time must be a plausible event time, and the symbols are
the traded ones the text names (`models.news.tagging`) plus, for a record, the traded ones it
lists. The rules that matter for a backtest:

- The item's time is its publication (`published`, else `updated`), in UTC. An entry without
  one gets the fetch time when polled live (it was new when seen); loaded from a file for a
  backtest it is `Undated` and dropped, since placing it anywhere would be a guess that could
  show a decision news it never had.
- The id is the entry's id, else its link, else a hash of its content, so the same entry read
  twice is the same message (the store keeps one row per id).
"""

from __future__ import annotations

import calendar
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from pydantic import TypeAdapter, ValidationError

from models.core.messages import NewsItem, SocialPost, ms_to_datetime, to_ms
from models.market.parsing import event_time_problem
from models.news.clean import cap, clean_text
from models.news.tagging import SymbolTagger

__all__ = [
    "Kind",
    "Refused",
    "TextItem",
    "Undated",
    "content_key",
    "entry_item",
    "record_item",
]

Kind = Literal["news", "social"]
TextItem = NewsItem | SocialPost

HEADLINE_MAX: Final = 1000
BODY_MAX: Final = 20_000
POST_MAX: Final = 5000
NAME_MAX: Final = 200
ID_MAX: Final = 128
SYMBOLS_MAX: Final = 64
RAW_TEXT_MAX: Final = 1_000_000
"""Characters of one raw field read at all: a multi-megabyte entry is cut before cleaning."""


@dataclass(frozen=True)
class Undated:
    """An entry without a publication time, read for a backtest: dropped and counted."""

    id: str


@dataclass(frozen=True)
class Refused:
    """An entry that cannot become a message, with the reason (one line)."""

    reason: str


def content_key(item: TextItem) -> str:
    """The dedupe key: a hash of the normalised text (headline and body, or a post's text), so
    the same story from two feeds, or re-published under a new id, is published once."""
    text = f"{item.headline}\n{item.body}" if isinstance(item, NewsItem) else item.text
    norm = " ".join(text.casefold().split())
    return hashlib.sha256(f"{item.type}\n{norm}".encode()).hexdigest()


def _bounded_id(raw: str) -> str:
    text = " ".join(raw.split())
    if text and len(text) <= ID_MAX and text.isprintable():
        return text
    return "h-" + hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def _text(value: Any) -> str:
    if isinstance(value, str):
        return clean_text(value[:RAW_TEXT_MAX])
    return ""


def _entry_body(entry: Mapping[str, Any]) -> str:
    content = entry.get("content")
    if isinstance(content, list):
        parts = [c.get("value") for c in content if isinstance(c, Mapping)]
        text = " ".join(_text(p) for p in parts if isinstance(p, str))
        if text.strip():
            return text
    return _text(entry.get("summary") or entry.get("description"))


def _struct_ms(value: Any) -> int | None:
    if isinstance(value, time.struct_time):
        try:
            return calendar.timegm(value) * 1000
        except (OverflowError, ValueError):
            return None
    return None


@dataclass(frozen=True)
class _Parts:
    kind: Kind
    id: str
    ts_ms: int | None
    headline: str
    body: str
    name: str
    symbols: list[str]


def _build(
    parts: _Parts, tagger: SymbolTagger, fetched_ms: int | None
) -> TextItem | Undated | Refused:
    ts_ms = parts.ts_ms
    if ts_ms is None:
        if fetched_ms is None:
            return Undated(parts.id)
        ts_ms = fetched_ms
    if (problem := event_time_problem(ts_ms)) is not None:
        return Refused(f"entry {parts.id[:60]!r}: {problem}")
    headline, body = parts.headline, parts.body
    symbols = (tagger.keep(parts.symbols) + tagger.tag(headline, body))[: SYMBOLS_MAX * 4]
    symbols = list(dict.fromkeys(symbols))[:SYMBOLS_MAX]
    ts = ms_to_datetime(ts_ms)
    name = cap(parts.name, NAME_MAX) or "unknown"
    if parts.kind == "news":
        if not headline:
            headline, body = body, ""
        if not headline:
            return Refused(f"entry {parts.id[:60]!r} has no text")
        return NewsItem(
            id=parts.id,
            ts=ts,
            symbols=symbols,
            headline=cap(headline, HEADLINE_MAX),
            body=cap(body, BODY_MAX),
            source=name,
        )
    if headline and body and not body.startswith(headline):
        text = f"{headline} — {body}"
    else:
        text = body or headline
    if not text:
        return Refused(f"entry {parts.id[:60]!r} has no text")
    return SocialPost(id=parts.id, ts=ts, symbols=symbols, text=cap(text, POST_MAX), author=name)


def _fallback_id(kind: Kind, headline: str, body: str) -> str:
    norm = " ".join(f"{headline}\n{body}".casefold().split())
    return "h-" + hashlib.sha256(f"{kind}\n{norm}".encode()).hexdigest()[:40]


def entry_item(
    entry: Mapping[str, Any],
    *,
    kind: Kind,
    source: str,
    tagger: SymbolTagger,
    fetched_ms: int | None,
) -> TextItem | Undated | Refused:
    """One feedparser entry as a message. `fetched_ms` is the fetch time when polling live
    (an undated entry gets it) and None for a backtest load (an undated entry is `Undated`);
    `source` is the feed's name (a social entry's author wins over it)."""
    headline = _text(entry.get("title"))
    body = _entry_body(entry)
    raw_id = entry.get("id") or entry.get("link")
    ident = (
        _bounded_id(raw_id)
        if isinstance(raw_id, str) and raw_id.strip()
        else _fallback_id(kind, headline, body)
    )
    ts_ms = _struct_ms(entry.get("published_parsed"))
    if ts_ms is None:
        ts_ms = _struct_ms(entry.get("updated_parsed"))
    author = entry.get("author") if kind == "social" else None
    name = _text(author) if isinstance(author, str) and author.strip() else _text(source)
    return _build(_Parts(kind, ident, ts_ms, headline, body, name, []), tagger, fetched_ms)


_TIME: Final = TypeAdapter(datetime)
_TEXT_FIELDS: Final = {
    "news": ("headline", "title"),
    "news_body": ("body", "summary", "content", "description"),
    "social": ("text", "content", "summary", "body"),
}


def _first(record: Mapping[str, Any], names: tuple[str, ...]) -> str:
    for name in names:
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            return _text(value)
    return ""


def _record_time(value: Any) -> int | str | None:
    """Epoch ms, None when absent, or the reason it is not a time."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return "its time is not a date-time or epoch number"
    try:
        ts = _TIME.validate_python(value)
    except ValidationError:
        return f"its time {str(value)[:40]!r} is not a date-time or epoch number"
    return to_ms(ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC))


def record_item(
    record: Mapping[str, Any],
    *,
    default_kind: Kind,
    tagger: SymbolTagger,
    fetched_ms: int | None,
    source: str = "unknown",
) -> TextItem | Undated | Refused:
    """One JSON-lines record as a message: the message's own shape (`NewsItem`/`SocialPost`
    fields) or a feed-like one (`title`, `summary`, `link`, `published`). Its `type` picks news
    or social, else `text` without `headline` means a post, else `default_kind`."""
    if isinstance(record.get("msg"), Mapping):  # the demo's sample format (api/samples)
        record = record["msg"]
    kind_field = record.get("type")
    if kind_field in ("news", "social"):
        kind: Kind = kind_field
    elif kind_field is not None:
        return Refused(f"type {str(kind_field)[:20]!r} is neither news nor social")
    elif "text" in record and "headline" not in record:
        kind = "social"
    else:
        kind = default_kind
    if kind == "news":
        headline = _first(record, _TEXT_FIELDS["news"])
        body = _first(record, _TEXT_FIELDS["news_body"])
    else:
        headline, body = _first(record, ("title",)), _first(record, _TEXT_FIELDS["social"])
    raw_id = record.get("id") or record.get("link")
    ident = (
        _bounded_id(raw_id)
        if isinstance(raw_id, str) and raw_id.strip()
        else _fallback_id(kind, headline, body)
    )
    when = _record_time(record.get("ts", record.get("published", record.get("updated"))))
    if isinstance(when, str):
        return Refused(f"record {ident[:60]!r}: {when}")
    name_field = record.get("source" if kind == "news" else "author")
    name = _text(name_field) if isinstance(name_field, str) else source
    given = record.get("symbols")
    listed = [s for s in given if isinstance(s, str)] if isinstance(given, list) else []
    return _build(_Parts(kind, ident, when, headline, body, name, listed), tagger, fetched_ms)
