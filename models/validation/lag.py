"""One-bar lag: does the edge survive execution one bar later?

The desk decides at a bar's close and fills at the next open. A strategy whose profit lives in
that one bar (it buys the bar after a drop that always rebounds at once, say) is fitting the
data's microstructure, or a look-ahead, and will not survive a slower fill, a queue or a
missed bar live. So the strategy is run twice with the vectorised evaluator on the same bars:
as it is, and with its entry and exit signals shifted `delay` bars later (stops and
take-profits still act at each close, as they would).

Stated rule (`LagLimits`): when the normal run makes money, the lag test fails if the lagged
run's return changes sign (or is zero), or falls by more than `max_return_drop` (default 50 %)
of the normal return's magnitude, or its Sharpe ratio falls by more than `max_sharpe_drop` of
the normal Sharpe's (when the normal Sharpe is positive). A normal run that does not make money
has no edge to lose: the figures are shown and the test passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from models.config.settings import FeaturesConfig
from models.strategy.spec import StrategySpec
from models.validation.verdicts import CheckResult, Figure, Outcome
from models.vectorized.bars import BarArrays, FloatArray
from models.vectorized.evaluate import Costs, VectorResult, evaluate

__all__ = ["CHECK", "LagLimits", "LagReport", "Run", "lag_check", "run_shifted"]

CHECK: Final = "lag"


@dataclass(frozen=True, slots=True)
class LagLimits:
    delay: int = 1
    max_return_drop: float = 0.5
    max_sharpe_drop: float = 0.5


@dataclass(frozen=True, slots=True)
class Run:
    """What the lag test reads of one evaluation."""

    total_return: float  # final equity / initial cash - 1
    sharpe: float | None
    trades: int
    equity: FloatArray

    @classmethod
    def of(cls, result: VectorResult) -> Run:
        initial = float(result.costs.initial_cash)
        final = float(result.equity[-1]) if len(result.equity) else initial
        value = result.statistics().get("sharpe_ratio")
        sharpe = None if value is None or isinstance(value, str) else float(value)
        if sharpe is not None and not np.isfinite(sharpe):
            sharpe = None
        return cls(final / initial - 1.0, sharpe, result.trade_count, result.equity)


@dataclass(frozen=True, slots=True)
class LagReport:
    result: CheckResult
    normal: Run
    lagged: Run
    delay: int


def run_shifted(
    spec: StrategySpec,
    bars: BarArrays,
    costs: Costs,
    cfg: FeaturesConfig,
    delay: int,
    cache: dict[Any, FloatArray] | None = None,
) -> VectorResult:
    """`models.vectorized.evaluate.evaluate` (its float path) with the entry and exit signals
    acted on `delay` bars later (0: the same run)."""
    if spec.direction != "long":
        raise ValueError(f"the vectorised evaluator runs long strategies, not {spec.direction}")
    return evaluate(spec, bars, costs, cfg, cache, delay=delay)


def _drop(normal: float, lagged: float) -> float:
    """How much of the normal value's magnitude the lagged run lost (1.0: all of it)."""
    return (normal - lagged) / abs(normal) if normal != 0 else 0.0


def lag_check(
    spec: StrategySpec,
    bars: BarArrays,
    costs: Costs,
    cfg: FeaturesConfig,
    limits: LagLimits = LagLimits(),
    cache: dict[Any, FloatArray] | None = None,
) -> LagReport:
    """The normal run against the run with signals `limits.delay` bars later."""
    memo: dict[Any, FloatArray] = {} if cache is None else cache
    normal = Run.of(run_shifted(spec, bars, costs, cfg, 0, memo))
    lagged = Run.of(run_shifted(spec, bars, costs, cfg, limits.delay, memo))
    edge = normal.total_return > 0
    return_drop = _drop(normal.total_return, lagged.total_return)
    sign_flip = edge and lagged.total_return <= 0
    return_ok = not edge or (not sign_flip and return_drop <= limits.max_return_drop)
    sharpe_judged = edge and normal.sharpe is not None and normal.sharpe > 0
    sharpe_drop = (
        _drop(normal.sharpe, lagged.sharpe if lagged.sharpe is not None else 0.0)
        if sharpe_judged and normal.sharpe is not None
        else None
    )
    sharpe_ok = sharpe_drop is None or sharpe_drop <= limits.max_sharpe_drop
    delay = f"{limits.delay} bar{'s' if limits.delay != 1 else ''} later"
    figures = (
        Figure("return", normal.total_return),
        Figure("return_lagged", lagged.total_return),
        Figure(
            "return_drop",
            return_drop if edge else None,
            limits.max_return_drop if edge else None,
            return_ok,
            (
                f"return {normal.total_return:+.2%} -> {lagged.total_return:+.2%} with signals"
                f" {delay}" + (" (sign change)" if sign_flip else "")
            ),
        ),
        Figure("sharpe", normal.sharpe),
        Figure("sharpe_lagged", lagged.sharpe),
        Figure(
            "sharpe_drop",
            sharpe_drop,
            limits.max_sharpe_drop if sharpe_drop is not None else None,
            sharpe_ok,
            "" if sharpe_drop is None else f"Sharpe fell by {sharpe_drop:.0%} of its value",
        ),
        Figure("trades", normal.trades),
        Figure("trades_lagged", lagged.trades),
    )
    if not edge:
        outcome = Outcome.PASS
        summary = (
            f"no edge to lose: return {normal.total_return:+.2%}"
            f" ({lagged.total_return:+.2%} with signals {delay})"
        )
    elif return_ok and sharpe_ok:
        outcome = Outcome.PASS
        summary = (
            f"edge survives signals {delay}: return {normal.total_return:+.2%} ->"
            f" {lagged.total_return:+.2%}"
        )
    else:
        outcome = Outcome.FAIL
        why = "changes sign" if sign_flip else f"falls by {return_drop:.0%}"
        if return_ok:
            why = f"Sharpe falls by {sharpe_drop:.0%}"
        summary = (
            f"edge collapses with signals {delay}: return {normal.total_return:+.2%} ->"
            f" {lagged.total_return:+.2%} ({why})"
        )
    return LagReport(CheckResult(CHECK, outcome, figures, summary), normal, lagged, limits.delay)
