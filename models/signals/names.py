"""The names of the configured default features, apart from how they are computed.

Kept free of the configuration and the indicator code so the strategy schema
(`models.strategy.spec`), which the configuration itself embeds for strategy files, can name
them without an import cycle.
"""

from __future__ import annotations

from typing import Final

FEATURE_NAMES: Final[tuple[str, ...]] = (
    "sma_fast",
    "sma_slow",
    "ema",
    "rsi",
    "volatility",
    "vwap",
    "volume_z",
    "channel_high",
    "channel_low",
    "peak_close",
    "drawdown",
    "return_1",
)
