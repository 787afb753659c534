"""A batch read as columns (`models.market.bar_batch.parse_bars`) accepts exactly the records
`bar_fields` accepts and reads the same fields from them: checked on replay-layout records
and on records cut, spliced, re-spaced, re-keyed, escaped and re-dated at generated places."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.market.bar_batch import parse_bars
from models.market.fast_bar import bar_fields
from models.market.parsing import EPOCH_SENTINEL_MS, MAX_EVENT_MS

SYMBOLS = frozenset({"AAA", "B.B", "lower", "C/D"})
NOW = 1_700_000_000_000
SKEW = 60_000

_odd_numbers = st.sampled_from(
    [
        *("0", "007", "0.000000000001", "1e5", "-1", "1.", ".5", "1000000000000000"),
        *("1.0000000000001", "999999999999999.999999999999", "123456789012345678901"),
        "1" * 20 + "." + "9" * 12,
    ]
)
_prices = st.decimals(min_value=Decimal("0.0001"), max_value=10**6, places=4).map(str)
_odd_stamps = st.sampled_from(
    [
        "2023-11-14T22:13:00.123456Z",
        "2024-02-29T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2023-11-14T24:00:00Z",
        "2023-11-14T23:60:00Z",
        "2023-11-14T23:59:60Z",
        "0000-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "1969-12-31T23:59:59.999999Z",
        "1970-01-01T00:00:00Z",
        "2023-13-01T00:00:00Z",
        "2023-11-14T22:13:00.12Z",
        "2023-11-14 22:13:00Z",
        "2023-11-14T22:14:30Z",  # ahead of NOW by more than the skew
    ]
)
_stamps = st.datetimes(datetime(1900, 1, 1), datetime(2023, 11, 14)).map(
    lambda d: (
        d.strftime("%Y-%m-%dT%H:%M:%S") + (f".{d.microsecond:06d}" if d.second % 2 else "") + "Z"
    )
)
_FIELD_DEFECTS = ("symbol", "price", "order", "stamp", "interval", "id")


@st.composite
def records(draw: st.DrawFn) -> bytes | None:
    """A replay-layout bar `bar_fields` accepts, or one with a defect: a field it refuses,
    or bytes cut, spliced, re-spaced, re-keyed or replaced."""
    symbol = draw(st.sampled_from(["AAA", "B.B", "C/D"]))
    a, b, c = sorted((draw(_prices) for _ in range(3)), key=Decimal)
    o, h, lo, close = draw(st.sampled_from([a, b, c])), c, a, draw(st.sampled_from([a, b, c]))
    v = draw(st.one_of(_prices, st.sampled_from(["0", "1", "3.5", "99999999999999"])))
    stamp, interval, ident = draw(_stamps), "60", draw(st.sampled_from(["", "AAA:1", "x y ~"]))
    defect = draw(st.sampled_from(["none"] * 8 + list(_FIELD_DEFECTS) + ["bytes"] * 3))
    if defect == "symbol":
        symbol = draw(st.sampled_from(["lower", "ZZZ", "AAA ", "", "A\\u0041"]))
    elif defect == "price":
        o, h, lo, close, v = (draw(st.one_of(_prices, _odd_numbers)) for _ in range(5))
    elif defect == "order":
        o, lo = lo, o
    elif defect == "stamp":
        stamp = draw(_odd_stamps)
    elif defect == "interval":
        interval = draw(st.sampled_from(["0", "060", "2678400", "2678401", "99999999", "6e1"]))
    elif defect == "id":
        ident = draw(st.sampled_from(['q"q', "b\\\\s", "\\u0041", "\u00e9", "~" * 129, "~" * 128]))
    value = (
        f'{{"type":"bar","symbol":"{symbol}","ts":"{stamp}","open":"{o}","high":"{h}",'
        f'"low":"{lo}","close":"{close}","volume":"{v}","interval_s":{interval},"id":"{ident}"}}'
    ).encode()
    if defect != "bytes":
        return value
    edit = draw(st.sampled_from(["cut", "insert", "flip", "space", "keys", "null"]))
    at = draw(st.integers(0, len(value)))
    if edit == "cut":
        value = value[:at] + value[at + draw(st.integers(1, 5)) :]
    elif edit == "insert":
        value = value[:at] + draw(st.sampled_from([b'"', b"\n", b",", b"\xff", b"x"])) + value[at:]
    elif edit == "flip" and at < len(value):
        value = value[:at] + bytes([value[at] ^ draw(st.integers(1, 255))]) + value[at + 1 :]
    elif edit == "space":
        value = value.replace(b",", b", ", 1)
    elif edit == "keys":
        value = value.replace(b'"open"', b'"OPEN"').replace(b'"high"', b'"open"')
    elif edit == "null":
        return draw(st.sampled_from([None, b"", b"{}", b"x"]))
    return value


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    st.lists(records(), min_size=1, max_size=40),
    st.sampled_from(["none", "one", "each"]),
    st.lists(st.booleans(), min_size=40, max_size=40),
)
def test_the_columns_accept_what_bar_fields_accepts(
    values: list[bytes | None], clock: str, usable: list[bool]
) -> None:
    n = len(values)
    if clock == "each":  # the broker's time per record, none where it is 0
        nows = [NOW if i % 3 else -1 for i in range(n)]
    else:
        nows = [NOW] * n if clock == "one" else [-1] * n
    mask = np.array(usable[:n])
    got = parse_bars(
        values,
        SYMBOLS,
        None if clock == "none" else np.array(nows, np.int64),
        SKEW,
        EPOCH_SENTINEL_MS,
        MAX_EVENT_MS,
        None if mask.all() else mask,
    )
    assert got is not None
    want = {}
    for i, value in enumerate(values):
        if value is None or not mask[i]:
            continue
        now = None if nows[i] < 0 else nows[i]
        fields = bar_fields(value, SYMBOLS, now, SKEW, EPOCH_SENTINEL_MS, MAX_EVENT_MS)
        if fields is not None:
            want[i] = fields
    assert got.rows.tolist() == sorted(want)
    for j, i in enumerate(got.rows.tolist()):
        symbol, ts_ms, o, h, lo, c, v, interval_s, ident, cf, hf, lf, vf = want[i]
        texts = [t[j].as_py() for t in got.text]
        assert [Decimal(t) for t in texts] == [o, h, lo, c, v]
        assert [repr(Decimal(t)) for t in texts] == [repr(x) for x in (o, h, lo, c, v)]
        assert got.names[got.symbol[j]] == symbol
        assert (int(got.ts_ms[j]), int(got.end_ms[j])) == (ts_ms, ts_ms + interval_s * 1000)
        assert got.ident[j].as_py() == ident
        floats = [got.floats.close[j], got.floats.high[j], got.floats.low[j], got.floats.volume[j]]
        assert [x.hex() for x in floats] == [x.hex() for x in (cf, hf, lf, vf)]
        assert [d[j].as_py() for d in got.dec] == [o, h, lo, c, v]


def test_a_batch_of_replayed_bars_is_read_whole() -> None:
    values = [
        (
            f'{{"type":"bar","symbol":"AAA","ts":"2023-11-14T22:{m:02d}:00Z","open":"1.5",'
            f'"high":"2","low":"1","close":"1.75","volume":"10","interval_s":60,"id":"A:{m}"}}'
        ).encode()
        for m in range(60)
    ]
    got = parse_bars(values, SYMBOLS, None, SKEW, EPOCH_SENTINEL_MS, MAX_EVENT_MS)
    assert got is not None and got.rows.tolist() == list(range(60))
    assert got.floats.close.tolist() == [1.75] * 60 and not got.floats.close.flags.writeable
