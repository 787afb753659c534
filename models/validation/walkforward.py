"""Walk-forward optimisation of a parameter grid: choose on the past, trade the next stretch,
repeat, and judge only the stretches traded.

The bars are cut into windows (`plan_windows`): an in-sample part of `is_bars` bars followed by
an out-of-sample part of `oos_bars` bars, the next window `step` bars later (`step` defaults to
`oos_bars`, so the out-of-sample parts follow one another; a larger step leaves gaps, a smaller
one would trade some bars twice and is refused). Rolling windows slide their in-sample start;
anchored windows keep it at bar 0 and grow. A last out-of-sample part shorter than `oos_bars`
is kept, so the out-of-sample parts reach the last bar.

For each window every grid point (`models.vectorized.sweep.expand`) is evaluated on the
in-sample bars (`models.vectorized.evaluate`), the best by `rank_by` is chosen (undefined values
last, ties by grid order, as `api.sweep` ranks), and that point alone is evaluated on the
out-of-sample bars. Each evaluation sees only the bars it may know: its own part plus up to
`warmup_bars` bars before it, on which features warm up and no entry is decided
(`evaluate(..., trade_from=...)`); the bars are sliced, so nothing after the part's last bar can
reach it. The choice of a window therefore depends on no bar after its in-sample end, and its
out-of-sample figures on no bar after its out-of-sample end (the unit tests change later bars
and check that).

Stitching: each out-of-sample part starts flat with the initial cash; its per-bar returns
(equity at each close over the one before, the first over the initial cash) are chained into
one equity curve, whose statistics are `models.performance.stats.compute_statistics`'s. A
position still open at a part's end is marked at its last close and not carried: the next part
starts flat. The trade statistics pool every part's round trips (their money amounts are each
part's own, on its own starting cash).

Walk-forward efficiency: per window the out-of-sample Sharpe ratio over the in-sample one (where
the in-sample one is positive), and overall the mean out-of-sample over the mean in-sample
Sharpe ratio of the chosen points (annualised, `sharpe_ratio`). Near 1: the in-sample edge
carries over; near 0 or negative: it was fitted.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal

import numpy as np

from models.config.settings import FeaturesConfig
from models.performance.stats import compute_statistics
from models.performance.types import Performance, RoundTrip
from models.validation.overfitting import period_returns_of
from models.vectorized.bars import BarArrays, FloatArray
from models.vectorized.evaluate import Costs, StatValue, VectorResult, evaluate
from models.vectorized.features import resolve
from models.vectorized.sweep import GridPoint

__all__ = [
    "WalkForward",
    "WalkForwardError",
    "Window",
    "WindowResult",
    "default_warmup",
    "plan_windows",
    "walk_forward",
]

Mode = Literal["rolling", "anchored"]
MODES: Final = ("rolling", "anchored")
WARMUP_PERIODS: Final = 3
"""Default warm-up: this many times the longest feature period of the grid (a moving average is
defined after one period; EMA, RSI and ATR recurrences settle within a few)."""


class WalkForwardError(ValueError):
    """Windows that cannot be laid out or a walk-forward that cannot run; one line."""


@dataclass(frozen=True, slots=True)
class Window:
    """Bar indices, half-open: in-sample [is_start, is_end), out-of-sample [is_end, oos_end)."""

    index: int
    is_start: int
    is_end: int
    oos_end: int

    @property
    def oos_start(self) -> int:
        return self.is_end


def plan_windows(
    n_bars: int,
    *,
    is_bars: int,
    oos_bars: int,
    step: int | None = None,
    mode: Mode = "rolling",
) -> tuple[Window, ...]:
    """The windows over `n_bars` bars; `WalkForwardError` (one line) for lengths that leave
    no window or would trade a bar twice."""
    if mode not in MODES:
        raise WalkForwardError(f"walk-forward: mode {mode!r}; one of {', '.join(MODES)}")
    if is_bars < 2:
        raise WalkForwardError(f"walk-forward: in-sample bars {is_bars}; at least 2")
    if oos_bars < 1:
        raise WalkForwardError(f"walk-forward: out-of-sample bars {oos_bars}; at least 1")
    stride = oos_bars if step is None else step
    if stride < oos_bars:
        raise WalkForwardError(
            f"walk-forward: step {stride} < out-of-sample bars {oos_bars} would trade bars twice"
        )
    if is_bars >= n_bars:
        raise WalkForwardError(
            f"walk-forward: {n_bars} bars leave no out-of-sample bar after {is_bars} in-sample"
        )
    windows: list[Window] = []
    start = 0
    while start + is_bars < n_bars:
        is_end = start + is_bars
        windows.append(
            Window(
                index=len(windows),
                is_start=0 if mode == "anchored" else start,
                is_end=is_end,
                oos_end=min(is_end + oos_bars, n_bars),
            )
        )
        start += stride
    return tuple(windows)


def default_warmup(points: Sequence[GridPoint], features: FeaturesConfig) -> int:
    """`WARMUP_PERIODS` times the longest feature period any point reads."""
    longest = 0
    for point in points:
        for name in point.spec.operand_names():
            if name != "close":
                longest = max(longest, resolve(name, features).period)
    return WARMUP_PERIODS * longest


@dataclass(frozen=True, slots=True, eq=False)
class WindowResult:
    """One window: the point chosen in-sample and what it did in and out of sample."""

    window: Window
    choice: GridPoint
    score: float | None
    """The chosen point's in-sample `rank_by` value."""
    is_sharpe: float | None
    oos_sharpe: float | None
    oos_trades: int
    oos_return: float
    """Compounded out-of-sample return, a fraction."""
    oos_returns: FloatArray
    """Per-bar returns over the out-of-sample bars."""

    @property
    def efficiency(self) -> float | None:
        """Out-of-sample over in-sample Sharpe ratio; None unless the in-sample one is > 0."""
        if self.is_sharpe is None or self.oos_sharpe is None or self.is_sharpe <= 0:
            return None
        return self.oos_sharpe / self.is_sharpe


@dataclass(frozen=True, slots=True, eq=False)
class WalkForward:
    """Every window's result and the stitched out-of-sample run."""

    mode: Mode
    rank_by: str
    is_bars: int
    oos_bars: int
    step: int
    warmup_bars: int
    windows: tuple[WindowResult, ...]
    equity: tuple[tuple[int, Decimal], ...]
    performance: Performance

    def statistics(self) -> dict[str, StatValue]:
        return {s.key: s.value for s in self.performance.statistics}

    @property
    def returns(self) -> FloatArray:
        """The stitched per-bar out-of-sample returns."""
        return np.concatenate([w.oos_returns for w in self.windows])

    @property
    def efficiency(self) -> float | None:
        """Mean out-of-sample over mean in-sample Sharpe ratio of the chosen points (windows
        where both are defined); None when the in-sample mean is not positive."""
        pairs = [
            (w.is_sharpe, w.oos_sharpe)
            for w in self.windows
            if w.is_sharpe is not None and w.oos_sharpe is not None
        ]
        if not pairs:
            return None
        mean_is = sum(p[0] for p in pairs) / len(pairs)
        mean_oos = sum(p[1] for p in pairs) / len(pairs)
        return mean_oos / mean_is if mean_is > 0 else None

    def summary(self) -> str:
        stats = self.statistics()
        eff = self.efficiency
        changes = sum(
            1 for a, b in itertools.pairwise(self.windows) if a.choice.index != b.choice.index
        )
        return (
            f"walk-forward ({self.mode}, {self.is_bars} in-sample / {self.oos_bars} out-of-sample"
            f" bars, step {self.step}, warm-up {self.warmup_bars}): {len(self.windows)} windows,"
            f" choice changed {changes} time(s); out-of-sample return"
            f" {_fmt(stats.get('return'), '%')}, Sharpe {_fmt(stats.get('sharpe_ratio'))},"
            f" efficiency {'n/a' if eff is None else f'{eff:.2f}'}"
        )


def _fmt(value: Any, unit: str = "") -> str:
    if value is None or isinstance(value, str):
        return "n/a"
    number = float(value)
    return f"{number:.2%}" if unit == "%" else f"{number:.2f}"


def _slice(bars: BarArrays, start: int, end: int) -> BarArrays:
    return bars.slice(start, end)


@dataclass(frozen=True, slots=True, eq=False)
class _Run:
    result: VectorResult
    offset: int  # bars of warm-up before the part

    def part_equity(self) -> FloatArray:
        return self.result.equity[self.offset :]

    def period_returns(self) -> FloatArray:
        """The part's per-period returns (`period_returns_of`), as a trial is recorded."""
        times = self.result.bars.start_ms[self.offset :]
        return period_returns_of(times, self.part_equity())[1]

    def trips(self) -> tuple[RoundTrip, ...]:
        return self.result.round_trips

    def statistics(self) -> dict[str, StatValue]:
        r = self.result
        times = r.bars.start_ms[self.offset :]
        curve = [
            (int(t), Decimal(repr(float(e))))
            for t, e in zip(times, self.part_equity(), strict=True)
        ]
        closes = {
            r.bars.symbol: [
                (int(t), Decimal(repr(float(c))))
                for t, c in zip(times, r.bars.close[self.offset :], strict=True)
            ]
        }
        fees = sum((tf.fill.fee for tf in r.fills()), Decimal(0))
        perf = compute_statistics(
            curve, r.pairing.closed, closes, fees, r.costs.initial_cash, open_trades=r.pairing.open
        )
        return {s.key: s.value for s in perf.statistics}


def _run(
    point: GridPoint,
    bars: BarArrays,
    start: int,
    end: int,
    warmup: int,
    costs: Costs,
    features: FeaturesConfig,
    cache: dict[Any, FloatArray],
) -> _Run:
    first = max(0, start - warmup)
    part = _slice(bars, first, end)
    result = evaluate(point.spec, part, costs, features, cache, trade_from=start - first)
    return _Run(result, start - first)


def _score(stats: dict[str, StatValue], key: str) -> float | None:
    value = stats.get(key)
    if value is None or isinstance(value, str):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _number(value: StatValue) -> float | None:
    return _score({"v": value}, "v")


def _choose(
    scored: list[tuple[GridPoint, float | None]], lowest_first: bool
) -> tuple[GridPoint, float | None]:
    def key(item: tuple[GridPoint, float | None]) -> tuple[int, float, int]:
        point, score = item
        if score is None:
            return (1, 0.0, point.index)
        return (0, score if lowest_first else -score, point.index)

    return min(scored, key=key)


def walk_forward(
    points: Sequence[GridPoint],
    bars: BarArrays,
    costs: Costs,
    features: FeaturesConfig,
    *,
    is_bars: int,
    oos_bars: int,
    step: int | None = None,
    mode: Mode = "rolling",
    rank_by: str = "sharpe_ratio",
    lowest_first: bool = False,
    warmup_bars: int | None = None,
    on_window: Callable[[int], None] | None = None,
    on_trial: Callable[[Window, GridPoint, dict[str, StatValue], FloatArray], None] | None = None,
) -> WalkForward:
    """Walk `points` forward over `bars` (one symbol). `warmup_bars`: None for
    `default_warmup`. `on_window(points_evaluated)` after each window (a progress bar);
    `on_trial(window, point, statistics, period_returns)` for every in-sample evaluation (the
    trials a ledger records).
    `WalkForwardError` (one line) for no point, windows that cannot be laid out or a
    negative warm-up."""
    if not points:
        raise WalkForwardError("walk-forward: no grid point to choose from")
    warmup = default_warmup(points, features) if warmup_bars is None else warmup_bars
    if warmup < 0:
        raise WalkForwardError(f"walk-forward: warm-up bars {warmup}; at least 0")
    windows = plan_windows(len(bars), is_bars=is_bars, oos_bars=oos_bars, step=step, mode=mode)
    results: list[WindowResult] = []
    trips: list[RoundTrip] = []
    fees = Decimal(0)
    cash = float(costs.initial_cash)
    for window in windows:
        cache: dict[Any, FloatArray] = {}
        scored: list[tuple[GridPoint, float | None]] = []
        in_sample: dict[int, dict[str, StatValue]] = {}
        for point in points:
            run = _run(point, bars, window.is_start, window.is_end, warmup, costs, features, cache)
            stats = run.statistics()
            if on_trial is not None:
                on_trial(window, point, stats, run.period_returns())
            in_sample[point.index] = stats
            scored.append((point, _score(stats, rank_by)))
        choice, score = _choose(scored, lowest_first)
        oos = _run(choice, bars, window.oos_start, window.oos_end, warmup, costs, features, {})
        equity = oos.part_equity()
        before = np.concatenate([[cash], equity[:-1]])
        oos_stats = oos.statistics()
        results.append(
            WindowResult(
                window=window,
                choice=choice,
                score=score,
                is_sharpe=_number(in_sample[choice.index].get("sharpe_ratio")),
                oos_sharpe=_number(oos_stats.get("sharpe_ratio")),
                oos_trades=len(oos.trips()),
                oos_return=float(equity[-1]) / cash - 1.0,
                oos_returns=equity / before - 1.0,
            )
        )
        trips.extend(oos.trips())
        fees += sum((tf.fill.fee for tf in oos.result.fills()), Decimal(0))
        if on_window is not None:
            on_window(len(points) + 1)
    returns = np.concatenate([r.oos_returns for r in results])
    stitched = cash * np.cumprod(1.0 + returns)
    times = np.concatenate([bars.start_ms[w.oos_start : w.oos_end] for w in windows])
    curve = tuple((int(t), Decimal(repr(float(e)))) for t, e in zip(times, stitched, strict=True))
    closes = np.concatenate([bars.close[w.oos_start : w.oos_end] for w in windows])
    performance = compute_statistics(
        list(curve),
        trips,
        {
            bars.symbol: [
                (int(t), Decimal(repr(float(c)))) for t, c in zip(times, closes, strict=True)
            ]
        },
        fees,
        costs.initial_cash,
    )
    return WalkForward(
        mode=mode,
        rank_by=rank_by,
        is_bars=is_bars,
        oos_bars=oos_bars,
        step=oos_bars if step is None else step,
        warmup_bars=warmup,
        windows=tuple(results),
        equity=curve,
        performance=performance,
    )
