"""The demo as shipped (GOOG, EURUSD, 240 minutes of generated SIM ticks, seed 7, the sample
feeds of hostile input) gives exactly the rows recorded before the decision core's redesign:
every bar, signal, decision, order, fill, position, alert, dead letter and news row, ids and
values. A change here is a change of result, which a refactoring must not make.

Re-recorded twice since: for sizing at the fill (issue 11, item 5), and when the demo became one
backtest per era (GOOG, EURUSD, the 2026 scenario; each its own portfolio), which left bars,
signals, decisions, dead letters and news as they were and changed orders, fills, positions'
cash and equity, and alerts (each recorded twice, identical bytes)."""

from __future__ import annotations

import io
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from api.demo import run_demo
from connectors.store.clickhouse import Store
from models.config.settings import load_settings
from tests.support.golden import check_golden

pytestmark = pytest.mark.kafka

GOLDEN_TABLES = (
    "bars",
    "signals",
    "decisions",
    "orders",
    "fills",
    "positions",
    "alerts",
    "dead_letters",
    "news",
    "strategies",
    "gpt_calls",
)


def test_the_demo_gives_the_golden_rows(tmp_path: Path) -> None:
    settings = load_settings(Path(str(files("api").joinpath("stratflow.yaml"))), {})
    result = run_demo(
        settings,
        run_root=tmp_path,
        datasets=["GOOG", "EURUSD"],
        scenario_minutes=240,
        seed=7,
        console=Console(file=io.StringIO()),
    )
    cfg = settings.clickhouse.model_copy(update={"path": str(result.run_dir / "clickhouse")})
    tables: dict[str, list[dict[str, Any]]] = {}
    with Store.open(cfg) as store:
        for table in GOLDEN_TABLES:
            tables[table] = store.query(f"SELECT * FROM {table} FINAL")
    assert len(tables["decisions"]) > 1000, "the demo should make over a thousand decisions"
    check_golden("demo", tables)
