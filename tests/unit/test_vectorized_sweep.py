"""Parameter grids: parsing, expansion (skips counted, errors one line each), and the ranking of
a sweep evaluated in this process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.sweep import run_sweep, statistic_keys
from connectors.files.grid_file import read_grid_file
from models.config.settings import ExecutionConfig, build_settings
from models.vectorized.bars import BarArrays
from models.vectorized.evaluate import Costs, evaluate
from models.vectorized.sweep import GridError, expand, parse_grid

MIN = 60_000
STRATEGY: dict[str, Any] = {
    "name": "cross",
    "universe": ["AAA"],
    "entry": {"left": "sma_{fast}", "op": "crosses_above", "right": "sma_{slow}"},
    "exit": {"left": "sma_{fast}", "op": "crosses_below", "right": "sma_{slow}"},
    "position_fraction": 1.0,
    "stop_loss_pct": "{stop}",
}


def grid_doc(**params: list[Any]) -> dict[str, Any]:
    return {"strategy": STRATEGY, "params": params}


def test_placeholders_become_values_and_names() -> None:
    grid = parse_grid(grid_doc(fast=[3, 5], slow=[8], stop=[None, 0.02]))
    expansion = expand(grid, ExecutionConfig())
    assert expansion.total == 4 and len(expansion.points) == 4
    first, second = expansion.points[0].spec, expansion.points[1].spec
    assert first.entry.left == "sma_3" and first.entry.right == "sma_8"  # type: ignore[union-attr]
    assert first.stop_loss_pct is None and second.stop_loss_pct == 0.02
    assert first.name == "cross[fast=3,slow=8,stop=null]"
    assert [p.index for p in expansion.points] == [0, 1, 2, 3]


def test_requirements_and_invalid_points_are_skipped_and_counted() -> None:
    doc = {**grid_doc(fast=[5, 10, 20], slow=[10, 20], stop=[None]), "require": ["fast < slow"]}
    expansion = expand(parse_grid(doc), ExecutionConfig())
    assert len(expansion.points) == 3 and expansion.skipped_required == 3
    # Without the requirement, sma_10 against sma_10 is a feature compared with itself.
    expansion = expand(
        parse_grid(grid_doc(fast=[10], slow=[10, 20], stop=[None])), ExecutionConfig()
    )
    assert expansion.skipped_invalid == 1 and len(expansion.points) == 1
    assert "compares a feature with itself" in expansion.first_invalid
    assert "1 skipped as invalid" in expansion.summary()


def test_a_grid_with_no_point_left_is_one_error() -> None:
    doc = {**grid_doc(fast=[20], slow=[10], stop=[None]), "require": ["fast < slow"]}
    with pytest.raises(GridError, match="the grid has no point to evaluate: 0 of 1 points"):
        expand(parse_grid(doc), ExecutionConfig())


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ([1], "must be a mapping"),
        (grid_doc(fast=[3], slow=[8]), "placeholder {stop} has no values"),
        (grid_doc(fast=[3], slow=[8], stop=[None], other=[1]), "params.other: not used"),
        (grid_doc(fast=[], slow=[8], stop=[None]), "params.fast: must be a non-empty list"),
        ({**grid_doc(fast=[3], slow=[8], stop=[None]), "require": ["fast <"]}, "require[0]"),
        ({**grid_doc(fast=[3], slow=[8], stop=[None]), "require": ["x < 3"]}, "'x' is not"),
        ({**grid_doc(fast=[3], slow=[8], stop=[None]), "colour": 1}, "unknown keys colour"),
    ],
)
def test_a_bad_grid_says_what_is_wrong(doc: Any, says: str) -> None:
    with pytest.raises(GridError) as err:
        parse_grid(doc)
    assert says in str(err.value)


def test_too_many_points_are_refused() -> None:
    with pytest.raises(GridError, match="more than 100000"):
        parse_grid(grid_doc(fast=list(range(100)), slow=list(range(100)), stop=list(range(11))))


def test_a_grid_file_reads_and_names_itself_in_errors(tmp_path: Path) -> None:
    shipped = read_grid_file(Path("api/grids/sma_cross.yaml"))
    assert shipped.size == 48
    bad = tmp_path / "g.yaml"
    bad.write_text("strategy: {name: x}\nparams: {fast: [1]}\n")
    with pytest.raises(GridError) as err:
        read_grid_file(bad)
    assert str(err.value).startswith(f"{bad}: ")
    with pytest.raises(GridError, match="grid file not found"):
        read_grid_file(tmp_path / "missing.yaml")


def bars_of(n: int = 400, seed: int = 5) -> BarArrays:
    rng = np.random.default_rng(seed)
    close = np.round(100 + np.cumsum(rng.standard_normal(n)), 2)
    open_ = np.concatenate(([close[0]], close[:-1]))
    return BarArrays.from_columns(
        "AAA",
        np.arange(n) * MIN,
        MIN,
        open_,
        np.maximum(open_, close),
        np.minimum(open_, close),
        close,
        np.ones(n),
    )


def test_a_sweep_ranks_every_point_by_the_statistic() -> None:
    cfg = build_settings({"symbols": {"AAA": {}}, "execution": {"initial_cash": 10_000}}, {})
    grid = parse_grid(grid_doc(fast=[3, 5, 8], slow=[13, 21], stop=[None, 0.02]))
    bars = bars_of()
    result = run_sweep(grid, bars, cfg, rank_by="return", top=12, workers=0, progress=False)
    assert result.evaluated == 12 and len(result.top) == 12
    scores = [row.score("return") for row in result.top]
    assert all(s is not None for s in scores)
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    best = result.top[0]
    direct = evaluate(best.spec, bars, Costs.from_settings(cfg, "AAA"), cfg.features)
    assert best.statistics == direct.statistics()
    assert best.trades == direct.trade_count > 0
    lowest = run_sweep(
        grid, bars, cfg, rank_by="return", top=1, lowest_first=True, workers=0, progress=False
    )
    assert lowest.top[0].index == result.top[-1].index


def test_a_sweep_refuses_an_unknown_statistic_or_symbol() -> None:
    cfg = build_settings({"symbols": {"AAA": {}}}, {})
    grid = parse_grid(grid_doc(fast=[3], slow=[8], stop=[None]))
    assert "sharpe_ratio" in statistic_keys() and "return" in statistic_keys()
    with pytest.raises(GridError, match="unknown statistic 'sharpe'; one of"):
        run_sweep(grid, bars_of(), cfg, rank_by="sharpe", workers=0, progress=False)
    other = BarArrays.from_columns("BBB", [0], MIN, [1.0], [1.0], [1.0], [1.0], [1.0])
    with pytest.raises(GridError, match="trades AAA, not BBB"):
        run_sweep(grid, other, cfg, workers=0, progress=False)


def test_a_short_very_profitable_run_has_no_cagr_rather_than_a_crash() -> None:
    """Annualising +1% over one minute overflows float `**`; the statistic is undefined."""
    from decimal import Decimal

    from models.performance.stats import compute_statistics

    curve = [(0, Decimal(100)), (60_000, Decimal(101))]
    stats = compute_statistics(curve, (), {"X": curve}, Decimal(0), Decimal(100))
    by_key = {s.key: s.value for s in stats.statistics}
    assert by_key["cagr"] is None and by_key["return"] == pytest.approx(0.01)
