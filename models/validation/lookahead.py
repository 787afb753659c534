"""Look-ahead: does anything a strategy reads at bar i depend on bars after i?

A value that peeks at the future looks brilliant in a backtest and cannot be had live. The test
is Freqtrade's lookahead-analysis: compute the features and the entry/exit signals on the
history cut at bar k (`bars[:k]`), for cuts spread across the history, and compare them with
the full run's values for every bar before k. An honest computation gives the same numbers (it
never saw bars >= k either way); one that reads ahead gives different ones near the cut, so
the first feature (or signal) and bar that differ are reported.

Two paths compute features, and a feature kind can be registered by a user, so both are run:
- the desk's streaming path (`models.signals.features.FeatureState`, each registered class of
  `models.signals.registry`), fed as a backtest feeds it: whole blocks through `update_block`,
  which hands a block to a class's `update_many` (the place a class can see a block's later
  bars);
- the vectorised path (`models.vectorized.features.feature_arrays`) a sweep and the other
  checks use; a kind without a batch function there is skipped on this path (said so).

Values are compared with a relative tolerance of 1e-9 (NaN equals NaN): the paths are exact by
design, and a look-ahead moves a value by far more than rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np

from models.config.settings import FeaturesConfig
from models.core.blocks import BarColumns
from models.signals.features import FeatureState
from models.strategy.spec import Comparison, StrategySpec
from models.validation.verdicts import CheckResult, Figure, Outcome
from models.vectorized import conditions
from models.vectorized.bars import BarArrays, FloatArray
from models.vectorized.features import BATCH, feature_arrays, resolve

__all__ = [
    "CHECK",
    "Difference",
    "LookaheadReport",
    "cut_points",
    "head",
    "lookahead_check",
    "signal_columns",
    "stream_features",
    "vector_features",
]

CHECK: Final = "lookahead"
DEFAULT_CUTS: Final = 12
"""Cuts spread evenly across the history, besides the two ends (a bounded cost: each cut is
one more computation over at most the whole history)."""
RTOL: Final = 1e-9
ENTER: Final = "signal:entry"
EXIT: Final = "signal:exit"

Columns = dict[str, FloatArray]
Path = Callable[[int], Columns]


@dataclass(frozen=True, slots=True)
class Difference:
    """The first value of one feature (or signal) that the cut history computes differently."""

    path: str  # "stream" or "vector"
    name: str
    cut: int  # bars given: bars[:cut]
    bar: int  # index of the first bar whose value differs
    truncated: float  # the value computed on bars[:cut] (NaN: none)
    full: float  # the value computed on every bar

    def describe(self) -> str:
        return (
            f"{self.name} ({self.path} path) at bar {self.bar}: {self.truncated:.10g} with"
            f" {self.cut} bars, {self.full:.10g} with all bars"
        )


@dataclass(frozen=True, slots=True)
class LookaheadReport:
    result: CheckResult
    cuts: tuple[int, ...]
    names: tuple[str, ...]  # features and signals compared
    differences: tuple[Difference, ...]  # the first per (path, name), in cut order
    skipped: tuple[str, ...]  # features the vectorised path cannot compute


def cut_points(n: int, count: int = DEFAULT_CUTS, first: int = 1) -> tuple[int, ...]:
    """`count` cuts spread evenly over [first, n - 1] plus both ends (n - 1: the last bar
    dropped, where a one-bar peek shows at every bar); sorted, distinct."""
    if n - 1 < first:
        return ()
    inner = np.linspace(first, n - 1, num=max(count, 2) + 2).round().astype(int)
    return tuple(sorted({first, n - 1, *(int(k) for k in inner)}))


def head(bars: BarArrays, k: int) -> BarArrays:
    """The first `k` bars."""
    return bars.slice(0, k)


def feature_names(spec: StrategySpec) -> tuple[str, ...]:
    """The features a strategy reads (its operands but the close), sorted."""
    return tuple(sorted(spec.operand_names() - {"close"}))


def stream_features(names: Iterable[str], columns: BarColumns, cfg: FeaturesConfig) -> Columns:
    """`names` as the desk computes them over `columns`, fed as one block (NaN for None)."""
    wanted = tuple(names)
    state = FeatureState(cfg, extra=wanted)
    out = state.update_block(columns)
    table = np.array(out.rows, dtype=np.float64).reshape(len(out.rows), len(out.names))
    index = {name: j for j, name in enumerate(out.names)}
    return {name: table[:, index[name]] for name in wanted}


def vectorisable(name: str, cfg: FeaturesConfig) -> bool:
    return resolve(name, cfg).kind in BATCH


def vector_features(names: Iterable[str], bars: BarArrays, cfg: FeaturesConfig) -> Columns:
    """`names` as the vectorised evaluator computes them over `bars`."""
    return dict(feature_arrays(names, bars, cfg))


def signal_columns(
    spec: StrategySpec, features: Mapping[str, FloatArray], bars: BarArrays
) -> Columns:
    """The strategy's entry (a flat strategy buys) and exit columns as 1.0 / 0.0, from given
    feature columns, with the evaluator's condition semantics (`models.vectorized.conditions`)."""
    n = len(bars)
    columns = {**features, "close": bars.close}
    memo: dict[Comparison, conditions.BoolArray] = {}
    entry = conditions.evaluate(spec.entry, columns, n, memo)
    leave = conditions.evaluate(spec.exit, columns, n, memo)
    return {
        ENTER: (entry & ~leave).astype(np.float64),
        EXIT: leave.astype(np.float64),
    }


def _first_difference(
    path: str, name: str, cut: int, truncated: FloatArray, full: FloatArray
) -> Difference | None:
    same = np.isclose(truncated, full[:cut], rtol=RTOL, atol=0.0, equal_nan=True)
    if bool(same.all()):
        return None
    i = int(np.argmin(same))
    return Difference(path, name, cut, i, float(truncated[i]), float(full[i]))


def _compare(
    path: str,
    compute: Path,
    n: int,
    cuts: tuple[int, ...],
    found: dict[tuple[str, str], Difference],
) -> None:
    full = compute(n)
    for cut in cuts:
        part = compute(cut)
        for name, column in part.items():
            if (path, name) in found:
                continue
            diff = _first_difference(path, name, cut, column, full[name])
            if diff is not None:
                found[(path, name)] = diff


def lookahead_check(
    spec: StrategySpec,
    bars: BarArrays,
    cfg: FeaturesConfig,
    *,
    cuts: int = DEFAULT_CUTS,
) -> LookaheadReport:
    """Fail when a feature the strategy reads, or its entry/exit signal, computed on a cut
    history differs from the full run's at a bar before the cut, on either path."""
    n = len(bars)
    names = feature_names(spec)
    points = cut_points(n, cuts)
    if not points:
        result = CheckResult(
            CHECK,
            Outcome.WARN,
            (Figure("bars", n, 2, False, "at least 2 bars are needed to cut the history"),),
            f"not checked: {n} bar(s)",
        )
        return LookaheadReport(result, (), names, (), ())
    vector_names = tuple(x for x in names if vectorisable(x, cfg))
    skipped = tuple(x for x in names if x not in vector_names)
    columns = BarColumns.of_bars(bars.to_bars())

    def stream(k: int) -> Columns:
        values = stream_features(names, columns.slice(0, k), cfg)
        return {**values, **signal_columns(spec, values, head(bars, k))}

    def vector(k: int) -> Columns:
        part = head(bars, k)
        values = vector_features(vector_names, part, cfg)
        out = dict(values)
        if not skipped:  # the signals need every feature the strategy reads
            out.update(signal_columns(spec, values, part))
        return out

    found: dict[tuple[str, str], Difference] = {}
    _compare("stream", stream, n, points, found)
    _compare("vector", vector, n, points, found)
    diffs = tuple(sorted(found.values(), key=lambda d: (d.cut, d.bar, d.path, d.name)))
    compared = (*names, ENTER, EXIT)
    first = diffs[0] if diffs else None
    figures = (
        Figure(
            "differing",
            len(diffs),
            0,
            not diffs,
            "" if first is None else f"first: {first.describe()}",
        ),
        Figure("cuts", len(points)),
        Figure("compared", len(compared)),
        Figure("first_bar", None if first is None else first.bar),
        Figure("vector_skipped", len(skipped), None, True, ", ".join(skipped)),
    )
    if first is None:
        summary = (
            f"no look-ahead: {len(names)} feature(s) and the entry/exit signals equal the full"
            f" run's at {len(points)} cuts"
            + (f" (stream path only for {', '.join(skipped)})" if skipped else "")
        )
        outcome = Outcome.PASS
    else:
        peeking = sorted({d.name for d in diffs})
        summary = f"look-ahead in {', '.join(peeking)}; first: {first.describe()}"
        outcome = Outcome.FAIL
    return LookaheadReport(
        CheckResult(CHECK, outcome, figures, summary), points, compared, diffs, skipped
    )
