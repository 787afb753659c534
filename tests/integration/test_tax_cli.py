"""`stratflow tax` on a decision log: a run's fills to Form 8949 lines (CSV and HTML), and one
line for each user mistake."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from connectors.store.clickhouse import Store
from models.config.settings import Settings
from models.core.messages import Fill, Side
from tests.support.cli import run_cli
from tests.support.flowkit import write_config

D = Decimal


def _ms(y: int, m: int, d: int) -> int:
    return int(datetime(y, m, d, 15, tzinfo=UTC).timestamp() * 1000)


def _fill(i: str, side: Side, qty: int, price: str, ts: int) -> Fill:
    return Fill(
        fill_id=i,
        client_order_id=f"o-{i}",
        decision_id="X@1",
        symbol="X",
        side=side,
        quantity=D(qty),
        price=D(price),
        fee=D(0),
        ts_ms=ts,
    )


def _log(tmp: Path, run_id: str, fills: list[Fill]) -> Path:
    settings = Settings.model_validate(
        {"symbols": {"X": {}}, "clickhouse": {"path": str(tmp / "clickhouse")}}
    )
    with Store.open(settings.clickhouse, run_id=run_id) as store:
        store.apply_schema()
        store.insert("fills", fills)
    return write_config(settings, tmp / "cfg.yaml")


def test_a_runs_gains_become_form_8949_lines(tmp_path: Path) -> None:
    cfg = _log(
        tmp_path,
        "run-a",
        [
            _fill("b1", Side.BUY, 100, "10", _ms(2024, 1, 2)),
            _fill("s1", Side.SELL, 100, "7.5", _ms(2024, 3, 1)),
            _fill("b2", Side.BUY, 100, "8", _ms(2024, 3, 20)),  # Publication 550's example 1
            _fill("s2", Side.SELL, 100, "12", _ms(2024, 5, 1)),
        ],
    )
    done = run_cli("tax", "--year", "2024", "-c", str(cfg), "--out", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "run run-a, 2024: 2 lines (1 wash sales)" in done.stdout
    assert "short-term 150.00" in done.stdout  # 1,200 - (800 + 250 moved in)
    rows = list(csv.DictReader((tmp_path / "out" / "form8949-2024-run-a.csv").open()))
    assert [(r["code"], r["gain_or_loss"]) for r in rows] == [("W", "0.00"), ("", "150.00")]
    assert (tmp_path / "out" / "form8949-2024-run-a.html").read_text().count("Totals") == 2


def test_mistakes_are_one_line(tmp_path: Path) -> None:
    cfg = _log(tmp_path, "run-s", [_fill("s1", Side.SELL, 5, "10", _ms(2024, 1, 2))])
    short = run_cli("tax", "--year", "2024", "-c", str(cfg), cwd=tmp_path)
    assert short.returncode == 2 and "short sales are not lotted" in short.stderr
    assert "Traceback" not in short.stderr and len(short.stderr.strip().splitlines()) == 1
    bad = run_cli("tax", "--year", "2024", "--method", "avg", "-c", str(cfg), cwd=tmp_path)
    assert bad.returncode == 2 and "--method: fifo, lifo or hifo" in bad.stderr
    none = run_cli("tax", "--year", "2024", "--run", "nope", "-c", str(cfg), cwd=tmp_path)
    assert none.returncode == 2 and "run nope has no fills" in none.stderr
