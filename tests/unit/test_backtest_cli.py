"""`stratflow backtest` mistakes: one `error:` line each, before anything starts (no broker, no
store, no run directory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import CliResult, assert_user_error, run_cli

CROSS = """\
name: cross
universe: [GOOG]
entry: {left: sma_10, op: crosses_above, right: sma_20}
exit: {left: sma_10, op: crosses_below, right: sma_20}
position_fraction: 1.0
"""


def backtest(cwd: Path, *args: str) -> CliResult:
    result = run_cli("backtest", *args, cwd=cwd)
    assert not (cwd / "var" / "runs").exists(), "a mistake must not create a run"
    return result


@pytest.fixture
def strategy(tmp_path: Path) -> Path:
    path = tmp_path / "cross.yaml"
    path.write_text(CROSS)
    return path


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        (
            CROSS.replace("sma_10, op: crosses_above", "smaa_10, op: crosses_above"),
            ["entry.left", "unknown feature kind 'smaa'"],
        ),
        (CROSS.replace("sma_20}\nexit", "sma_0}\nexit"), ["entry.right", "period 0 is outside"]),
        (CROSS.replace("[GOOG]", "[GOOG, NOPE]"), ["universe[1]", "NOPE is not an allowed"]),
        (CROSS.replace("1.0", "1.5"), ["position_fraction", "less than or equal to 1"]),
        (CROSS.replace("universe: [GOOG]", "universe: [GOOG"), ["not valid YAML at line"]),
        (CROSS + "colour: red\n", ["colour: Extra inputs are not permitted"]),
    ],
)
def test_a_bad_strategy_file_is_one_line_naming_the_field(
    tmp_path: Path, text: str, needles: list[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    line = assert_user_error(backtest(tmp_path, "GOOG", "--strategy", str(path)), *needles)
    assert "bad.yaml" in line or "strategies[0]" in line


def test_several_reasons_stay_on_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(CROSS.replace("sma_10", "smaa_10"))
    line = assert_user_error(backtest(tmp_path, "GOOG", "-s", str(path)))
    assert line.count("unknown feature kind 'smaa'") == 2


def test_a_date_range_without_data(tmp_path: Path, strategy: Path) -> None:
    assert_user_error(
        backtest(tmp_path, "GOOG", "-s", str(strategy), "--start", "2020-01-01"),
        "no data between 2020-01-01 and the end in GOOG",
    )


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--start", "2010-13-01"], ["--start '2010-13-01' is not a date"]),
        (["--start", "2010-02-01", "--end", "2010-01-01"], ["--end 2010-01-01 is not after"]),
        (["--cash", "-5"], ["--cash", "greater than 0"]),
        (["--fee-bps", "5000"], ["--fee-bps", "less than or equal to 1000"]),
    ],
)
def test_bad_settings(tmp_path: Path, strategy: Path, args: list[str], needles: list[str]) -> None:
    assert_user_error(backtest(tmp_path, "GOOG", "-s", str(strategy), *args), *needles)


def test_data_of_a_symbol_the_config_lacks(tmp_path: Path, strategy: Path) -> None:
    data = tmp_path / "ZZZ.csv"
    data.write_text("time,open,high,low,close,volume\n2020-01-01,1,1,1,1,1\n2020-01-02,1,1,1,1,1\n")
    assert_user_error(
        backtest(tmp_path, str(data), "-s", str(strategy)), "ZZZ", "not in the config's symbols"
    )


def test_no_data_and_no_strategy(tmp_path: Path) -> None:
    assert_user_error(backtest(tmp_path), "give the data")


def test_a_missing_strategy_file(tmp_path: Path) -> None:
    assert_user_error(
        backtest(tmp_path, "GOOG", "-s", str(tmp_path / "nope.yaml")), "strategy file not found"
    )


def test_an_unknown_dataset(tmp_path: Path, strategy: Path) -> None:
    assert_user_error(backtest(tmp_path, "GOGO", "-s", str(strategy)), "no such file or dataset")


GRID = """\
strategy:
  name: sweep
  universe: [GOOG]
  entry: {left: "sma_{fast}", op: crosses_above, right: "sma_{slow}"}
  exit: {left: "sma_{fast}", op: crosses_below, right: "sma_{slow}"}
  position_fraction: 1.0
params:
  fast: [5, 10]
  slow: [20, 30]
require: ["fast < slow"]
"""


def test_a_sweep_takes_its_strategy_from_the_grid(tmp_path: Path, strategy: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID)
    assert_user_error(
        backtest(tmp_path, "GOOG", "--sweep", str(grid), "-s", str(strategy)),
        "leave out --strategy",
    )


def test_a_sweep_ranks_by_a_known_statistic(tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID)
    assert_user_error(
        backtest(tmp_path, "GOOG", "--sweep", str(grid), "--rank-by", "luck"),
        "--rank-by: unknown statistic 'luck'",
    )


def test_a_grid_without_points(tmp_path: Path) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(GRID.replace("[5, 10]", "[]"))
    assert_user_error(backtest(tmp_path, "GOOG", "--sweep", str(grid)), "grid.yaml")
