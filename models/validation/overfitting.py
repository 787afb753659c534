"""How much of a sweep's best result is selection: the deflated Sharpe ratio and the probability
of backtest overfitting.

Deflated Sharpe ratio (Bailey & López de Prado, "The Deflated Sharpe Ratio: Correcting for
Selection Bias, Backtest Overfitting and Non-Normality", J. Portfolio Management 40(5), 2014):
the probabilistic Sharpe ratio (PSR) of the chosen configuration's per-period returns, with
their skewness and kurtosis, against the Sharpe ratio that the best of N independent trials
would show by luck alone:

    SR0 = sqrt(V[SR_n]) * ((1 - g) * Z^-1(1 - 1/N) + g * Z^-1(1 - 1/(N e)))   (g: Euler-Mascheroni)
    DSR = Z((SR - SR0) * sqrt(T - 1) / sqrt(1 - skew * SR + (kurtosis - 1) / 4 * SR^2))

Every Sharpe ratio here is per period (not annualised), on the same periods as the returns:
the variance of the trials' Sharpe ratios must be measured on the same footing as the winner's.
A DSR of 0.95 or more says the winner's Sharpe ratio is unlikely (5 %) to be the luck of the
search.

Probability of backtest overfitting (Bailey, Borwein, López de Prado & Zhu, "The Probability of
Backtest Overfitting", J. Computational Finance 20(4), 2017; SSRN 2326253, 2015) by
combinatorially symmetric cross-validation (CSCV): the T x N matrix of per-period returns of N
configurations is cut into S blocks of T/S rows; for each of the C(S, S/2) ways to pick half the
blocks as in-sample (the rest out-of-sample), the in-sample winner's out-of-sample relative rank
w = rank / (N + 1) gives the logit ln(w / (1 - w)). PBO is the share of logits <= 0: how often
the in-sample winner is no better than the median out of sample. The same splits give the
performance degradation (the slope of out-of-sample on in-sample Sharpe of the winner: negative
or near zero means in-sample rank does not carry over) and the probability of loss (the share
of splits in which the winner's out-of-sample Sharpe is negative).

Speed: a Sharpe ratio is a function of a column's sum and sum of squares, so the per-block sums
are computed once (S x N) and each split's in-sample sums are a product of the split's block
indicator matrix with them: all C(S, S/2) splits at once, O(C x S x N), instead of recomputing
each half (O(C x T x N)). S = 16 and 1,000 configurations take well under a second.

Why not a library: on PyPI the CSCV implementations are pypbo (never released there, last
changed years ago, pulls seaborn/statsmodels/joblib) and one-release packages of 2026 (phacker,
holdout-backtest, sharpe-gate); skfolio has a DSR but no PBO and brings scikit-learn and cvxpy
for what is a dozen lines over scipy.stats. Both statistics are short formulas on
`scipy.stats.norm`, `skew` and `kurtosis`, tested here against the DSR paper's numerical example
and against a brute-force CSCV written independently in the tests.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy import stats

from models.performance.returns import DAY_MS, calendar_of, period_returns

__all__ = [
    "MAX_BLOCKS",
    "DeflatedSharpe",
    "OverfittingError",
    "Pbo",
    "deflated_sharpe",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "period_returns_of",
    "probabilistic_sharpe_ratio",
    "probability_of_overfitting",
    "sharpe_ratio",
    "suggested_blocks",
]

FloatArray = npt.NDArray[np.float64]
EULER_GAMMA: Final = float(np.euler_gamma)
SPLIT_CELLS: Final = 4_000_000
"""Splits x configurations evaluated at once (a few arrays of this many float64: ~32 MB each)."""
MAX_BLOCKS: Final = 20
"""C(20, 10) = 184,756 splits: beyond that CSCV costs more than it tells."""
EPOCH_WEEKDAY: Final = 3
"""1970-01-01 was a Thursday (Monday = 0), as `models.performance.returns` counts."""
ZERO_VARIANCE: Final = 1e-24
"""As `models.performance.returns.ZERO_VARIANCE`: a variance below this is float noise."""


class OverfittingError(ValueError):
    """Inputs the statistics are undefined for; one line saying why."""


def _returns(values: Sequence[float] | FloatArray) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise OverfittingError(f"returns: one series expected, got shape {array.shape}")
    if not bool(np.all(np.isfinite(array))):
        raise OverfittingError("returns: every return must be finite")
    return array


def sharpe_ratio(returns: Sequence[float] | FloatArray) -> float:
    """Per-period Sharpe ratio: mean / standard deviation (ddof 1), no risk-free rate.
    `OverfittingError` for fewer than two returns or returns without variance."""
    r = _returns(returns)
    if len(r) < 2:
        raise OverfittingError(f"returns: {len(r)} return(s); a Sharpe ratio needs two")
    var = float(np.var(r, ddof=1))
    if var < ZERO_VARIANCE:
        raise OverfittingError("returns: constant, so they have no Sharpe ratio")
    return float(np.mean(r)) / math.sqrt(var)


def probabilistic_sharpe_ratio(
    sharpe: float, benchmark: float, n_obs: int, skew: float, kurtosis: float
) -> float:
    """P(true Sharpe > benchmark) given an observed per-period `sharpe` over `n_obs` returns of
    this `skew` and (non-excess, normal = 3) `kurtosis` (PSR, Bailey & López de Prado 2012)."""
    if n_obs < 2:
        raise OverfittingError(f"returns: {n_obs} return(s); the PSR needs two")
    spread = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if not spread > 0:
        raise OverfittingError(
            f"returns: skew {skew:.3g} and kurtosis {kurtosis:.3g} leave no Sharpe ratio spread"
        )
    return float(stats.norm.cdf((sharpe - benchmark) * math.sqrt(n_obs - 1) / math.sqrt(spread)))


def expected_max_sharpe(n_trials: int, variance: float) -> float:
    """SR0: the expected largest of `n_trials` independent Sharpe ratios of true mean 0 and this
    variance (the false strategy theorem, Euler-Mascheroni form). One trial: 0 (no selection)."""
    if n_trials < 1:
        raise OverfittingError(f"trials: {n_trials}; at least the winner itself is one trial")
    if not variance >= 0:
        raise OverfittingError(f"trials: Sharpe variance {variance} must be >= 0")
    if n_trials == 1:
        return 0.0
    z = stats.norm.ppf
    n = float(n_trials)
    return math.sqrt(variance) * (
        (1.0 - EULER_GAMMA) * float(z(1.0 - 1.0 / n))
        + EULER_GAMMA * float(z(1.0 - 1.0 / (n * math.e)))
    )


def deflated_sharpe_ratio(
    sharpe: float,
    n_obs: int,
    skew: float,
    kurtosis: float,
    n_trials: int,
    trials_variance: float,
) -> float:
    """The DSR from the moments (all per period): the PSR against `expected_max_sharpe`."""
    benchmark = expected_max_sharpe(n_trials, trials_variance)
    return probabilistic_sharpe_ratio(sharpe, benchmark, n_obs, skew, kurtosis)


@dataclass(frozen=True, slots=True)
class DeflatedSharpe:
    """The DSR of one return series and the figures it comes from (per period)."""

    sharpe: float
    benchmark: float
    """SR0, the best Sharpe ratio luck gives over `n_trials`."""
    dsr: float
    n_obs: int
    skew: float
    kurtosis: float
    n_trials: int
    trials_variance: float

    def explain(self) -> str:
        """One sentence for a report."""
        return (
            f"DSR {self.dsr:.3f}: the probability that the winner's true Sharpe ratio beats"
            f" {self.benchmark:.4f} a period, the best that luck alone would show over"
            f" {self.n_trials} trial(s) (observed {self.sharpe:.4f} over {self.n_obs} periods,"
            f" skew {self.skew:.2f}, kurtosis {self.kurtosis:.2f}); 0.95 or more is significant"
        )


def deflated_sharpe(
    returns: Sequence[float] | FloatArray,
    trial_sharpes: Sequence[float] | FloatArray,
) -> DeflatedSharpe:
    """The DSR of the chosen configuration's per-period `returns`, selected among trials whose
    per-period Sharpe ratios are `trial_sharpes` (the chosen one included: N = their count,
    V = their variance, ddof 1). Skewness and kurtosis are the sample moments of `returns`
    (scipy.stats, biased, kurtosis non-excess)."""
    r = _returns(returns)
    sharpe = sharpe_ratio(r)
    trials = np.asarray(trial_sharpes, dtype=np.float64)
    if trials.ndim != 1 or len(trials) == 0:
        raise OverfittingError("trials: the Sharpe ratio of every trial, the winner's included")
    if not bool(np.all(np.isfinite(trials))):
        raise OverfittingError("trials: every trial's Sharpe ratio must be finite")
    variance = float(np.var(trials, ddof=1)) if len(trials) > 1 else 0.0
    skew = float(stats.skew(r))
    kurtosis = float(stats.kurtosis(r, fisher=False))
    dsr = deflated_sharpe_ratio(sharpe, len(r), skew, kurtosis, len(trials), variance)
    return DeflatedSharpe(
        sharpe=sharpe,
        benchmark=expected_max_sharpe(len(trials), variance),
        dsr=dsr,
        n_obs=len(r),
        skew=skew,
        kurtosis=kurtosis,
        n_trials=len(trials),
        trials_variance=variance,
    )


def period_returns_of(
    times_ms: Sequence[int] | npt.NDArray[np.int64], equity: Sequence[float] | FloatArray
) -> tuple[str, FloatArray]:
    """(period, returns): the equity curve's returns per calendar period, as the statistics
    sample it for the Sharpe ratio (`models.performance.returns.period_returns`: daily for
    intraday and daily bars, weekly/monthly/yearly for such bars). The per-period series every
    trial is stored with and the DSR and PBO read. Days and weeks are grouped with numpy (a
    sweep computes this per point, on up to millions of bars); months and years as the
    statistics do."""
    times = np.asarray(times_ms, dtype=np.int64)
    values = np.asarray(equity, dtype=np.float64)
    # The period depends on the bar interval alone: the last 100 bars' (the weekend share
    # calendar_of also reads only changes the periods a year).
    period = calendar_of(times[-100:].tolist()).period
    if period not in ("day", "week"):
        pairs = list(zip(times.tolist(), values.tolist(), strict=True))
        return period, np.asarray(period_returns(pairs, period), np.float64)
    days = times // DAY_MS
    keys = days if period == "day" else days - (days + EPOCH_WEEKDAY) % 7
    if len(keys) == 0:
        return period, np.zeros(0)
    last = np.append(np.nonzero(np.diff(keys))[0], len(keys) - 1)
    lasts = values[last]
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.where(lasts[:-1] != 0, lasts[1:] / lasts[:-1] - 1.0, np.nan)
    return period, returns.astype(np.float64)


def suggested_blocks(periods: int, limit: int = 16) -> int | None:
    """The largest even S <= `limit` leaving at least two periods a block; None if none."""
    s = min(limit, periods // 2)
    s -= s % 2
    return s if s >= 2 else None


# ----------------------------------------------------------------------------------- CSCV


@dataclass(frozen=True, slots=True, eq=False)
class Pbo:
    """CSCV over one returns matrix: PBO and the per-split figures of the in-sample winner."""

    pbo: float
    logits: FloatArray
    in_sample: FloatArray
    """The in-sample winner's in-sample Sharpe ratio, one per split."""
    out_of_sample: FloatArray
    """The same configuration's out-of-sample Sharpe ratio, one per split."""
    winners: npt.NDArray[np.int64]
    """The in-sample winner's column, one per split."""
    blocks: int
    rows_used: int
    degradation_slope: float
    degradation_intercept: float
    probability_of_loss: float

    @property
    def splits(self) -> int:
        return len(self.logits)

    def explain(self) -> str:
        """One sentence for a report."""
        return (
            f"PBO {self.pbo:.2f}: in {self.pbo:.0%} of {self.splits} splits of the history into"
            f" halves ({self.blocks} blocks), the best configuration of one half ranked at or"
            f" below the median on the other (0.5 is what pure noise gives; near 0 means the"
            f" in-sample choice carries over); the winner's out-of-sample Sharpe moves"
            f" {self.degradation_slope:+.2f} per unit of in-sample Sharpe, and it lost"
            f" out of sample in {self.probability_of_loss:.0%} of splits"
        )


def _sharpe_from_sums(total: FloatArray, squares: FloatArray, n: int) -> FloatArray:
    """Per-column Sharpe ratios (ddof 1) from sums and sums of squares of `n` rows. A column
    without variance has Sharpe 0 when its mean is 0 (a configuration that did not trade), else
    +-inf (it beats or trails every variable one)."""
    mean = total / n
    var = np.maximum((squares - total * mean) / (n - 1), 0.0)
    flat = var < ZERO_VARIANCE
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = np.where(flat, np.sign(mean) * np.inf, mean / np.sqrt(np.where(flat, 1.0, var)))
    return np.where(flat & (np.abs(mean) < 1e-12), 0.0, sharpe)


def _rank_of(values: FloatArray, column: npt.NDArray[np.int64]) -> FloatArray:
    """Per row, the ascending rank (1..N, ties averaged) of `values[row, column[row]]`."""
    pick = values[np.arange(len(values)), column][:, None]
    below = np.sum(values < pick, axis=1)
    equal = np.sum(values == pick, axis=1)
    rank: FloatArray = below + (equal + 1) / 2.0
    return rank


def probability_of_overfitting(
    returns: Sequence[Sequence[float]] | FloatArray, blocks: int = 16
) -> Pbo:
    """CSCV over `returns`, a T x N matrix (rows: periods in time order; columns: the N
    configurations' returns on those periods), cut into `blocks` (S, even) blocks. T not a
    multiple of S: the oldest T mod S rows are left out, so every block has T // S rows.

    `OverfittingError` (one line) for fewer than two configurations, an odd S or S < 2,
    S > `MAX_BLOCKS`, fewer than two rows a block, or non-finite returns."""
    m = np.asarray(returns, dtype=np.float64)
    if m.ndim != 2:
        raise OverfittingError(f"returns: a T x N matrix expected, got shape {m.shape}")
    t, n = m.shape
    if n < 2:
        raise OverfittingError(f"returns: {n} configuration(s); PBO compares at least two")
    if blocks < 2 or blocks % 2:
        raise OverfittingError(f"blocks: S = {blocks}; CSCV needs an even S of at least 2")
    if blocks > MAX_BLOCKS:
        raise OverfittingError(f"blocks: S = {blocks}; at most {MAX_BLOCKS}")
    rows = t // blocks
    if rows < 2:
        raise OverfittingError(
            f"blocks: S = {blocks} needs at least {2 * blocks} periods, the returns have {t}"
        )
    if not bool(np.all(np.isfinite(m))):
        raise OverfittingError("returns: every return must be finite")
    used = m[t - rows * blocks :]
    cut = used.reshape(blocks, rows, n)
    block_sum = cut.sum(axis=1)  # S x N
    block_sq = (cut * cut).sum(axis=1)
    combos = list(itertools.combinations(range(blocks), blocks // 2))
    chosen = np.zeros((len(combos), blocks), dtype=np.float64)
    for i, combo in enumerate(combos):
        chosen[i, list(combo)] = 1.0
    half = rows * blocks // 2
    winners = np.empty(len(combos), dtype=np.int64)
    rank = np.empty(len(combos), dtype=np.float64)
    is_best = np.empty(len(combos), dtype=np.float64)
    oos_best = np.empty(len(combos), dtype=np.float64)
    step = max(1, SPLIT_CELLS // n)  # splits a chunk: bounded memory for any N and S
    for lo in range(0, len(combos), step):
        part = chosen[lo : lo + step]
        is_sharpe = _sharpe_from_sums(part @ block_sum, part @ block_sq, half)
        rest = 1.0 - part
        oos_sharpe = _sharpe_from_sums(rest @ block_sum, rest @ block_sq, half)
        best = np.argmax(is_sharpe, axis=1).astype(np.int64)
        picked = np.arange(len(part))
        winners[lo : lo + step] = best
        rank[lo : lo + step] = _rank_of(oos_sharpe, best)
        is_best[lo : lo + step] = is_sharpe[picked, best]
        oos_best[lo : lo + step] = oos_sharpe[picked, best]
    omega = rank / (n + 1)
    logits = np.log(omega / (1.0 - omega))
    slope, intercept = _degradation(is_best, oos_best)
    return Pbo(
        pbo=float(np.mean(logits <= 0.0)),
        logits=logits,
        in_sample=is_best,
        out_of_sample=oos_best,
        winners=winners,
        blocks=blocks,
        rows_used=rows * blocks,
        degradation_slope=slope,
        degradation_intercept=intercept,
        probability_of_loss=float(np.mean(oos_best < 0.0)),
    )


def _degradation(x: FloatArray, y: FloatArray) -> tuple[float, float]:
    """Least-squares line of out-of-sample on in-sample Sharpe over the splits; (0, mean y)
    when the in-sample figures do not vary (or are infinite): no slope to measure."""
    ok = np.isfinite(x) & np.isfinite(y)
    xs, ys = x[ok], y[ok]
    if len(xs) < 2 or float(np.var(xs)) < ZERO_VARIANCE:
        return 0.0, float(np.mean(ys)) if len(ys) else 0.0
    fit: Any = stats.linregress(xs, ys)
    return float(fit.slope), float(fit.intercept)
