"""`stratflow backtest --sweep GRID` as a user runs it, for what the winner is worth: two sweeps of
one family on the shipped GOOG history, the second's DSR over both (the ledger in the working
directory's chdb store), the PBO, a walk-forward, and its option mistakes as one line each.
No flow run (`--confirm 0`): no broker needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cli import assert_no_traceback, run_cli

REPO = Path(__file__).resolve().parents[2]
CONFIG = "symbols:\n  GOOG: {bar_interval: 1d}\n"


def _grid(tmp_path: Path, name: str, fast: list[int], slow: list[int]) -> Path:
    doc = yaml.safe_load((REPO / "api" / "grids" / "sma_cross.yaml").read_text())
    doc["params"] = {"fast": fast, "slow": slow, "stop": [None]}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


def _sweep(tmp_path: Path, grid: Path, *extra: str) -> dict[str, Any]:
    result = run_cli(
        "backtest",
        "--sweep",
        str(grid),
        "--confirm",
        "0",
        "--top",
        "1",
        "--json",
        *extra,
        cwd=tmp_path,
    )
    assert_no_traceback(result)
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return doc


def test_two_sweeps_of_a_family_deflate_the_winner_over_both(tmp_path: Path) -> None:
    (tmp_path / "stratflow.yaml").write_text(CONFIG)
    one = _sweep(tmp_path, _grid(tmp_path, "a.yaml", [5, 10], [20, 50]))["overfitting"]
    assert one["family"] == "sma-cross" and one["ledger_trials"] == 4
    assert one["dsr"]["trials"] == 4 and 0.0 <= one["dsr"]["value"] <= 1.0
    assert one["pbo"]["value"] is not None and one["pbo"]["blocks"] == 16
    two = _sweep(
        tmp_path,
        _grid(tmp_path, "b.yaml", [15, 20], [30, 100]),
        "--walk-forward",
        "anchored",
        "--is-bars",
        "750",
        "--oos-bars",
        "250",
        "--pbo-blocks",
        "8",
    )["overfitting"]
    assert two["ledger_trials"] == 8 and two["dsr"]["trials"] == 8
    assert two["pbo"]["blocks"] == 8 and two["pbo"]["splits"] == 70
    walk = two["walk_forward"]
    assert walk["mode"] == "anchored" and len(walk["windows"]) == 6  # 2,148 bars
    assert all(w["is_start_ms"] == walk["windows"][0]["is_start_ms"] for w in walk["windows"])
    assert "return" in walk["statistics"]
    assert (tmp_path / "var" / "clickhouse").is_dir()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--walk-forward", "sideways", "--is-bars", "5", "--oos-bars", "5"], "one of rolling"),
        (["--is-bars", "5"], "--is-bars belong(s) to --walk-forward"),
        (["--walk-forward", "rolling", "--is-bars", "5"], "needs --is-bars N and --oos-bars N"),
        (["--walk-forward", "rolling", "--is-bars", "9000", "--oos-bars", "9"], "no out-of-sample"),
        (
            ["--walk-forward", "rolling", "--is-bars", "50", "--oos-bars", "9", "--step-bars", "3"],
            "would repeat",
        ),
        (["--pbo-blocks", "7"], "--pbo-blocks: an even number"),
    ],
)
def test_walk_forward_mistakes_are_one_line(tmp_path: Path, args: list[str], says: str) -> None:
    (tmp_path / "stratflow.yaml").write_text(CONFIG)
    grid = _grid(tmp_path, "g.yaml", [5], [20])
    result = run_cli("backtest", "--sweep", str(grid), "--confirm", "0", *args, cwd=tmp_path)
    assert_no_traceback(result)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and says in errors[0], result.stderr


def test_walk_forward_needs_a_sweep(tmp_path: Path) -> None:
    (tmp_path / "stratflow.yaml").write_text(CONFIG)
    strategy = REPO / "api" / "strategies" / "sma_cross.yaml"
    result = run_cli(
        "backtest",
        "GOOG",
        "-s",
        str(strategy),
        "--walk-forward",
        "rolling",
        "--is-bars",
        "9",
        "--oos-bars",
        "9",
        cwd=tmp_path,
    )
    assert_no_traceback(result)
    assert result.returncode != 0
    assert "give it with --sweep GRID" in result.stderr


def test_the_sweep_report_explains_dsr_pbo_and_the_walk(tmp_path: Path) -> None:
    (tmp_path / "stratflow.yaml").write_text(CONFIG)
    grid = _grid(tmp_path, "g.yaml", [5, 10], [20, 50])
    doc = _sweep(
        tmp_path, grid, "--walk-forward", "rolling", "--is-bars", "500", "--oos-bars", "500"
    )
    page = Path(doc["report"]).read_text()
    dsr = doc["overfitting"]["dsr"]
    assert "Deflated Sharpe ratio" in page and f"DSR {dsr['value']:.3f}" in page
    assert "Probability of backtest overfitting" in page
    assert f"PBO {doc['overfitting']['pbo']['value']:.2f}" in page
    assert "id='pbo-logits'" in page and "id='walk-equity'" in page
    assert page.count("<tr>") >= 1 + 3 + len(doc["overfitting"]["walk_forward"]["windows"])
