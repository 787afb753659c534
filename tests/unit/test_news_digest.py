"""The desk's news buffer (models/gpt/news_digest.py): the same kept items, and so the same digest,
as the old rebuild-and-sort on every item, for any stream; and work per item that does not grow
with the number of kept items (a news flood must not stall the bars)."""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import models.gpt.news_digest as news_digest
from models.config.settings import Settings
from models.core.events import BarEvent, TextEvent
from models.core.messages import Bar, FeatureVector, NewsItem, SocialPost, ms_to_datetime, to_ms
from models.desk.desk import TradingDesk
from models.gpt.news_digest import NewsBuffer
from models.gpt.prompt import digest_from

H = 3_600_000
T0 = 1_700_000_000_000 // H * H
SYMBOLS = ("AAA", "BBB", "CCC")
Item = NewsItem | SocialPost


def reference_add(
    texts: dict[str, list[Item]],
    item: Item,
    symbols: Iterable[str],
    clock: int | None,
    window_ms: int,
    keep: int,
) -> None:
    """The desk's `on_text` before the incremental buffer, verbatim in its rules: rebuild,
    filter by age, re-sort, cap (current items newest `keep`, far-future ones only in the
    room left, earliest first)."""
    for sym in symbols:
        items = [*texts.get(sym, ()), item]
        if clock is not None:
            items = [i for i in items if to_ms(i.ts) >= clock - window_ms]
        items.sort(key=lambda i: (to_ms(i.ts), i.type, i.id))
        if clock is None:
            texts[sym] = items[-keep:]
            continue
        ahead = clock + window_ms
        current = [i for i in items if to_ms(i.ts) <= ahead][-keep:]
        future = [i for i in items if to_ms(i.ts) > ahead][: keep - len(current)]
        texts[sym] = current + future


def _item(kind: str, n: int, ts_ms: int, symbols: list[str]) -> Item:
    ts = ms_to_datetime(ts_ms)
    if kind == "news":
        return NewsItem(id=f"n{n}", ts=ts, headline=f"headline {n}", symbols=symbols)
    return SocialPost(id=f"s{n}", ts=ts, text=f"post {n}", symbols=symbols)


# Offsets around the bars' clock: old (dropped by age), current, and far ahead (forged).
offsets = st.one_of(
    st.integers(-3 * H, 3 * H),
    st.integers(-30, 30).map(lambda m: m * 60_000),  # many ties and near-ties
    st.integers(100 * H, 200 * H),  # far future
)
events = st.lists(
    st.one_of(
        st.tuples(st.just("bar"), st.integers(0, 4 * H)),  # the bars' clock moves on (or back)
        st.tuples(
            st.sampled_from(["news", "social"]),
            st.integers(0, 12),  # a small id space: repeated (kind, id) pairs
            offsets,
            st.lists(st.sampled_from((*SYMBOLS, "ZZZ")), min_size=1, max_size=5),
        ),
    ),
    max_size=80,
)


@pytest.mark.slow  # 300 generated streams
@settings(max_examples=300, deadline=None)
@given(events=events, keep=st.integers(1, 6), window_h=st.integers(0, 2))
def test_buffer_keeps_what_the_rebuild_kept_for_any_stream(
    events: list[tuple[Any, ...]], keep: int, window_h: int
) -> None:
    window = window_h * H
    buffer = NewsBuffer()
    reference: dict[str, list[Item]] = {}
    clock: int | None = None
    for ev in events:
        if ev[0] == "bar":
            clock = T0 + ev[1]
            continue
        kind, n, offset, syms = ev
        item = _item(kind, n, (clock if clock is not None else T0) + offset, syms)
        wanted = [s for s in dict.fromkeys(syms) if s in SYMBOLS]
        buffer.add(item, wanted, clock, window, keep)
        reference_add(reference, item, wanted, clock, window, keep)
        for sym in SYMBOLS:
            assert list(buffer.get(sym)) == reference.get(sym, [])
            # and therefore the digest a decision sees, at any time
            for now in {clock or T0, T0 + 2 * H}:
                assert digest_from(buffer.get(sym), sym, now, window, keep) == digest_from(
                    reference.get(sym, []), sym, now, window, keep
                )
    assert all(len(buffer.get(s)) <= keep for s in SYMBOLS)  # memory bounded as before
    assert len(buffer) == sum(len(reference.get(s, [])) for s in SYMBOLS)


def _settings(tmp: Path, symbols: Iterable[str], digest_items: int = 2) -> Settings:
    return Settings.model_validate(
        {
            "symbols": {s: {} for s in symbols},
            "strategy": {"controller": "gpt"},
            "gpt": {"cache_dir": str(tmp / "answers"), "digest_items": digest_items},
        }
    )


def _bar_event(symbol: str, end_ms: int) -> BarEvent:
    c = Decimal(100)
    bar = Bar(
        symbol=symbol,
        start_ms=end_ms - H,
        end_ms=end_ms,
        open=c,
        high=c,
        low=c,
        close=c,
        volume=Decimal(1),
        trades=1,
        vwap=c,
    )
    return BarEvent(
        bar, FeatureVector(symbol=symbol, ts_ms=end_ms, close=100.0, values={}), [], None
    )


@pytest.mark.parametrize("in_order", [True, False])
def test_desk_converts_each_items_time_once_whatever_it_keeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_order: bool
) -> None:
    """The flood case in small: every item names every symbol. The old rebuild converted the
    time of every kept item of every symbol for every new item (work growing with symbols x
    kept items); the buffer converts each item's time once."""
    symbols = [f"S{i:02d}" for i in range(16)]
    desk = TradingDesk.create(_settings(tmp_path, symbols, digest_items=5), gpt=True)
    desk.on_bar_event(_bar_event(symbols[0], T0))
    calls = 0

    def counting(ts: datetime) -> int:
        nonlocal calls
        calls += 1
        return to_ms(ts)

    for module in ("models.desk.desk", "models.gpt.news_digest"):
        monkeypatch.setattr(f"{module}.to_ms", counting, raising=False)
    n = 200
    for i in range(n):
        offset = i if in_order else (i * 7919) % n  # a shuffled stream too
        desk.on_text(TextEvent(_item("news", i, T0 - 60_000 * offset, symbols)))
    assert calls <= n
    assert all(len(desk.gpt.texts.get(s)) == 4 * 5 for s in symbols)


def test_a_snapshot_with_plain_lists_restores_into_the_buffer(tmp_path: Path) -> None:
    """Recovery state written before the buffer held plain per-symbol lists."""
    settings = _settings(tmp_path, SYMBOLS)
    desk = TradingDesk.create(settings, gpt=True)
    items = [_item("news", i, T0 - i * 1000, ["AAA"]) for i in range(3)]
    state = list(desk.state())
    from models.desk.persisted import PERSISTED_NAMES

    state[PERSISTED_NAMES.index("texts")] = {"AAA": sorted(items, key=news_digest.text_key)}
    restored = TradingDesk.create(settings, gpt=True)
    restored.restore(tuple(state))
    assert list(restored.gpt.texts.get("AAA")) == sorted(items, key=news_digest.text_key)
    restored.on_text(TextEvent(_item("social", 9, T0 - 1500, ["AAA"])))
    again = pickle.loads(pickle.dumps(restored.state()))
    kept = again[PERSISTED_NAMES.index("texts")].get("AAA")
    assert [i.id for i in kept] == ["n2", "s9", "n1", "n0"]
