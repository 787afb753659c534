"""The one-bar lag test: an edge that lives in the bar after the signal collapses and is
caught; a trend follower on trending bars keeps its edge and passes."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.config.settings import FeaturesConfig
from models.validation.lag import LagLimits, lag_check, run_shifted
from models.validation.verdicts import Outcome
from models.vectorized.evaluate import Costs, evaluate
from tests.support.checks import shipped, strategy, trend, walk, zigzag

CFG = FeaturesConfig()
COSTS = Costs()  # 10 bps fee, 5 bps slippage

BOUNCE = strategy(  # buys the bar after a fall, sells the bar after a rise
    entry={"left": "return_1", "op": "<", "right": 0},
    exit={"left": "return_1", "op": ">", "right": 0},
)
TREND = strategy(
    entry={"left": "sma_10", "op": ">", "right": "sma_50"},
    exit={"left": "sma_10", "op": "<", "right": "sma_50"},
)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(30, 400))
def test_no_delay_is_the_evaluator_itself(seed: int, n: int) -> None:
    bars = walk(n, seed)
    for spec in shipped():
        same = run_shifted(spec, bars, COSTS, CFG, 0)
        base = evaluate(spec, bars, COSTS, CFG)
        assert np.array_equal(same.equity, base.equity)
        assert np.array_equal(same.fill_bar, base.fill_bar)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), delay=st.integers(1, 5))
def test_a_delay_moves_every_signal_fill_later(seed: int, delay: int) -> None:
    bars = walk(300, seed)
    base = run_shifted(TREND, bars, COSTS, CFG, 0)
    late = run_shifted(TREND, bars, COSTS, CFG, delay)
    # the position state machine is the same, so while no trade overlaps the end the fills
    # of the delayed run are the normal run's, `delay` bars later
    k = min(len(base.fill_bar), len(late.fill_bar))
    early = base.fill_bar[:k][base.fill_bar[:k] + delay < len(bars)]
    assert np.array_equal(late.fill_bar[: len(early)], early + delay)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(60, 600),
    amplitude=st.floats(0.01, 0.04),
)
def test_an_edge_that_is_a_one_bar_artefact_is_caught(seed: int, n: int, amplitude: float) -> None:
    report = lag_check(BOUNCE, zigzag(n, seed, amplitude), COSTS, CFG)
    assert report.normal.total_return > 0.0
    assert report.lagged.total_return < 0.0
    assert report.result.outcome is Outcome.FAIL
    failed = {f.name for f in report.result.failures}
    assert "return_drop" in failed
    assert "changes sign" in report.result.summary


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(300, 1500))
def test_a_trend_follower_on_trending_bars_keeps_its_edge(seed: int, n: int) -> None:
    report = lag_check(TREND, trend(n, seed), COSTS, CFG)
    assert report.normal.total_return > 0.0
    assert report.result.outcome is Outcome.PASS, report.result.summary
    drop = next(f for f in report.result.figures if f.name == "return_drop")
    assert drop.value is not None and drop.value <= 0.5 and drop.passed


def test_the_rule_is_the_stated_one() -> None:
    """A drop just inside and just outside the limit, on the same runs."""
    bars = trend(800, 7)
    loose = lag_check(TREND, bars, COSTS, CFG, LagLimits(max_return_drop=1.0, max_sharpe_drop=1.0))
    drop = next(f for f in loose.result.figures if f.name == "return_drop").value
    assert isinstance(drop, float) and 0 < drop < 1
    tight = lag_check(TREND, bars, COSTS, CFG, LagLimits(max_return_drop=drop / 2))
    assert tight.result.outcome is Outcome.FAIL
    assert loose.result.outcome is Outcome.PASS


def test_a_losing_strategy_has_no_edge_to_lose() -> None:
    losing = lag_check(
        BOUNCE, trend(400, 1), Costs(fee_bps=Decimal(200)), CFG
    )  # fees eat everything
    assert losing.normal.total_return <= 0
    assert losing.result.outcome is Outcome.PASS
    assert "no edge" in losing.result.summary
