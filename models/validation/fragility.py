"""Every look-ahead and fragility check for one strategy on one symbol's bars, in one call.

A pure orchestrator: `run_checks` runs the look-ahead check, the recursive (warm-up) check, the
one-bar lag test and the parameter perturbation in that order and hands back each check's
report (its `CheckResult` with the numbers, and what a report draws: the lag's two equity
curves, the neighbours' returns). `stratflow validate` runs it per strategy and symbol; the
desk's gate can run any part of it. `on_step(name)` is called before each check (a progress
bar), `on_neighbour(done, total)` as the perturbation goes (the longest part).

The lag and perturbation evaluate the strategy with the vectorised evaluator, which runs long
strategies only: for a short or both-ways strategy they are a warning saying so (the look-ahead
and recursive checks, which read features and signals only, still run).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from models.config.settings import ExecutionConfig, FeaturesConfig
from models.strategy.spec import StrategySpec
from models.validation import lag, lookahead, perturb, recursive
from models.validation.lag import LagLimits, LagReport, lag_check
from models.validation.lookahead import DEFAULT_CUTS, LookaheadReport, lookahead_check
from models.validation.perturb import PerturbLimits, PerturbReport, perturb_check
from models.validation.recursive import DEFAULT_TOLERANCE, RecursiveReport, recursive_check
from models.validation.verdicts import CheckResult, Outcome, worst
from models.vectorized.bars import BarArrays, FloatArray
from models.vectorized.evaluate import Costs

__all__ = ["STEPS", "CheckOptions", "Fragility", "run_checks"]

STEPS: Final = (lookahead.CHECK, recursive.CHECK, lag.CHECK, perturb.CHECK)
MIN_BARS: Final = 2


@dataclass(frozen=True, slots=True)
class CheckOptions:
    """The checks' settings (each module states its rule; these are its limits)."""

    cuts: int = DEFAULT_CUTS
    warmup: int | None = None  # None: the strategy's own (`recursive.strategy_warmup`)
    tolerance: float = DEFAULT_TOLERANCE
    lag: LagLimits = field(default_factory=LagLimits)
    perturb: PerturbLimits = field(default_factory=PerturbLimits)


@dataclass(frozen=True, slots=True)
class Fragility:
    """One strategy on one symbol: each check's report (None where it did not run) and every
    check's result in `STEPS` order (a warning in place of one that did not run)."""

    strategy: str
    symbol: str
    bars: int
    results: tuple[CheckResult, ...]
    lookahead: LookaheadReport | None = None
    recursive: RecursiveReport | None = None
    lag: LagReport | None = None
    perturb: PerturbReport | None = None

    @property
    def outcome(self) -> Outcome:
        return worst(r.outcome for r in self.results)


def _not_run(check: str, why: str) -> CheckResult:
    return CheckResult(check, Outcome.WARN, (), f"not run: {why}")


def run_checks(
    spec: StrategySpec,
    bars: BarArrays,
    costs: Costs,
    features: FeaturesConfig,
    execution: ExecutionConfig,
    options: CheckOptions = CheckOptions(),
    *,
    on_step: Callable[[str], None] | None = None,
    on_neighbour: Callable[[int, int], None] | None = None,
) -> Fragility:
    """Run every check of `STEPS` on `spec` over `bars` (one symbol of its universe)."""
    if len(bars) < MIN_BARS:
        why = f"{len(bars)} bar(s); at least {MIN_BARS} are needed"
        results = tuple(_not_run(step, why) for step in STEPS)
        return Fragility(spec.name, bars.symbol, len(bars), results)

    def step(name: str) -> None:
        if on_step is not None:
            on_step(name)

    cache: dict[Any, FloatArray] = {}
    step(lookahead.CHECK)
    look = lookahead_check(spec, bars, features, cuts=options.cuts)
    step(recursive.CHECK)
    rec = recursive_check(spec, bars, features, warmup=options.warmup, tolerance=options.tolerance)
    lagged: LagReport | None = None
    perturbed: PerturbReport | None = None
    if spec.direction == "long":
        step(lag.CHECK)
        lagged = lag_check(spec, bars, costs, features, options.lag, cache)
        step(perturb.CHECK)
        perturbed = perturb_check(
            spec, bars, costs, features, execution, options.perturb, cache, on_neighbour
        )
        tail = (lagged.result, perturbed.result)
    else:
        why = f"the vectorised evaluator runs long strategies, not {spec.direction}"
        tail = (_not_run(lag.CHECK, why), _not_run(perturb.CHECK, why))
    return Fragility(
        spec.name,
        bars.symbol,
        len(bars),
        (look.result, rec.result, *tail),
        look,
        rec,
        lagged,
        perturbed,
    )
