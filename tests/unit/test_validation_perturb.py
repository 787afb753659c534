"""Parameter perturbation: every numeric parameter moved to its neighbours through the
strategy-file compiler; a threshold tuned to a hair is a sharp peak, a trend follower on
trending bars a plateau."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from models.config.settings import ExecutionConfig, FeaturesConfig
from models.validation.perturb import PerturbLimits, neighbours, perturb_check
from models.validation.verdicts import Outcome
from models.vectorized.evaluate import Costs, evaluate
from tests.support.checks import planted, shipped, strategy, trend

CFG = FeaturesConfig()
EXECUTION = ExecutionConfig()
COSTS = Costs()

TUNED = strategy(
    entry={"left": "return_1", "op": "<", "right": -0.029},
    exit={"left": "return_1", "op": ">", "right": 0},
)
TREND = strategy(
    entry={"left": "sma_10", "op": ">", "right": "sma_50"},
    exit={"left": "sma_10", "op": "<", "right": "sma_50"},
    stop_loss_pct=0.1,
)


def test_every_numeric_parameter_moves_to_both_neighbours() -> None:
    spec = strategy(
        entry={
            "match": "all",
            "conditions": [
                {"left": "rsi_14", "op": "crosses_below", "right": 30},
                {"left": "close", "op": ">", "right": "sma_fast"},  # configured: sma_10
            ],
        },
        exit={"left": "rsi_14", "op": ">", "right": 0},  # zero: nothing to scale
        stop_loss_pct=0.05,
    )
    near, refused = neighbours(spec, CFG, EXECUTION)
    assert refused == []
    assert [n.label for n in near] == [
        "rsi_14 14 -> 13",
        "rsi_14 14 -> 15",
        "sma_fast 10 -> 9",
        "sma_fast 10 -> 11",
        "entry.conditions[0].right 30 -> 27",
        "entry.conditions[0].right 30 -> 33",
        "stop_loss_pct 0.05 -> 0.045",
        "stop_loss_pct 0.05 -> 0.055",
    ]
    moved = near[2].spec.model_dump(mode="json")
    assert moved["entry"]["conditions"][1]["right"] == "sma_9"
    assert near[1].spec.operand_names() == {"rsi_15", "close", "sma_fast"}
    assert all(n.spec.name == spec.name for n in near)


def test_a_neighbour_the_compiler_refuses_is_counted_not_run() -> None:
    # sma_9 -> sma_10 would compare sma_10 with itself: the compiler refuses it
    spec = strategy(
        entry={"left": "sma_9", "op": "crosses_above", "right": "sma_10"},
        exit={"left": "sma_9", "op": "crosses_below", "right": "sma_10"},
    )
    near, refused = neighbours(spec, CFG, EXECUTION)
    assert "sma_9 9 -> 10" in refused and "sma_10 10 -> 9" in refused
    assert {n.label for n in near} == {"sma_9 9 -> 8", "sma_10 10 -> 11"}


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(500, 1200))
def test_a_threshold_tuned_to_a_hair_is_a_sharp_peak(seed: int, n: int) -> None:
    bars = planted(n, seed)
    assert evaluate(TUNED, bars, COSTS, CFG).trade_count == 6  # only the rebounds
    report = perturb_check(TUNED, bars, COSTS, CFG, EXECUTION)
    assert report.original is not None and report.original.total_return > 0
    assert report.result.outcome is Outcome.FAIL, report.result.summary
    failed = {f.name for f in report.result.failures}
    assert "share_profitable" in failed
    looser = next(e for e in report.evaluated if e.neighbour.label.endswith("-0.029 -> -0.0261"))
    assert looser.run.total_return < 0  # the decoys come in
    assert "sharp peak" in report.result.summary


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(400, 1500))
def test_a_trend_follower_on_trending_bars_is_a_plateau(seed: int, n: int) -> None:
    report = perturb_check(TREND, trend(n, seed), COSTS, CFG, EXECUTION)
    assert report.result.outcome is Outcome.PASS, report.result.summary
    assert len(report.evaluated) == 6
    share = next(f for f in report.result.figures if f.name == "share_profitable")
    assert share.value == 1.0


def test_the_median_rule_is_the_stated_one() -> None:
    bars = trend(800, 3)
    loose = perturb_check(TREND, bars, COSTS, CFG, EXECUTION)
    ratio = next(f for f in loose.result.figures if f.name == "median_ratio").value
    assert isinstance(ratio, float) and ratio > 0
    strict = perturb_check(
        TREND, bars, COSTS, CFG, EXECUTION, PerturbLimits(min_median_ratio=ratio * 1.01)
    )
    assert strict.result.outcome is Outcome.FAIL
    assert {f.name for f in strict.result.failures} == {"median_ratio"}


def test_the_shipped_strategies_all_have_neighbours() -> None:
    for spec in shipped():
        near, refused = neighbours(spec, CFG, EXECUTION)
        assert len(near) >= 4 and refused == []


def test_nothing_to_perturb_is_a_warning() -> None:
    spec = strategy(
        entry={"left": "close", "op": ">", "right": "peak_close"},
        exit={"left": "drawdown", "op": ">", "right": 0},
    )
    report = perturb_check(spec, trend(200, 1), COSTS, CFG, EXECUTION)
    assert report.result.outcome is Outcome.WARN
