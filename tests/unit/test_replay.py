"""Loading market files: shipped datasets, exact prices, malformed rows, file formats (replaying
them through a real broker is tests/integration/test_replay_kafka.py)."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from connectors.files.datasets import (
    BTCUSD,
    EURUSD,
    GOOG,
    dataset_info,
    dataset_path,
    list_datasets,
    resolve_source,
)
from connectors.files.replay import MarketFileError, ReplayError, load_market_file
from models.core.messages import BarIn, Tick
from models.market.interval import BarInterval

T0 = datetime(2024, 1, 2, 9, 30, tzinfo=UTC)


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.mark.slow  # every shipped dataset
def test_shipped_datasets_load_completely() -> None:
    assert list_datasets() == [BTCUSD, EURUSD, GOOG]
    expected = {GOOG: "1d", EURUSD: "1h", BTCUSD: "1mo"}  # month-end stamps: calendar months
    for name in list_datasets():
        path = dataset_path(name.lower())
        data_rows = sum(1 for _ in path.open()) - 1
        loaded = load_market_file(path)
        assert loaded.kind == "bars"
        assert loaded.problems == []
        assert len(loaded.messages) == data_rows == loaded.rows
        assert loaded.symbols == [name]
        assert {k: v.text for k, v in loaded.intervals.items()} == {name: expected[name]}
        assert dataset_info(name).interval == expected[name]  # what the demo and replay use
        assert [m.ts for m in loaded.messages] == sorted(m.ts for m in loaded.messages)
    assert resolve_source("goog") == (dataset_path(GOOG), GOOG)
    with pytest.raises(KeyError, match="unknown dataset"):
        dataset_path("NOPE")


def test_prices_keep_their_exact_text(tmp_path: Path) -> None:
    path = _write_csv(
        tmp_path / "fx.csv",
        ["Date", "OPEN", "high", "Low", "close", "Volume"],
        [
            ["2024-01-02 09:00:00", "1.07160", "1.0722", "1.07083", "1.07219", "1413"],
            ["2024-01-02 10:00:00", "0.1", "0.3", "0.1", "0.2", ""],
        ],
    )
    loaded = load_market_file(path, symbol="eurusd")
    a, b = loaded.messages
    assert isinstance(a, BarIn) and isinstance(b, BarIn)
    assert a.symbol == "EURUSD" and a.interval_s == 3600
    assert str(a.open) == "1.07160" and a.open == Decimal("1.0716")
    assert b.open + b.low == Decimal("0.2")  # no binary float anywhere
    assert b.volume == 0
    assert BarIn.model_validate_json(a.model_dump_json()) == a


def test_malformed_rows_are_reported_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(
        ",Open,High,Low,Close,Volume\n"
        "2024-01-01,10,11,9,10.5,100\n"  # line 2: fine
        "2024-01-02,10,11,9,abc,100\n"  # line 3: close is not a number
        "2024-01-03,10,11,9\n"  # line 4: too few fields
        "not-a-date,10,11,9,10,1\n"  # line 5: bad time
        "2024-01-04,10,9,11,10,1\n"  # line 6: high below low
        "2024-01-05,10,11,9,10,-5\n"  # line 7: negative volume
        "2024-01-01,10,11,9,10.5,100\n"  # line 8: duplicate of line 2
        "\n"
        "2024-01-06,10,11,9,10,1\n"  # line 10: fine
    )
    loaded = load_market_file(path)
    assert loaded.rows == 8
    assert [m.ts.day for m in loaded.messages] == [1, 6]
    assert loaded.intervals == {"BARS": BarInterval.fixed(86_400_000)}
    problems = dict(loaded.problems)  # (row, reason) pairs
    assert sorted(problems) == [3, 4, 5, 6, 7, 8]
    assert "close='abc'" in problems[3]
    assert "expected 6 fields, found 4" in problems[4]
    assert "not a valid time" in problems[5]
    assert "OHLC inconsistent" in problems[6]
    assert "volume='-5'" in problems[7]
    assert "duplicate bar" in problems[8]
    assert loaded.problems[0].describe().startswith("row 3: ")


def test_file_level_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(MarketFileError, match=r"file not found: .*nope\.csv"):
        load_market_file(tmp_path / "nope.csv")
    assert issubclass(MarketFileError, ReplayError)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(MarketFileError, match="unsupported file type"):
        load_market_file(tmp_path / "x.json")
    cols = _write_csv(tmp_path / "cols.csv", ["when", "value"], [["2024-01-01", "1"]])
    with pytest.raises(MarketFileError, match="no time column"):
        load_market_file(cols)
    no_px = _write_csv(tmp_path / "nopx.csv", ["ts", "value"], [["2024-01-01", "1"]])
    with pytest.raises(MarketFileError, match=r"open/high/low/close .* or price"):
        load_market_file(no_px)
    one = _write_csv(
        tmp_path / "one.csv",
        ["date", "open", "high", "low", "close"],
        [["2024-01-01", "1", "1", "1", "1"]],
    )
    with pytest.raises(MarketFileError, match="single bar; pass --interval "):
        load_market_file(one)
    assert load_market_file(one, interval="1d").messages[0].interval_s == 86400  # type: ignore[union-attr]
    with pytest.raises(MarketFileError, match="not a valid symbol"):
        load_market_file(_write_csv(tmp_path / "bad name.csv", ["ts", "price"], [["1", "1"]]))


def test_trade_files_csv_and_parquet(tmp_path: Path) -> None:
    base = int(T0.timestamp() * 1000)
    rows = [
        [str(base + 1500), "aapl", "189.25", "10"],
        [str(base), "MSFT", "370.10", "5"],
        [str(base + 2000), "AAPL", "189.30", ""],
    ]
    csv_path = _write_csv(tmp_path / "trades.csv", ["TS", "Symbol", "Price", "Size"], rows)
    loaded = load_market_file(csv_path)
    assert loaded.kind == "ticks" and loaded.problems == []
    ticks = [t for t in loaded.messages if isinstance(t, Tick)]
    assert len(ticks) == len(loaded.messages)
    assert [(t.symbol, str(t.price)) for t in ticks] == [
        ("MSFT", "370.10"),
        ("AAPL", "189.25"),
        ("AAPL", "189.30"),
    ]
    assert ticks[1].ts == T0 + timedelta(milliseconds=1500)

    frame = pd.DataFrame(
        {
            "time": pd.to_datetime([T0, T0 + timedelta(seconds=1)], utc=True),
            "price": [101.1, 101.2],
            "qty": [3, 4],
        }
    )
    pq = tmp_path / "spy.parquet"
    frame.to_parquet(pq)
    loaded_pq = load_market_file(pq)
    assert [(t.symbol, str(t.price), t.ts) for t in loaded_pq.messages if isinstance(t, Tick)] == [
        ("SPY", "101.1", T0),
        ("SPY", "101.2", T0 + timedelta(seconds=1)),
    ]


def test_bar_parquet_with_datetime_index(tmp_path: Path) -> None:
    frame = pd.read_csv(dataset_path(GOOG), index_col=0, parse_dates=True).head(50)
    pq = tmp_path / "goog_head.parquet"
    frame.to_parquet(pq)
    from_pq = load_market_file(pq, symbol="GOOG").messages
    from_csv = load_market_file(dataset_path(GOOG)).messages[:50]
    assert from_pq == from_csv


def test_semicolon_and_tab_separated_files_load(tmp_path: Path) -> None:
    for sep, name in ((";", "semi.csv"), ("\t", "tabs.csv")):
        path = tmp_path / name
        path.write_text(
            sep.join(["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"]) + "\n"
            + sep.join(["2020-01-02", "10", "11", "9", "10.5", "10.5", "1000"]) + "\n"
            + sep.join(["2020-01-03", "10.5", "12", "10", "11.25", "11.25", "1500"]) + "\n"
        )  # fmt: skip
        loaded = load_market_file(path, symbol="GOOG")
        assert [m.close for m in loaded.messages] == [Decimal("10.5"), Decimal("11.25")]  # type: ignore[union-attr]
        assert loaded.problems == []
