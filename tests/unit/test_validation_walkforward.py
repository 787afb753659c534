"""Walk-forward optimisation (`models.validation.walkforward`): the window arithmetic, a
regime change the choice follows, no look-ahead, the stitched out-of-sample run, and the one-line
errors."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.config.settings import ExecutionConfig, FeaturesConfig
from models.validation.walkforward import (
    WalkForwardError,
    default_warmup,
    plan_windows,
    walk_forward,
)
from models.vectorized.bars import BarArrays
from models.vectorized.evaluate import Costs
from models.vectorized.sweep import GridPoint, expand, parse_grid

DAY = 86_400_000
FEATURES = FeaturesConfig()
COSTS = Costs(fee_bps=Decimal(0), slippage_bps=Decimal(0))


def daily_bars(closes: np.ndarray, symbol: str = "AAA") -> BarArrays:
    """Daily bars opening at the previous close (a decision at a close fills at that price)."""
    opens = np.concatenate([[closes[0]], closes[:-1]])
    return BarArrays.from_columns(
        symbol,
        np.arange(len(closes), dtype=np.int64) * DAY,
        DAY,
        opens,
        np.maximum(opens, closes),
        np.minimum(opens, closes),
        closes,
        np.ones(len(closes)),
    )


def points(doc: dict[str, Any]) -> tuple[GridPoint, ...]:
    return expand(parse_grid(doc), ExecutionConfig()).points


# ------------------------------------------------------------------------------- windows


@given(
    st.integers(3, 400),
    st.integers(2, 60),
    st.integers(1, 40),
    st.integers(0, 20),
    st.sampled_from(["rolling", "anchored"]),
)
def test_windows_tile_the_range_out_of_sample_without_overlap(
    n: int, is_bars: int, oos_bars: int, extra_step: int, mode: Any
) -> None:
    if is_bars >= n:
        with pytest.raises(WalkForwardError, match="no out-of-sample bar"):
            plan_windows(n, is_bars=is_bars, oos_bars=oos_bars, mode=mode)
        return
    step = oos_bars + extra_step
    windows = plan_windows(n, is_bars=is_bars, oos_bars=oos_bars, step=step, mode=mode)
    assert windows and [w.index for w in windows] == list(range(len(windows)))
    for w in windows:
        assert 0 <= w.is_start < w.is_end == w.oos_start < w.oos_end <= n
        assert w.oos_end - w.oos_start <= oos_bars
        if mode == "anchored":
            assert w.is_start == 0
        else:
            assert w.is_end - w.is_start == is_bars
    for a, b in itertools.pairwise(windows):
        assert a.oos_end <= b.oos_start  # out-of-sample parts never overlap
        assert b.is_end - a.is_end == step
        assert a.oos_end - a.oos_start == oos_bars  # only the last part may be shorter
    if extra_step == 0:
        covered = [i for w in windows for i in range(w.oos_start, w.oos_end)]
        assert covered == list(range(is_bars, n))  # every bar after the first in-sample part


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"is_bars": 1, "oos_bars": 5}, "in-sample bars 1"),
        ({"is_bars": 10, "oos_bars": 0}, "out-of-sample bars 0"),
        ({"is_bars": 10, "oos_bars": 5, "step": 4}, "would trade bars twice"),
        ({"is_bars": 100, "oos_bars": 5}, "no out-of-sample bar"),
        ({"is_bars": 10, "oos_bars": 5, "mode": "sideways"}, "one of rolling, anchored"),
    ],
)
def test_bad_windows_are_one_line(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(WalkForwardError, match=message) as err:
        plan_windows(50, **kwargs)
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------------------- choices

REGIME_GRID: dict[str, Any] = {
    "strategy": {
        "name": "turn",
        "universe": ["AAA"],
        "entry": {"left": "return_1", "op": "{up}", "right": 0},
        "exit": {"left": "return_1", "op": "{down}", "right": 0},
        "position_fraction": 1.0,
    },
    "params": {"up": [">", "<"], "down": [">", "<"]},
    "require": ["up != down"],
}
MOMENTUM = {"up": ">", "down": "<"}
REVERSION = {"up": "<", "down": ">"}


def regime_closes(zigzag: int, runs: int, rng: np.random.Generator) -> np.ndarray:
    """`zigzag` bars alternating +2 % / -1 % (buying the dip wins), then `runs` bars in runs of
    six +1 % and six -1 % (following the move wins); a little noise on top."""
    steps = [0.02 if i % 2 else -0.01 for i in range(zigzag)]
    steps += [0.01 if (i // 6) % 2 == 0 else -0.01 for i in range(runs)]
    noise = rng.normal(0.0, 0.0005, size=len(steps))
    return 100.0 * np.cumprod(1.0 + np.array(steps) + noise)


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_the_choice_follows_a_regime_change(seed: int) -> None:
    """Rolling windows: the first in-sample parts see only the zig-zag and buy the dip; the
    last see only the runs and follow the move."""
    bars = daily_bars(regime_closes(150, 150, np.random.default_rng(seed)))
    grid = points(REGIME_GRID)
    assert [dict(p.params) for p in grid] == [MOMENTUM, REVERSION]
    result = walk_forward(grid, bars, COSTS, FEATURES, is_bars=48, oos_bars=24, rank_by="return")
    chosen = [dict(w.choice.params) for w in result.windows]
    assert chosen[0] == REVERSION
    assert chosen[-1] == MOMENTUM
    assert "choice changed" in result.summary()


def random_closes(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100.0 * np.cumprod(1.0 + rng.normal(0.0005, 0.02, size=n))


SMA_GRID: dict[str, Any] = {
    "strategy": {
        "name": "cross",
        "universe": ["AAA"],
        "entry": {"left": "sma_{fast}", "op": "crosses_above", "right": "sma_{slow}"},
        "exit": {"left": "sma_{fast}", "op": "crosses_below", "right": "sma_{slow}"},
        "position_fraction": 1.0,
    },
    "params": {"fast": [2, 4, 6], "slow": [8, 12]},
}


@pytest.mark.slow  # ~1.7 s on 8 examples: the full suite runs it
@settings(max_examples=15, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(0, 5),
    st.sampled_from(["rolling", "anchored"]),
    st.floats(0.5, 2.0),
)
def test_no_look_ahead_later_bars_never_change_a_window(
    seed: int, k: int, mode: Any, factor: float
) -> None:
    """Changing every bar after window k's in-sample end never changes the choices of windows
    0..k; changing those after its out-of-sample end never changes its out-of-sample returns."""
    closes = random_closes(seed, 300)
    grid = points(SMA_GRID)
    kwargs: dict[str, Any] = {"is_bars": 60, "oos_bars": 30, "mode": mode, "rank_by": "return"}
    base = walk_forward(grid, daily_bars(closes), COSTS, FEATURES, **kwargs)
    window = base.windows[k].window
    for cut, check_oos in ((window.is_end, False), (window.oos_end, True)):
        changed = closes.copy()
        changed[cut:] = changed[cut:] * factor + np.sin(np.arange(len(changed) - cut))
        other = walk_forward(grid, daily_bars(changed), COSTS, FEATURES, **kwargs)
        for a, b in zip(base.windows[: k + 1], other.windows[: k + 1], strict=True):
            assert a.choice.index == b.choice.index and a.score == b.score
        if check_oos:
            np.testing.assert_array_equal(base.windows[k].oos_returns, other.windows[k].oos_returns)


def test_the_stitched_run_compounds_the_out_of_sample_parts() -> None:
    closes = random_closes(42, 250)
    result = walk_forward(
        points(SMA_GRID), daily_bars(closes), COSTS, FEATURES, is_bars=50, oos_bars=40
    )
    parts = [w.oos_return for w in result.windows]
    total = float(np.prod([1.0 + p for p in parts]) - 1.0)
    assert float(result.statistics()["return"]) == pytest.approx(total, rel=1e-9)  # type: ignore[arg-type]
    assert len(result.returns) == 250 - 50
    assert [t for t, _ in result.equity] == [int(t) for t in np.arange(50, 250) * DAY]
    assert sum(w.oos_trades for w in result.windows) == result.statistics()["trades"]
    for w in result.windows:
        if w.efficiency is not None:
            assert w.is_sharpe is not None and w.oos_sharpe is not None
            assert w.efficiency == pytest.approx(w.oos_sharpe / w.is_sharpe)


def test_warm_up_defaults_to_three_periods_of_the_longest_feature() -> None:
    assert default_warmup(points(SMA_GRID), FEATURES) == 36
    assert default_warmup(points(REGIME_GRID), FEATURES) == 3


def test_out_of_sample_trades_start_after_the_warm_up() -> None:
    """The first out-of-sample entry is decided at the part's first close at the earliest:
    nothing is bought on a warm-up bar."""
    closes = random_closes(7, 200)
    result = walk_forward(
        points(SMA_GRID), daily_bars(closes), COSTS, FEATURES, is_bars=50, oos_bars=50
    )
    first = result.windows[0]
    assert first.oos_returns[0] == 0.0  # flat through the first out-of-sample close


def test_no_point_is_one_line() -> None:
    with pytest.raises(WalkForwardError, match="no grid point"):
        walk_forward((), daily_bars(random_closes(1, 50)), COSTS, FEATURES, is_bars=10, oos_bars=5)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 120))
def test_trade_from_only_removes_entries_before_it(seed: int, k: int) -> None:
    """`evaluate(..., trade_from=k)`: no fill before bar k + 1 (an entry decided at bar k's close
    fills at the next open); 0 is the plain evaluation."""
    from models.vectorized.evaluate import evaluate

    bars = daily_bars(random_closes(seed, 120))
    spec = points(SMA_GRID)[0].spec
    plain = evaluate(spec, bars, COSTS, FEATURES)
    assert np.array_equal(evaluate(spec, bars, COSTS, FEATURES, trade_from=0).equity, plain.equity)
    late = evaluate(spec, bars, COSTS, FEATURES, trade_from=k)
    assert bool(np.all(late.fill_bar >= k + 1))
    assert bool(np.all(late.equity[: k + 1] == float(COSTS.initial_cash)))
