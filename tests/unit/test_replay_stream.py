"""`stratflow replay FILE` in bounded memory, in publishing order (issue 9, item 6).

The command is run in-process against a fake producer (no broker): what is measured is the
reading, ordering and publishing, and the measure is allocated bytes (tracemalloc), which does
not depend on how loaded the machine is.
"""

from __future__ import annotations

import csv
import itertools
import random
import statistics
import tracemalloc
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import connectors.files.market_file as market_file
import connectors.files.market_source as market_source
from api.cli import main
from connectors.files.replay import load_market_file, open_market_file, publish_order
from models.core.messages import BarIn, Tick
from models.market.bars import input_end_ms
from models.market.interval import BarInterval

T0 = int(datetime(2024, 3, 4, tzinfo=UTC).timestamp())


class FakeProducer:
    """Takes records like confluent_kafka's Producer and keeps only what the test checks."""

    def __init__(self) -> None:
        self.count = 0
        self.ends: list[int] = []
        self.keep = False
        self.values: list[bytes] = []

    def produce(
        self, topic: str, value: bytes, key: bytes | None = None, partition: int = -1
    ) -> None:
        self.count += 1
        if self.keep:
            self.values.append(value)

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0


@pytest.fixture
def fake_broker(monkeypatch: pytest.MonkeyPatch) -> FakeProducer:
    producer = FakeProducer()
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "fake:9092")
    monkeypatch.setattr("connectors.kafka.broker.wait_for_broker", lambda *a, **k: None)
    monkeypatch.setattr("connectors.kafka.broker.ensure_topics", lambda *a, **k: None)
    monkeypatch.setattr("connectors.files.replay.wait_for_broker", lambda *a, **k: None)
    monkeypatch.setattr("connectors.files.replay.make_producer", lambda *a, **k: producer)
    monkeypatch.setattr("api.replay_cmd._topic_size", lambda *a, **k: None)
    return producer


def write_trades(path: Path, rows: int, seed: int, shuffled: bool) -> Path:
    """A trade file of two symbols, 1-3 trades a second; `shuffled` mixes it in blocks, as
    files concatenated from several exports are."""
    rng = random.Random(seed)
    lines = []
    t = T0 * 1000
    for i in range(rows):
        t += rng.randint(0, 900)
        sym = "SIMA" if rng.random() < 0.5 else "SIMB"
        lines.append([str(t), sym, f"{100 + rng.random():.4f}", str(rng.randint(1, 50)), str(i)])
    if shuffled:
        blocks = [lines[i : i + 997] for i in range(0, len(lines), 997)]
        rng.shuffle(blocks)
        lines = [r for b in blocks for r in b]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "symbol", "price", "size", "id"])
        w.writerows(lines)
    return path


def parse(value: bytes) -> BarIn | Tick:
    return (
        BarIn.model_validate_json(value) if b'"bar"' in value else Tick.model_validate_json(value)
    )


def peak_of_replay(path: Path, producer: FakeProducer) -> int:
    tracemalloc.start()
    try:
        with pytest.raises(SystemExit) as done:
            main(["replay", str(path)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert done.value.code in (0, None)
    return peak


@pytest.mark.slow  # tracemalloc over 60,000 messages: tens of seconds
@pytest.mark.parametrize("shuffled", [False, True])
def test_replay_memory_does_not_grow_with_the_file(
    tmp_path: Path,
    fake_broker: FakeProducer,
    monkeypatch: pytest.MonkeyPatch,
    shuffled: bool,
) -> None:
    """Peak allocation of `stratflow replay FILE` for a file 4x as long stays within 25% of
    the 1x peak (was: every message in memory, ~1.5 kB a trade, so 4x the peak). Small chunk
    and run sizes make the 1x file already use several of each, sorted or not."""
    monkeypatch.setattr(market_source, "CHUNK_ROWS", 1_000, raising=False)
    monkeypatch.setattr(market_file, "RUN_ROWS", 3_000, raising=False)
    monkeypatch.setattr(market_file, "BLOCK_ROWS", 200, raising=False)
    monkeypatch.setattr(market_file, "MAX_FANIN", 8, raising=False)
    warm = write_trades(tmp_path / "warm.csv", 100, 0, shuffled)
    small = write_trades(tmp_path / "small.csv", 12_000, 1, shuffled)
    large = write_trades(tmp_path / "large.csv", 48_000, 2, shuffled)
    peak_of_replay(warm, fake_broker)  # imports and first-use caches are not the file's
    peak_small = peak_of_replay(small, fake_broker)
    assert fake_broker.count == 12_100
    peak_large = peak_of_replay(large, fake_broker)
    assert fake_broker.count == 60_100
    assert peak_large < 1.25 * peak_small, (peak_small, peak_large)


@pytest.mark.slow  # 9,000 trades, merged in several levels
@pytest.mark.parametrize("shuffled", [False, True])
def test_streamed_replay_publishes_exactly_the_in_memory_order(
    tmp_path: Path,
    fake_broker: FakeProducer,
    monkeypatch: pytest.MonkeyPatch,
    shuffled: bool,
) -> None:
    """Every valid trade once, in time order (ties in file order), with small runs merged in
    several levels: the same records the in-memory load gives."""
    monkeypatch.setattr(market_source, "CHUNK_ROWS", 500)
    monkeypatch.setattr(market_file, "RUN_ROWS", 700)
    monkeypatch.setattr(market_file, "BLOCK_ROWS", 50)
    monkeypatch.setattr(market_file, "MAX_FANIN", 3)
    path = write_trades(tmp_path / "t.csv", 9_000, 3, shuffled)
    fake_broker.keep = True
    with pytest.raises(SystemExit):
        main(["replay", str(path)])
    got = [Tick.model_validate_json(v) for v in fake_broker.values]
    rows = list(csv.DictReader(path.open()))
    order = sorted(range(len(rows)), key=lambda i: (int(rows[i]["time"]), i))
    assert [t.id for t in got] == [rows[i]["id"] for i in order]
    assert got[0].price == Decimal(rows[order[0]]["price"])


def interval_fields(interval: BarInterval) -> dict[str, Any]:
    """`interval_s` or `calendar` of an input bar of `interval`."""
    if interval.fixed_ms is None:
        return {"calendar": interval.text}
    return {"interval_s": interval.fixed_ms // 1000}


@st.composite
def bar_files(draw: st.DrawFn) -> tuple[list[list[str]], dict[str, int]]:
    """Bar rows of 1-3 symbols with their own intervals, gaps, duplicates and a bad row or two,
    in any row order."""
    rows: list[list[str]] = []
    intervals: dict[str, int] = {}
    for k in range(draw(st.integers(1, 3))):
        sym = f"S{k}"
        iv = draw(st.sampled_from([60, 300, 3600, 14400, 86400]))
        intervals[sym] = iv
        slots = draw(st.lists(st.integers(0, 40), min_size=3, max_size=30))
        for slot in slots:  # repeats are duplicate bars
            t = T0 + slot * iv
            close = draw(st.sampled_from(["10.5", "11", "9.75", "x"]))
            rows.append([str(t), sym, "10", "12", "9", close])
    return draw(st.permutations(rows)), intervals


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(data=bar_files(), run_rows=st.integers(1, 20))
def test_bar_files_stream_in_end_order_like_the_in_memory_order(
    tmp_path_factory: pytest.TempPathFactory,
    data: tuple[list[list[str]], dict[str, int]],
    run_rows: int,
) -> None:
    """Any row order, any run size: the stream yields each valid, first-of-its-time bar once,
    ordered by end time (ties in file order): `publish_order` of the same bars."""
    rows, intervals = data
    path = tmp_path_factory.mktemp("bars") / "bars.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "symbol", "open", "high", "low", "close"])
        w.writerows(rows)
    old = market_file.RUN_ROWS, market_file.BLOCK_ROWS, market_file.MAX_FANIN
    market_file.RUN_ROWS, market_file.BLOCK_ROWS, market_file.MAX_FANIN = run_rows, 3, 2
    try:
        try:
            stream = open_market_file(path, interval=None)
        except market_file.MarketFileError as err:
            assert "single bar" in str(err) or "31-day" in str(err)
            return
        with stream:
            got = list(stream.messages())
            again = list(stream.messages())
            problems = stream.problems
            count = stream.count
    finally:
        market_file.RUN_ROWS, market_file.BLOCK_ROWS, market_file.MAX_FANIN = old
    firsts: dict[tuple[str, int], int] = {}
    for line, r in enumerate(rows, start=2):
        firsts.setdefault((r[1], int(r[0])), line)
    valid = [
        (line, r)
        for line, r in enumerate(rows, start=2)
        if firsts[(r[1], int(r[0]))] == line and r[5] != "x"
    ]
    expected = publish_order(
        [
            BarIn(
                symbol=r[1],
                ts=datetime.fromtimestamp(int(r[0]), tz=UTC),
                open=Decimal(r[2]),
                high=Decimal(r[3]),
                low=Decimal(r[4]),
                close=Decimal(r[5]),
                id=f"{r[1]}:{int(r[0]) * 1000}",
                **interval_fields(stream.intervals[r[1]]),
            )
            for _, r in valid
        ]
    )
    assert got == again == expected and count == len(expected)
    for sym in intervals:  # the median spacing, from counted gaps
        distinct = sorted({int(r[0]) for r in rows if r[1] == sym})
        gaps = [b - a for a, b in itertools.pairwise(distinct)]
        median = statistics.median(gaps)
        # Daily bars that all fall on Mondays (or all on Sundays) a week apart are ISO weeks.
        days = {datetime.fromtimestamp(t, tz=UTC).weekday() for t in distinct}
        weekly = median == 7 * 86400 and all(t % 86400 == 0 for t in distinct) and len(days) == 1
        assert stream.intervals[sym] == (
            BarInterval.weeks(1)
            if weekly and days <= {0, 6}
            else BarInterval.fixed(round(median) * 1000)
        )
    ends = [input_end_ms(m) for m in got]
    assert ends == sorted(ends)
    assert len(problems) == len(rows) - len(valid)
    assert [p.row for p in problems] == sorted(p.row for p in problems)


@pytest.mark.slow
def test_load_and_stream_agree_on_a_shipped_dataset(tmp_path: Path) -> None:
    """The in-memory load is the stream, listed: same messages, problems and intervals."""
    from connectors.files.datasets import EURUSD, dataset_path

    loaded = load_market_file(dataset_path(EURUSD), symbol=EURUSD)
    with open_market_file(dataset_path(EURUSD), symbol=EURUSD) as stream:
        assert list(stream.messages()) == loaded.messages
        assert stream.count == len(loaded.messages) and stream.in_order
        assert stream.intervals == loaded.intervals == {EURUSD: BarInterval.fixed(3_600_000)}
    first, second = loaded.messages[:2]
    assert first.ts == min(m.ts for m in loaded.messages)
    assert second.ts - first.ts == timedelta(hours=1)


@pytest.mark.parametrize(
    ("interval", "offset_s", "window", "unfit"),
    [
        ("1h", 1800, "1h", True),  # the 10:30 hourly bar
        ("1h", 1800, "1d", False),  # inside its day: fine
        ("1d", 5 * 3600, "1d", True),  # a daily bar stamped at New York midnight, in UTC
        ("1m", 30, "1m", True),
        ("1m", 0, "1h", False),
        ("1h", 0, "1m", True),  # coarser than the window
    ],
)
def test_replay_warns_of_bars_the_pipeline_will_refuse(
    tmp_path: Path,
    fake_broker: FakeProducer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    interval: str,
    offset_s: int,
    window: str,
    unfit: bool,
) -> None:
    """Bars off the symbol's window grid are still published (the pipeline dead-letters them
    with the reason), but the user hears of it first, with the rule's own reason."""
    monkeypatch.setenv("STRATFLOW__SYMBOLS__GOOG__BAR_INTERVAL", window)
    step = {"1m": 60, "1h": 3600, "1d": 86400}[interval]
    path = tmp_path / "goog.csv"
    path.write_text(
        "time,open,high,low,close\n"
        + "".join(f"{T0 + offset_s + i * step},10,11,9,10.5\n" for i in range(5))
    )
    with pytest.raises(SystemExit) as done:
        main(["replay", str(path), "--symbol", "GOOG"])
    err = capsys.readouterr().err
    assert done.value.code in (0, None), err
    assert fake_broker.count == 5
    if unfit and "coarser" in err:
        assert "warning: 5 of 5 GOOG bars will be dead-lettered by the pipeline" in err
        assert "off grid: " not in err
    elif unfit:
        assert "note: 5 of 5 GOOG bars lie across the window grid and are realigned" in err
        assert "off grid: " in err and "dead-lettered" not in err
    else:
        assert "warning" not in err and "note:" not in err


def test_several_files_are_merged_by_end_time_in_any_order(
    tmp_path: Path,
    fake_broker: FakeProducer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`stratflow replay daily.csv hourly.csv` (or the other way round, or a trade file too):
    one stream by end time, so no daily close goes out before its day's hours and trades."""
    daily = tmp_path / "goog.csv"
    daily.write_text(
        "date,open,high,low,close\n" + "".join(f"{T0 + d * 86400},10,11,9,10.5\n" for d in range(4))
    )
    hourly = tmp_path / "eurusd.csv"
    hourly.write_text(
        "time,open,high,low,close\n"
        + "".join(f"{T0 + h * 3600},1.1,1.2,1.0,1.15\n" for h in range(4 * 24))
    )
    trades = tmp_path / "sima.csv"
    trades.write_text(
        "time,price\n" + "".join(f"{T0 + 1800 + m * 7200},5\n" for m in range(4 * 12))
    )
    fake_broker.keep = True
    runs = []
    for files in ([daily, hourly, trades], [trades, hourly, daily]):
        fake_broker.values.clear()
        with pytest.raises(SystemExit) as done:
            main(["replay", *map(str, files)])
        assert done.value.code in (0, None), capsys.readouterr().err
        runs.append(list(fake_broker.values))
    assert len(runs[0]) == 4 + 96 + 48
    for run in runs:
        sent = [parse(v) for v in run]
        ends = [input_end_ms(m) for m in sent]
        assert ends == sorted(ends)
        days = [m for m in sent if m.symbol == "GOOG"]
        hours = [m for m in sent if m.symbol == "EURUSD"]
        for day in days:  # after every hour of its day, before any hour of the next
            at = sent.index(day)
            assert all(sent.index(h) < at for h in hours if input_end_ms(h) < input_end_ms(day))
            assert all(sent.index(h) > at for h in hours if input_end_ms(h) > input_end_ms(day))
    assert sorted(runs[0]) == sorted(runs[1])
    with pytest.raises(SystemExit) as refused:
        main(["replay", str(daily), str(hourly), "--symbol", "GOOG"])
    assert refused.value.code == 2
    assert "--symbol names the symbol of one file" in capsys.readouterr().err
