"""RSS items parsed per second (issue 14's benchmark), from the bytes of a feed to scored
messages, with feedparser alone as the baseline measured in the same run.

    python bench/bench_feed_parse.py [--items 2000] [--repeat 3]

A generated RSS 2.0 feed of `--items` items (titles and HTML descriptions naming the symbols
by ticker, cashtag and company name, some with <script> and entities) is parsed:
  baseline  `feedparser.parse` of the bytes (what any feed reader pays);
  ours      `models.news.feed.parse_feed` (the entity guard, then feedparser) and
            `models.news.entries.entry_item` per entry (cleaning with nh3, tagging, the
            message), then the item's sentiment (`models.sentiment.score.score_news`).
Printed: items/s of each stage with the item counts beside them (every run must give the same
counts), and ours as a ratio of the baseline. Best of `--repeat` runs; CPU time.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SYMBOLS = ["AAPL", "MSFT", "GOOG", "TSLA"]
NAMES = {"AAPL": ["Apple"], "MSFT": ["Microsoft"], "GOOG": ["Alphabet", "Google"]}
WORDS = [
    *("profits", "declined", "sharply", "after", "the", "litigation", "loss", "while"),
    *("guidance", "improved", "strong", "gains", "record", "revenue", "weak", "demand"),
    *("recall", "investigation", "upgrade", "downgrade", "beat", "miss"),
]


def make_feed(n: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    start = datetime(2025, 1, 2, tzinfo=UTC)
    items = []
    for i in range(n):
        sym = rng.choice(SYMBOLS)
        who = rng.choice([sym, f"${sym}", *NAMES.get(sym, [sym])])
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 30)))
        extra = "<script>alert(1)</script>" if i % 17 == 0 else ""
        when = format_datetime(start + timedelta(minutes=i))
        items.append(
            f"<item><title>{who} {words[:60]}</title><link>https://example.com/{i}</link>"
            f"<guid>n-{i}</guid><pubDate>{when}</pubDate>"
            f"<description>&lt;p&gt;{who}: {words} &amp;amp; more&lt;/p&gt;{extra}</description>"
            "</item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>bench</title>'
        + "".join(items)
        + "</channel></rss>"
    ).encode()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import feedparser

    from models.news.entries import Refused, Undated, entry_item
    from models.news.feed import ParsedFeed, parse_feed
    from models.news.tagging import SymbolTagger
    from models.sentiment.score import score_news

    body = make_feed(args.items)
    tagger = SymbolTagger.of(SYMBOLS, NAMES)
    score_news("warm the lexicon")
    base_best = ours_best = score_best = float("inf")
    counts: set[tuple[int, int, int]] = set()
    for _ in range(args.repeat):
        t0 = time.process_time()
        raw = feedparser.parse(body)
        t1 = time.process_time()
        parsed = parse_feed(body)
        assert isinstance(parsed, ParsedFeed)
        items = []
        for entry in parsed.entries:
            item = entry_item(entry, kind="news", source="bench", tagger=tagger, fetched_ms=None)
            if not isinstance(item, Undated | Refused):
                items.append(item)
        t2 = time.process_time()
        scores = [score_news(it.headline, getattr(it, "body", "")) for it in items]
        t3 = time.process_time()
        tagged = sum(1 for it in items if it.symbols)
        counts.add((len(raw.entries), len(items), tagged))
        base_best, ours_best = min(base_best, t1 - t0), min(ours_best, t2 - t1)
        score_best = min(score_best, t3 - t2)
        assert len(scores) == len(items)
    if len(counts) != 1:
        print(f"runs disagree on the counts: {sorted(counts)}")
        return 1
    ((entries, messages, tagged),) = counts
    print(
        f"RSS feed of {args.items} items ({len(body) / 1e6:.1f} MB), best of {args.repeat}, CPU s"
    )
    rows = [
        ("baseline: feedparser.parse", base_best, entries, f"{entries} entries"),
        ("ours: guard + feedparser + clean + tag", ours_best, messages, f"{messages} messages, "
         f"{tagged} tagged"),
        ("ours: + Loughran-McDonald sentiment", score_best, messages, f"{messages} scores"),
    ]  # fmt: skip
    print(f"{'stage':42} {'s':>7} {'items/s':>9}  count")
    for name, seconds, n, what in rows:
        print(f"{name:42} {seconds:7.3f} {n / seconds:9,.0f}  {what}")
    total = ours_best + score_best
    speed = base_best / total
    print(f"ours end to end: {messages / total:,.0f} items/s, {speed:.2f}x the baseline's speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
