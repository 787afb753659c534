"""Replay's fast path publishes exactly what the model path published (issue 11).

Two shortcuts must be invisible on the wire: the values are written from texts
(`connectors.files.wire`) instead of `model_dump_json()`, and clean chunks of a file are
validated by columns (`connectors.files.fast_rows`) instead of row by row through pydantic.
Property tests pin the encoders to pydantic's bytes; the stream tests compare every
(key, value) and time of a generated set of files (two symbols of different intervals, daily,
monthly calendar bars, ticks; CSV and Parquet; edge-case numbers) against the per-row,
pydantic-serialised path.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.files import fast_rows, market_file, market_source
from connectors.files.market_file import MergedStreams, open_market_file
from connectors.files.wire import (
    bar_encoder,
    bar_json,
    bar_parts,
    bar_parts_columns,
    iso_z,
    ms_of,
    tick_json,
    tick_parts,
    tick_parts_columns,
)
from models.core.messages import BarIn, Tick, to_ms
from models.market.bars import input_end_ms
from models.market.parsing import MAX_EVENT_MS, MIN_EVENT_MS

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The event times a file may carry: 1900 .. 2200, not within a day of 1970-01-01.
times_us = st.one_of(
    st.integers(MIN_EVENT_MS * 1000, -86_400_000_000),
    st.integers(86_400_000_000, MAX_EVENT_MS * 1000 - 1),
    st.integers(1_500_000_000, 2_000_000_000).map(lambda s: s * 1_000_000),  # whole seconds
)
prices = st.one_of(
    st.decimals(min_value=Decimal("1e-12"), max_value=Decimal("1e15") - 1, allow_nan=False),
    st.decimals(min_value=Decimal("1e-12"), max_value=1000, places=12),
    st.sampled_from(["1E+3", "1E-8", "0.0000001", "100.000", "999999999999999.999999999"]).map(
        Decimal
    ),
).filter(lambda d: Decimal("1e-12") <= d < Decimal("1e15"))
amounts = st.one_of(prices, st.sampled_from(["0", "0.00", "0E-8", "0E+2"]).map(Decimal))
ids = st.one_of(st.none(), st.text(max_size=40), st.sampled_from(['a"b', "a\\b", "é\n\x01\x7f"]))
symbols = st.from_regex(r"\A[A-Z0-9][A-Z0-9._/:-]{0,31}\Z")
intervals = st.one_of(
    st.integers(1, 31 * 86400).map(lambda s: (s, None)),
    st.sampled_from(["1w", "2w", "1mo", "3mo", "12mo"]).map(lambda c: (None, c)),
)


def _dt(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


@settings(deadline=None)  # the first example imports pyarrow
@given(times_us)
def test_times_are_written_as_pydantic_writes_them(us: int) -> None:
    tick = Tick(symbol="X", ts=_dt(us), price=Decimal(1))
    assert f'"ts":"{iso_z(us)}"' in tick.model_dump_json()
    assert ms_of(us) == to_ms(_dt(us))


@pytest.mark.slow
@settings(deadline=None)  # the first example imports pyarrow
@given(symbols, times_us, st.lists(prices, min_size=4, max_size=4), amounts, intervals, ids)
def test_a_bar_is_the_bytes_of_model_dump_json(
    symbol: str,
    us: int,
    ohlc: list[Decimal],
    volume: Decimal,
    interval: tuple[int | None, str | None],
    ident: str | None,
) -> None:
    low, high = min(ohlc), max(ohlc)
    o, c = ohlc[0], ohlc[1]
    seconds, calendar = interval
    default_id = f"{symbol}:{us // 1000}"
    model = BarIn(
        symbol=symbol, ts=_dt(us), open=o, high=high, low=low, close=c, volume=volume,
        interval_s=seconds, calendar=calendar, id=default_id if ident is None else ident,
    )  # fmt: skip
    texts = (str(o), str(high), str(low), str(c), str(volume))
    fixed = None if seconds is None else seconds * 1000
    assert (
        bar_json(symbol, us, texts, (fixed, calendar or ""), ident)
        == model.model_dump_json().encode()
    )
    parts = bar_parts(symbol, us, texts, ident)
    end, open_ms, key, _ = bar_encoder(symbol, fixed, calendar or "")(us, parts)
    assert (end, open_ms, key) == (input_end_ms(model), to_ms(model.ts), symbol.encode())


@pytest.mark.slow
@settings(deadline=None)  # the first example imports pyarrow
@given(symbols, times_us, prices, amounts, ids)
def test_a_tick_is_the_bytes_of_model_dump_json(
    symbol: str, us: int, price: Decimal, size: Decimal, ident: str | None
) -> None:
    model = Tick(symbol=symbol, ts=_dt(us), price=price, size=size, id=ident)
    got = tick_json(symbol, us, str(price), str(size), ident)
    assert got == model.model_dump_json().encode()


@pytest.mark.slow
@settings(deadline=None)  # the first example imports pyarrow
@given(
    st.lists(
        st.tuples(symbols, times_us, st.lists(prices, min_size=5, max_size=5), ids),
        min_size=1,
        max_size=20,
    )
)
def test_the_column_encoders_write_what_the_row_encoders_write(
    rows: list[tuple[str, int, list[Decimal], str | None]],
) -> None:
    import numpy as np
    import pyarrow as pa

    syms = pa.array([r[0] for r in rows])
    us = np.array([r[1] for r in rows], dtype=np.int64)
    texts = [[str(d) for d in r[2]] for r in rows]
    ids = [r[3] for r in rows]
    cols = tuple(pa.array([t[k] for t in texts]) for k in range(5))
    heads, tails = bar_parts_columns(syms, us, cols, ids)
    assert list(zip(heads, tails, strict=True)) == [
        bar_parts(r[0], r[1], tuple(t), r[3])  # type: ignore[arg-type]
        for r, t in zip(rows, texts, strict=True)
    ]
    heads, tails = tick_parts_columns(syms, us, cols[0], cols[4], ids)
    assert list(zip(heads, tails, strict=True)) == [
        tick_parts(r[0], r[1], t[0], t[4], r[3]) for r, t in zip(rows, texts, strict=True)
    ]


@pytest.mark.slow
@settings(deadline=None)  # the first example imports pyarrow
@given(st.one_of(st.from_regex(fast_rows.AMOUNT_RE), st.from_regex(fast_rows.PRICE_RE)))
def test_the_fast_number_shapes_are_their_own_decimal_text(text: str) -> None:
    text = text.rstrip("\n")  # from_regex may end a `$` match with a newline
    if re.fullmatch(fast_rows.AMOUNT_RE.strip("^$"), text):
        assert str(Decimal(text)) == text


@pytest.mark.parametrize(
    "text", ["0.0000001", "00.5", "1e3", "1.", ".5", "-1", "+1", "0.00000000", " 1", "1_0"]
)
def test_other_number_shapes_are_left_to_the_row_path(text: str) -> None:
    assert not re.match(fast_rows.AMOUNT_RE, text)


# --------------------------------------------------------------------------------------------
# Whole streams: fast path against the per-row, pydantic path
# --------------------------------------------------------------------------------------------

T0 = 1_704_067_200_000  # 2024-01-01


def _number(rng: random.Random, base: float) -> str:
    """Mostly plain two-decimal prices, sometimes the shapes the fast path must get right."""
    pick = rng.random()
    if pick < 0.03:
        return f"{base:.12f}"  # many decimals
    if pick < 0.05:
        return f"{base * 1e9:.3f}"  # large
    if pick < 0.06:
        return f"{base:.2f}0"  # trailing zero: same double as the two-decimal text
    return f"{base:.2f}"


def _bar_rows(rng: random.Random, symbols: dict[str, int], rows: int) -> Iterator[list[str]]:
    """Bars of several symbols, each at its own spacing (ms), interleaved by open time."""
    clocks = dict.fromkeys(symbols, T0)
    price = 100.0
    for _ in range(rows):
        sym = min(clocks, key=lambda s: clocks[s])
        t = clocks[sym]
        clocks[sym] += symbols[sym]
        price = max(1.0, price + rng.uniform(-1, 1))
        o = _number(rng, price)
        c = o if rng.random() < 0.1 else _number(rng, price + rng.uniform(-0.5, 0.5))
        hi = (
            max(o, c, key=Decimal)
            if rng.random() < 0.2
            else f"{float(max(o, c, key=Decimal)) + 1:.2f}"
        )
        lo = min(o, c, key=Decimal)
        vol = "" if rng.random() < 0.05 else str(rng.randint(0, 10**6) / 100)
        yield [str(t), sym, o, hi, lo, c, vol]


def _write_csv(path: Path, header: list[str], rows: Iterator[list[str]]) -> Path:
    with path.open("w") as fh:
        fh.write(",".join(header) + "\n")
        for r in rows:
            fh.write(",".join(r) + "\n")
    return path


def _files(tmp_path: Path, rows: int, shuffled: bool = False, clean: bool = False) -> list[Path]:
    """Two symbols at 1m and 5m (a duplicate bar, an invalid one; in blocks out of order when
    `shuffled`; `clean`: both at 1m, nothing refused), daily bars, monthly calendar bars,
    ticks with ids."""
    rng = random.Random(11)
    header = ["time", "symbol", "open", "high", "low", "close", "volume"]
    spacing = {"SIMA": 60_000, "SIMB": 60_000 if clean else 300_000}
    bars = list(_bar_rows(rng, spacing, rows))
    if not clean:
        bars.insert(101, [bars[100][0], bars[100][1], "1", "2", "1", "1", "3"])  # a duplicate
        bars[1500][3] = "0.5"  # high below low: refused
    if shuffled:
        blocks = [bars[i : i + 97] for i in range(0, len(bars), 97)]
        rng.shuffle(blocks)
        bars = [r for b in blocks for r in b]
    mixed = _write_csv(tmp_path / "mixed.csv", header, iter(bars))
    daily = _write_csv(tmp_path / "daily.csv", header, _bar_rows(rng, {"SIMA": 86_400_000}, 40))
    months = [datetime(2023 + m // 12, m % 12 + 1, 1, tzinfo=UTC) for m in range(14)]
    monthly = tmp_path / "SIMB.csv"
    monthly.write_text(
        "date,open,high,low,close\n" + "".join(f"{d:%Y-%m-%d},10.5,11,10,10.75\n" for d in months)
    )
    ticks = tmp_path / "ticks.csv"
    lines = ["time,symbol,price,size,id"]
    t = T0
    for i in range(rows // 4):
        t += rng.randint(0, 90_000)
        ident = f'"t""{i}"' if i % 50 == 0 else f"t{i}"  # a quote in the id: escaped
        lines.append(f"{t},SIMC,{_number(rng, 50 + i % 7)},{rng.randint(0, 9)},{ident}")
    ticks.write_text("\n".join(lines) + "\n")
    return [mixed, daily, monthly, ticks]


def _parquet(path: Path) -> Path:
    import pandas as pd

    frame = pd.read_csv(path)
    out = path.with_suffix(".parquet")
    frame.to_parquet(out)
    return out


def _wire_of_models(streams: MergedStreams) -> list[tuple[int, int, bytes, bytes]]:
    return [
        (input_end_ms(m), to_ms(m.ts), m.symbol.encode(), m.model_dump_json().encode())
        for m in streams.messages()
    ]


def _open_all(paths: list[Path]) -> MergedStreams:
    return MergedStreams([open_market_file(p) for p in paths])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("parquet", "shuffled", "clean"),
    [(False, False, False), (True, False, False), (False, True, False), (False, True, True)],
)
def test_the_published_stream_is_the_per_row_pydantic_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parquet: bool, shuffled: bool, clean: bool
) -> None:
    """Everything the fast path does (pyarrow CSV, column validation, the bar pass while
    building, JSON from texts) against the csv module, pydantic row by row, the bar pass
    after building and `model_dump_json()`: the same stream, counts, intervals, problems."""
    monkeypatch.setattr(market_source, "CHUNK_ROWS", 500)
    monkeypatch.setattr(market_source._ParquetSource, "BATCH", 500)
    monkeypatch.setattr(market_file, "RUN_ROWS", 1_200)
    paths = _files(tmp_path, 3_000, shuffled, clean)
    if parquet:
        paths[0] = _parquet(paths[0])
    fast_chunks = 0
    real = fast_rows.fast_records

    def counting(*args: Any, **kw: Any) -> Any:
        nonlocal fast_chunks
        got = real(*args, **kw)
        fast_chunks += got is not None
        return got

    monkeypatch.setattr(market_file, "fast_records", counting)
    fast = _open_all(paths)
    assert fast_chunks >= 6  # most chunks took the column path
    new = list(fast.encoded())
    monkeypatch.setattr(market_file, "fast_records", lambda *a, **k: None)
    monkeypatch.setattr(market_source, "is_plain", lambda *a: False)  # the csv module reads
    monkeypatch.setattr(market_file, "SCAN_WHILE_BUILDING", False)
    slow = _open_all(paths)
    old = _wire_of_models(slow)
    assert len(new) == len(old) == slow.count == fast.count > 3_500
    assert new == old
    assert _wire_of_models(fast) == old
    assert {s.path.name: s.intervals for s in fast.streams} == {
        s.path.name: s.intervals for s in slow.streams
    }
    assert [s.problems for s in fast.streams] == [s.problems for s in slow.streams]
    assert [len(s.problems) for s in fast.streams] == [0 if clean else 2, 0, 0, 0]
    # Without a heap (one interval, nothing skipped): the daily bars, the ticks, clean 1m bars.
    straight = [s.path.name for s in fast.streams if s._uniform() is not None]
    assert (
        straight == ["mixed.csv", "daily.csv", "ticks.csv"] if clean else ["daily.csv", "ticks.csv"]
    )


def test_a_chunk_with_a_bad_row_takes_the_row_path_and_reports_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(market_source, "CHUNK_ROWS", 100)
    rng = random.Random(3)
    rows = list(_bar_rows(rng, {"SIMA": 60_000}, 1_000))
    rows[450][3] = "-1"  # high: refused
    rows[720][2] = "1.0"  # open equal to a low of "1.00": a valid row the fast path leaves
    rows[720][4] = "1.00"
    rows[720][3] = "2"
    rows[720][5] = "1.5"
    path = _write_csv(
        tmp_path / "SIMA.csv",
        ["time", "symbol", "open", "high", "low", "close", "volume"],
        iter(rows),
    )
    with open_market_file(path) as stream:
        assert [p.row for p in stream.problems] == [452]
        values = [v for _, _, _, v in stream.encoded()]
        models = [m.model_dump_json().encode() for m in stream.messages()]
    assert values == models and len(values) == 999


SHAPES = {
    "header": "time,open,high,low,close\n1704067200000,1,2,0.5,1.5\n1704067260000,1,2,0.5,1.5\n",
    "crlf": "time,price\r\n1704067200000,1\r\n1704067260000,2\r\n",
    "semicolon": "time;price;size\n1704067200000;1;2\n1704067260000;2;\n",
    "headerless": "1704067200000,1,2,0.5,1.5,10\n1704067260000,1,2,0.5,1.5,11\n",
    "spreadsheet": "Date,Time,Open,High,Low,Close,,\n2024-01-02,9:30,1,2,0.5,1.5,,\n"
    "2024-01-02,9:31,1,2,0.5,1.5,,\n",
    "unicode space": "time,price\n\u00a01704067200000,1\n1704067260000,\u20032\n",
    "blank row": "time,price\n1704067200000,1\n , \n1704067260000,2\n",
    "short row": "time,price\n1704067200000,1\n1704067260000\n1704067320000,2\n",
    "blank line": "time,price\n\n1704067200000,1\n",
    "quoted": 'time,price\n1704067200000,"1"\n',
    "lone cr": "time,price\r1704067200000,1\r",
    "iso": "ts,price\n2024-01-02T09:30:00Z,1\n2024-01-02 09:31:00.5,2\n",
    "seconds": "time,price\n1704067200.25,1\n1704067201,2\n1e400,3\n",
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_pyarrow_reads_a_csv_file_as_the_csv_module_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: str
) -> None:
    path = tmp_path / "X.csv"
    path.write_text(SHAPES[shape], newline="")

    def read() -> tuple[Any, ...]:
        src = market_source.open_source(path)
        chunks = [(c.rownums, c.columns, c.time_us) for c in src.chunks()]
        return src.names, src.time_key, src.time_profile, src.first_time_text, src.problems, chunks

    arrow = read()
    needs_csv_module = {"blank row", "short row", "blank line", "quoted", "lone cr"}
    src = market_source.open_source(path)
    assert (getattr(src, "_arrow", None) is None) == (shape in needs_csv_module)
    monkeypatch.setattr(market_source, "is_plain", lambda *a: False)
    assert arrow == read()
