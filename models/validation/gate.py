"""The gate a new strategy passes before it runs: its history and its stress scenarios, judged.

`validate_strategy` runs the strategy through the vectorised evaluator
(`models.vectorized.evaluate`, the desk's own trades in milliseconds) on the symbol's recent bars
and on every stress scenario built from them (`models.validation.scenarios`), and holds the
results to the configured thresholds (`ValidationThresholds`). Every number is a `Figure` with
its limit, so a refusal tells GPT (and the decision log) what broke and by how much:

- `history_bars`: bars to judge on, at least the strategy's warm-up plus two (a bar to decide on
  and one to fill at) and `min_history_bars`. Fewer: refused at once, nothing else is run;
- `max_drawdown`: the largest peak-to-trough fall of equity on the history;
- `trades`: closed round trips on the history (`min_trades`): a strategy that never traded there
  has shown nothing;
- `vs_holding`: how far its return falls short of holding the symbol at the strategy's own
  position fraction from the first bar it could trade (the fair benchmark: it never holds more);
- `<scenario>_loss`: the largest fall of equity within a scenario's stressed bars, measured from
  the equity as the stress began (`max_scenario_loss_pct`); the worst scenario decides.

What the evaluator does not run gets a stated outcome, `unmodelled` (warn or fail):
- `target_weights` (a rebalance): the one-off move to the weights is not modelled, the rules that
  run after it are (from flat); figure `rebalance_modelled`;
- a short or both-ways strategy (strategy files only; GPT's are long): nothing is run; figure
  `direction_modelled`.

Losses and drawdowns are fractions of equity (0.25 = 25 %), computed in float64 from the
evaluator's equity curve: a gate, not an accounting (the desk books in Decimal). Pure and
deterministic: the same bars, strategy and configuration give the same verdict.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Final

import numpy as np

from models.config.gates import ValidationThresholds
from models.config.settings import FeaturesConfig
from models.signals.indicators import warmup_bars
from models.strategy.spec import StrategySpec
from models.validation.scenarios import StressScenario
from models.validation.verdicts import CheckResult, Figure, Outcome
from models.vectorized.bars import BarArrays, FloatArray
from models.vectorized.evaluate import Costs, evaluate
from models.vectorized.features import resolve

__all__ = ["CHECK", "pct", "span_loss", "strategy_warmup", "validate_strategy"]

CHECK: Final = "validation"


def pct(x: float) -> str:
    """0.413 -> "41.3%", 0.25 -> "25%": one decimal, no trailing zero."""
    text = f"{x * 100:.1f}".rstrip("0").rstrip(".")
    return f"{'0' if text in ('', '-0') else text}%"


def strategy_warmup(spec: StrategySpec, features: FeaturesConfig) -> int:
    """Bars before every feature the strategy reads has a value (0: it reads only `close`)."""
    need = 0
    for name in spec.operand_names() - {"close"}:
        need = max(need, warmup_bars(resolve(name, features)))
    return need


def max_drawdown(equity: FloatArray, start: float) -> float:
    """Largest fall from a running peak, as a fraction of the peak (`start`: the first peak)."""
    if len(equity) == 0:
        return 0.0
    curve = np.concatenate(([start], equity))
    peaks = np.maximum.accumulate(curve)
    return float(np.max(1.0 - curve / peaks))


def span_loss(equity: FloatArray, start: float, spans: Sequence[tuple[int, int]]) -> float:
    """The largest fall of equity within any span `[lo, hi)`, from the equity as the span
    began (the close before it; `start` before the first bar)."""
    worst = 0.0
    for lo, hi in spans:
        if hi <= lo:
            continue
        base = float(equity[lo - 1]) if lo > 0 else start
        worst = max(worst, max_drawdown(equity[lo:hi], base))
    return worst


def _scaled(costs: Costs, scenario: StressScenario) -> Costs:
    if scenario.slippage_mult == 1.0 and scenario.fee_mult == 1.0:
        return costs
    return dataclasses.replace(
        costs,
        fee_bps=costs.fee_bps * Decimal(repr(scenario.fee_mult)),
        slippage_bps=costs.slippage_bps * Decimal(repr(scenario.slippage_mult)),
    )


def _result(figures: list[Figure], warned: set[str], lead: str = "") -> CheckResult:
    failed = [f for f in figures if not f.passed]
    if failed:
        outcome = Outcome.FAIL
        summary = "refused: " + "; ".join(f.message for f in failed)
    elif warned:
        outcome = Outcome.WARN
        summary = "passed with warnings: " + "; ".join(
            f.message for f in figures if f.name in warned
        )
    else:
        outcome = Outcome.PASS
        summary = "passed" + (f": {lead}" if lead else "")
    return CheckResult(CHECK, outcome, tuple(figures), summary)


def _unmodelled(name: str, policy: str, message: str) -> Figure:
    """A part the evaluator does not run: passed (a warning) or failed, per `policy`."""
    ok = policy == "warn"
    return Figure(name, 0, 1, ok, ("warn: " if ok else "") + message)


def validate_strategy(
    spec: StrategySpec,
    history: BarArrays,
    scenarios: Sequence[StressScenario],
    costs: Costs,
    features_cfg: FeaturesConfig,
    thresholds: ValidationThresholds,
    *,
    unmodelled: str = "warn",
) -> CheckResult:
    """The gate's verdict on `spec` over one symbol's `history` and its `scenarios`
    (`models.validation.scenarios.build_scenarios` of that history); see the module docstring
    for every figure."""
    figures: list[Figure] = []
    warned: set[str] = set()
    if spec.direction != "long":
        fig = _unmodelled(
            "direction_modelled",
            unmodelled,
            f"a {spec.direction} strategy is not run by the vectorised evaluator (long only): "
            "not validated",
        )
        warned.update({fig.name} if fig.passed else set())
        return _result([fig], warned)
    n = len(history)
    warm = strategy_warmup(spec, features_cfg)
    need = max(warm + 2, thresholds.min_history_bars)
    enough = n >= need
    figures.append(
        Figure(
            "history_bars",
            n,
            need,
            enough,
            f"{n} bars of history, at least {need} needed (warm-up {warm} bars)",
        )
    )
    if not enough:
        return _result(figures, warned)
    if spec.target_weights:
        fig = _unmodelled(
            "rebalance_modelled",
            unmodelled,
            "the rebalance to target_weights is not modelled by the evaluator; "
            "its entry and exit rules were judged from flat",
        )
        figures.append(fig)
        if fig.passed:
            warned.add(fig.name)
    cash = float(costs.initial_cash)
    cache: dict[Any, FloatArray] = {}
    try:
        run = evaluate(spec, history, costs, features_cfg, cache)
    except ValueError as err:
        figures.append(Figure("evaluable", 0, 1, False, f"cannot be evaluated: {err}"[:300]))
        return _result(figures, warned)
    equity = run.equity
    dd = max_drawdown(equity, cash)
    limit = thresholds.max_drawdown_pct
    figures.append(
        Figure(
            "max_drawdown",
            dd,
            limit,
            dd <= limit,
            f"fell {pct(dd)} from a peak on the history, limit {pct(limit)}",
        )
    )
    trades = run.trade_count
    figures.append(
        Figure(
            "trades",
            trades,
            thresholds.min_trades,
            trades >= thresholds.min_trades,
            f"{trades} closed trade(s) on {n} bars of history, at least "
            f"{thresholds.min_trades} needed",
        )
    )
    ret = float(equity[-1]) / cash - 1.0
    first = min(warm + 1, n - 1)
    hold = float(history.close[-1]) / float(history.open[first]) - 1.0
    fraction = min(spec.position_fraction, 1.0)
    bench = fraction * hold
    short = bench - ret
    limit = thresholds.max_underperformance_pct
    figures.append(
        Figure(
            "vs_holding",
            short,
            limit,
            short <= limit,
            f"returned {pct(ret)} against {pct(bench)} holding at its fraction "
            f"{pct(fraction)}: {pct(max(short, 0.0))} short, limit {pct(limit)}",
        )
    )
    limit = thresholds.max_scenario_loss_pct
    worst = ("", 0.0)
    for scenario in scenarios:
        shared = cache if scenario.bars is history else None
        stressed = evaluate(spec, scenario.bars, _scaled(costs, scenario), features_cfg, shared)
        loss = span_loss(stressed.equity, cash, scenario.spans)
        worst = max(worst, (scenario.name, loss), key=lambda w: w[1])
        figures.append(
            Figure(
                f"{scenario.name}_loss",
                loss,
                limit,
                loss <= limit,
                f"lost {pct(loss)} in the {scenario.name} scenario ({scenario.description}), "
                f"limit {pct(limit)}",
            )
        )
    lead = f"worst scenario {worst[0]} {pct(worst[1])}" if worst[0] else ""
    return _result(figures, warned, lead)
