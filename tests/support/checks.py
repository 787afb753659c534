"""Bars and strategies the look-ahead and fragility checks are tested on: random walks, steady
trends and a zigzag whose edge is a one-bar artefact, as `BarArrays` of one symbol."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.strategy.spec import StrategySpec
from models.strategy.user_file import parse_specs
from models.vectorized.bars import BarArrays

SYMBOL = "SIMA"
MIN = 60_000
STRATEGIES = Path(__file__).resolve().parents[2] / "api" / "strategies"


def from_closes(closes: np.ndarray[Any, Any], symbol: str = SYMBOL, seed: int = 0) -> BarArrays:
    """Gapless bars (each opens at the close before) through `closes`, high/low a little
    beyond, volumes varying, vwap at the typical price."""
    rng = np.random.default_rng(seed)
    closes = np.round(np.asarray(closes, dtype=np.float64), 6).astype(np.float64)
    opens = np.concatenate([closes[:1], closes[:-1]])
    wick = 1 + rng.uniform(0, 0.002, len(closes))
    high = np.round(np.maximum(opens, closes) * wick, 6)
    low = np.round(np.minimum(opens, closes) / wick, 6)
    volume = np.round(rng.uniform(50, 150, len(closes)), 2).astype(np.float64)
    vwap = np.round((high + low + closes) / 3, 6)
    return BarArrays.from_columns(
        symbol, np.arange(len(closes)) * MIN, MIN, opens, high, low, closes, volume, vwap
    )


def walk(n: int, seed: int, drift: float = 0.0, vol: float = 0.01) -> BarArrays:
    """A geometric random walk from 100."""
    rng = np.random.default_rng(seed)
    return from_closes(100 * np.exp(np.cumsum(rng.normal(drift, vol, n))), seed=seed)


def trend(n: int, seed: int) -> BarArrays:
    """A steady uptrend with small noise: a trend follower's home ground."""
    return walk(n, seed, drift=0.002, vol=0.004)


def zigzag(n: int, seed: int, amplitude: float = 0.02) -> BarArrays:
    """Closes that alternate down and up by about `amplitude` (each move between half and all
    of it): buying the bar after a fall earns the rebound, buying one bar later the next fall."""
    rng = np.random.default_rng(seed)
    closes = [100.0]
    for i in range(1, n):
        move = amplitude * rng.uniform(0.5, 1.0)
        closes.append(closes[-1] * ((1 - move) if i % 2 else 1 / (1 - move)))
    return from_closes(np.array(closes), seed=seed)


def strategy(**fields: Any) -> StrategySpec:
    """A strategy file's strategy on SIMA (the fields a person writes)."""
    (spec,) = parse_specs(
        {"name": "test", "universe": [SYMBOL], "position_fraction": 1.0, **fields}
    )
    return spec


def shipped() -> list[StrategySpec]:
    """Every strategy of the shipped strategy files, moved to SIMA."""
    from connectors.files.strategy_file import read_strategy_files

    specs = read_strategy_files(sorted(STRATEGIES.glob("*.yaml")))
    return [s.model_copy(update={"universe": [SYMBOL]}) for s in specs]


def planted(n: int, seed: int, true_events: int = 6, decoys: int = 12) -> BarArrays:
    """Quiet bars (moves within 0.8 %) with planted falls: `true_events` falls of 3.0 % that
    rebound 2.5 % the next bar, and `decoys` falls of 2.75 % that keep falling (2.5 %, then
    1 %). Buying after a fall of more than 2.9 % catches only the rebounds: a threshold tuned
    to a hair."""
    rng = np.random.default_rng(seed)
    moves = np.clip(rng.normal(0, 0.002, n), -0.008, 0.008)
    slots = rng.choice(np.arange(2, (n - 4) // 5), size=true_events + decoys, replace=False) * 5
    for j, at in enumerate(slots):
        pattern = (-0.030, 0.025) if j < true_events else (-0.0275, -0.025, -0.01)
        moves[at : at + len(pattern)] = pattern
    moves[0] = 0.0
    return from_closes(100 * np.cumprod(1 + moves), seed=seed)
