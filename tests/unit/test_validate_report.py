"""The validation page: every verdict with its figures, the three charts, nothing fetched from
outside the file, hostile names shown as text."""

from __future__ import annotations

import functools
import json
import re

from api.validate_report import render
from models.config.settings import ExecutionConfig, FeaturesConfig
from models.validation.fragility import run_checks
from models.vectorized.evaluate import Costs
from tests.support.checks import strategy, trend, zigzag

HOSTILE = "<img src=x onerror=alert(1)>"


@functools.cache  # one page for every test here: the checks behind it take ~0.3 s
def _page() -> str:
    trend_spec = strategy(
        name=HOSTILE,
        entry={"left": "ema_10", "op": ">", "right": "sma_50"},
        exit={"left": "ema_10", "op": "<", "right": "sma_50"},
    )
    bounce = strategy(
        name="bounce",
        entry={"left": "return_1", "op": "<", "right": 0},
        exit={"left": "return_1", "op": ">", "right": 0},
    )
    bars = [trend(600, 1), zigzag(300, 2)]
    checked = [
        run_checks(spec, b, Costs(), FeaturesConfig(), ExecutionConfig())
        for spec, b in zip((trend_spec, bounce), bars, strict=True)
    ]
    return render("a <b>file</b>", checked, [b.start_ms.tolist() for b in bars])


def test_every_verdict_and_chart_is_on_the_page() -> None:
    page = _page()
    for check in ("lookahead", "recursive", "lag", "perturb"):
        assert page.count(f"<h3>{check}: ") == 2
    assert "<span class='fail'>fail</span>" in page  # the bounce's lag test
    match = re.search(r"const FIGURES=(\{.*?\});", page, re.S)
    assert match is not None
    figures = json.loads(match.group(1))
    assert set(figures) == {
        f"{kind}-{i}" for kind in ("recursive", "lag", "perturb") for i in (0, 1)
    }
    assert len(figures["lag-1"]["data"]) == 2  # as decided and one bar later
    for ident in figures:
        assert f"id='{ident}'" in page


def test_the_page_references_nothing_outside_itself() -> None:
    page = _page()
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)\s*=", page, re.I)
    assert page.count("<script>") == 2  # plotly.js inlined once, then the figures


def test_hostile_names_stay_text() -> None:
    page = _page()
    assert HOSTILE not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "a &lt;b&gt;file&lt;/b&gt;" in page
