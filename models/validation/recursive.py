"""Recursive: how much does a feature's value depend on how much history came before it?

An EMA is seeded with an SMA and then remembers its seed (fading by `(1 - 2/(N+1))` a bar);
Wilder's RSI does the same; a drawdown remembers the highest close since the first bar. Their
value at a bar therefore depends on where the data starts: a backtest that starts trading as
soon as such a feature has a value trades on numbers a longer history would not give, and two
runs starting on different days disagree. Freqtrade's recursive-analysis measures it, and so
does this check: the value at the same bar computed with warm-ups of increasing length (the
`w` bars before it), against the value with all the history before it.

For each feature the strategy reads: the relative difference (to the larger of the reference
value's magnitude and the feature's median magnitude, so a value near zero does not inflate
it) at each warm-up of the ladder `W, 2W, 4W, ...`, and the shortest warm-up from which every
longer one stays within `tolerance`. `W`, the warm-up the strategy has, is by default what the
desk gives it: the bars before every feature it reads has a value (`warmup_bars`), which is
when a backtest starts trading it. Stated rule: the check fails when a feature at the
strategy's warm-up differs by more than `tolerance` (default 0.1 %); an SMA (a window of the
last N bars) never does; an EMA or an RSI does unless the warm-up is long enough.

Targets are bars in the last third of the history (the last bar and seven before it), so the
reference has a long history; the worst difference over the targets counts. Features are
computed by the vectorised path where the kind has a batch function, else by the desk's
stream (`models.validation.lookahead`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from models.config.settings import FeaturesConfig
from models.core.blocks import BarColumns
from models.signals.indicators import warmup_bars
from models.strategy.spec import StrategySpec
from models.validation.lookahead import (
    feature_names,
    stream_features,
    vector_features,
    vectorisable,
)
from models.validation.verdicts import CheckResult, Figure, Outcome
from models.vectorized.bars import BarArrays, FloatArray
from models.vectorized.features import resolve

__all__ = ["CHECK", "FeatureDependence", "RecursiveReport", "ladder", "recursive_check"]

CHECK: Final = "recursive"
DEFAULT_TOLERANCE: Final = 1e-3
TARGETS: Final = 8
MIN_HISTORY: Final = 4
"""The reference needs this many times the strategy's warm-up before a target, or the
difference it measures says little (an EMA's seed fades by e^-2 over its own period)."""


@dataclass(frozen=True, slots=True)
class FeatureDependence:
    """One feature: its relative difference at each warm-up, and the warm-up it needs."""

    name: str
    warmups: tuple[int, ...]
    differences: tuple[float, ...]  # inf: no value at that warm-up
    needed: int | None  # shortest warm-up within tolerance from there on; None: none tried

    def at(self, warmup: int) -> float:
        return dict(zip(self.warmups, self.differences, strict=True)).get(warmup, float("inf"))


@dataclass(frozen=True, slots=True)
class RecursiveReport:
    result: CheckResult
    warmup: int
    tolerance: float
    targets: tuple[int, ...]
    features: tuple[FeatureDependence, ...]


def ladder(first: int, longest: int) -> tuple[int, ...]:
    """first, 2 first, 4 first, ... below `longest`, then `longest` (the reference)."""
    out: list[int] = []
    w = max(first, 1)
    while w < longest:
        out.append(w)
        w *= 2
    out.append(longest)
    return tuple(out)


class _Series:
    """One feature computed over slices of one bar set: by the vectorised path where its kind
    has a batch function, else by the desk's stream over slices of columns built once."""

    def __init__(self, name: str, bars: BarArrays, cfg: FeaturesConfig) -> None:
        self.name, self.bars, self.cfg = name, bars, cfg
        self.vector = vectorisable(name, cfg)
        self._columns: BarColumns | None = None

    def column(self, lo: int, hi: int) -> FloatArray:
        """The feature over bars[lo:hi]."""
        if self.vector:
            part = self.bars.slice(lo, hi)
            return vector_features([self.name], part, self.cfg)[self.name]
        if self._columns is None:
            self._columns = BarColumns.of_bars(self.bars.to_bars())
        return stream_features([self.name], self._columns.slice(lo, hi), self.cfg)[self.name]

    def value_at(self, lo: int, t: int) -> float:
        """The value at bar t computed from bars[lo : t + 1]."""
        return float(self.column(lo, t + 1)[-1])

    def scale(self) -> float:
        """The feature's typical magnitude over the whole history (its median |value|)."""
        column = self.column(0, len(self.bars))
        finite = np.abs(column[np.isfinite(column)])
        return float(np.median(finite)) if len(finite) else 0.0


def _difference(value: float, reference: float, scale: float) -> float:
    if np.isnan(value) and np.isnan(reference):
        return 0.0
    if np.isnan(value) or np.isnan(reference):
        return float("inf")
    return abs(value - reference) / max(abs(reference), scale, 1e-12)


def strategy_warmup(spec: StrategySpec, cfg: FeaturesConfig) -> int:
    """Bars before every feature the strategy reads has a value: when the desk starts trading
    it (0 for a strategy reading only the close)."""
    return max((warmup_bars(resolve(n, cfg)) for n in feature_names(spec)), default=0)


def _dependence(
    name: str, bars: BarArrays, cfg: FeaturesConfig, warmup: int, targets: Sequence[int], tol: float
) -> FeatureDependence:
    shortest = min(targets)
    warmups = ladder(warmup, shortest)
    series = _Series(name, bars, cfg)
    scale = series.scale()
    worst = [0.0] * len(warmups)
    for t in targets:
        reference = series.value_at(0, t)
        for j, w in enumerate(warmups):
            value = series.value_at(t - w, t)
            worst[j] = max(worst[j], _difference(value, reference, scale))
    needed: int | None = None
    for w, d in zip(reversed(warmups), reversed(worst), strict=True):
        if d > tol:
            break
        needed = w
    return FeatureDependence(name, warmups, tuple(worst), needed)


def recursive_check(
    spec: StrategySpec,
    bars: BarArrays,
    cfg: FeaturesConfig,
    *,
    warmup: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> RecursiveReport:
    """Fail when a feature the strategy reads, computed with the strategy's warm-up (`warmup`,
    default `strategy_warmup`), differs from its value with all history by more than
    `tolerance` (relative); warn when the history is too short to tell."""
    given = max(1, strategy_warmup(spec, cfg) if warmup is None else warmup)
    names = feature_names(spec)
    n = len(bars)
    first_target = max(MIN_HISTORY * given, (2 * n) // 3)
    spread = np.linspace(first_target, n - 1, TARGETS).astype(int)
    targets = tuple(sorted({n - 1, *(int(t) for t in spread)}))
    if not names or n - 1 < MIN_HISTORY * given:
        why = "reads no feature" if not names else f"{n} bars are too few for a warm-up of {given}"
        outcome = Outcome.PASS if not names else Outcome.WARN
        result = CheckResult(CHECK, outcome, (Figure("warmup", given),), f"not measured: {why}")
        return RecursiveReport(result, given, tolerance, (), ())
    deps = tuple(_dependence(x, bars, cfg, given, targets, tolerance) for x in names)
    figures: list[Figure] = [Figure("warmup", given)]
    for d in deps:
        at = d.at(given)
        ok = at <= tolerance
        needed = "more than the history" if d.needed is None else f"{d.needed} bars"
        figures.append(
            Figure(
                f"{d.name}:difference",
                at if np.isfinite(at) else None,
                tolerance,
                ok,
                f"{d.name} differs by {at:.3%} with a warm-up of {given} bars;"
                f" within {tolerance:.2%} from {needed} of warm-up",
            )
        )
        figures.append(Figure(f"{d.name}:warmup_needed", d.needed))
    bad = [d for d in deps if d.at(given) > tolerance]
    if bad:
        worst = max(bad, key=lambda d: d.at(given))
        needs = max((d.needed or n) for d in bad)
        summary = (
            f"{', '.join(d.name for d in bad)} depend{'s' if len(bad) == 1 else ''} on the"
            f" warm-up: {worst.name} differs by"
            f" {worst.at(given):.2%} with {given} bars; needs about {needs} bars for"
            f" {tolerance:.2%}"
        )
        outcome = Outcome.FAIL
    else:
        summary = (
            f"{len(deps)} feature(s) within {tolerance:.2%} of their full-history values with a"
            f" warm-up of {given} bars"
        )
        outcome = Outcome.PASS
    return RecursiveReport(
        CheckResult(CHECK, outcome, tuple(figures), summary), given, tolerance, targets, deps
    )
