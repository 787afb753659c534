"""A fast path for the one market message shape replay writes: a bar exactly as
`connectors/files/wire.py` (and `BarIn.model_dump_json()`) lays it out.

`parse_market` validates with pydantic plus a duplicate-key scan, ~10 µs a message; a backtest
sends a million bars of one fixed layout. `fast_bar` recognises that layout with one regular
expression (keys in `BarIn`'s field order, each once, so no key can repeat; no whitespace;
numbers as plain ASCII decimals; the id plain printable ASCII) and then checks everything the
model and `parse_market` check (symbol list, ranges, OHLC order, interval, event time, clock).
It never refuses: on any doubt it returns None and the caller takes the slow path, which gives
the verdict and the dead letter's reason. So it accepts a subset of what the slow path accepts
and, there, returns an equal message (equal fields, same `Decimal` digits, same tz object, same
fields set): tests/unit/test_fast_bar.py checks both against the slow path on generated valid
and invalid payloads.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import datetime
from decimal import Decimal
from typing import Final

from pydantic_core import TzInfo

from models.core.messages import MAX_AMOUNT, MIN_PRICE, BarIn

_NUM = rb"([0-9]{1,20}(?:\.[0-9]{1,20})?)"
_BAR: Final = re.compile(
    rb'\{"type":"bar","symbol":"([A-Z0-9][A-Z0-9._/:-]{0,31})",'
    rb'"ts":"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{6}))?Z",'
    rb'"open":"' + _NUM + rb'","high":"' + _NUM + rb'","low":"' + _NUM + rb'",'
    rb'"close":"' + _NUM + rb'","volume":"' + _NUM + rb'",'
    rb'"interval_s":([1-9][0-9]{0,7}),"id":"([ !#-\[\]-~]{0,128})"\}'
)
_MAX_INTERVAL_S: Final = 31 * 86400  # BarIn.interval_s's bound
_UTC: Final = TzInfo(0)  # the tz object pydantic gives a `Z` time
_FIELDS_SET: Final = frozenset(
    ("type", "symbol", "ts", "open", "high", "low", "close", "volume", "interval_s", "id")
)
_ZERO: Final = Decimal(0)
_EPOCH_ORDINAL: Final = 719163  # date(1970, 1, 1).toordinal()
_set = object.__setattr__


def fast_bar(
    value: bytes,
    symbols: Collection[str],
    now_ms: int | None,
    max_future_skew_ms: int,
    min_ms: int,
    max_ms: int,
) -> tuple[BarIn, int] | None:
    """`(bar, event ms)` as `parse_market` returns it for `value`, or None: not this shape, or
    something to refuse (the slow path then says why). `min_ms <= ms < max_ms`: the event
    times accepted without further checks."""
    m = _BAR.fullmatch(value)
    if m is None:
        return None
    sym_b, y, mo, d, hh, mi, ss, frac, o_b, h_b, l_b, c_b, v_b, iv_b, id_b = m.groups()
    symbol = sym_b.decode()
    if symbol not in symbols:
        return None
    h_, m_, s_, us = int(hh), int(mi), int(ss), int(frac or 0)
    try:
        ts = datetime(int(y), int(mo), int(d), h_, m_, s_, us, tzinfo=_UTC)
    except ValueError:
        return None
    # `ts.timestamp()` computed as CPython does (whole µs since the epoch, divided by 10**6
    # once), without its tz calls: the same float, so the same ms as `parse_market`'s.
    epoch_us = ((ts.toordinal() - _EPOCH_ORDINAL) * 86400 + h_ * 3600 + m_ * 60 + s_) * (
        1_000_000
    ) + us
    ts_ms = int(epoch_us / 1_000_000 * 1000)
    if not min_ms <= ts_ms < max_ms:
        return None
    if now_ms is not None and ts_ms > now_ms + max_future_skew_ms:
        return None
    interval_s = int(iv_b)
    if interval_s > _MAX_INTERVAL_S:
        return None
    o, h, lo, c, v = (
        Decimal(o_b.decode()),
        Decimal(h_b.decode()),
        Decimal(l_b.decode()),
        Decimal(c_b.decode()),
        Decimal(v_b.decode()),
    )
    if not (
        lo >= MIN_PRICE
        and h < MAX_AMOUNT
        and lo <= o <= h
        and lo <= c <= h
        and _ZERO <= v < MAX_AMOUNT
    ):
        return None
    bar = BarIn.__new__(BarIn)
    _set(
        bar,
        "__dict__",
        {
            "type": "bar",
            "symbol": symbol,
            "ts": ts,
            "open": o,
            "high": h,
            "low": lo,
            "close": c,
            "volume": v,
            "interval_s": interval_s,
            "calendar": None,
            "id": id_b.decode(),
        },
    )
    _set(bar, "__pydantic_fields_set__", set(_FIELDS_SET))
    _set(bar, "__pydantic_extra__", None)
    _set(bar, "__pydantic_private__", None)
    return bar, ts_ms


# ------------------------------------------------------------------ the block path's parse
# The same layout as `_BAR`, matched on text, grouped for `bar_fields`: the date and the time
# of day in one group each (looked up: `_day_of`, `_second_of`), the numbers, the interval, the
# id.
_BAR_TEXT: Final = re.compile(
    _BAR.pattern.decode("ascii").replace(
        "([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})",
        "([0-9]{4}-[0-9]{2}-[0-9]{2})T([0-9]{2}:[0-9]{2}:[0-9]{2})",
    )
)
_DAYS: dict[str, int | None] = {}
"""Days since 1970-01-01 of each `YYYY-MM-DD` seen (None: not a date); bounded, see `_day_of`."""
_MAX_DAYS: Final = 4096
_SECONDS: dict[str, int | None] = {}
"""Second of the day of each `HH:MM:SS` seen (None: not a time); at most 100**3 keys."""

BarFields = tuple[
    str, int, Decimal, Decimal, Decimal, Decimal, Decimal, int, str, float, float, float, float
]
"""(symbol, event ms, open, high, low, close, volume, interval seconds, id, and the floats of
close, high, low and volume) of one bar."""

_NUMBERS: dict[str, tuple[Decimal, float]] = {}
"""`(Decimal(t), float(t))` of each volume text `t` seen; bounded, see `_number`. A Decimal is
immutable, so one object may stand for every bar that has that text.

`float(t)` is `float(Decimal(t))` bit for bit: CPython converts a Decimal to float through its
string (`PyDec_AsFloat`: `PyFloat_FromString(str(d))`), `float(t)` converts `t` with the same
`PyFloat_FromString`, and that conversion (`_Py_dg_strtod`) is correctly rounded, so its result
depends only on the value the text denotes; `Decimal(t)` holds `t`'s value exactly (no context
rounding on construction) and `str()` of it denotes that value. tests/unit/test_fast_bar.py
checks it on generated texts (long digit strings, exponents, halfway cases)."""
_MAX_NUMBERS: Final = 1 << 12
_LAST_CLOSE: list[tuple[str, Decimal]] = [("", Decimal(0))]
"""The text and Decimal of the last close read: the next bar's open is usually the same."""


def _day_of(date: str) -> int | None:
    """Days since the epoch of a `YYYY-MM-DD` text, or None when it is not a date; cached (a
    run of minute bars has one date per 1,440 bars)."""
    day = _DAYS.get(date, -1)
    if day != -1:
        return day
    try:
        day = datetime(int(date[:4]), int(date[5:7]), int(date[8:])).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        day = None
    if len(_DAYS) >= _MAX_DAYS:
        _DAYS.clear()
    _DAYS[date] = day
    return day


def _second_of(time: str) -> int | None:
    """Seconds since midnight of an `HH:MM:SS` text, or None when it is not a time of day
    (what `datetime` refuses: hour 24, minute or second 60)."""
    second = _SECONDS.get(time, -1)
    if second != -1:
        return second
    h, m, s = int(time[:2]), int(time[3:5]), int(time[6:])
    second = _SECONDS[time] = h * 3600 + m * 60 + s if h < 24 and m < 60 and s < 60 else None
    return second


def _number(text: str) -> tuple[Decimal, float]:
    """`(Decimal(text), float(text))`, remembered (`_NUMBERS`)."""
    if len(_NUMBERS) >= _MAX_NUMBERS:
        _NUMBERS.clear()
    pair = _NUMBERS[text] = (Decimal(text), float(text))
    return pair


def bar_fields(
    value: bytes,
    symbols: Collection[str],
    now_ms: int | None,
    max_future_skew_ms: int,
    min_ms: int,
    max_ms: int,
) -> BarFields | None:
    """The fields of the bar `fast_bar` returns for `value` (same arguments), without the
        message object: one match, the Decimal and int conversions, the same checks, and the floats
    the feature kernels read (`BarFloats`). None exactly
        when `fast_bar` gives None (tests/unit/test_fast_bar.py compares the two); the block path
        of ingest (models/market/bar_runs.py) reads a run of bars with it."""
    # Ticks and other shapes fail at once; `_BAR` only matches ASCII, so nothing is lost.
    if not value.startswith(b'{"type":"bar",') or not value.isascii():
        return None
    m = _BAR_TEXT.fullmatch(value.decode("ascii"))
    if m is None:
        return None
    symbol, date, time, frac, o_t, h_t, l_t, c_t, v_t, iv_t, ident = m.groups()
    if symbol not in symbols:
        return None
    day = _DAYS.get(date, -1)  # the caches read inline: this runs once a bar
    if day == -1:
        day = _day_of(date)
    second = _SECONDS.get(time, -1)
    if second == -1:
        second = _second_of(time)
    if day is None or second is None:
        return None
    # As `fast_bar` computes it (CPython's `timestamp()`: whole µs, divided once): same float.
    epoch_us = (day * 86400 + second) * 1_000_000
    if frac is not None:
        epoch_us += int(frac)
    ts_ms = int(epoch_us / 1_000_000 * 1000)
    if not min_ms <= ts_ms < max_ms:
        return None
    if now_ms is not None and ts_ms > now_ms + max_future_skew_ms:
        return None
    interval_s = int(iv_t)
    if interval_s > _MAX_INTERVAL_S:
        return None
    # Prices rarely repeat from bar to bar except the open (the previous close, in a feed
    # without gaps); volumes often do (round lots): those come from `_NUMBERS`.
    prev = _LAST_CLOSE[0]
    o = prev[1] if o_t == prev[0] else Decimal(o_t)
    h, lo, c = Decimal(h_t), Decimal(l_t), Decimal(c_t)
    h_f, l_f, c_f = float(h_t), float(l_t), float(c_t)
    _LAST_CLOSE[0] = (c_t, c)
    v, v_f = _NUMBERS.get(v_t) or _number(v_t)
    if not (
        lo >= MIN_PRICE
        and h < MAX_AMOUNT
        and lo <= o <= h
        and lo <= c <= h
        and _ZERO <= v < MAX_AMOUNT
    ):
        return None
    return symbol, ts_ms, o, h, lo, c, v, interval_s, ident, c_f, h_f, l_f, v_f
