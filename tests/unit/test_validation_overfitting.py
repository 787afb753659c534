"""The deflated Sharpe ratio and CSCV's probability of backtest overfitting
(`models.validation.overfitting`): the DSR paper's numerical example, an independent brute-force
CSCV, the behaviour the PBO paper predicts for noise and for a dominant configuration, and the
inputs the statistics are undefined for."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from models.validation.overfitting import (
    MAX_BLOCKS,
    OverfittingError,
    deflated_sharpe,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
    probability_of_overfitting,
    sharpe_ratio,
)

# ------------------------------------------------------------------------------------- DSR


def test_dsr_paper_numerical_example() -> None:
    """Bailey & López de Prado (2014), "The Deflated Sharpe Ratio", section "A numerical
    example": an annualised Sharpe ratio of 2.5 over 5 years of daily returns (T = 1,250,
    250 a year), chosen among N = 100 trials whose annualised Sharpe ratios have variance 1/2,
    returns of skewness -3 and kurtosis 10. The paper gets SR0 = 0.1132 (per day) and
    DSR = 0.9004."""
    per_year = 250
    sr0 = expected_max_sharpe(100, 0.5 / per_year)
    assert round(sr0, 4) == 0.1132
    dsr = deflated_sharpe_ratio(2.5 / math.sqrt(per_year), 1250, -3.0, 10.0, 100, 0.5 / per_year)
    assert round(dsr, 4) == 0.9004


def _expected_max_by_quadrature(n: int, variance: float) -> float:
    """E[max of n N(0, variance)] by integrating x * n * phi(x) * Phi(x)^(n-1): exact, unlike
    the Euler-Mascheroni approximation, which is close for large n."""
    from scipy import integrate

    def density(x: float) -> float:
        return float(x * n * stats.norm.pdf(x) * stats.norm.cdf(x) ** (n - 1))

    value, _ = integrate.quad(density, -12, 12, limit=200)
    return math.sqrt(variance) * float(value)


@pytest.mark.parametrize("n", [10, 100, 1000, 10_000])
def test_expected_max_sharpe_approximates_the_exact_expected_maximum(n: int) -> None:
    exact = _expected_max_by_quadrature(n, 0.04)
    assert expected_max_sharpe(n, 0.04) == pytest.approx(exact, rel=0.03)


@given(st.integers(1, 10_000), st.integers(1, 10_000), st.floats(1e-6, 1.0))
def test_expected_max_grows_with_trials_and_is_zero_for_one(a: int, b: int, var: float) -> None:
    low, high = sorted((a, b))
    assert expected_max_sharpe(1, var) == 0.0
    assert expected_max_sharpe(low, var) <= expected_max_sharpe(high, var)


@given(st.integers(0, 2**32 - 1), st.integers(20, 400))
def test_dsr_of_series_matches_the_formula_computed_here(seed: int, t: int) -> None:
    """`deflated_sharpe` on a series: SR, skew, kurtosis and the trials' variance computed
    independently (pandas-free numpy sums) give the same DSR."""
    rng = np.random.default_rng(seed)
    r = rng.standard_t(5, size=t) * 0.01 + 0.001
    trials = rng.normal(0.0, 0.1, size=25)
    got = deflated_sharpe(r, trials)
    mean = r.sum() / t
    dev = r - mean
    sd = math.sqrt((dev**2).sum() / (t - 1))
    m2, m3, m4 = (dev**2).mean(), (dev**3).mean(), (dev**4).mean()
    skew, kurt = m3 / m2**1.5, m4 / m2**2
    sr = mean / sd
    v = ((trials - trials.mean()) ** 2).sum() / (len(trials) - 1)
    g = 0.5772156649015329
    sr0 = math.sqrt(v) * (
        (1 - g) * stats.norm.ppf(1 - 1 / 25) + g * stats.norm.ppf(1 - 1 / (25 * math.e))
    )
    z = (sr - sr0) * math.sqrt(t - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    assert got.dsr == pytest.approx(float(stats.norm.cdf(z)), abs=1e-9)
    assert got.n_trials == 25 and got.n_obs == t
    assert "DSR" in got.explain()


def test_more_trials_deflate_more() -> None:
    r = np.random.default_rng(3).normal(0.002, 0.01, size=500)
    few = deflated_sharpe(r, np.random.default_rng(4).normal(0, 0.05, size=5))
    many = deflated_sharpe(r, np.random.default_rng(4).normal(0, 0.05, size=500))
    assert many.benchmark > few.benchmark
    assert many.dsr < few.dsr


def test_one_trial_is_the_psr_against_zero() -> None:
    r = np.random.default_rng(5).normal(0.001, 0.01, size=300)
    one = deflated_sharpe(r, [0.1])
    assert one.benchmark == 0.0 and one.trials_variance == 0.0
    psr = probabilistic_sharpe_ratio(
        sharpe_ratio(r), 0.0, 300, float(stats.skew(r)), float(stats.kurtosis(r, fisher=False))
    )
    assert one.dsr == pytest.approx(psr)


@pytest.mark.parametrize(
    ("returns", "trials", "message"),
    [
        ([0.01] * 50, [0.1, 0.2], "constant"),
        ([0.01], [0.1, 0.2], "needs two"),
        ([0.01, float("nan"), 0.02], [0.1], "finite"),
        ([0.01, 0.02, -0.01], [], "every trial"),
        ([0.01, 0.02, -0.01], [0.1, float("inf")], "finite"),
    ],
)
def test_dsr_refuses_undefined_inputs_in_one_line(
    returns: list[float], trials: list[float], message: str
) -> None:
    with pytest.raises(OverfittingError, match=message) as err:
        deflated_sharpe(returns, trials)
    assert "\n" not in str(err.value)


def test_expected_max_refuses_no_trial() -> None:
    with pytest.raises(OverfittingError, match="at least the winner"):
        expected_max_sharpe(0, 0.1)


# ------------------------------------------------------------------------------------ CSCV


def _brute_force_cscv(m: np.ndarray, s: int) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """CSCV as the paper's steps read, one split at a time: concatenate the chosen blocks,
    Sharpe of every column with numpy's std, in-sample winner, its out-of-sample rank by
    scipy's rankdata, the logit."""
    t, n = m.shape
    rows = t // s
    m = m[t - rows * s :]
    blocks = [m[i * rows : (i + 1) * rows] for i in range(s)]
    logits, ins, outs = [], [], []
    for combo in itertools.combinations(range(s), s // 2):
        train = np.vstack([blocks[i] for i in combo])
        test = np.vstack([blocks[i] for i in range(s) if i not in combo])
        r_is = train.mean(axis=0) / train.std(axis=0, ddof=1)
        r_oos = test.mean(axis=0) / test.std(axis=0, ddof=1)
        best = int(np.argmax(r_is))
        w = stats.rankdata(r_oos)[best] / (n + 1)
        logits.append(math.log(w / (1 - w)))
        ins.append(r_is[best])
        outs.append(r_oos[best])
    out = np.array(logits)
    return float(np.mean(out <= 0)), out, np.array(ins), np.array(outs)


@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from([2, 4, 6, 8]),
    st.integers(2, 7),
    st.integers(0, 5),
)
def test_cscv_equals_a_brute_force_computation(seed: int, s: int, n: int, extra: int) -> None:
    rng = np.random.default_rng(seed)
    t = s * rng.integers(2, 12) + extra  # a remainder that must be left out
    m = rng.normal(0.0, 0.01, size=(t, n)) + rng.normal(0.0, 0.002, size=n)
    got = probability_of_overfitting(m, s)
    pbo, logits, ins, outs = _brute_force_cscv(m, s)
    assert got.pbo == pbo
    np.testing.assert_allclose(got.logits, logits, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got.in_sample, ins, rtol=1e-7)
    np.testing.assert_allclose(got.out_of_sample, outs, rtol=1e-7)
    assert got.probability_of_loss == float(np.mean(outs < 0))
    if len(ins) > 2:
        slope, intercept = np.polyfit(ins, outs, 1)
        assert got.degradation_slope == pytest.approx(slope, rel=1e-6, abs=1e-9)
        assert got.degradation_intercept == pytest.approx(intercept, rel=1e-6, abs=1e-9)
    assert got.splits == math.comb(s, s // 2)
    assert got.rows_used == (t // s) * s


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_noise_configurations_overfit_half_the_time_on_average(seed: int) -> None:
    """N configurations with identically distributed noise returns: the in-sample winner is as
    likely below as above the out-of-sample median, so PBO averages 0.5 (the paper's null).
    One matrix's PBO varies widely; the mean over 40 has a standard error near 0.04."""
    rng = np.random.default_rng(seed)
    pbos = [
        probability_of_overfitting(rng.normal(0, 0.01, size=(160, 10)), 8).pbo for _ in range(40)
    ]
    assert abs(float(np.mean(pbos)) - 0.5) < 0.2


@given(st.integers(0, 2**32 - 1), st.integers(2, 30))
def test_a_dominant_configuration_does_not_overfit(seed: int, n: int) -> None:
    """One column whose mean return is two standard deviations above the rest's wins every
    half, in-sample and out: PBO 0, no out-of-sample loss."""
    rng = np.random.default_rng(seed)
    m = rng.normal(0.0, 0.01, size=(200, n))
    m[:, 0] += 0.02
    got = probability_of_overfitting(m, 10)
    assert got.pbo == 0.0
    assert bool(np.all(got.winners == 0))
    assert got.probability_of_loss == 0.0


def test_a_reversing_matrix_overfits_every_time() -> None:
    """Columns whose first-half and second-half fortunes swap, with S = 2: the in-sample winner
    is the out-of-sample loser in both splits (PBO 1) and loses money there."""
    rng = np.random.default_rng(7)
    n, half = 6, 50
    drift = np.linspace(-0.01, 0.01, n)
    first = rng.normal(0, 0.005, size=(half, n)) + drift
    second = rng.normal(0, 0.005, size=(half, n)) - drift
    got = probability_of_overfitting(np.vstack([first, second]), 2)
    assert got.pbo == 1.0
    assert got.probability_of_loss == 1.0
    assert "PBO" in got.explain()


def test_identical_and_idle_configurations_rank_as_ties() -> None:
    """Configurations that never trade (all-zero returns) tie at Sharpe 0; one that does and
    earns wins: the ranks stay finite and the figures defined."""
    rng = np.random.default_rng(11)
    m = np.zeros((80, 4))
    m[:, 3] = rng.normal(0.002, 0.01, size=80)
    got = probability_of_overfitting(m, 4)
    assert bool(np.all(np.isfinite(got.logits)))
    assert 0.0 <= got.pbo <= 1.0


@pytest.mark.parametrize(
    ("shape", "blocks", "message"),
    [
        ((100, 1), 4, "at least two"),
        ((100, 3), 5, "even S"),
        ((100, 3), 0, "even S"),
        ((100, 3), MAX_BLOCKS + 2, "at most"),
        ((30, 3), 16, "needs at least 32 periods"),
    ],
)
def test_cscv_refuses_what_it_cannot_split_in_one_line(
    shape: tuple[int, int], blocks: int, message: str
) -> None:
    m = np.random.default_rng(0).normal(size=shape)
    with pytest.raises(OverfittingError, match=message) as err:
        probability_of_overfitting(m, blocks)
    assert "\n" not in str(err.value)


def test_cscv_refuses_non_finite_returns() -> None:
    m = np.random.default_rng(0).normal(size=(40, 3))
    m[5, 1] = np.nan
    with pytest.raises(OverfittingError, match="finite"):
        probability_of_overfitting(m, 4)


# ------------------------------------------------------------------------- period returns


@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from([60_000, 3_600_000, 86_400_000, 7 * 86_400_000, 31 * 86_400_000]),
    st.integers(1, 400),
)
def test_period_returns_are_those_the_statistics_sample(seed: int, step: int, n: int) -> None:
    """`period_returns_of` (numpy for days and weeks) against the statistics' own Python
    resampling (`models.performance.returns.period_returns`)."""
    from models.performance.returns import calendar_of, period_returns
    from models.validation.overfitting import period_returns_of

    rng = np.random.default_rng(seed)
    times = np.cumsum(np.full(n, step)) + int(rng.integers(0, 10**12))
    equity = (1000.0 * np.cumprod(1.0 + rng.normal(0, 0.01, size=n))).astype(np.float64)
    period, got = period_returns_of(times, equity)
    assert period == calendar_of(times.tolist()).period
    expected = period_returns(list(zip(times.tolist(), equity.tolist(), strict=True)), period)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_splits_evaluated_in_chunks_give_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory is bounded by evaluating the splits in chunks (`SPLIT_CELLS`); the chunk size
    changes nothing."""
    import models.validation.overfitting as overfitting

    m = np.random.default_rng(21).normal(0, 0.01, size=(120, 7))
    whole = probability_of_overfitting(m, 10)
    monkeypatch.setattr(overfitting, "SPLIT_CELLS", 7 * 3)  # three splits a chunk
    chunked = probability_of_overfitting(m, 10)
    np.testing.assert_array_equal(whole.logits, chunked.logits)
    np.testing.assert_array_equal(whole.winners, chunked.winners)
    assert whole.degradation_slope == chunked.degradation_slope
