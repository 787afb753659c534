"""A Kafka batch of replay-layout bars read as columns at once: ingest's block path.

Per record, `models.market.fast_bar.bar_fields` costs ~4 µs (a regular expression, six
Decimals, four floats, the checks); a backtest sends a million records of one layout. Here a
whole batch is read with numpy and Arrow compute, and every step of `bar_fields` is done on
columns, so that a record is kept exactly when `bar_fields` would return its fields, and the
columns hold those fields:
- the layout: a record of replay's layout has 38 double quotes (no field of `_BAR` holds
  one); each record with that many is cut at its quotes into its nine field texts (one Arrow
  binary column each), rebuilt from them in replay's layout (keys in `BarIn`'s order, each
  once, no whitespace) and compared with its bytes. Equal bytes is `_BAR`'s shape, key for
  key, with those texts as its groups (the template's texts between fields hold no quote, so
  the cut is the only one); the texts are then matched against `_BAR`'s groups (RE2; the
  numbers with at most 12 places: more are left to the per-record path) and each distinct
  symbol with Python's expression and against the symbol list;
- numbers: exact in the bars table's `decimal128(38, 12)` and `Decimal(text)` is the same
  value (the text is kept for the Decimal's digits and exponent);
- the time: its digits read from the text's bytes, the date checked as `datetime` checks it
  (days from the civil calendar, as `date.toordinal()`), then the milliseconds computed with
  `bar_fields`' own float operations (`int(epoch_us / 10**6 * 1000)`: the same IEEE steps on
  exact doubles, |epoch µs| < 2**53, else the per-record path);
- the checks (time bounds, the trusted clock's skew, interval, prices and volume in range,
  low <= open, close <= high) as column comparisons on the decimal128 and int64 columns;
- the floats of close, high, low and volume by Arrow's string-to-double cast, which is
  correctly rounded (fast_float), as `float(text)` is (tests/unit/test_packed_bars.py).
A batch that cannot be read this way (a value that is not bytes) gives None, and ingest
reads it record by record as before; a record that fails any check is left to the
per-record path, which says why. tests/unit/test_bar_batch.py compares the records kept and
their fields with `bar_fields` on generated records, defects included.
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

from models.core.messages import MAX_AMOUNT, MIN_PRICE
from models.core.packed import CLOSE, DECIMAL128, HIGH, LOW, VOLUME, BarFloats
from models.market.fast_bar import _MAX_INTERVAL_S

Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

_NUMBER: Final = r"[0-9]{1,20}(?:\.[0-9]{1,12})?"  # `_NUM`, at most the columns' 12 places
_TS: Final = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{6})?Z"
_SYMBOL: Final = r"[A-Z0-9][A-Z0-9._/:-]{0,31}"  # `_BAR`'s symbol group
_SYMBOL_RE: Final = re.compile(_SYMBOL)
_ID: Final = r"[ !#-\[\]-~]{0,128}"  # `_BAR`'s id group
_INTERVAL: Final = r"[1-9][0-9]{0,7}"
_MATCHED: Final = ("ts", "open", "high", "low", "close", "volume", "interval_s", "id")
_GROUPS: Final = "^" + '"'.join((_TS, *[_NUMBER] * 5, _INTERVAL, _ID)) + "$"
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


_QUOTES: Final = 38
"""Double quotes in a record of replay's layout: 19 strings (10 keys, 9 values); no value of
`_BAR` holds one."""
_FIELDS: Final = (
    ("symbol", 6, 7, 1, 0),
    ("ts", 10, 11, 1, 0),
    ("open", 14, 15, 1, 0),
    ("high", 18, 19, 1, 0),
    ("low", 22, 23, 1, 0),
    ("close", 26, 27, 1, 0),
    ("volume", 30, 31, 1, 0),
    ("interval_s", 33, 34, 2, -1),  # `"interval_s":60,"id"`: between `":` and `,`
    ("id", 36, 37, 1, 0),
)
"""Where each field's text lies: after quote a (plus the start offset), before quote z (plus
the end offset), counting the record's quotes from 0."""


def _gather(data: npt.NDArray[np.uint8], begin: Ints, end: Ints) -> Any:
    """The bytes `data[begin[i]:end[i]]` of each i as one Arrow binary array."""
    lengths = np.maximum(end - begin, 0)
    offsets = np.zeros(len(begin) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    at = np.arange(int(offsets[-1])) + np.repeat(begin - offsets[:-1], lengths)
    buffers = [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data[at])]
    return pa.Array.from_buffers(pa.binary(), len(begin), buffers)


def _split(raw: Any, usable: Bools | None) -> tuple[Ints, dict[str, Any]]:
    """The records with replay's number of quotes (and no client error), and each one's
    field texts cut at its quotes. Only a text cut from a record of replay's layout is right;
    the caller rebuilds each record from them and keeps those equal to their bytes."""
    n = len(raw)
    offsets = np.frombuffer(raw.buffers()[1], np.int32, n + 1 + raw.offset)[raw.offset :]
    offsets = offsets.astype(np.int64)
    body = raw.buffers()[2]
    data = np.frombuffer(body, np.uint8) if body is not None else np.zeros(0, np.uint8)
    quotes = np.flatnonzero(data[: offsets[-1]] == ord('"'))
    first = np.searchsorted(quotes, offsets[:-1])
    counted = (np.searchsorted(quotes, offsets[1:]) - first) == _QUOTES
    if usable is not None:
        counted &= usable
    rows = np.flatnonzero(counted)
    first = first[rows]
    fields = {}
    for name, a, z, da, dz in _FIELDS:
        begin = quotes[first + a] + da
        fields[name] = _gather(data, begin, np.maximum(quotes[first + z] + dz, begin))
    return rows, fields


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
    try:
        raw = pa.array(values, pa.binary())
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return None
    if raw.nbytes >= 1 << 31:  # int32 offsets
        return None
    keep, col = _split(raw, usable)
    if not len(keep):  # no record of replay's layout (ticks, another producer's bars)
        return _empty()
    rebuilt = pc.binary_join_element_wise(
        b'{"type":"bar","symbol":"',
        col["symbol"],
        b'","ts":"',
        col["ts"],
        b'","open":"',
        col["open"],
        b'","high":"',
        col["high"],
        b'","low":"',
        col["low"],
        b'","close":"',
        col["close"],
        b'","volume":"',
        col["volume"],
        b'","interval_s":',
        col["interval_s"],
        b',"id":"',
        col["id"],
        b'"}',
        b"",
    )
    ok = pc.equal(rebuilt, raw.take(pa.array(keep)))
    # The texts against `_BAR`'s groups in one pass: joined by a quote, which none holds.
    joined = pc.binary_join_element_wise(*(col[k] for k in _MATCHED), b'"')
    ok = pc.and_(ok, pc.match_substring_regex(joined, _GROUPS))
    # The symbols: few distinct ones, each checked once as `bar_fields` checks it.
    coded = col["symbol"].dictionary_encode()
    names = [_symbol(s, symbols) for s in coded.dictionary.to_pylist()]
    ok = pc.and_(ok, pc.take(pa.array([s is not None for s in names], pa.bool_()), coded.indices))
    good = pc.fill_null(ok, False).to_numpy(zero_copy_only=False)
    if not bool(good.all()):
        sub = np.flatnonzero(good)
        taken = pa.array(sub)
        keep = keep[sub]
        col = {k: a.take(taken) for k, a in col.items()}
        coded = coded.take(taken)
    if not len(keep):
        return _empty()
    # Every text is ASCII now: the string type's views of the same bytes.
    col = {k: a.view(pa.string()) for k, a in col.items()}
    us, valid = _times(col["ts"])
    exact = np.abs(us) < _EXACT_US
    ts_ms = (np.where(exact, us, 0).astype(np.float64) / 1_000_000 * 1000).astype(np.int64)
    iv = col["interval_s"].cast(pa.int64()).to_numpy()
    good = valid & exact & (ts_ms >= min_ms) & (ts_ms < max_ms) & (iv <= _MAX_INTERVAL_S)
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
            return _empty()
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


def _symbol(text: bytes | None, symbols: Collection[str]) -> str | None:
    """The symbol of a field text when `bar_fields` takes it (its pattern, the list)."""
    if text is None or not text.isascii():
        return None
    symbol = text.decode("ascii")
    return symbol if symbol in symbols and _SYMBOL_RE.fullmatch(symbol) is not None else None


def _frozen(values: Any) -> Any:
    """A read-only copy: the kernels read these arrays and never write them."""
    out = np.array(values, np.float64)
    out.flags.writeable = False
    return out


def _empty() -> BatchBars:
    none = np.zeros(0, np.int64)
    no_text = tuple(pa.array([], pa.string()) for _ in range(5))
    return BatchBars(
        none,
        [],
        np.zeros(0, np.int32),
        none,
        none,
        pa.array([], pa.string()),
        no_text,
        tuple(pa.array([], DECIMAL128) for _ in range(5)),
        BarFloats(*(np.zeros(0) for _ in range(4))),
    )
