"""Sentiment per symbol per bar window: the features triggers, strategies (local and GPT's)
and the online model read (issue 14).

Items (scored news and posts, by publication time) are added as they arrive in event order;
at a bar's close, `close(symbol, end_ms)` takes the items published in the bar's window
(after the previous close of the symbol, up to and including `end_ms`) and gives
- `mean`: their mean score (0 without items),
- `count`: how many,
- `surprise`: `mean` less the symbol's own recent average (an exponentially weighted mean of
  the means of its earlier windows that had items; 0 without items or before the first).
An item published after a bar's end is never part of that bar: it waits for the window it
belongs to, so a decision at a bar never sees later news (no look-ahead). An item published
before the symbol's last close (late) counts in the next window: it was not known at the
earlier close. Plain data: pickles with the desk's snapshot.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Final

__all__ = ["SENTIMENT_FEATURES", "SentimentFeatures", "SentimentWindows"]

SENTIMENT_FEATURES: Final = ("sentiment_mean", "sentiment_count", "sentiment_surprise")
"""The feature names the windows add to a bar's features."""


@dataclass(frozen=True, slots=True)
class SentimentFeatures:
    mean: float = 0.0
    count: int = 0
    surprise: float = 0.0

    def values(self) -> dict[str, float]:
        return {
            "sentiment_mean": self.mean,
            "sentiment_count": float(self.count),
            "sentiment_surprise": self.surprise,
        }


@dataclass(slots=True)
class _Symbol:
    waiting: list[tuple[int, int, float]] = field(default_factory=list)
    """Heap of (publication ms, arrival order, score) not yet in a closed window."""
    baseline: float | None = None
    """The exponentially weighted mean of earlier windows' means (None: none yet)."""
    closed_ms: int | None = None


@dataclass(slots=True)
class SentimentWindows:
    """Per-symbol windows of item scores (module docstring). `span`: the baseline's span in
    windows with items (alpha = 2 / (span + 1))."""

    span: int = 20
    symbols: dict[str, _Symbol] = field(default_factory=dict)
    added: int = 0

    def add(self, symbols: list[str], published_ms: int, score: float) -> None:
        """One scored item about `symbols`, published at `published_ms`."""
        if not -1.0 <= score <= 1.0:
            raise ValueError(f"a sentiment score is in [-1, 1], got {score}")
        self.added += 1
        for symbol in dict.fromkeys(symbols):
            state = self.symbols.setdefault(symbol, _Symbol())
            heapq.heappush(state.waiting, (published_ms, self.added, score))

    def close(self, symbol: str, end_ms: int) -> SentimentFeatures:
        """The features of `symbol`'s window ending at `end_ms` (its bar's end)."""
        state = self.symbols.get(symbol)
        if state is None:
            return SentimentFeatures()
        if state.closed_ms is not None and end_ms < state.closed_ms:
            raise ValueError(f"{symbol}: window end {end_ms} before the last, {state.closed_ms}")
        state.closed_ms = end_ms
        scores: list[float] = []
        waiting = state.waiting
        while waiting and waiting[0][0] <= end_ms:
            scores.append(heapq.heappop(waiting)[2])
        if not scores:
            return SentimentFeatures()
        mean = sum(scores) / len(scores)
        surprise = 0.0 if state.baseline is None else mean - state.baseline
        alpha = 2.0 / (self.span + 1)
        state.baseline = (
            mean if state.baseline is None else (alpha * mean + (1 - alpha) * state.baseline)
        )
        return SentimentFeatures(mean, len(scores), surprise)
