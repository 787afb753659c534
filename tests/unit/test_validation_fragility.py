"""The orchestrator: every check in order, its report kept for the page, the long part
reported as it goes, and the evaluator's checks a warning for a strategy it cannot run."""

from __future__ import annotations

from models.config.settings import ExecutionConfig, FeaturesConfig
from models.validation.fragility import STEPS, CheckOptions, run_checks
from models.validation.verdicts import Outcome
from models.vectorized.evaluate import Costs
from tests.support.checks import shipped, strategy, trend, walk, zigzag

CFG = FeaturesConfig()
EXECUTION = ExecutionConfig()


def test_every_check_runs_in_order_with_progress() -> None:
    steps: list[str] = []
    ticks: list[tuple[int, int]] = []
    spec = next(s for s in shipped() if s.name.startswith("sma-cross"))
    result = run_checks(
        spec,
        trend(600, 2),
        Costs(),
        CFG,
        EXECUTION,
        on_step=steps.append,
        on_neighbour=lambda done, total: ticks.append((done, total)),
    )
    assert steps == list(STEPS)
    assert tuple(r.check for r in result.results) == STEPS
    assert ticks == [(i, 4) for i in range(1, 5)]  # sma_10 and sma_20, two neighbours each
    assert result.lookahead is not None and result.perturb is not None
    assert result.outcome is Outcome.PASS, [r.summary for r in result.results]
    assert (result.strategy, result.symbol, result.bars) == (spec.name, "SIMA", 600)


def test_a_one_bar_artefact_fails_the_whole_and_only_its_check() -> None:
    bounce = strategy(
        entry={"left": "return_1", "op": "<", "right": 0},
        exit={"left": "return_1", "op": ">", "right": 0},
    )
    result = run_checks(bounce, zigzag(400, 1), Costs(), CFG, EXECUTION)
    outcomes = {r.check: r.outcome for r in result.results}
    assert outcomes["lookahead"] is Outcome.PASS and outcomes["lag"] is Outcome.FAIL
    assert result.outcome is Outcome.FAIL


def test_a_short_strategy_is_checked_for_look_ahead_only_with_warnings() -> None:
    spec = strategy(
        entry={"left": "sma_10", "op": "<", "right": "sma_20"},
        exit={"left": "sma_10", "op": ">", "right": "sma_20"},
        direction="short",
    )
    result = run_checks(spec, walk(300, 1), Costs(), CFG, EXECUTION, CheckOptions(cuts=3))
    outcomes = [r.outcome for r in result.results]
    assert outcomes == [Outcome.PASS, Outcome.PASS, Outcome.WARN, Outcome.WARN]
    assert "long strategies" in result.results[2].summary
    assert result.lag is None and result.perturb is None


def test_too_few_bars_is_a_warning_per_check() -> None:
    result = run_checks(shipped()[0], walk(1, 0), Costs(), CFG, EXECUTION)
    assert [r.outcome for r in result.results] == [Outcome.WARN] * 4
