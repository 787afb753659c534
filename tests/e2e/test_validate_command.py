"""`stratflow validate` as a user runs it: a shipped strategy file on a shipped dataset, a file
whose strategy fails a check (exit code 3), the run id of a finished backtest (its own bars and
strategies, read back from the run's store), and the page opened offline in a browser."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import test_report_browser as chromium
from tests.support.cli import assert_no_traceback, run_cli

browser = chromium.browser  # the offline chromium of the backtest report's browser test

REPO = Path(__file__).resolve().parents[2]
SMA_CROSS = REPO / "api" / "strategies" / "sma_cross.yaml"
EMA = """\
name: ema-trend
universe: [GOOG]
entry: {left: close, op: crosses_above, right: ema_50}
exit: {left: close, op: crosses_below, right: ema_50}
position_fraction: 1.0
"""
CHECKS = ["lookahead", "recursive", "lag", "perturb"]


def _json(stdout: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return doc


def _self_contained(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)\s*=", text, re.I)
    assert "Plotly.newPlot" in text and "const FIGURES=" in text


def test_a_shipped_strategy_file_passes_every_check(tmp_path: Path) -> None:
    result = run_cli("validate", str(SMA_CROSS), "--json", cwd=tmp_path)
    assert_no_traceback(result)
    assert result.returncode == 0, result.stderr
    doc = _json(result.stdout)
    assert doc["outcome"] == "pass"
    assert [c["check"] for c in doc["checks"]] == CHECKS
    assert {c["symbol"] for c in doc["checks"]} == {"GOOG"}
    assert all(c["bars"] > 2000 for c in doc["checks"])
    lag = next(c for c in doc["checks"] if c["check"] == "lag")
    figures = {f["name"]: f for f in lag["figures"]}
    assert figures["return_drop"]["limit"] == 0.5 and figures["return_drop"]["passed"]
    page = Path(doc["report"])
    assert page.is_file() and page.parent.parent == tmp_path / "var" / "runs"
    _self_contained(page)


def test_a_failing_check_is_exit_code_3_after_the_table_and_the_report(tmp_path: Path) -> None:
    path = tmp_path / "ema.yaml"
    path.write_text(EMA)
    report = tmp_path / "out" / "ema.html"
    result = run_cli(
        "validate", str(path), "--report", str(report), "--to", "2012-01-01", cwd=tmp_path
    )
    assert_no_traceback(result)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert "recursive" in result.stdout and "fail" in result.stdout
    assert f"report: {report}" in result.stdout
    assert report.is_file()
    # with the warm-up the check asks for, the same strategy passes
    again = run_cli("validate", str(path), "--warmup", "400", "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stdout
    assert _json(again.stdout)["outcome"] == "pass"


@pytest.mark.kafka
def test_a_finished_backtest_run_is_validated_on_its_own_bars(tmp_path: Path) -> None:
    backtest = run_cli(
        "backtest", "GOOG", "-s", str(SMA_CROSS), "--start", "2008-01-01", "--json", cwd=tmp_path
    )
    assert backtest.returncode == 0, backtest.stderr
    run = _json(backtest.stdout)
    result = run_cli("validate", run["run_id"], "--json", cwd=tmp_path)
    assert_no_traceback(result)
    assert result.returncode == 0, result.stderr
    doc = _json(result.stdout)
    assert doc["target"] == f"run {run['run_id']}"
    assert [c["check"] for c in doc["checks"]] == CHECKS
    assert {c["strategy"] for c in doc["checks"]} == {"sma-cross-10-20"}
    # the run's bars: GOOG from 2008 on (the shipped file has 2,148 from 2004-08)
    bars = {c["bars"] for c in doc["checks"]}
    assert len(bars) == 1 and 1000 < bars.pop() < 2148
    page = Path(doc["report"])
    assert page.parent == Path(run["run_dir"])  # beside the run's own report
    _self_contained(page)
    cut = run_cli("validate", run["run_id"], "--from", "2030-01-01", cwd=tmp_path)
    assert cut.returncode == 2 and "no bars between 2030-01-01" in cut.stderr


def test_the_page_draws_every_chart_offline_in_a_browser(
    tmp_path: Path, browser: chromium.Browser
) -> None:
    from api.validate_report import write_validate_report
    from models.config.settings import ExecutionConfig, FeaturesConfig
    from models.validation.fragility import run_checks
    from models.vectorized.evaluate import Costs
    from tests.support.checks import strategy, trend

    spec = strategy(
        name="<img src=x onerror=alert(1)>",
        entry={"left": "ema_10", "op": ">", "right": "sma_50"},
        exit={"left": "ema_10", "op": "<", "right": "sma_50"},
    )
    bars = trend(800, 3)
    checked = [run_checks(spec, bars, Costs(), FeaturesConfig(), ExecutionConfig())]
    page = write_validate_report(
        "generated", checked, tmp_path / "v.html", [bars.start_ms.tolist()]
    )
    visit = browser.visit(page)
    chromium._assert_clean(visit)
    assert visit.charts_state == "ready"
    charts = visit.facts["charts"]
    assert set(charts) == {"recursive-0", "lag-0", "perturb-0"}
    assert all(c["svg"] > 0 for c in charts.values())
    assert len(charts["lag-0"]["lines"]) == 2 and min(charts["lag-0"]["lines"]) > 50
    assert visit.facts["hostileImages"] == 0
