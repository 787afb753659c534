"""Parameter perturbation: is the strategy a plateau or a peak?

A strategy whose numbers were tuned until the backtest shone sits on a sharp peak: move a
period or a threshold a little and the profit is gone. A robust one sits on a plateau where the
neighbours do about as well. So every numeric parameter of the strategy is moved, one at a
time, to its neighbours, and each neighbour is evaluated with the vectorised evaluator on the
same bars:
- a feature period (`sma_10`, or a configured default such as `sma_fast`, written out as
  `sma_<period>`): `round(period * (1 -+ step))`, at least one bar away, not below the kind's
  minimum period;
- a number a condition compares with (`rsi_14 < 30`): `value * (1 -+ step)` (zero is left
  alone: it has no scale to move by);
- `stop_loss_pct`, `take_profit_pct`: `value * (1 -+ step)`.
Each neighbour is rebuilt through the same schema and compiler as a strategy file
(`models.strategy.user_file.parse_specs`, `compile_standing`); one they refuse (a feature
compared with itself, a stop beyond its bound) is skipped and counted.

Stated rule (`PerturbLimits`): when the original makes money, it fails as a sharp peak if fewer
than `min_share_profitable` (default half) of the neighbours make money, or if the neighbours'
median return is below `min_median_ratio` (default half) of the original's. An original that
does not make money has no peak to fall from: the figures are shown and it passes. A strategy
without a numeric parameter is a warning (nothing to perturb).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from models.config.settings import ExecutionConfig, FeaturesConfig
from models.signals.registry import REGISTRY
from models.strategy.compiler import Rejection
from models.strategy.spec import StrategySpec
from models.strategy.user_file import StrategyFileError, compile_standing, parse_specs
from models.validation.lag import Run
from models.validation.lookahead import feature_names
from models.validation.verdicts import CheckResult, Figure, Outcome
from models.vectorized.bars import BarArrays, FloatArray
from models.vectorized.evaluate import Costs, evaluate
from models.vectorized.features import resolve

__all__ = ["CHECK", "Neighbour", "PerturbLimits", "PerturbReport", "neighbours", "perturb_check"]

CHECK: Final = "perturb"


@dataclass(frozen=True, slots=True)
class PerturbLimits:
    step: float = 0.1
    min_share_profitable: float = 0.5
    min_median_ratio: float = 0.5


@dataclass(frozen=True, slots=True)
class Neighbour:
    """One parameter moved: what moved, from and to what, and the neighbour's strategy."""

    parameter: str
    before: float
    after: float
    spec: StrategySpec

    @property
    def label(self) -> str:
        return f"{self.parameter} {self.before:g} -> {self.after:g}"


@dataclass(frozen=True, slots=True)
class Evaluated:
    neighbour: Neighbour
    run: Run


@dataclass(frozen=True, slots=True)
class PerturbReport:
    result: CheckResult
    original: Run | None
    evaluated: tuple[Evaluated, ...]
    skipped: tuple[str, ...]  # labels of neighbours the schema or the compiler refused


Doc = dict[str, Any]
Edit = Callable[[Doc], None]


def _comparisons(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if "conditions" in node:
            for i, child in enumerate(node["conditions"]):
                yield from _comparisons(child, f"{path}.conditions[{i}]")
        else:
            yield path, node


def _scaled(value: float, step: float) -> tuple[float, float]:
    return (round(value * (1 - step), 12), round(value * (1 + step), 12))


def _periods(period: int, step: float, min_period: int) -> list[int]:
    lo, hi = round(period * (1 - step)), round(period * (1 + step))
    lo, hi = min(lo, period - 1), max(hi, period + 1)
    return [p for p in (lo, hi) if p >= min_period]


def _rename(doc: Doc, old: str, new: str) -> None:
    for side in ("entry", "exit"):
        for _, comparison in _comparisons(doc[side], side):
            for key in ("left", "right"):
                if comparison[key] == old:
                    comparison[key] = new


def _edits(
    spec: StrategySpec, cfg: FeaturesConfig, step: float
) -> Iterator[tuple[str, float, float, Edit]]:
    """(parameter, before, after, how to apply it to the strategy's document) per neighbour."""
    for name in feature_names(spec):
        key = resolve(name, cfg)
        kind = REGISTRY.get(key.kind)
        if key.period <= 0 or kind is None or kind.min_period is None:
            continue
        for p in _periods(key.period, step, kind.min_period):
            new = f"{key.kind}_{p}"

            def rename(doc: Doc, old: str = name, to: str = new) -> None:
                _rename(doc, old, to)

            yield name, float(key.period), float(p), rename
    doc = spec.model_dump(mode="json")
    for side in ("entry", "exit"):
        for path, comparison in _comparisons(doc[side], side):
            for operand in ("left", "right"):
                value = comparison[operand]
                if isinstance(value, str) or value == 0:
                    continue
                for moved in _scaled(float(value), step):

                    def set_number(
                        d: Doc, where: str = path, op: str = operand, to: float = moved
                    ) -> None:
                        target = dict(_comparisons(d[where.split(".")[0]], where.split(".")[0]))
                        target[where][op] = to

                    yield f"{path}.{operand}", float(value), moved, set_number
    for field in ("stop_loss_pct", "take_profit_pct"):
        value = getattr(spec, field)
        if value is None:
            continue
        for moved in _scaled(value, step):

            def set_field(d: Doc, f: str = field, to: float = moved) -> None:
                d[f] = to

            yield field, value, moved, set_field


def neighbours(
    spec: StrategySpec, cfg: FeaturesConfig, execution: ExecutionConfig, step: float = 0.1
) -> tuple[list[Neighbour], list[str]]:
    """The strategy's neighbours (one parameter moved each) that the schema and the compiler
    accept, and the labels of those they refuse."""
    out: list[Neighbour] = []
    refused: list[str] = []
    for parameter, before, after, edit in _edits(spec, cfg, step):
        doc = spec.model_dump(mode="json")
        edit(doc)
        label = f"{parameter} {before:g} -> {after:g}"
        try:
            (moved,) = parse_specs(doc)
        except (StrategyFileError, ValueError):
            refused.append(label)
            continue
        if isinstance(compile_standing([moved], moved.universe, execution), Rejection):
            refused.append(label)
            continue
        out.append(Neighbour(parameter, before, after, moved))
    return out, refused


def perturb_check(
    spec: StrategySpec,
    bars: BarArrays,
    costs: Costs,
    cfg: FeaturesConfig,
    execution: ExecutionConfig,
    limits: PerturbLimits = PerturbLimits(),
    cache: dict[Any, FloatArray] | None = None,
    on_neighbour: Callable[[int, int], None] | None = None,
) -> PerturbReport:
    """The original against its neighbourhood (`on_neighbour(done, total)` after each)."""
    memo: dict[Any, FloatArray] = {} if cache is None else cache
    near, refused = neighbours(spec, cfg, execution, limits.step)
    original = Run.of(evaluate(spec, bars, costs, cfg, memo))
    done: list[Evaluated] = []
    for i, neighbour in enumerate(near):
        done.append(Evaluated(neighbour, Run.of(evaluate(neighbour.spec, bars, costs, cfg, memo))))
        if on_neighbour is not None:
            on_neighbour(i + 1, len(near))
    return PerturbReport(
        _verdict(original, done, refused, limits), original, tuple(done), tuple(refused)
    )


def _verdict(
    original: Run, done: list[Evaluated], refused: list[str], limits: PerturbLimits
) -> CheckResult:
    base = original.total_return
    figures = [
        Figure("return", base),
        Figure("neighbours", len(done)),
        Figure("refused", len(refused)),
    ]
    if not done:
        return CheckResult(
            CHECK,
            Outcome.WARN,
            tuple(figures),
            "no numeric parameter to perturb" + (f" ({len(refused)} refused)" if refused else ""),
        )
    returns = np.array([e.run.total_return for e in done], dtype=np.float64)
    median, worst = float(np.median(returns)), float(returns.min())
    share = float(np.mean(returns > 0))
    worst_at = done[int(np.argmin(returns))].neighbour.label
    edge = base > 0
    ratio = median / base if edge else None
    share_ok = not edge or share >= limits.min_share_profitable
    ratio_ok = ratio is None or ratio >= limits.min_median_ratio
    figures += [
        Figure("median_return", median),
        Figure("worst_return", worst, None, True, f"worst: {worst_at}"),
        Figure("best_return", float(returns.max())),
        Figure(
            "share_profitable",
            share,
            limits.min_share_profitable if edge else None,
            share_ok,
            f"{int(np.sum(returns > 0))} of {len(done)} neighbours make money",
        ),
        Figure(
            "median_ratio",
            ratio,
            limits.min_median_ratio if edge else None,
            ratio_ok,
            ""
            if ratio is None
            else f"the neighbours' median return is {ratio:.0%} of the original's",
        ),
    ]
    spread = (
        f"{len(done)} neighbours: median {median:+.2%}, worst {worst:+.2%} ({worst_at}),"
        f" {share:.0%} profitable"
    )
    if not edge:
        return CheckResult(
            CHECK, Outcome.PASS, tuple(figures), f"no edge to lose: return {base:+.2%}; {spread}"
        )
    if share_ok and ratio_ok:
        return CheckResult(
            CHECK, Outcome.PASS, tuple(figures), f"plateau: return {base:+.2%}; {spread}"
        )
    return CheckResult(
        CHECK, Outcome.FAIL, tuple(figures), f"sharp peak: return {base:+.2%}; {spread}"
    )
