"""Feed bytes -> entries: refused when they declare XML entities, read leniently when broken.

The bytes are fetched by the caller (`connectors.news.http`), never by feedparser, so the size,
the timeout and the conditional headers stay ours, and parsing is pure. Before feedparser sees
them:

- a body that declares entities (`<!ENTITY`, the billion-laughs and external-entity attacks) is
  refused whole, with one line: defusedxml's parser stops at the first declaration, so refusing
  costs the bytes before it, however far the expansion would have gone; a raw-bytes check finds
  a declaration even when broken XML stops the parser before it;
- broken XML that feedparser still reads (its lenient parser) gives the entries it found, and
  the problem is reported; bytes that are not a feed at all are refused with one line.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as SafeET
import feedparser
from defusedxml.common import DefusedXmlException

from models.news.entries import Refused

__all__ = ["ParsedFeed", "parse_feed"]

_ENTITY_DECL: Final = re.compile(rb"<!\s*ENTITY", re.IGNORECASE)
_PROBLEM_MAX: Final = 160


@dataclass(frozen=True)
class ParsedFeed:
    title: str
    entries: list[Mapping[str, Any]]
    problem: str | None = None
    """Why the XML was not well-formed, when feedparser read it all the same."""


def _one_line(err: object) -> str:
    return " ".join(str(err).split())[:_PROBLEM_MAX] or type(err).__name__


def entity_problem(body: bytes) -> str | None:
    """Why `body` is refused for its document type declaration, or None."""
    if _ENTITY_DECL.search(body):
        return "the feed declares XML entities (entity expansion is refused)"
    try:
        SafeET.fromstring(body, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as err:
        return f"the feed declares XML entities or external references ({type(err).__name__})"
    except (ParseError, ValueError, LookupError):
        return None  # broken or oddly encoded: feedparser's lenient reader decides
    return None


def parse_feed(body: bytes) -> ParsedFeed | Refused:
    """The entries of an RSS/Atom document (feedparser's dicts), or why it is refused."""
    if not body.strip():
        return Refused("the feed is empty")
    if (problem := entity_problem(body)) is not None:
        return Refused(problem)
    parsed = feedparser.parse(io.BytesIO(body), resolve_relative_uris=False)
    entries = [e for e in parsed.entries if isinstance(e, Mapping) and e]
    note = _one_line(parsed.get("bozo_exception")) if parsed.get("bozo") else None
    if not entries and (note is not None or not parsed.get("version")):
        return Refused(f"not an RSS or Atom feed: {note or 'no feed element'}")
    title = parsed.feed.get("title") if isinstance(parsed.get("feed"), Mapping) else None
    return ParsedFeed(title if isinstance(title, str) else "", entries, note)
