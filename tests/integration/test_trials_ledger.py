"""The trials ledger in chdb (`connectors.store.trials`) and the sweep figures that read it
(`api.sweep_validation`): two sweeps of one family are both kept, the DSR counts both, a
re-run of the same sweep adds no trial, a walk-forward's evaluations are kept apart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.sweep import run_sweep
from api.sweep_validation import WalkForwardOptions, family_of, validate_sweep
from connectors.store.clickhouse import Store
from connectors.store.trials import (
    Trial,
    count_trials,
    family_sharpes,
    read_family,
    record_trials,
)
from models.config.settings import ClickHouseConfig, Settings, build_settings
from models.validation.overfitting import deflated_sharpe, sharpe_ratio
from models.vectorized.sweep import parse_grid
from tests.unit.test_validation_walkforward import SMA_GRID, daily_bars, random_closes


def settings_at(path: Path) -> Settings:
    return build_settings(
        {
            "symbols": {"AAA": {"bar_interval": "1d"}},
            "execution": {"initial_cash": 10_000},
            "clickhouse": {"path": str(path)},
        },
        {},
    )


def grid(**params: list[Any]) -> Any:
    return parse_grid({**SMA_GRID, "params": params})


def trial(i: int, family: str = "fam", **over: Any) -> Trial:
    fields: dict[str, Any] = {
        "trial_id": f"s1:{i}",
        "family": family,
        "source": "sweep",
        "tried_ms": 1_000 + i,
        "symbol": "AAA",
        "strategy": f"{family}[x={i}]",
        "params": {"x": i},
        "data_start_ms": 0,
        "data_end_ms": 86_400_000 * 50,
        "period": "day",
        "statistics": {"sharpe_ratio": 0.5 + i, "trades": i},
        "returns": np.random.default_rng(i).normal(0.001, 0.01, size=49),
        "run_id": "s1",
        **over,
    }
    return Trial(**fields)


def test_trials_round_trip_exactly_and_a_rewrite_is_harmless(tmp_path: Path) -> None:
    with Store.open(ClickHouseConfig(path=str(tmp_path / "ch")), run_id="s1") as store:
        store.apply_schema()
        written = [trial(i) for i in range(3)] + [trial(9, family="other")]
        assert record_trials(store, written) == 4
        record_trials(store, written[:2])  # a retry of the same rows
        back = read_family(store, "fam")
        assert [t.trial_id for t in back] == ["s1:0", "s1:1", "s1:2"]
        for got, sent in zip(back, written, strict=False):
            np.testing.assert_array_equal(got.returns, sent.returns)  # floats exact
            assert got.params == {"x": int(sent.params["x"])}
            assert got.statistics == sent.statistics
        assert family_sharpes(store, "fam") == [sharpe_ratio(t.returns) for t in written[:3]]
        assert count_trials(store, "fam") == {"sweep": 3}


def test_a_trial_without_variance_has_no_sharpe(tmp_path: Path) -> None:
    with Store.open(ClickHouseConfig(path=str(tmp_path / "ch")), run_id="s1") as store:
        store.apply_schema()
        record_trials(store, [trial(0, returns=np.zeros(49)), trial(1)])
        sharpes = family_sharpes(store, "fam")
        assert sharpes[0] is None and sharpes[1] is not None


def test_two_sweeps_of_one_family_are_both_counted_by_the_dsr(tmp_path: Path) -> None:
    """The second sweep's DSR counts the first sweep's points and its own (their Sharpe
    ratios from the ledger); a re-run of a sweep on the same data adds no trial."""
    settings = settings_at(tmp_path / "ch")
    bars = daily_bars(random_closes(5, 400))
    first_grid = grid(fast=[2, 4], slow=[8, 12])
    second_grid = grid(fast=[3, 5, 6], slow=[10, 20])
    assert family_of(first_grid) == family_of(second_grid) == "cross"
    first = run_sweep(first_grid, bars, settings, top=1, workers=0, progress=False)
    one = validate_sweep(settings, first_grid, first.expansion.points, first, bars)
    assert one.ledger_trials == 4 and one.dsr is not None and one.dsr.n_trials == 4
    second = run_sweep(second_grid, bars, settings, top=1, workers=0, progress=False)
    two = validate_sweep(settings, second_grid, second.expansion.points, second, bars)
    assert two.ledger_trials == 10
    assert two.dsr is not None and two.dsr.n_trials == 10
    every = [row.returns for row in (*first.rows, *second.rows)]
    expected = deflated_sharpe(second.top[0].returns, [sharpe_ratio(r) for r in every])
    assert two.dsr.dsr == pytest.approx(expected.dsr, rel=1e-12)
    assert two.dsr.benchmark == pytest.approx(expected.benchmark, rel=1e-12)
    again = validate_sweep(settings, second_grid, second.expansion.points, second, bars)
    assert again.ledger_trials == 10  # the same points on the same bars: no new choice
    with Store.open(settings.clickhouse) as store:
        assert count_trials(store, "cross") == {"sweep": 16}  # every row is kept
        assert len({t.run_id for t in read_family(store, "cross")}) == 3
    assert two.pbo is not None and 0.0 <= two.pbo.pbo <= 1.0
    doc = two.to_json()
    assert doc["dsr"]["trials"] == 10 and doc["pbo"]["splits"] == two.pbo.splits


def test_walk_forward_evaluations_are_recorded_apart_from_the_sweep(tmp_path: Path) -> None:
    settings = settings_at(tmp_path / "ch")
    bars = daily_bars(random_closes(8, 300))
    g = grid(fast=[2, 4], slow=[8, 12])
    result = run_sweep(g, bars, settings, top=1, workers=0, progress=False)
    out = validate_sweep(
        settings,
        g,
        result.expansion.points,
        result,
        bars,
        walk=WalkForwardOptions("rolling", 100, 50),
    )
    assert out.walk is not None and len(out.walk.windows) == 4
    assert out.ledger_trials == 4  # the DSR's trials: the sweep's points
    with Store.open(settings.clickhouse) as store:
        assert count_trials(store, "cross") == {"sweep": 4, "walk_forward": 16}
        assert len(family_sharpes(store, "cross", source=None)) == 20
    doc = out.to_json()["walk_forward"]
    assert [w["index"] for w in doc["windows"]] == [0, 1, 2, 3]
    assert doc["windows"][0]["oos_start_ms"] == int(bars.start_ms[100])
    assert "walk-forward (rolling" in out.lines()[-1]


def test_an_unavailable_ledger_is_one_line_and_the_dsr_counts_this_sweep(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    settings = settings_at(blocked / "ch")
    bars = daily_bars(random_closes(9, 200))
    g = grid(fast=[2, 4], slow=[8])
    result = run_sweep(g, bars, settings, top=1, workers=0, progress=False)
    out = validate_sweep(settings, g, result.expansion.points, result, bars)
    assert out.ledger_note.startswith("trials ledger unavailable")
    assert "\n" not in out.ledger_note
    assert out.dsr is not None and out.dsr.n_trials == 2
