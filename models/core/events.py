"""Events that reach the desk: a closed bar with what the per-symbol stage made of it, and a
news item or post for the GPT digest.

They are produced by the market stage (`models.market.ingest`) and consumed by the desk, so they
live here rather than in either: a stage never imports its own output types from downstream.
`partition`, `clock_ms` and `seq` place an event in the deterministic merge in front of the desk
(`models.market.merge`).
"""

from __future__ import annotations

from dataclasses import dataclass

from models.core.messages import Bar, Branch, FeatureVector, NewsItem, Signal, SocialPost


@dataclass(frozen=True, slots=True)
class BarEvent:
    """A closed bar with what the per-symbol stage made of it."""

    bar: Bar
    features: FeatureVector
    signals: list[Signal]
    branch: Branch | None
    partition: str = ""  # where it came from, and its place there (see models/market/merge.py)
    clock_ms: int = 0
    seq: int = 0


@dataclass(frozen=True, slots=True)
class TextEvent:
    """A news item or social post on its way to the GPT digest, placed like a bar."""

    item: NewsItem | SocialPost
    partition: str = ""
    clock_ms: int = 0
    seq: int = 0
