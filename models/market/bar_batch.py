"""A Kafka batch of replay-layout bars read as columns at once: ingest's block path.

Per record, `models.market.fast_bar.bar_fields` costs ~4 µs (a regular expression, six
Decimals, four floats, the checks); a backtest sends a million records of one layout. Here a
whole batch is read by `pyarrow.json.read_json` (the layout as an explicit schema) and every
step of `bar_fields` is done on columns, so that `ok[i]` is True exactly when `bar_fields`
would return the fields of record i, and the columns hold those fields:
- the layout: each record is rebuilt from its parsed fields in replay's layout (keys in
  `BarIn`'s order, each once, no whitespace, the interval as its digits) and compared with
  the record's bytes; equal bytes with no escape possible (an escape never reads back as the
  bytes it was written with) is `_BAR`'s shape, key for key; the field texts are then checked
  against `_BAR`'s groups (RE2 on the number columns; the id as printable ASCII of at most 128
  characters; each distinct symbol with Python's expression and against the symbol list);
- numbers with more than 12 places are left to the per-record path: the others are exact in
  the bars table's `decimal128(38, 12)` and `Decimal(text)` is the same value (the text is
  kept for the Decimal's digits);
- the time: its digits read from the text's bytes, the date checked as `datetime` checks it
  (days from the civil calendar, as `date.toordinal()`), then the milliseconds computed with
  `bar_fields`' own float operations (`int(epoch_us / 10**6 * 1000)`: the same IEEE steps on
  exact doubles, |epoch µs| < 2**53, else the per-record path);
- the checks (time bounds, the trusted clock's skew, interval, prices and volume in range,
  low <= open, close <= high) as column comparisons on the decimal128 and int64 columns;
- the floats of close, high, low and volume by Arrow's string-to-double cast, which is
  correctly rounded (fast_float), as `float(text)` is (tests/unit/test_bar_batch.py compares
  them on generated texts).
Anything this cannot read (a batch that is not JSON lines, an Arrow error, a client error or
a null value) gives None, and ingest reads the batch record by record as before; a record
that fails any check is left to the per-record path, which says why.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from models.core.messages import MAX_AMOUNT, MIN_PRICE
from models.core.packed import CLOSE, DECIMAL128, HIGH, LOW, VOLUME, BarFloats
from models.market.fast_bar import _MAX_INTERVAL_S

Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

_KEYS: Final = ("symbol", "ts", "open", "high", "low", "close", "volume", "interval_s", "id")
_SCHEMA: Final = pa.schema(
    [("type", pa.string())] + [(k, pa.int64() if k == "interval_s" else pa.string()) for k in _KEYS]
)
_PARSE: Final = pj.ParseOptions(explicit_schema=_SCHEMA, unexpected_field_behavior="ignore")
_NUMBER: Final = r"^[0-9]{1,20}(\.[0-9]{1,12})?$"  # `_NUM`, at most the columns' 12 places
_TS: Final = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{6})?Z$"
_SYMBOL: Final = r"[A-Z0-9][A-Z0-9._/:-]{0,31}"  # `_BAR`'s symbol group
_SYMBOL_RE: Final = re.compile(_SYMBOL)
_MAX_ID: Final = 128
_PREFIX: Final = b'{"type":"bar",'
_EXACT_US: Final = 1 << 53
_MIN_PRICE: Final = pa.scalar(MIN_PRICE, DECIMAL128)
_MAX_AMOUNT: Final = pa.scalar(MAX_AMOUNT, DECIMAL128)
MIN_RECORDS: Final = 64
"""Smaller batches are read record by record: the columns' fixed cost (~0.3 ms) is more."""


@dataclass(frozen=True, slots=True)
class BatchBars:
    """The bars of a batch that `bar_fields` would read, as columns over those records only:
    `rows[j]` is the record index of bar j; `symbol[j]` indexes `names`."""

    rows: Ints
    names: list[str]
    symbol: npt.NDArray[np.int32]
    ts_ms: Ints
    end_ms: Ints
    ident: Any  # string array: the id ("" when the message has none)
    text: tuple[Any, ...]  # string arrays: open, high, low, close, volume as sent
    dec: tuple[Any, ...]  # the same as decimal128(38, 12)
    floats: BarFloats  # close, high, low, volume

    def __len__(self) -> int:
        return len(self.rows)


def _days_from_civil(y: Ints, m: Ints, d: Ints) -> Ints:
    """Days since 1970-01-01 of valid dates (Howard Hinnant's `days_from_civil`; years >= 1)."""
    y = y - (m <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * np.where(m > 2, m - 3, m + 9) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468  # type: ignore[no-any-return]


_MONTH_DAYS: Final = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int64)


def _times(ts: Any) -> tuple[Ints, Bools]:
    """Epoch µs of `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` texts (already matched), and whether each
    is a time `datetime` accepts."""
    offsets = np.frombuffer(ts.buffers()[1], np.int32, len(ts) + 1 + ts.offset)[ts.offset :]
    data = np.frombuffer(ts.buffers()[2], np.uint8)
    start = offsets[:-1].astype(np.int64)

    def num(at: int, width: int) -> Ints:
        value = np.zeros(len(start), np.int64)
        for k in range(at, at + width):
            value = value * 10 + (data[start + k].astype(np.int64) - 48)
        return value

    year, month, day = num(0, 4), num(5, 2), num(8, 2)
    hour, minute, second = num(11, 2), num(14, 2), num(17, 2)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = _MONTH_DAYS[np.clip(month, 0, 12)] + (leap & (month == 2))
    valid = (
        (year >= 1)
        & (month >= 1)
        & (month <= 12)
        & (day >= 1)
        & (day <= month_days)
        & (hour < 24)
        & (minute < 60)
        & (second < 60)
    )
    days = _days_from_civil(year, np.clip(month, 1, 12), day)
    us = (days * 86400 + hour * 3600 + minute * 60 + second) * 1_000_000
    frac = (offsets[1:] - offsets[:-1]) == 27
    if bool(frac.any()):
        us = us + np.where(
            frac, num(20, 6) if bool(frac.all()) else _fraction(data, start, frac), 0
        )
    return us, valid


def _fraction(data: npt.NDArray[np.uint8], start: Ints, has: Bools) -> Ints:
    """The six fraction digits of the texts that have them (0 for the others)."""
    value = np.zeros(len(start), np.int64)
    at = np.where(has, start, 0)
    for k in range(20, 26):
        digit = data[np.minimum(at + k, len(data) - 1)].astype(np.int64) - 48
        value = value * 10 + np.where(has, digit, 0)
    return value


def _read(data: Any) -> Any:
    read = pj.ReadOptions(use_threads=False, block_size=max(1 << 20, len(data) + 1))
    return pj.read_json(pa.BufferReader(data), read_options=read, parse_options=_PARSE)


def _lines(values: list[bytes | None], raw: Any, usable: Bools | None) -> Any:
    """The records as a table of one row each, or None. All the records as JSON lines first;
    when that fails (a record that is not JSON, or not one line), again with every record
    that cannot be a bar in replay's layout written as `{}`."""
    n = len(values)
    try:
        table = _read(b"\n".join(values))  # type: ignore[arg-type]  # a None raises
        if table.num_rows == n:
            return table
    except (pa.ArrowException, TypeError, ValueError):
        pass
    maybe = pc.and_(
        pc.and_(pc.starts_with(raw, _PREFIX), pc.ends_with(raw, '"}')),
        pc.invert(pc.match_substring(raw, "\n")),
    )
    if usable is not None:
        maybe = pc.and_(maybe, pa.array(usable))
    lines = pc.binary_join_element_wise(
        pc.if_else(pc.fill_null(maybe, False), raw, b"{}"), b"\n", b""
    )
    end = int(np.frombuffer(lines.buffers()[1], np.int32, n + 1)[n])
    try:
        table = _read(lines.buffers()[2].slice(0, end))
    except (pa.ArrowException, TypeError, ValueError):
        return None
    return table if table.num_rows == n else None


def parse_bars(
    values: list[bytes | None],
    symbols: Collection[str],
    now_ms: Ints | None,
    max_future_skew_ms: int,
    min_ms: int,
    max_ms: int,
    usable: Bools | None = None,
) -> BatchBars | None:
    """The bars `bar_fields` reads from `values` (same bounds; `now_ms` per record, negative
    for none; `usable`: the records without a client error, None: all), or None when the
    batch cannot be read as columns (then record by record)."""
    n = len(values)
    try:
        raw = pa.array(values, pa.binary())
    except (pa.ArrowException, TypeError, ValueError):
        return None
    table = _lines(values, raw, usable)
    if table is None:
        return None
    col = {k: table.column(k).combine_chunks() for k in ("type", *_KEYS)}
    interval = col["interval_s"]
    rebuilt = pc.binary_join_element_wise(
        '{"type":"',
        col["type"],
        '","symbol":"',
        col["symbol"],
        '","ts":"',
        col["ts"],
        '","open":"',
        col["open"],
        '","high":"',
        col["high"],
        '","low":"',
        col["low"],
        '","close":"',
        col["close"],
        '","volume":"',
        col["volume"],
        '","interval_s":',
        interval.cast(pa.string()),
        ',"id":"',
        col["id"],
        '"}',
        "",
    )
    ok = pc.and_(
        pc.equal(rebuilt.cast(pa.binary()), raw),
        pc.equal(col["type"], "bar"),
    )
    if usable is not None:
        ok = pc.and_(ok, pa.array(usable))
    for k in ("open", "high", "low", "close", "volume"):
        ok = pc.and_(ok, pc.match_substring_regex(col[k], _NUMBER))
    ident = col["id"]
    ok = pc.and_(ok, pc.match_substring_regex(col["ts"], _TS))
    ok = pc.and_(ok, pc.ascii_is_printable(ident))
    ok = pc.and_(ok, pc.less_equal(pc.binary_length(ident), _MAX_ID))
    ok = pc.and_(ok, pc.less_equal(interval, _MAX_INTERVAL_S))
    ok = pc.and_(ok, pc.greater_equal(interval, 1))
    # The symbols: few distinct ones, each checked once as `bar_fields` checks it.
    coded = col["symbol"].dictionary_encode()
    names: list[str | None] = coded.dictionary.to_pylist()
    known = pa.array([s is not None and s in symbols and _fullmatch(s) for s in names], pa.bool_())
    ok = pc.and_(ok, pc.fill_null(pc.take(known, coded.indices), False))
    keep = np.flatnonzero(pc.fill_null(ok, False).to_numpy(zero_copy_only=False))
    if not len(keep):
        return _empty(names)
    if len(keep) < n:
        taken = pa.array(keep)
        col = {k: a.take(taken) for k, a in col.items()}
        coded = coded.take(taken)
    us, valid = _times(col["ts"])
    exact = np.abs(us) < _EXACT_US
    ts_ms = (np.where(exact, us, 0).astype(np.float64) / 1_000_000 * 1000).astype(np.int64)
    iv = col["interval_s"].to_numpy()
    good = valid & exact & (ts_ms >= min_ms) & (ts_ms < max_ms)
    if now_ms is not None:
        now = now_ms[keep]
        good &= (now < 0) | (ts_ms <= now + max_future_skew_ms)
    text = tuple(col[k] for k in ("open", "high", "low", "close", "volume"))
    dec = tuple(t.cast(DECIMAL128) for t in text)
    o, h, lo, c, v = dec
    prices = pc.and_(
        pc.and_(pc.greater_equal(lo, _MIN_PRICE), pc.less(h, _MAX_AMOUNT)),
        pc.and_(
            pc.and_(pc.less_equal(lo, o), pc.less_equal(o, h)),
            pc.and_(pc.and_(pc.less_equal(lo, c), pc.less_equal(c, h)), pc.less(v, _MAX_AMOUNT)),
        ),
    )
    good &= prices.to_numpy(zero_copy_only=False)
    if not bool(good.all()):
        sub = np.flatnonzero(good)
        if not len(sub):
            return _empty(names)
        taken = pa.array(sub)
        keep, ts_ms, iv = keep[sub], ts_ms[sub], iv[sub]
        text = tuple(t.take(taken) for t in text)
        dec = tuple(d.take(taken) for d in dec)
        col["id"] = col["id"].take(taken)
        coded = coded.take(taken)
    floats = [_frozen(text[k].cast(pa.float64()).to_numpy()) for k in (CLOSE, HIGH, LOW, VOLUME)]
    return BatchBars(
        rows=keep,
        names=[s or "" for s in names],
        symbol=coded.indices.to_numpy(zero_copy_only=False).astype(np.int32),
        ts_ms=ts_ms,
        end_ms=ts_ms + iv * 1000,
        ident=col["id"],
        text=text,
        dec=dec,
        floats=BarFloats(*floats),
    )


def _frozen(values: Any) -> Any:
    """A read-only copy: the kernels read these arrays and never write them."""
    out = np.array(values, np.float64)
    out.flags.writeable = False
    return out


def _fullmatch(symbol: str) -> bool:
    return _SYMBOL_RE.fullmatch(symbol) is not None


def _empty(names: list[str | None]) -> BatchBars:
    none = np.zeros(0, np.int64)
    no_text = tuple(pa.array([], pa.string()) for _ in range(5))
    return BatchBars(
        none,
        [s or "" for s in names],
        np.zeros(0, np.int32),
        none,
        none,
        pa.array([], pa.string()),
        no_text,
        tuple(pa.array([], DECIMAL128) for _ in range(5)),
        BarFloats(*(np.zeros(0) for _ in range(4))),
    )
