"""The `news` section of the settings: feeds to poll, names to tag, the limits of a fetch.

Kept here, beside the logic that reads it, and imported by `models.config.settings` as one
section. Every limit has a default that a hostile feed cannot stretch: the body size a fetch
accepts, the timeout, the backoff's cap, the number of content hashes and entry ids kept.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from models.config.base import Duration, _duration_field, _Section
from models.core.messages import SYMBOL_PATTERN

__all__ = ["FeedSpec", "NewsConfig"]


class FeedSpec(_Section):
    """One RSS/Atom feed: its URL, whether its entries are news or social posts, and the
    source (news) or author (social) its items carry (default: the feed's own title)."""

    url: str = Field(min_length=1, max_length=2000)
    kind: Literal["news", "social"] = "news"
    source: str | None = Field(default=None, max_length=200)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.lower().startswith(("http://", "https://")):
            raise ValueError("a feed URL starts with http:// or https://")
        return value


class NewsConfig(_Section):
    names: dict[
        Annotated[str, Field(pattern=SYMBOL_PATTERN)],
        list[Annotated[str, Field(min_length=2, max_length=100)]],
    ] = Field(
        default_factory=dict,
        description="Company names per symbol, matched case-insensitively on word boundaries "
        "(e.g. {AAPL: [Apple, Apple Inc]}); tickers and $cashtags are matched without it",
    )
    feeds: list[FeedSpec] = Field(
        default_factory=list, description="Feeds `stratflow news poll` polls without URLs"
    )
    poll_interval: Duration = _duration_field("5m", "Time between two polls of one feed")
    timeout_s: float = Field(default=10.0, gt=0, le=300, description="Per HTTP request")
    max_bytes: int = Field(
        default=2_000_000,
        ge=1_000,
        le=100_000_000,
        description="Largest feed body accepted; a larger one is refused unread",
    )
    backoff: Duration = _duration_field("30s", "First wait after a failed poll, doubled after each")
    backoff_max: Duration = _duration_field("1h", "Longest wait between failed polls")
    dedupe_window: int = Field(
        default=10_000, ge=1, le=1_000_000, description="Content hashes remembered for dedupe"
    )
    seen_ids: int = Field(
        default=5_000, ge=1, le=1_000_000, description="Entry ids remembered per feed"
    )
    state_dir: str = Field(
        default="var/news-state", description="Per-feed poll state (ETag, seen ids)"
    )
