"""Feed entries and JSON-lines records to messages (models/news): text cleaning, symbol tagging,
ids, publication times (undated dropped in backtests), limits, dedupe by content, and feed
bytes refused for their entities or read leniently when broken."""

from __future__ import annotations

import calendar
import string
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from models.core.messages import NewsItem, SocialPost, to_ms
from models.news.clean import cap, clean_text
from models.news.dedupe import BoundedSet, Sifter
from models.news.entries import (
    BODY_MAX,
    HEADLINE_MAX,
    Refused,
    Undated,
    content_key,
    entry_item,
    record_item,
)
from models.news.feed import ParsedFeed, parse_feed
from models.news.tagging import SymbolTagger

TAGGER = SymbolTagger.of(
    ["GOOG", "AAPL", "BTC/USDT", "EURUSD"], {"AAPL": ["Apple", "Apple Inc"], "MSFT": ["Microsoft"]}
)
T = datetime(2024, 5, 6, 13, 30, tzinfo=UTC)
FETCHED = to_ms(datetime(2024, 5, 7, tzinfo=UTC))


def _struct(ts: datetime) -> time.struct_time:
    return time.gmtime(calendar.timegm(ts.utctimetuple()))


def _entry(**fields: Any) -> dict[str, Any]:
    return {"title": "Apple beats estimates", "published_parsed": _struct(T), **fields}


def _news(**fields: Any) -> NewsItem:
    out = entry_item(_entry(**fields), kind="news", source="wire", tagger=TAGGER, fetched_ms=None)
    assert isinstance(out, NewsItem), out
    return out


# ------------------------------------------------------------------------------------ cleaning


def test_script_and_style_go_with_their_content_entities_are_unescaped() -> None:
    raw = "<p>Q1 &amp; Q2 <script>steal()</script><style>p{x:y}</style> caf&eacute;</p>"
    assert clean_text(raw) == "Q1 & Q2 café"


def test_html_escaped_inside_the_feed_is_cleaned_too() -> None:
    raw = "&lt;p&gt;up&lt;script&gt;alert(1)&lt;/script&gt;&lt;/p&gt;"
    assert clean_text(raw) == "up"


def test_whitespace_and_invisible_characters_collapse_to_single_spaces() -> None:
    assert clean_text("  a\n\n\tb\u200bc\u202e d  ") == "a b c d"


@given(st.text(alphabet=string.ascii_letters + string.digits + " \t\n.,;:!?'-", max_size=200))
def test_plain_text_only_loses_its_extra_whitespace(text: str) -> None:
    assert clean_text(text) == " ".join(text.split())


@given(st.text(st.characters(blacklist_characters="<"), max_size=300))
@example("\ud800")  # a lone surrogate: the sanitizer cannot encode it (found by hypothesis)
def test_cleaned_text_has_no_scripts_or_control_characters(text: str) -> None:
    """Any text around a script element (a `<` in it could open a comment that swallows the
    element, as a browser's parser does too: then it is no script)."""
    raw = f"{text}<script>EVIL()</script><b>{text}</b>"
    out = clean_text(raw)
    assert "EVIL()" not in out or "EVIL()" in text
    assert all(ch.isprintable() for ch in out)
    assert out == out.strip() and "  " not in out


@given(st.text(max_size=400), st.integers(min_value=2, max_value=300))
def test_cap_never_exceeds_the_limit(text: str, limit: int) -> None:
    out = cap(text, limit)
    assert len(out) <= limit
    assert out == text or out.endswith("…")


# ------------------------------------------------------------------------------------- tagging


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("GOOG rallies", ["GOOG"]),
        ("GOOGL rallies", []),  # another ticker, not a word of GOOG
        ("goog rallies", []),  # a ticker is upper case as written
        ("$goog and $AAPL", ["GOOG", "AAPL"]),
        ("Apple's results; apple pie", ["AAPL"]),
        ("Pineapple harvest", []),
        ("APPLE INC. files", ["AAPL"]),
        ("Microsoft up", []),  # a name of a symbol the run does not trade
        ("$MSFT up", []),
        ("BTC/USDT breaks out", ["BTC/USDT"]),
        ("EURUSD, then GOOG", ["EURUSD", "GOOG"]),
    ],
)
def test_tags_are_traded_symbols_named_by_ticker_cashtag_or_name(
    text: str, want: list[str]
) -> None:
    assert TAGGER.tag(text) == want


WORD = st.text(alphabet=string.ascii_letters + string.digits, min_size=1, max_size=8)
SEP = st.sampled_from([" ", ", ", ". ", " (", ") ", "\n", " - ", ": "])


@given(st.lists(st.tuples(WORD, SEP), max_size=6), st.sampled_from(["GOOG", "$goog", "apple"]))
def test_a_name_between_separators_is_always_found(words: list[tuple[str, str]], name: str) -> None:
    text = "".join(w + s for w, s in words) + " " + name + " " + "".join(w + s for w, s in words)
    assert ({"$goog": "GOOG", "apple": "AAPL"}.get(name, name)) in TAGGER.tag(text)


@given(WORD, WORD)
def test_a_name_inside_a_word_is_never_found(before: str, after: str) -> None:
    for name in ("GOOG", "Apple", "EURUSD"):
        text = f"{before}{name}{after}"
        assert TAGGER.tag(text) == [] or any(
            name.casefold() in part.casefold() for part in (before, after)
        )


# ------------------------------------------------------------------------------------- entries


def test_an_entry_becomes_a_news_item_at_its_publication_time() -> None:
    item = _news(summary="<p>Revenue <b>up</b> 10%</p>", id="urn:1")
    assert item.id == "urn:1" and item.ts == T and item.source == "wire"
    assert item.headline == "Apple beats estimates" and item.body == "Revenue up 10%"
    assert item.symbols == ["AAPL"]


def test_updated_stands_in_for_published() -> None:
    later = datetime(2024, 6, 1, tzinfo=UTC)
    item = _news(published_parsed=None, updated_parsed=_struct(later))
    assert item.ts == later


def test_the_id_is_the_entry_id_else_its_link_else_a_hash_of_its_content() -> None:
    assert _news(id="a", link="https://x/1").id == "a"
    assert _news(link="https://x/1").id == "https://x/1"
    hashed = _news()
    assert hashed.id.startswith("h-") and hashed.id == _news().id
    assert _news(title="Other").id != hashed.id
    long = _news(id="x" * 500)
    assert len(long.id) <= 128 and long.id == _news(id="x" * 500).id


def test_an_undated_entry_is_dropped_in_a_backtest_and_gets_the_fetch_time_live() -> None:
    entry = _entry(published_parsed=None, id="u1")
    assert entry_item(entry, kind="news", source="s", tagger=TAGGER, fetched_ms=None) == Undated(
        "u1"
    )
    live = entry_item(entry, kind="news", source="s", tagger=TAGGER, fetched_ms=FETCHED)
    assert isinstance(live, NewsItem) and to_ms(live.ts) == FETCHED


def test_huge_entries_are_cut_to_the_message_limits() -> None:
    item = _news(title="GOOG " * 100_000, summary="<p>" + "word " * 1_000_000 + "</p>")
    assert len(item.headline) <= HEADLINE_MAX and len(item.body) <= BODY_MAX
    assert item.symbols == ["GOOG"]


def test_an_entry_without_text_or_with_an_impossible_time_is_refused() -> None:
    empty = entry_item(
        {"title": "<script>x()</script>", "published_parsed": _struct(T)},
        kind="news",
        source="s",
        tagger=TAGGER,
        fetched_ms=None,
    )
    assert isinstance(empty, Refused) and "no text" in empty.reason
    epoch = entry_item(
        _entry(published_parsed=time.gmtime(0)),
        kind="news",
        source="s",
        tagger=TAGGER,
        fetched_ms=None,
    )
    assert isinstance(epoch, Refused) and "1970" in epoch.reason


def test_a_social_entry_is_a_post_by_its_author() -> None:
    post = entry_item(
        {"summary": "Long $GOOG", "author": "<i>trader</i>", "published_parsed": _struct(T)},
        kind="social",
        source="feed",
        tagger=TAGGER,
        fetched_ms=None,
    )
    assert isinstance(post, SocialPost)
    assert post.text == "Long $GOOG" and post.author == "trader" and post.symbols == ["GOOG"]


def test_records_in_the_message_shape_or_a_feed_like_shape() -> None:
    msg = record_item(
        {"id": "n1", "ts": "2024-05-06T13:30:00Z", "symbols": ["GOOG", "ZZZ"], "headline": "Hi"},
        default_kind="news",
        tagger=TAGGER,
        fetched_ms=None,
    )
    assert isinstance(msg, NewsItem) and msg.symbols == ["GOOG"] and msg.ts == T
    feed_like = record_item(
        {"title": "Apple up", "link": "https://x/2", "published": 1_715_002_200},
        default_kind="news",
        tagger=TAGGER,
        fetched_ms=None,
    )
    assert isinstance(feed_like, NewsItem) and feed_like.id == "https://x/2"
    assert feed_like.ts == T and feed_like.symbols == ["AAPL"]
    post = record_item(
        {"text": "$AAPL", "ts": "2024-05-06T13:30:00"},
        default_kind="news",
        tagger=TAGGER,
        fetched_ms=None,
    )
    assert isinstance(post, SocialPost) and post.ts == T  # naive times are UTC
    assert isinstance(
        record_item({"headline": "x"}, default_kind="news", tagger=TAGGER, fetched_ms=None),
        Undated,
    )
    bad = record_item(
        {"headline": "x", "ts": "yesterday"}, default_kind="news", tagger=TAGGER, fetched_ms=None
    )
    assert isinstance(bad, Refused) and "yesterday" in bad.reason


# -------------------------------------------------------------------------------------- dedupe


def test_the_same_text_under_another_id_is_a_duplicate() -> None:
    sifter = Sifter.of(10)
    first = _news(id="a", summary="Body")
    again = _news(id="b", title="  apple BEATS   estimates ", summary="body")
    assert content_key(first) == content_key(again)
    assert sifter.take(first) is first and sifter.take(again) is None
    assert sifter.take(Undated("u")) is None and sifter.take(Refused("why")) is None
    counts = sifter.counts
    assert (counts.published, counts.duplicates, counts.undated) == (1, 1, 1)
    assert counts.refused == {"why": 1}


@given(st.lists(st.text(alphabet="abcdef", min_size=1, max_size=3), max_size=60))
def test_the_window_keeps_the_most_recent_keys_only(keys: list[str]) -> None:
    window = BoundedSet(5)
    for key in keys:
        window.add(key)
    recent: list[str] = []
    for key in reversed(keys):
        if key not in recent:
            recent.append(key)
    assert window.items() == list(reversed(recent[:5]))


# --------------------------------------------------------------------------------------- feeds

RSS = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Wire &amp; Co</title>
<item><guid>g1</guid><title>GOOG up</title><pubDate>Mon, 06 May 2024 13:30:00 GMT</pubDate></item>
<item><guid>g2</guid><title>AAPL down</title><pubDate>Mon, 06 May 2024 14:30:00 GMT</pubDate></item>
"""

LAUGHS = (
    b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol">"""
    + b"".join(
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1 if i > 1 else "") + ";") * 10}">'.encode()
        for i in range(1, 10)
    )
    + b"""]><rss version="2.0"><channel><title>&lol9;</title></channel></rss>"""
)


def test_a_feed_with_entities_is_refused_before_expansion() -> None:
    out = parse_feed(LAUGHS)
    assert isinstance(out, Refused) and "entities" in out.reason


def test_external_entities_are_refused() -> None:
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<rss version="2.0"><channel><title>&x;</title></channel></rss>'
    )
    out = parse_feed(xxe)
    assert isinstance(out, Refused) and "entities" in out.reason


def test_broken_xml_gives_the_entries_feedparser_still_reads() -> None:
    out = parse_feed(RSS)  # no closing tags
    assert isinstance(out, ParsedFeed) and out.problem
    assert [e["id"] for e in out.entries] == ["g1", "g2"] and out.title == "Wire & Co"


def test_what_is_no_feed_at_all_is_refused_with_one_line() -> None:
    for body in (b"", b"hello, not xml", b"\x00\xff\xfe garbage"):
        out = parse_feed(body)
        assert isinstance(out, Refused) and "\n" not in out.reason
