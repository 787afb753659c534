"""The stress scenarios (`models.validation.scenarios`) on generated bar paths: each does what
it says to the bars it is given, and nothing else, and the same bars give the same scenarios."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.config.gates import ScenarioConfig
from models.config.settings import ConfigError, build_settings
from models.validation.scenarios import SCENARIO_NAMES, build_scenarios, shock_starts
from models.vectorized.bars import BarArrays
from tests.support.builders import walk_arrays

paths = st.builds(
    walk_arrays,
    seed=st.integers(0, 10_000),
    n=st.integers(2, 600),
    drift=st.floats(-0.003, 0.003),
    vol=st.floats(0.0, 0.02),
)
configs = st.builds(
    ScenarioConfig,
    flash_crash_pct=st.floats(0.01, 0.9),
    flash_crash_bars=st.integers(1, 8),
    recovery_pct=st.floats(0.0, 1.0),
    recovery_bars=st.integers(1, 30),
    shocks=st.integers(1, 6),
    gap_pct=st.floats(0.01, 0.9),
    regime_fall_pct=st.floats(0.0, 0.9),
    volatility_scale=st.floats(1.0, 6.0),
    stressed_fraction=st.floats(0.05, 1.0),
)


def by_name(bars: BarArrays, cfg: ScenarioConfig) -> dict[str, object]:
    return {s.name: s for s in build_scenarios(bars, cfg)}


def log_returns(close: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
    return np.asarray(np.log(close[1:] / close[:-1]))


@given(paths, configs)
def test_every_scenario_is_a_valid_path_of_the_same_bars_and_times(
    bars: BarArrays, cfg: ScenarioConfig
) -> None:
    scenarios = build_scenarios(bars, cfg)
    assert tuple(s.name for s in scenarios) == SCENARIO_NAMES
    for s in scenarios:
        b = s.bars
        assert len(b) == len(bars) and b.symbol == bars.symbol
        assert np.array_equal(b.start_ms, bars.start_ms) and np.array_equal(b.end_ms, bars.end_ms)
        assert np.array_equal(b.volume, bars.volume)
        assert np.all(np.isfinite(b.close)) and np.all(b.close > 0) and np.all(b.low > 0)
        assert np.all(b.low <= np.minimum(b.open, b.close))
        assert np.all(b.high >= np.maximum(b.open, b.close))
        assert np.all((b.vwap >= b.low * (1 - 1e-12)) & (b.vwap <= b.high * (1 + 1e-12)))
        assert all(0 <= lo < hi <= len(bars) for lo, hi in s.spans)


@given(paths, configs)
def test_the_same_bars_give_the_same_scenarios(bars: BarArrays, cfg: ScenarioConfig) -> None:
    columns = {f: getattr(bars, f) for f in BarArrays.__dataclass_fields__}
    copy = BarArrays(**{f: v if f == "symbol" else v.copy() for f, v in columns.items()})
    for a, b in zip(build_scenarios(bars, cfg), build_scenarios(copy, cfg), strict=True):
        assert a.spans == b.spans and a.description == b.description
        for f in ("open", "high", "low", "close", "vwap"):
            assert np.array_equal(getattr(a.bars, f), getattr(b.bars, f))


@given(paths, configs)
def test_each_flash_crash_falls_by_its_size_on_top_of_the_bars_own_moves(
    bars: BarArrays, cfg: ScenarioConfig
) -> None:
    crash = build_scenarios(bars, cfg)[0]
    n = len(bars)
    starts = shock_starts(n, cfg.shocks)
    assert [lo for lo, _ in crash.spans] == starts
    extra = np.log(crash.bars.close / bars.close)  # the level the scenario added, per bar
    reach = cfg.flash_crash_bars + cfg.recovery_bars
    for s in starts:
        end = min(n, s + cfg.flash_crash_bars) - 1
        overlapped = any(t != s and abs(s - t) < reach for t in starts)
        if end == s + cfg.flash_crash_bars - 1 and not overlapped:
            fell = extra[end] - (extra[s - 1] if s > 0 else 0.0)
            assert fell == pytest.approx(math.log1p(-cfg.flash_crash_pct), abs=1e-9)
        # opens follow the closes: no jump at a crash bar's open
        assert crash.bars.open[s] / bars.open[s] == pytest.approx(math.exp(extra[s - 1]), rel=1e-9)
    # after a full recovery the level is (1 - pct * (1 - recovery)) per crash
    last = starts[-1] + cfg.flash_crash_bars + cfg.recovery_bars
    apart = all(b - a >= reach for a, b in itertools.pairwise(starts))
    if last <= n and apart:
        kept = len(starts) * math.log1p(-cfg.flash_crash_pct * (1 - cfg.recovery_pct))
        assert extra[-1] == pytest.approx(kept, abs=1e-9)


@given(paths, configs)
def test_a_gap_opens_below_the_previous_close_by_its_size(
    bars: BarArrays, cfg: ScenarioConfig
) -> None:
    gap = build_scenarios(bars, cfg)[1]
    b = gap.bars
    for s, _ in gap.spans:
        moved = (b.open[s] / b.close[s - 1]) / (bars.open[s] / bars.close[s - 1])
        assert moved == pytest.approx(1 - cfg.gap_pct, rel=1e-9)
        assert b.close[s] / b.open[s] == pytest.approx(bars.close[s] / bars.open[s], rel=1e-9)


@given(paths, configs)
def test_the_regime_switch_turns_the_stressed_part_down(
    bars: BarArrays, cfg: ScenarioConfig
) -> None:
    regime = build_scenarios(bars, cfg)[2]
    ((s, _),) = regime.spans
    before = float(np.sum(log_returns(bars.close)[s - 1 :]))
    after = float(np.sum(log_returns(regime.bars.close)[s - 1 :]))
    assert after <= min(-abs(before), math.log1p(-cfg.regime_fall_pct)) + 1e-9
    # bars before the switch are untouched, and the noise around the drift is kept
    assert np.array_equal(regime.bars.close[:s], bars.close[:s])
    r0, r1 = log_returns(bars.close)[s - 1 :], log_returns(regime.bars.close)[s - 1 :]
    assert np.allclose(r1 - r1.mean(), r0 - r0.mean(), atol=1e-9)


@given(paths, configs)
def test_the_volatility_burst_scales_the_returns_around_their_drift(
    bars: BarArrays, cfg: ScenarioConfig
) -> None:
    burst = build_scenarios(bars, cfg)[3]
    ((s, _),) = burst.spans
    r0, r1 = log_returns(bars.close)[s - 1 :], log_returns(burst.bars.close)[s - 1 :]
    assert np.allclose(r1 - r1.mean(), cfg.volatility_scale * (r0 - r0.mean()), atol=1e-8)
    assert np.array_equal(burst.bars.close[:s], bars.close[:s])


def test_thin_liquidity_keeps_the_bars_and_scales_the_costs() -> None:
    bars = walk_arrays(3, 50)
    thin = build_scenarios(bars, ScenarioConfig(slippage_mult=7, fee_mult=3))[4]
    assert thin.bars is bars and (thin.slippage_mult, thin.fee_mult) == (7, 3)
    assert thin.spans == ((0, 50),)


@pytest.mark.parametrize("n", [0, 1])
def test_fewer_than_two_bars_give_no_scenario(n: int) -> None:
    assert build_scenarios(walk_arrays(1, n), ScenarioConfig()) == ()


@given(st.integers(2, 5000), st.integers(1, 50), st.sampled_from([0.0, 0.5]))
def test_shocks_start_in_order_inside_the_window(n: int, shocks: int, offset: float) -> None:
    starts = shock_starts(n, shocks, offset)
    assert starts == sorted(set(starts)) and all(1 <= s < n for s in starts)
    assert len(starts) == min(shocks, len(starts)) and starts


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("flash_crash_pct", 1.5, "validation.scenarios.flash_crash_pct"),
        ("shocks", 0, "validation.scenarios.shocks"),
        ("volatility_scale", 0.5, "validation.scenarios.volatility_scale"),
    ],
)
def test_a_bad_scenario_value_is_one_line_naming_it(key: str, value: float, says: str) -> None:
    env = {f"STRATFLOW__VALIDATION__SCENARIOS__{key.upper()}": str(value)}
    with pytest.raises(ConfigError) as err:
        build_settings({"symbols": {"A": {}}}, env)
    (line,) = str(err.value).splitlines()
    assert says in line
