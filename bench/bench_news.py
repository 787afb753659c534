"""News flood: items per second through the desk's news buffer (`TradingDesk.on_text`), the
worst case of issue 9 item 10: every item names 64 symbols, the digest shows 100 items (so 400
are kept per symbol), and the bars' clock is known (age and far-future rules apply).

    python bench/bench_news.py [--items 100000] [--baseline-items 1000] [--symbols 64]
                               [--digest-items 100] [--seed 3]

Two algorithms, same run, same items:
  baseline  the desk's `on_text` as it was before the incremental buffer (kept verbatim below,
            `baseline_on_text`): every item rebuilds and re-sorts each symbol's kept list and
            converts the time of every kept item. It is slow (about 100 items/s), so it runs
            on the first `--baseline-items` items only; its rate is flat once the lists are
            full, which they are after 400 items.
  new       `TradingDesk.on_text` (models/gpt/news_digest.py), on all `--items` items, twice:
            in time order (a flood) and with each item up to 10 minutes late (shuffled).
The kept lists of both algorithms are compared after the baseline's items (they must be equal),
and the result counts are printed beside the times. Target: new >= 10,000 items/s.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.config.settings import Settings  # noqa: E402
from models.core.events import BarEvent, TextEvent  # noqa: E402
from models.core.messages import Bar, FeatureVector, NewsItem, SocialPost, ms_to_datetime, to_ms  # noqa: E402
from models.desk.desk import TradingDesk  # noqa: E402

H = 3_600_000
T0 = 1_700_000_000_000 // H * H


# ------------------------------------------------------------------ BASELINE (the old algorithm)
def baseline_on_text(
    desk: TradingDesk, texts: dict[str, list[NewsItem | SocialPost]], event: TextEvent
) -> None:
    """BASELINE, for comparison only: `TradingDesk.on_text` before issue 9 item 10, unchanged
    except that it keeps its lists in `texts` instead of the desk."""
    if desk.gpt.decider is None or desk.settings.gpt.digest_items == 0:
        return
    item = event.item
    keep = 4 * desk.settings.gpt.digest_items
    clock = max((e.bar.end_ms for e in desk.latest.values()), default=None)
    for sym in dict.fromkeys(item.symbols):
        if sym not in desk.settings.symbols:
            continue
        items = [*texts.get(sym, ()), item]
        if clock is not None:
            items = [i for i in items if to_ms(i.ts) >= clock - desk.gpt.digest_window_ms]
        items.sort(key=lambda i: (to_ms(i.ts), i.type, i.id))
        if clock is None:
            texts[sym] = items[-keep:]
            continue
        ahead = clock + desk.gpt.digest_window_ms
        current = [i for i in items if to_ms(i.ts) <= ahead][-keep:]
        future = [i for i in items if to_ms(i.ts) > ahead][: keep - len(current)]
        texts[sym] = current + future


# ------------------------------------------------------------------ the bench
def make_desk(symbols: list[str], digest_items: int) -> TradingDesk:
    settings = Settings.model_validate(
        {
            "symbols": {s: {} for s in symbols},
            "strategy": {"controller": "gpt"},
            "gpt": {"digest_items": digest_items, "digest_window": "12h"},
        }
    )
    desk = TradingDesk.create(settings, gpt=True)
    c = Decimal(100)
    for sym in symbols:  # the bars' clock: every symbol has a bar ending at T0 + 24 h
        bar = Bar(
            symbol=sym,
            start_ms=T0 + 23 * H,
            end_ms=T0 + 24 * H,
            open=c,
            high=c,
            low=c,
            close=c,
            volume=c,
            trades=1,
            vwap=c,
        )
        fv = FeatureVector(symbol=sym, ts_ms=bar.end_ms, close=100.0, values={})
        desk.latest[sym] = BarEvent(bar, fv, [], None)
    return desk


def make_items(n: int, symbols: list[str], shuffled: bool, seed: int) -> list[TextEvent]:
    """`n` items ending at the clock, spaced so that all of them are inside the 12 h window
    (every item is current: the lists stay full, the worst case), one in 50 forged far into
    the future; `shuffled`: each up to 10 minutes late."""
    rng = random.Random(seed)
    step = (11 * H) // n
    start = T0 + 24 * H - n * step
    out: list[TextEvent] = []
    for i in range(n):
        ts = start + i * step
        if shuffled:
            ts -= rng.randrange(600_000)
        if rng.random() < 0.02:
            ts = T0 + 10_000 * H + i  # forged, far ahead
        when = ms_to_datetime(ts)
        if i % 3:
            item: NewsItem | SocialPost = NewsItem(
                id=f"n{i}", ts=when, headline=f"headline {i}", symbols=symbols
            )
        else:
            item = SocialPost(id=f"s{i}", ts=when, text=f"post {i}", symbols=symbols)
        out.append(TextEvent(item))
    return out


def quiet_gc() -> None:
    """The items are built up front (a flow streams them): keep the collector from rescanning
    them in every timed run; what the desk keeps is still scanned."""
    gc.collect()
    gc.freeze()


def run_new(desk: TradingDesk, events: list[TextEvent]) -> float:
    quiet_gc()
    t0 = time.perf_counter()
    for ev in events:
        desk.on_text(ev)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--baseline-items", type=int, default=1_000)
    ap.add_argument("--symbols", type=int, default=64)
    ap.add_argument("--digest-items", type=int, default=100)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    symbols = [f"S{i:02d}" for i in range(args.symbols)]
    keep = 4 * args.digest_items
    print(
        f"news flood: {args.symbols} symbols per item, digest {args.digest_items} items "
        f"({keep} kept per symbol)"
    )
    rows: list[tuple[str, int, float, int]] = []

    # baseline and new on the same first items: rates, and the kept lists must agree
    events = make_items(args.items, symbols, shuffled=False, seed=args.seed)
    prefix = events[: args.baseline_items]
    old = make_desk(symbols, args.digest_items)
    texts: dict[str, list[NewsItem | SocialPost]] = {}
    quiet_gc()
    t0 = time.perf_counter()
    for ev in prefix:
        baseline_on_text(old, texts, ev)
    rows.append(
        ("baseline, in order", len(prefix), time.perf_counter() - t0, sum(map(len, texts.values())))
    )
    new = make_desk(symbols, args.digest_items)
    elapsed = run_new(new, prefix)
    rows.append(("new, in order (same items)", len(prefix), elapsed, len(new.texts)))
    same = all(list(new.texts.get(s)) == texts.get(s, []) for s in symbols)

    for label, shuffled in (("new, in order", False), ("new, shuffled <= 10 min", True)):
        desk = make_desk(symbols, args.digest_items)
        evs = events if not shuffled else make_items(args.items, symbols, True, args.seed)
        elapsed = run_new(desk, evs)
        rows.append((label, len(evs), elapsed, len(desk.gpt.texts)))

    print(
        f"{'algorithm':<30} {'items':>8} {'seconds':>9} {'items/s':>10} {'kept (all symbols)':>19}"
    )
    for label, n, secs, kept in rows:
        print(f"{label:<30} {n:>8,} {secs:>9.2f} {n / secs:>10,.0f} {kept:>19,}")
    base_rate = rows[0][1] / rows[0][2]
    best = min(n / secs for _, n, secs, _ in rows[2:])
    print(f"kept lists equal (baseline vs new, first {len(prefix):,} items): {same}")
    print(
        f"speed-up (slowest new / baseline): {best / base_rate:,.0f}x; target >= 10,000 items/s: "
        f"{'met' if best >= 10_000 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
