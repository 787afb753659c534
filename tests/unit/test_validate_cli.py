"""`stratflow validate` mistakes: one `error:` line each and exit code 2, before any check
runs and without writing a report."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from api.validate_cmd import find_run_dir, read_run_for_checks
from tests.support.cli import CliResult, assert_user_error, run_cli

CROSS = """\
name: cross
universe: [GOOG]
entry: {left: sma_10, op: crosses_above, right: sma_20}
exit: {left: sma_10, op: crosses_below, right: sma_20}
position_fraction: 1.0
"""


def validate(cwd: Path, *args: str) -> CliResult:
    result = run_cli("validate", *args, cwd=cwd, env={"STRATFLOW_RUNS": str(cwd / "runs")})
    assert not list(cwd.rglob("validate.html")), "a mistake must not write a report"
    return result


@pytest.fixture
def strategy(tmp_path: Path) -> Path:
    path = tmp_path / "cross.yaml"
    path.write_text(CROSS)
    return path


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        (CROSS.replace("sma_10, op: crosses_above", "smaa_10, op: crosses_above"), ["smaa"]),
        (CROSS.replace("universe: [GOOG]", "universe: [GOOG"), ["not valid YAML at line"]),
        ("just text\n", ["must be a strategy"]),
    ],
)
def test_a_bad_strategy_file(tmp_path: Path, text: str, needles: list[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert_user_error(validate(tmp_path, str(path)), *needles)


def test_neither_a_file_nor_a_run_id(tmp_path: Path) -> None:
    assert_user_error(
        validate(tmp_path, str(tmp_path / "nope.yaml")), "no such strategy file or run id"
    )


def test_an_unknown_run_id(tmp_path: Path) -> None:
    other = tmp_path / "runs" / "20261207T101500Z"
    other.mkdir(parents=True)
    (other / "backtest.json").write_text(json.dumps({"run_id": "20261207T101500Z-000000"}))
    assert_user_error(
        validate(tmp_path, "20261207T101500Z-a1b2c3"),
        "no finished backtest run 20261207T101500Z-a1b2c3",
        "STRATFLOW_RUNS",
    )


def test_a_run_is_checked_on_its_own_bars(tmp_path: Path) -> None:
    assert_user_error(
        validate(tmp_path, "20261207T101500Z-a1b2c3", "--data", "GOOG"), "on its own bars"
    )


def test_an_empty_date_range(tmp_path: Path, strategy: Path) -> None:
    assert_user_error(
        validate(tmp_path, str(strategy), "--from", "2030-01-01"),
        "no data between 2030-01-01 and the end in GOOG",
    )


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--from", "2010-13-01"], ["--from '2010-13-01' is not a date"]),
        (["--from", "2010-02-01", "--to", "2010-01-01"], ["--to 2010-01-01 is not after"]),
        (["--warmup", "0"], ["--warmup must be at least 1"]),
        (["--data", "GOGO"], ["no such file or dataset"]),
    ],
)
def test_bad_options(tmp_path: Path, strategy: Path, args: list[str], needles: list[str]) -> None:
    assert_user_error(validate(tmp_path, str(strategy), *args), *needles)


def test_the_help_says_what_the_exit_codes_mean(tmp_path: Path) -> None:
    result = run_cli("validate", "--help", cwd=tmp_path)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "3 when a check fails" in text and "2 on a mistake" in text


def test_a_run_directory_is_found_by_its_result_file(tmp_path: Path) -> None:
    for name, run_id in (("a", "r-1"), ("b", "r-2")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "backtest.json").write_text(json.dumps({"run_id": run_id}))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "backtest.json").write_text("{not json")
    assert find_run_dir(tmp_path, "r-2") == tmp_path / "b"
    assert find_run_dir(tmp_path, "r-3") is None
    assert find_run_dir(tmp_path / "missing", "r-1") is None


class FakeStore:
    """What `read_run_for_checks` asks of a store, answered from lists."""

    def __init__(self, specs: list[str], bars: dict[str, list[Any]]) -> None:
        self.specs, self.bars = specs, bars
        self.params: list[dict[str, Any]] = []

    def query(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        assert "FROM strategies FINAL" in sql and params["run"] == "r-1"
        return [{"spec": s} for s in self.specs]

    def query_columns(self, sql: str, params: dict[str, Any]) -> dict[str, list[Any]]:
        assert "FROM bars FINAL" in sql
        self.params.append(params)
        return self.bars


def test_a_runs_strategies_and_bars_come_back_per_symbol() -> None:
    from models.strategy.user_file import parse_specs

    (spec,) = parse_specs(yaml.safe_load(CROSS))
    other = spec.model_copy(update={"universe": ["EURUSD"], "name": "other"})
    rows = [("EURUSD", 0, "1.1"), ("EURUSD", 60_000, "1.2"), ("GOOG", 0, "100.5")]
    cols: dict[str, list[Any]] = {
        "symbol": [r[0] for r in rows],
        "start_ms": [r[1] for r in rows],
        "end_ms": [r[1] + 60_000 for r in rows],
        **{k: [Decimal(r[2]) for r in rows] for k in ("open", "high", "low", "close", "vwap")},
        "volume": [Decimal(5)] * 3,
    }
    store = FakeStore(
        [spec.model_dump_json(), other.model_dump_json(), spec.model_dump_json(), "{"], cols
    )
    unreadable: list[str] = []
    specs, bars = read_run_for_checks(store, "r-1", 1000, None, unreadable)
    assert [s.name for s in specs] == ["cross", "other"]  # the repeat once, in order
    assert unreadable == ["{"]
    assert list(bars) == ["EURUSD", "GOOG"]
    assert bars["EURUSD"].close.tolist() == [1.1, 1.2] and len(bars["GOOG"]) == 1
    assert bars["GOOG"].close.tolist() == [100.5] and bars["GOOG"].volume.tolist() == [5.0]
    assert store.params[0]["lo"] == 1000 and store.params[0]["hi"] > 10**15
