"""The sweep report page (`api.sweep_report`): it shows the figures it is given, explains DSR
and PBO, says why one is missing, and escapes what a grid file names."""

from __future__ import annotations

from typing import Any

import numpy as np

from api.sweep import run_sweep
from api.sweep_report import DSR_ABOUT, PBO_ABOUT, render_sweep
from api.sweep_validation import SweepValidation
from models.config.settings import build_settings
from models.validation.overfitting import deflated_sharpe, probability_of_overfitting
from models.vectorized.sweep import parse_grid
from tests.unit.test_validation_walkforward import SMA_GRID, daily_bars, random_closes


def _result(name: str = "cross") -> Any:
    settings = build_settings({"symbols": {"AAA": {"bar_interval": "1d"}}}, {})
    grid = parse_grid({**SMA_GRID, "strategy": {**SMA_GRID["strategy"], "name": name}})
    return run_sweep(grid, daily_bars(random_closes(3, 300)), settings, workers=0, progress=False)


def test_the_page_shows_and_explains_the_figures_it_is_given() -> None:
    result = _result()
    matrix = np.column_stack([row.returns for row in result.rows])
    dsr = deflated_sharpe(result.top[0].returns, [0.01, 0.02, -0.01, 0.03])
    pbo = probability_of_overfitting(matrix, 8)
    page = render_sweep(result, SweepValidation("sweep-1", "cross", dsr=dsr, pbo=pbo), "AAA")
    assert dsr.explain() in page.replace("&#x27;", "'")
    assert pbo.explain() in page.replace("&#x27;", "'")
    assert DSR_ABOUT.split(" (")[0] in page and PBO_ABOUT.split(" (")[0] in page
    assert "id='pbo-logits'" in page and "walk-equity" not in page


def test_a_missing_figure_says_why_and_names_are_escaped() -> None:
    result = _result("<b>x</b>")
    validation = SweepValidation(
        "sweep-2", "<b>x</b>", dsr_note="no trial has a Sharpe ratio", pbo_note="one point"
    )
    page = render_sweep(result, validation, "AAA")
    assert "DSR not available: no trial has a Sharpe ratio" in page
    assert "PBO not available: one point" in page
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
