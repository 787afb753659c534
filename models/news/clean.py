"""Feed text to plain text: HTML removed by a maintained sanitizer, entities unescaped, whitespace
collapsed, cut to a limit.

Feed titles and summaries are HTML fragments written by strangers. nh3 (Rust's ammonia) parses
them as a browser would, which a regular expression cannot: `<script>` and `<style>` go with
their content, every other tag goes and its text stays. Entities are unescaped only after that,
so `&lt;b&gt;` becomes the text `<b>`, never a tag; a fragment escaped twice (common in RSS,
where an HTML description is itself escaped) is cleaned once more when the first pass leaves
something that parses as a tag. Control and format characters (zero-width, bidi overrides),
lone surrogates, private-use and unassigned code points become spaces. The result is text for
the topic messages; reports escape it again when showing it.
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import Final

import nh3

__all__ = ["cap", "clean_text"]

_DROP_WITH_CONTENT: Final = {"script", "style", "noscript", "template", "iframe", "object"}
_TAG_LIKE: Final = re.compile(r"<\s*/?\s*[A-Za-z!?]")
_SPACE: Final = re.compile(r"\s+")
_ROUNDS: Final = 3  # tags escaped more often than this stay as text


_HIDDEN: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Control, format (zero-width, bidi), surrogate, private-use and unassigned characters."""


def _visible(ch: str) -> str:
    return " " if unicodedata.category(ch) in _HIDDEN else ch


_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _strip(fragment: str) -> str:
    # A lone surrogate (JSON's "\ud800" decodes to one) cannot be encoded for the sanitizer:
    # it is hidden text anyway, so it goes as `_visible` would make it go.
    fragment = _SURROGATE.sub(" ", fragment)
    cleaned = nh3.clean(fragment, tags=set(), clean_content_tags=_DROP_WITH_CONTENT)
    return html.unescape(cleaned)


def clean_text(raw: str) -> str:
    """Plain text of an HTML fragment, one line, no tags, no script or style content."""
    text = _strip(raw)
    for _ in range(_ROUNDS - 1):
        if not _TAG_LIKE.search(text):
            break
        text = _strip(text)
    text = "".join(_visible(ch) for ch in text) if not text.isprintable() else text
    return _SPACE.sub(" ", text).strip()


def cap(text: str, limit: int) -> str:
    """`text` cut to `limit` characters at a word boundary when one is near, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space >= limit * 3 // 4:
        cut = cut[:space]
    return cut.rstrip() + "…"
