"""One symbol's features: a composition of registered feature classes, fed one closed bar at a time.

One `FeatureState` lives per symbol inside a Bytewax stateful step, so it must be cheap per bar
(it runs for every closed bar of every symbol), bounded in memory (the stream never ends) and
picklable (Bytewax recovery snapshots it with pickle and resumes from the copy).

What it computes is a set of named features, each an instance of a class registered in
`models.signals.indicators` (where every convention is stated): the configured default set
(`FEATURE_NAMES`: `sma_fast` is an SMA of `features.sma_fast` bars, `channel_high` a channel of
`features.breakout` bars, ...) and any extra names the configuration's strategies read
(`sma_50`, `rsi_7`). Two names for the same kind and period share one instance. The values come
out in a fixed order: the defaults first, in `FEATURE_NAMES` order, then the extras sorted, so
the logged feature vector of a run without extras is what it always was.
Every value is None until its window is full, and never NaN or inf.
"""

from __future__ import annotations

from collections.abc import Iterable
from math import isfinite
from typing import Any, Final

import numpy as np

from models.config.settings import FeaturesConfig
from models.core.blocks import BarColumns, FeatureColumns
from models.core.messages import Bar, FeatureVector
from models.core.trusted import trusted
from models.signals.indicators import (
    BlockMethod,
    FeatureKey,
    Indicator,
    block_method,
    build,
    parse_feature,
)
from models.signals.kernels import NAN, FloatBars, Floats
from models.signals.names import FEATURE_NAMES

__all__ = ["FEATURE_NAMES", "FeatureState", "default_keys"]

_NO_PERIOD: Final = 0

FAST_MIN_BARS = 32
"""Blocks shorter than this run bar by bar: the block path's fixed cost (a few numpy calls per
feature) is worth it only over a run of bars."""


def default_keys(cfg: FeaturesConfig) -> dict[str, FeatureKey]:
    """The configured default names and what each computes."""
    return {
        "sma_fast": FeatureKey("sma", cfg.sma_fast),
        "sma_slow": FeatureKey("sma", cfg.sma_slow),
        "ema": FeatureKey("ema", cfg.ema),
        "rsi": FeatureKey("rsi", cfg.rsi),
        "volatility": FeatureKey("volatility", cfg.volatility),
        "vwap": FeatureKey("vwap", cfg.vwap),
        "volume_z": FeatureKey("volume_z", cfg.volume_z),
        "channel_high": FeatureKey("channel_high", cfg.breakout),
        "channel_low": FeatureKey("channel_low", cfg.breakout),
        "peak_close": FeatureKey("peak_close", _NO_PERIOD),
        "drawdown": FeatureKey("drawdown", _NO_PERIOD),
        "return_1": FeatureKey("return", 1),
    }


class FeatureState:
    """The features of one symbol; `update` once per closed bar, in bar order.

    `extra`: parameterised names (`sma_50`) computed besides the defaults; a name that is not
    one raises `ValueError` with the reason (the configuration has checked them already)."""

    def __init__(self, cfg: FeaturesConfig, extra: Iterable[str] = ()) -> None:
        self.cfg = cfg
        self.bars_seen = 0
        keys = default_keys(cfg)
        for name in sorted(set(extra) - set(keys)):
            key = parse_feature(name)
            if isinstance(key, str):
                raise ValueError(key)
            keys[name] = key
        self._instances: dict[FeatureKey, Indicator] = {}
        for key in keys.values():
            if key not in self._instances:
                self._instances[key] = build(key)
        # (name, instance) in output order; an instance shared by two names is updated once.
        self._names: tuple[tuple[str, FeatureKey], ...] = tuple(keys.items())
        self._plan()

    def _plan(self) -> None:
        """The per-bar plan: the instances in update order, and each name's index among them
        (derived state, rebuilt after unpickling, so snapshots keep their layout)."""
        keys = list(self._instances)
        self._updates = tuple(self._instances[k].update for k in keys)
        self._blocks = tuple(block_method(self._instances[k]) for k in keys)
        self._slots = tuple((name, keys.index(key)) for name, key in self._names)

    def __getstate__(self) -> dict[str, Any]:
        derived = ("_updates", "_blocks", "_slots")
        return {k: v for k, v in self.__dict__.items() if k not in derived}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._plan()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self._names)

    def update(self, bar: Bar) -> FeatureVector:
        """Advance every feature by one closed bar and return their values at its close.

        The vector is built without pydantic's validation (`models.core.trusted`): its fields
        are ours, typed, and the one thing its validator guards (no NaN or inf among the
        values) is done here."""
        now = [update(bar) for update in self._updates]
        self.bars_seen += 1
        values = {name: now[i] for name, i in self._slots}
        for name, value in values.items():
            if value is not None and not isfinite(value):
                values[name] = None
        return trusted(
            FeatureVector,
            {
                "symbol": bar.symbol,
                "ts_ms": bar.end_ms,
                "close": float(bar.close),
                "values": values,
            },
        )

    def update_block(self, bars: BarColumns) -> FeatureColumns:
        """`update` for each bar of `bars` in order, as columns: the same values (bit for bit)
        and the same state afterwards as that many `update` calls.

        Each instance runs the whole block at once through its `update_many`
        (`models.signals.kernels` says why the values are the same bits); one without (or one
        whose method declines the block's values) loops its `update` over the block's bars. A
        short block, or one whose prices do not convert to floats, goes bar by bar."""
        n = len(bars)
        if n < FAST_MIN_BARS:
            return self._update_each(bars)
        floats = FloatBars(bars)
        try:
            # Converted up front, so a value float() refuses fails here, before any state moves,
            # and the per-bar path below raises where bar by bar would.
            floats.close, floats.high, floats.low, floats.volume, floats.vwap  # noqa: B018
        except (ValueError, ArithmeticError):
            return self._update_each(bars)
        columns = [
            self._clean(self._block(instance, method, floats))
            for instance, method in zip(self._instances.values(), self._blocks, strict=True)
        ]
        self.bars_seen += n
        matrix = np.empty((n, len(self._slots)))
        for j, (_, i) in enumerate(self._slots):
            matrix[:, j] = columns[i]
        return FeatureColumns.of_matrix(self.names, matrix)

    @staticmethod
    def _block(instance: Indicator, method: BlockMethod | None, floats: FloatBars) -> Floats:
        values = None if method is None else method(floats)
        if values is None:
            # the generic path: any registered class works on blocks through its `update`
            values = np.fromiter(
                (NAN if v is None else v for v in map(instance.update, floats.bars)),
                np.float64,
                floats.n,
            )
        return values

    @staticmethod
    def _clean(values: Floats) -> Floats:
        """As `update` screens a vector: NaN and inf become None (NaN in columns)."""
        if not bool(np.isfinite(values).all()):
            values = np.where(np.isfinite(values), values, NAN)
        return values

    def _update_each(self, bars: BarColumns) -> FeatureColumns:
        vectors = [self.update(bars.bar(i)) for i in range(len(bars))]
        return FeatureColumns.of_vectors(self.names, vectors)

    def max_buffer_len(self) -> int:
        """Longest internal history, so tests and monitoring can check memory stays bounded."""
        return max(ind.buffer_len() for ind in self._instances.values())
