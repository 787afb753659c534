"""The validation gate (`models.validation.gate.validate_strategy`) on generated bar paths: each
figure measures what it says (checked against an independent computation), each threshold
refuses what it should, and what cannot be judged gets a stated verdict, never a crash."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.config.gates import ScenarioConfig, ValidationThresholds
from models.config.settings import FeaturesConfig
from models.core.messages import RiskCheck
from models.strategy.spec import StrategySpec
from models.validation.gate import pct, span_loss, strategy_warmup, validate_strategy
from models.validation.scenarios import build_scenarios, shock_starts
from models.validation.verdicts import CheckResult, Figure, Outcome, risk_checks
from models.vectorized.bars import BarArrays
from models.vectorized.evaluate import Costs, evaluate
from tests.support.builders import walk_arrays

FEATURES = FeaturesConfig()
NEVER: dict[str, Any] = {"left": "close", "op": "<", "right": 0}
ALWAYS: dict[str, Any] = {"left": "close", "op": ">", "right": 0}


def spec(entry: dict[str, Any], exit_: dict[str, Any], **fields: Any) -> StrategySpec:
    doc: dict[str, Any] = {
        "name": "t",
        "version": 1,
        "universe": ["SIMA"],
        "entry": entry,
        "exit": exit_,
        "position_fraction": 1.0,
        "stop_loss_pct": None,
        "take_profit_pct": None,
        "target_weights": [],
        "horizon_bars": 100,
        "rationale": "",
        "confidence": 0.5,
    }
    doc.update(fields)
    return StrategySpec.model_validate(doc)


FLAT = spec(NEVER, NEVER)
LONG = spec(ALWAYS, NEVER)  # buys at the second bar's open and never sells
SMA = spec(
    {"left": "sma_fast", "op": "crosses_above", "right": "sma_slow"},
    {"left": "sma_fast", "op": "crosses_below", "right": "sma_slow"},
    position_fraction=0.2,
)

paths = st.builds(
    walk_arrays,
    seed=st.integers(0, 10_000),
    n=st.integers(60, 800),
    drift=st.floats(-0.002, 0.002),
    vol=st.floats(0.0005, 0.01),
)
crashes = st.builds(
    ScenarioConfig,
    flash_crash_pct=st.floats(0.05, 0.8),
    flash_crash_bars=st.integers(1, 5),
    shocks=st.integers(1, 4),
    recovery_bars=st.integers(1, 10),
)


def judge(
    s: StrategySpec,
    bars: BarArrays,
    cfg: ScenarioConfig | None = None,
    costs: Costs | None = None,
    **limits: Any,
) -> CheckResult:
    return validate_strategy(
        s,
        bars,
        build_scenarios(bars, cfg or ScenarioConfig()),
        costs or Costs(),
        FEATURES,
        ValidationThresholds(**limits),
    )


def figure(result: CheckResult, name: str) -> Figure:
    (found,) = [f for f in result.figures if f.name == name]
    return found


def independent_drawdown(equity: np.ndarray, start: float) -> float:  # type: ignore[type-arg]
    peak, worst = start, 0.0
    for e in equity:
        peak = max(peak, float(e))
        worst = max(worst, 1 - float(e) / peak)
    return worst


@settings(deadline=None)  # the first call compiles the evaluator (numba)
@given(paths)
def test_an_always_flat_strategy_passes_the_drawdown_and_every_scenario(bars: BarArrays) -> None:
    result = judge(FLAT, bars)
    assert figure(result, "max_drawdown").value == 0 and figure(result, "max_drawdown").passed
    losses = [f for f in result.figures if f.name.endswith("_loss")]
    assert len(losses) == 5 and all(f.value == 0 and f.passed for f in losses)
    # ...but it has shown nothing: no trade on the history
    assert not figure(result, "trades").passed and result.outcome is Outcome.FAIL


@settings(deadline=None)  # the first call compiles the evaluator (numba)
@given(paths, crashes)
def test_a_strategy_long_through_a_crash_loses_at_least_the_crash(
    bars: BarArrays, cfg: ScenarioConfig
) -> None:
    crash = build_scenarios(bars, cfg)[0]
    run = evaluate(LONG, crash.bars, Costs(), FEATURES)
    qty = float(run.fill_qty[0])
    loss = figure(judge(LONG, bars, cfg), "flash_crash_loss").value
    assert isinstance(loss, float)
    n = len(bars)
    for s in shock_starts(n, cfg.shocks):
        end = min(n, s + cfg.flash_crash_bars) - 1
        if s < 2:  # not held yet: bought at bar 1's open
            continue
        exposure = qty * crash.bars.close[s - 1] / run.equity[s - 1]
        fell = 1 - crash.bars.close[end] / crash.bars.close[s - 1]
        assert loss >= exposure * fell - 1e-9
        own = bars.close[end] / bars.close[s - 1]  # the path's own move over the crash
        if end == s + cfg.flash_crash_bars - 1 and own <= 1:
            assert loss >= exposure * cfg.flash_crash_pct - 1e-9


def test_a_long_strategy_on_a_flat_market_loses_the_crash_size_and_is_sent_back_with_it() -> None:
    bars = walk_arrays(1, 400, vol=0.0)
    cfg = ScenarioConfig(flash_crash_pct=0.4, shocks=1)
    result = judge(LONG, bars, cfg, Costs(fee_bps=0, slippage_bps=0))  # type: ignore[arg-type]
    loss = figure(result, "flash_crash_loss")
    assert loss.value == pytest.approx(0.4, abs=1e-3) and not loss.passed
    assert "lost 40% in the flash_crash scenario" in loss.message and "limit 25%" in loss.message
    assert result.outcome is Outcome.FAIL and "flash_crash" in result.summary
    (check,) = [c for c in risk_checks(result) if c.name == "validation:flash_crash_loss"]
    assert check == RiskCheck(
        name="validation:flash_crash_loss",
        passed=False,
        limit=Decimal("0.25"),
        value=Decimal(f"{loss.value:.6g}"),
        message=loss.message,
    )


@settings(deadline=None)  # the first call compiles the evaluator (numba)
@given(paths)
def test_the_drawdown_figure_is_the_equity_curves_and_refused_over_its_limit(
    bars: BarArrays,
) -> None:
    run = evaluate(SMA, bars, Costs(), FEATURES)
    want = independent_drawdown(run.equity, 100_000.0)
    dd = figure(judge(SMA, bars), "max_drawdown")
    assert dd.value == pytest.approx(want, abs=1e-12)
    tight = figure(judge(SMA, bars, max_drawdown_pct=max(want / 2, 1e-6)), "max_drawdown")
    assert tight.passed is bool(want <= max(want / 2, 1e-6))


@settings(deadline=None)  # the first call compiles the evaluator (numba)
@given(paths)
def test_the_trade_count_is_the_evaluators_closed_round_trips(bars: BarArrays) -> None:
    trades = evaluate(SMA, bars, Costs(), FEATURES).trade_count
    result = judge(SMA, bars, min_trades=trades + 1)
    assert figure(result, "trades").value == trades and not figure(result, "trades").passed
    assert figure(judge(SMA, bars, min_trades=trades), "trades").passed


@settings(deadline=None)  # the first call compiles the evaluator (numba)
@given(st.integers(0, 1000), st.floats(0.0005, 0.002))
def test_sitting_out_an_uptrend_is_refused_against_holding(seed: int, drift: float) -> None:
    bars = walk_arrays(seed, 400, drift=drift, vol=0.001)
    hold = bars.close[-1] / bars.open[1] - 1
    short = figure(judge(FLAT, bars), "vs_holding")
    assert short.value == pytest.approx(hold, rel=1e-9)
    assert short.passed is bool(hold <= 0.10)


@settings(deadline=None)  # the first call compiles the evaluator (numba)
@given(paths)
def test_the_same_bars_give_the_same_verdict(bars: BarArrays) -> None:
    assert judge(SMA, bars) == judge(SMA, bars)


@pytest.mark.parametrize("n", [0, 1, 5, 29, 30])
def test_too_little_history_is_refused_with_its_numbers_not_a_crash(n: int) -> None:
    warm = strategy_warmup(SMA, FEATURES)  # sma_slow 30: its first value at bar 29
    assert warm == 29
    result = judge(SMA, walk_arrays(2, n), min_history_bars=2)
    assert result.outcome is Outcome.FAIL
    (only,) = result.figures
    assert (only.name, only.value, only.limit, only.passed) == ("history_bars", n, 31, False)
    assert f"{n} bars of history, at least 31 needed (warm-up 29 bars)" == only.message


def test_min_history_bars_raises_the_need_above_the_warm_up() -> None:
    result = judge(SMA, walk_arrays(2, 100), min_history_bars=200)
    assert figure(result, "history_bars").limit == 200 and result.outcome is Outcome.FAIL


@pytest.mark.parametrize(("policy", "outcome"), [("warn", Outcome.WARN), ("fail", Outcome.FAIL)])
def test_a_rebalance_is_stated_as_not_modelled(policy: str, outcome: Outcome) -> None:
    rebalance = spec(NEVER, NEVER, target_weights=[{"symbol": "SIMA", "weight": 0.5}])
    bars = walk_arrays(4, 300)
    result = validate_strategy(
        rebalance,
        bars,
        build_scenarios(bars, ScenarioConfig()),
        Costs(),
        FEATURES,
        ValidationThresholds(min_trades=0),
        unmodelled=policy,
    )
    fig = figure(result, "rebalance_modelled")
    assert result.outcome is outcome and fig.passed is (policy == "warn")
    assert "target_weights is not modelled" in fig.message
    assert figure(result, "flash_crash_loss").passed  # its rules were still judged


def test_a_short_strategy_is_stated_as_not_run() -> None:
    short = spec(ALWAYS, NEVER, direction="short")
    result = judge(short, walk_arrays(4, 300))
    (fig,) = result.figures
    assert fig.name == "direction_modelled" and result.outcome is Outcome.WARN


def test_a_passing_strategy_passes_with_every_figure_judged() -> None:
    bars = walk_arrays(11, 2000, drift=0.0002, vol=0.001)
    result = judge(SMA, bars)
    assert result.outcome is Outcome.PASS, result.summary
    names = [f.name for f in result.figures]
    assert names == [
        "history_bars",
        "max_drawdown",
        "trades",
        "vs_holding",
        "flash_crash_loss",
        "gap_loss",
        "regime_switch_loss",
        "volatility_burst_loss",
        "thin_liquidity_loss",
    ]
    assert all(f.limit is not None for f in result.figures)
    assert result.summary.startswith("passed: worst scenario ")


def test_span_loss_measures_from_the_equity_as_the_stress_began() -> None:
    equity = np.array([100.0, 110.0, 99.0, 88.0, 120.0])
    assert span_loss(equity, 100.0, [(2, 4)]) == pytest.approx(0.2)  # 110 -> 88
    assert span_loss(equity, 100.0, [(0, 1)]) == 0.0
    assert span_loss(equity, 100.0, [(4, 4)]) == 0.0


@pytest.mark.parametrize(
    ("x", "text"), [(0.413, "41.3%"), (0.25, "25%"), (0.0, "0%"), (1.0, "100%"), (-0.05, "-5%")]
)
def test_percentages_read_as_people_write_them(x: float, text: str) -> None:
    assert pct(x) == text
    assert math.isclose(float(text[:-1]) / 100, x, abs_tol=5e-4)
