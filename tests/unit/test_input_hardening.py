"""Hostile-but-realistic market-data input: files handed to `stratflow replay` and records on
the market/news/social topics. Each case here failed (crash, silent corruption or silent loss)
before the fix it names; the existing suites cover the rest (test_replay, test_parsing,
test_ingest_properties, api/samples/bad_market.jsonl through test_demo)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from api.cli import main
from connectors.files.replay import MarketFileError, load_market_file
from models.config.settings import Settings
from models.core.messages import Bar, BarIn, DeadLetter, NewsItem, StoredTick, Tick
from models.market.bars import BarBuilder
from models.market.ingest import PartitionIngest, RawBatch
from models.market.interval import BarInterval
from models.market.parsing import event_time_problem, parse_market, parse_text_item

T0_S = 1_700_000_000  # 2023-11-14T22:13:20Z
T0_MS = T0_S * 1000
RECORD_MS = T0_MS + 86_400_000
CFG = Settings.model_validate(
    {
        "symbols": {"AAA": {}},
        "bars": {"interval": "1m", "allowed_lateness": "5s"},
        "storage": {"ticks": True},
    }
)


def _file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _tick(ts: object, price: str = "10", **extra: object) -> bytes:
    msg: dict[str, object] = {"type": "tick", "symbol": "AAA", "ts": ts, "price": price}
    msg.update(extra)
    return json.dumps(msg).encode()


def _ingest(
    values: list[bytes | None], record_ms: int = RECORD_MS, broker_time: bool = False
) -> list[object]:
    ingest = PartitionIngest(CFG)
    out: list[object] = []
    records = [(i, record_ms, v, None) for i, v in enumerate(values)]
    batch = RawBatch("market.ticks", 0, records, end="final", broker_time=broker_time)
    ingest.process_batch(batch, out)  # type: ignore[arg-type]
    return out


# ------------------------------------------------------------------------------- replay files


def test_one_huge_epoch_is_a_bad_row_not_a_crash_nor_a_unit_change(tmp_path: Path) -> None:
    # Was: OverflowError out of load_market_file (`internal error` from the CLI), and a single
    # year-9999 row made the whole file "milliseconds", moving every good row to 1970.
    path = _file(
        tmp_path,
        "aaa.csv",
        f"time,price\n{T0_S},1\n1e308,2\n{T0_S + 1},3\n253402300799,4\n{T0_S + 2},5\n-5,6\n",
    )
    loaded = load_market_file(path)
    assert [(m.ts, str(m.price)) for m in loaded.messages if isinstance(m, Tick)] == [
        (datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC), "1"),
        (datetime(2023, 11, 14, 22, 13, 21, tzinfo=UTC), "3"),
        (datetime(2023, 11, 14, 22, 13, 22, tzinfo=UTC), "5"),
    ]
    problems = dict(loaded.problems)
    assert sorted(problems) == [3, 5, 7]
    assert problems[3] == "time='1e308': event time is outside 1900-01-01 .. 2200-01-01"
    assert "'253402300799'" in problems[5] and "outside" in problems[5]
    assert "'-5'" in problems[7] and "unset timestamp" in problems[7]


def test_zero_and_far_past_times_in_a_file_are_reported(tmp_path: Path) -> None:
    # Was: published as 1970 / year-1 events, sorted first: a bogus first bar for the symbol
    # and, with --speed, a replay that waits decades before the real data.
    path = _file(
        tmp_path,
        "aaa.csv",
        "time,price\n2024-01-02T10:00:00Z,1\n1970-01-01T00:00:00Z,2\n"
        "0001-01-01T00:00:00,3\n2024-01-02T10:00:01Z,4\n",
    )
    loaded = load_market_file(path)
    assert [str(m.price) for m in loaded.messages if isinstance(m, Tick)] == ["1", "4"]
    problems = dict(loaded.problems)
    assert "unset timestamp" in problems[3]
    assert "outside 1900-01-01" in problems[4]
    epoch_zero = load_market_file(_file(tmp_path, "z.csv", f"time,price\n0,1\n{T0_S},2\n"))
    assert [r for r, _ in epoch_zero.problems] == [2] and len(epoch_zero.messages) == 1


def test_separate_date_and_time_columns_are_combined(tmp_path: Path) -> None:
    # Was: "no parseable time in column 'Time' ... e.g. '09:30'" for the usual FX/intraday
    # export layout.
    path = _file(
        tmp_path,
        "eurusd.csv",
        "Date,Time,Open,High,Low,Close,Volume\n"
        "2024-01-02,9:30,1.1,1.2,1.0,1.15,10\n"
        "2024-01-02,09:31:00,1.1,1.2,1.0,1.15,10\n"
        "2024-01-02,,1.1,1.2,1.0,1.15,10\n"
        "2024-01-02,09:32,1.1,1.2,1.0,1.15,10\n",
    )
    loaded = load_market_file(path)
    assert [m.ts.strftime("%H:%M") for m in loaded.messages] == ["09:30", "09:31", "09:32"]
    assert loaded.intervals == {"EURUSD": BarInterval.fixed(60_000)}
    assert loaded.problems == [(4, "Date+Time='': not a valid time")]


def test_trailing_empty_spreadsheet_columns_are_ignored(tmp_path: Path) -> None:
    # Was: "duplicate column names in header [..., '', '']": the whole file refused.
    path = _file(
        tmp_path,
        "aaa.csv",
        "Date,Open,High,Low,Close,Volume,,\n2024-01-02,1,2,0.5,1,10,,\n2024-01-03,1,2,0.5,1,10,,\n",
    )
    assert len(load_market_file(path).messages) == 2
    with pytest.raises(MarketFileError, match="duplicate column names"):
        load_market_file(_file(tmp_path, "dup.csv", "time,price,Price\n1700000000,1,2\n"))
    # One unnamed column with data is kept (and harmless); two of them are ambiguous.
    one = load_market_file(_file(tmp_path, "one.csv", f"time,price,,\n{T0_S},1,x,\n"))
    assert len(one.messages) == 1
    with pytest.raises(MarketFileError, match="duplicate column names"):
        load_market_file(_file(tmp_path, "two.csv", f"time,price,,\n{T0_S},1,x,y\n"))


def test_tsv_files_load(tmp_path: Path) -> None:
    # Was: "unsupported file type '.tsv'" although the tab dialect is sniffed.
    path = _file(tmp_path, "aaa.tsv", f"time\tprice\tqty\n{T0_S}\t1.5\t2\n")
    (tick,) = load_market_file(path).messages
    assert isinstance(tick, Tick) and tick.price == Decimal("1.5") and tick.size == 2


def test_float32_parquet_prices_keep_their_short_text(tmp_path: Path) -> None:
    # Was: float32 widened to double first, so 101.1 was published as 101.0999984741211.
    frame = pd.DataFrame(
        {
            "ts": [T0_S, T0_S + 1, T0_S + 2],
            "price": np.array([101.1, 0.3, np.nan], dtype=np.float32),
            "size": np.array([0.7, 1.0, 1.0], dtype=np.float32),
        }
    )
    path = tmp_path / "aaa.parquet"
    frame.to_parquet(path)
    loaded = load_market_file(path)
    assert [(str(t.price), str(t.size)) for t in loaded.messages if isinstance(t, Tick)] == [
        ("101.1", "0.7"),
        ("0.3", "1.0"),
    ]
    assert [r for r, _ in loaded.problems] == [3]  # the NaN price: reported, not dropped


def test_unreadable_file_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Was: PermissionError escaping as an internal error (exit 1). Root ignores chmod, so the
    # open is made to fail the way it does for a user without read permission.
    path = _file(tmp_path, "aaa.csv", f"time,price\n{T0_S},1\n")

    def denied(*_a: object, **_k: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("connectors.files.market_source.open", denied, raising=False)
    with pytest.raises(MarketFileError, match=r"aaa\.csv: cannot read \(Permission denied\)"):
        load_market_file(path)


def test_cli_replay_input_mistakes_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file is checked before the broker, so an unreachable bootstrap is never reached.
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "127.0.0.1:9")
    header_only = _file(tmp_path, "GOOG.csv", "Date,Open,High,Low,Close\n")
    huge = _file(tmp_path, "h.csv", "time,price\n1e308,1\n")
    cases = [
        ([str(header_only)], "no data rows (the file has only a header)"),
        (["x" * 5000], "File name too long"),  # was: internal error: OSError
        ([str(huge), "--symbol", "GOOG"], "no valid rows to publish"),  # was: OverflowError
    ]
    for argv, expected in cases:
        with pytest.raises(SystemExit) as exc:
            main(["replay", *argv])
        err = capsys.readouterr().err
        assert exc.value.code == 2, err
        assert err.startswith("error: ") and expected in err
        assert "Traceback" not in err and "internal error" not in err


# ------------------------------------------------------------------------------- topic records


def test_empty_string_ids_are_not_duplicates_of_each_other() -> None:
    # Was: every tick with "id": "" after the first dead-lettered as `duplicate: id ''`.
    out = _ingest([_tick(T0_MS + i * 1000, str(10 + i), id="") for i in range(3)])
    assert not [o for o in out if isinstance(o, DeadLetter)]
    (bar,) = [o for o in out if isinstance(o, Bar)]
    assert bar.trades == 3 and bar.close == Decimal(12)
    ids = [o.tick_id for o in out if isinstance(o, StoredTick)]
    assert ids == [f"market.ticks:0:{i}" for i in range(3)]
    # Input bars: an empty id falls back to the open time, like a missing one.
    builder = BarBuilder(symbol="AAA", interval=BarInterval.fixed(60_000))
    bar_in = {"symbol": "AAA", "open": "1", "high": "1", "low": "1", "close": "1"}
    t0 = T0_MS - T0_MS % 60_000  # on the window grid (an off-grid bar is refused as such)
    first = BarIn.model_validate({**bar_in, "ts": t0, "interval_s": 60, "id": ""})
    again = BarIn.model_validate({**bar_in, "ts": t0, "interval_s": 60, "id": ""})
    later = BarIn.model_validate({**bar_in, "ts": t0 + 60_000, "interval_s": 60, "id": ""})
    assert builder.add(first) != [] and builder.add(later) != []
    rejected = builder.add(again)
    assert not isinstance(rejected, list) and "late" in rejected.reason


@pytest.mark.parametrize(
    ("ts", "reason"),
    [
        (0, "within a day of 1970-01-01"),
        (-1, "within a day of 1970-01-01"),
        ("1970-01-01T00:00:00Z", "within a day of 1970-01-01"),
        ("0001-01-01T00:00:00", "outside 1900-01-01 .. 2200-01-01"),
        ("1850-06-01T00:00:00Z", "outside 1900-01-01"),
    ],
)
def test_far_past_first_event_is_dead_lettered_not_a_bogus_bar(ts: object, reason: str) -> None:
    # Was: accepted; as the symbol's first event it opened a window in 1970 (or year 1) that
    # the next real tick closed, emitting a bar with the bogus price ahead of the real ones.
    out = _ingest([_tick(ts, "99999"), _tick(T0_MS), _tick(T0_MS + 70_000)])
    (dead,) = [o for o in out if isinstance(o, DeadLetter)]
    assert dead.offset == 0 and reason in dead.reason
    bars = [o for o in out if isinstance(o, Bar)]
    assert [b.start_ms for b in bars] == [T0_MS - T0_MS % 60_000, T0_MS + 60_000 - 20_000]
    assert all(b.high == 10 for b in bars)


def test_far_future_event_without_record_time_cannot_freeze_the_symbol() -> None:
    # Was: with no broker time (record_ms 0: message format v0 / unknown), a year-9999 tick
    # passed, pushed the watermark to 9999 and made every later tick of the symbol "late".
    out = _ingest([_tick(T0_MS), _tick("9999-12-31T23:59:59Z"), _tick(T0_MS + 70_000)], record_ms=0)
    (dead,) = [o for o in out if isinstance(o, DeadLetter)]
    assert dead.offset == 1 and "outside 1900-01-01 .. 2200-01-01" in dead.reason
    assert [b.trades for b in out if isinstance(b, Bar)] == [1, 1]
    # With a broker-stamped record time, the more specific reason wins.
    out = _ingest([_tick("2999-01-01T00:00:00Z")], broker_time=True)
    (ahead,) = [o for o in out if isinstance(o, DeadLetter)]
    assert "ahead of the broker's append time" in ahead.reason


def test_text_items_with_implausible_times_are_dead_lettered() -> None:
    def parse(ts: object, record_ms: int) -> NewsItem | DeadLetter:
        raw = json.dumps({"id": "n1", "ts": ts, "headline": "h"}).encode()
        out = parse_text_item(
            raw,
            kind="news",
            topic="news.items",
            partition=0,
            offset=3,
            record_ms=record_ms,
            max_future_skew_ms=300_000,
        )
        assert not isinstance(out, Tick)
        return out  # type: ignore[return-value]

    assert isinstance(parse(T0_MS, RECORD_MS), NewsItem)
    for ts, record_ms in (("0001-01-01T00:00:00Z", RECORD_MS), ("9999-01-01T00:00:00Z", 0)):
        dead = parse(ts, record_ms)
        assert isinstance(dead, DeadLetter) and "outside 1900-01-01" in dead.reason


def test_event_time_bounds_are_the_documented_ones() -> None:
    day = 86_400_000
    assert event_time_problem(T0_MS) is None
    assert event_time_problem(-2_208_988_800_000) is None  # 1900-01-01: the first valid ms
    assert event_time_problem(-2_208_988_800_001) is not None
    assert event_time_problem(7_258_118_400_000 - 1) is None  # just before 2200-01-01
    assert event_time_problem(7_258_118_400_000) is not None
    assert event_time_problem(day) is None and event_time_problem(-day) is None
    assert event_time_problem(day - 1) is not None and event_time_problem(1 - day) is not None
    parsed = parse_market(
        _tick("1970-01-02T00:00:00Z"),
        topic="market.ticks",
        partition=0,
        offset=0,
        record_ms=RECORD_MS,
        symbols={"AAA"},
        max_future_skew_ms=300_000,
    )
    assert not isinstance(parsed, DeadLetter) and parsed[1] == day


BINANCE_KLINES = """\
1704067200000,42283.58,42554.57,42261.02,42475.23,1271.68108,1704070799999,53957248.97,47134,682.57,28957416.81,0
1704070800000,42475.23,42775.00,42431.65,42613.56,1196.37856,1704074399999,50984893.50,45186,697.23,29722355.74,0
1704074400000,42613.57,42638.41,42500.00,42581.10,685.21213,1704077999999,29164866.91,33174,346.26,14737720.04,0
"""


@pytest.mark.parametrize("unit", ["ms", "us"])
def test_binance_kline_dumps_without_a_header_load(tmp_path: Path, unit: str) -> None:
    """data.binance.vision ships klines without a header line (open time in ms, in µs since
    2025): the first line is data, not column names."""
    text = BINANCE_KLINES
    if unit == "us":
        text = (
            "\n".join(
                f"{line.split(',', 1)[0]}000,{line.split(',', 1)[1]}" for line in text.splitlines()
            )
            + "\n"
        )
    loaded = load_market_file(_file(tmp_path, "BTCUSDT-1h-2024-01-01.csv", text), symbol="BTCUSDT")
    assert loaded.kind == "bars" and len(loaded.messages) == 3 and loaded.problems == []
    first = loaded.messages[0]
    assert isinstance(first, BarIn)
    assert first.ts == datetime(2024, 1, 1, tzinfo=UTC) and first.interval_s == 3600
    assert (first.open, first.close, first.volume) == (
        Decimal("42283.58"),
        Decimal("42475.23"),
        Decimal("1271.68108"),
    )


def test_a_headerless_file_of_another_shape_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MarketFileError) as raised:
        load_market_file(_file(tmp_path, "x.csv", "1,2,3,4\n5,6,7,8\n"), symbol="AAA")
    assert "no column names and 4 numbers" in str(raised.value)
    assert "6: time, open, high, low, close, volume" in str(raised.value)
