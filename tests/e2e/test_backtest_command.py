"""`stratflow backtest` as a user runs it: the shipped example on a shipped dataset, `--json`,
a re-run with other settings, and a sweep confirmed through the flow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import assert_no_traceback, run_cli

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[2]
CONFIG = """\
symbols:
  GOOG: {bar_interval: 1d}
risk: {max_order_notional: 1e12, max_position_notional: 1e12, max_fee_per_order: 1e9,
       daily_loss_limit: 1e12}
"""


def _json(stdout: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return doc


def test_backtest_json_and_a_rerun_never_shows_the_older_result(tmp_path: Path) -> None:
    strategy = REPO / "api" / "strategies" / "sma_cross.yaml"
    args = ["backtest", "GOOG", "-s", str(strategy), "--start", "2006-01-01", "--json"]
    first = run_cli(*args, "--fee-bps", "10", cwd=tmp_path)
    assert_no_traceback(first)
    assert first.returncode == 0, first.stderr
    one = _json(first.stdout)
    assert one["trades"] > 5
    assert Path(one["report"]).is_file()
    assert (Path(one["run_dir"]) / "backtest.json").is_file()
    assert one["statistics"]["start"] >= 1136073600000  # 2006-01-01, the range holds
    second = run_cli(*args, "--fee-bps", "30", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    two = _json(second.stdout)
    assert two["run_id"] != one["run_id"] and two["report"] != one["report"]
    assert float(two["statistics"]["commissions"]) > float(one["statistics"]["commissions"])
    assert (
        json.loads((Path(one["run_dir"]) / "backtest.json").read_text())["run_id"] == one["run_id"]
    )


def test_a_sweep_is_ranked_and_its_best_confirmed_through_the_flow(tmp_path: Path) -> None:
    (tmp_path / "stratflow.yaml").write_text(CONFIG)
    grid = REPO / "api" / "grids" / "sma_cross.yaml"
    result = run_cli(
        "backtest",
        "--sweep",
        str(grid),
        "--top",
        "2",
        "--confirm",
        "1",
        "--json",
        "--fee-bps",
        "10",
        "--slippage-bps",
        "0",
        cwd=tmp_path,
    )
    assert_no_traceback(result)
    assert result.returncode == 0, result.stderr
    doc = _json(result.stdout)
    top = doc["sweep"]["top"]
    assert len(top) == 2
    scores = [row["statistics"]["sharpe_ratio"] for row in top]
    assert scores == sorted(scores, reverse=True)
    (confirmed,) = doc["confirmed"]
    assert confirmed["params"] == top[0]["params"]
    # Without limits in the way, the evaluator and the flow make the same trades.
    assert confirmed["trades"] == top[0]["trades"]
    assert abs(confirmed["sharpe_ratio"] - scores[0]) < 1e-6


def test_a_range_of_a_recorded_topic_is_backtested_on_topics_of_its_own(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    from connectors.files.datasets import dataset_path
    from connectors.files.replay import load_market_file, replay
    from connectors.kafka.broker import ensure_topics
    from connectors.kafka.io import topic_end_offsets

    topic = f"recorded.{tmp_path.name.lower()}"
    ensure_topics(kafka_bootstrap, [topic], 1)
    loaded = load_market_file(dataset_path("GOOG"), symbol="GOOG", interval="1d")
    replay(kafka_bootstrap, topic, loaded.messages)
    before = topic_end_offsets(kafka_bootstrap, topic)
    strategy = REPO / "api" / "strategies" / "sma_cross.yaml"
    result = run_cli(
        "backtest",
        "--from-topic",
        topic,
        "--start",
        "2009-01-01",
        "-s",
        str(strategy),
        "--json",
        cwd=tmp_path,
        env={"KAFKA_BOOTSTRAP": kafka_bootstrap},
    )
    assert_no_traceback(result)
    assert result.returncode == 0, result.stderr
    doc = _json(result.stdout)
    assert doc["trades"] > 3
    assert doc["statistics"]["start"] >= 1230768000000  # 2009-01-01
    assert f"{topic}: {len(loaded.messages):,} records" in result.stderr
    assert topic_end_offsets(kafka_bootstrap, topic) == before, "the recorded topic is read only"


def test_a_run_that_fails_leaves_no_finished_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The finish mark (`backtest.json`) and the report are written last: a run that fails
    after the flow (here: its analysis) leaves a directory a user cannot take for a result."""
    import api.backtest_output as output
    from connectors.files.datasets import dataset_path
    from connectors.files.market_file import MergedStreams, open_market_file
    from models.config.settings import build_settings

    def broken(*_: object) -> None:
        raise RuntimeError("analysis failed")

    monkeypatch.setattr(output, "analyse", broken)
    settings = build_settings(
        {
            "symbols": {"GOOG": {"bar_interval": "1d"}},
            "strategies": [
                {
                    "name": "x",
                    "universe": ["GOOG"],
                    "entry": {"left": "sma_10", "op": "crosses_above", "right": "sma_20"},
                    "exit": {"left": "sma_10", "op": "crosses_below", "right": "sma_20"},
                    "position_fraction": 0.5,
                }
            ],
        },
        {},
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with (
        open_market_file(dataset_path("GOOG"), symbol="GOOG", interval="1d") as stream,
        pytest.raises(RuntimeError, match="analysis failed"),
    ):
        output.finish(settings, MergedStreams([stream]), run_dir, as_json=True, say=lambda _: None)
    assert not (run_dir / output.RESULT_FILE).exists()
    assert not (run_dir / "report.html").exists()
    assert (run_dir / "clickhouse").is_dir(), "the flow did run: only the result is missing"
