"""The road from backtest to live as a user walks it (issue 12, part 5): a finished
`stratflow backtest` of the configured setup records its step in the configured store, which
`stratflow approve --check` then shows; the approval still needs the setup's validation
(`stratflow validate --config`, recorded in the same ledger) and then a paper run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.support.cli import assert_no_traceback, run_cli

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]


def test_a_finished_backtest_records_its_step_and_approval_waits_for_paper(
    tmp_path: Path,
) -> None:
    strategy = yaml.safe_load((REPO / "api" / "strategies" / "sma_cross.yaml").read_text())
    cfg = tmp_path / "setup.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "symbols": {"GOOG": {"bar_interval": "1d"}},
                "risk": {
                    "max_order_notional": "1e12",
                    "max_position_notional": "1e12",
                    "max_fee_per_order": "1e9",
                    "daily_loss_limit": "1e12",
                },
                "strategy": {"controller": "local"},
                "strategies": [strategy],
                "clickhouse": {"path": str(tmp_path / "ledger")},
                "promotion": {"backtest_max_drawdown": "0.9"},
            }
        ),
        encoding="utf-8",
    )
    result = run_cli(
        "backtest", "GOOG", "--config", str(cfg), "--start", "2006-01-01", "--json", cwd=tmp_path
    )
    assert_no_traceback(result)
    assert result.returncode == 0, result.stderr
    assert "in_sample" not in json.loads(result.stdout.strip().splitlines()[-1])  # no GPT
    assert "promotion: setup " in result.stderr and " backtest pass" in result.stderr
    check = run_cli("approve", "--config", str(cfg), "--check", "--json", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    doc = json.loads(check.stdout)
    (bt,) = doc["records"]
    assert bt["step"] == "backtest" and bt["outcome"] == "pass"
    assert bt["figures"]["round_trips"] > 5 and bt["figures"]["data_start_ms"] >= 1136073600000
    assert doc["stage"] == "none"  # backtested, not validated yet
    assert [m.split(" (")[0] for m in doc["missing_for_approval"]] == [
        "a passing validation of this setup",
        "a passing paper run of this setup",
    ]
    refused = run_cli("approve", "--config", str(cfg), "--yes", cwd=tmp_path)
    assert refused.returncode == 2 and "missing a passing validation" in refused.stderr
    validated = run_cli("validate", "--config", str(cfg), "--start", "2006-01-01", cwd=tmp_path)
    assert validated.returncode == 0, validated.stdout
    assert " validation pass (no check failed)" in validated.stdout
    check = run_cli("approve", "--config", str(cfg), "--check", "--json", cwd=tmp_path)
    doc = json.loads(check.stdout)
    assert doc["stage"] == "backtested"
    assert [r["step"] for r in doc["records"]] == ["backtest", "validation"]
    refused = run_cli("approve", "--config", str(cfg), "--yes", cwd=tmp_path)
    assert refused.returncode == 2 and "missing a passing paper run" in refused.stderr
