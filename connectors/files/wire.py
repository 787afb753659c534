"""Market messages as the bytes `model_dump_json()` gives, built without pydantic objects.

Replay publishes millions of bars; building a `BarIn` and serialising it through pydantic costs
~10 µs a message, more than everything else on the path together (issue 11). The wire format
is `models.core.messages` serialised by pydantic: fields in declaration order, Decimals as
their `str()`, times as `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`, `interval_s` or `calendar` (the other
one left out), strings escaped as pydantic-core escapes them. The file scan
(`connectors.files.market_file`) writes each valid row's JSON once, as two parts, from the
`str()` of its validated Decimals, by column operations for clean chunks
(`bar_parts_columns`) and row by row for the others (`bar_parts`); replay joins them with the
symbol's interval member. tests/unit/test_replay_wire.py proves the bytes equal
`model_dump_json()` on generated messages, edge cases included. Nothing here changes what is
on the wire: ingest (`models.market.parsing`) reads these bytes as it reads any producer's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic_core import to_json

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pyarrow as pa

__all__ = [
    "Parts",
    "bar_encoder",
    "bar_json",
    "bar_parts",
    "bar_parts_columns",
    "decode",
    "interval_member",
    "iso_column",
    "iso_z",
    "json_text",
    "ms_of",
    "tick_json",
    "tick_parts",
    "tick_parts_columns",
]

Parts = tuple[bytes, bytes]
"""(head, tail) of a message's JSON; a bar's interval member goes between them."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_US = 86_400_000_000
# Text pydantic-core writes as is between quotes: printable ASCII but `"` and `\`.
_PLAIN = re.compile(r"[ !#-\[\]-~]*")

_days: dict[int, str] = {}
_seconds: list[str] = []


def _second_texts() -> list[str]:
    if not _seconds:
        _seconds.extend(f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400))
    return _seconds


def _day_text(day: int) -> str:
    if len(_days) >= 100_000:
        _days.clear()
    text = _days[day] = (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%dT")
    return text


def iso_z(us: int) -> str:
    """Epoch µs (UTC) as pydantic writes an aware UTC datetime: seconds always, microseconds
    (six digits) only when there are any, `Z` for UTC. Years 1900..2199 (the event-time range
    `models.market.parsing.event_time_problem` allows) always have four digits."""
    day, rem = divmod(us, _DAY_US)
    date = _days.get(day) or _day_text(day)
    sec, frac = divmod(rem, 1_000_000)
    if frac:
        return f"{date}{_second_texts()[sec]}.{frac:06d}Z"
    return date + _second_texts()[sec] + "Z"


def json_text(text: str) -> str:
    """A JSON string literal, escaped as pydantic-core escapes it (its own encoder unless the
    text is plain printable ASCII)."""
    if _PLAIN.fullmatch(text):
        return f'"{text}"'
    return to_json(text).decode()


def ms_of(us: int) -> int:
    """`models.core.messages.to_ms` of the datetime of `us`, computed the same way (through
    float seconds, truncated), so orders and time ranges match the pydantic path exactly."""
    return int(us / 1_000_000 * 1000)


# A message's value is `head + member + tail`: `member` is a bar's `,"interval_s":N` or
# `,"calendar":"1mo"` (known only once the whole file is scanned), empty for a tick.


def bar_parts(
    symbol: str, us: int, prices: tuple[str, str, str, str, str], ident: str | None
) -> Parts:
    """A bar's (head, tail): `prices` the `str()` of open, high, low, close and volume, `ident`
    None for the default id `SYMBOL:open ms`."""
    o, h, lo, c, v = prices
    id_json = f'"{symbol}:{us // 1000}"' if ident is None else json_text(ident)
    head = (
        f'{{"type":"bar","symbol":"{symbol}","ts":"{iso_z(us)}","open":"{o}","high":"{h}",'
        f'"low":"{lo}","close":"{c}","volume":"{v}"'
    )
    return head.encode(), f',"id":{id_json}}}'.encode()


def tick_parts(symbol: str, us: int, price: str, size: str, ident: str | None) -> Parts:
    """A tick's (head, tail) (`price` and `size` the `str()` of their Decimals)."""
    id_json = "null" if ident is None else json_text(ident)
    head = f'{{"type":"tick","symbol":"{symbol}","ts":"{iso_z(us)}","price":"{price}"'
    return head.encode(), f',"size":"{size}","id":{id_json}}}'.encode()


def iso_column(us: npt.NDArray[np.int64]) -> pa.Array:
    """`iso_z` of every value, by numpy."""
    import numpy as np
    import pyarrow as pa

    stamps = us.astype("datetime64[us]")
    text = np.datetime_as_string(stamps, unit="s")
    frac = us % 1_000_000 != 0
    if bool(frac.any()):
        text = np.where(frac, np.datetime_as_string(stamps, unit="us"), text)
    return pa.array(np.char.add(text, "Z"), type=pa.string())


def _ids_json(ids: list[str | None], default: pa.Array | str) -> pa.Array | str:
    import pyarrow as pa

    if all(i is None for i in ids):
        return default
    if isinstance(default, str):
        return pa.array([default if i is None else json_text(i) for i in ids], type=pa.string())
    return pa.array(
        [d if i is None else json_text(i) for i, d in zip(ids, default.to_pylist(), strict=True)],
        type=pa.string(),
    )


def _join(*parts: pa.Array | str) -> list[bytes]:
    import pyarrow as pa
    import pyarrow.compute as pc

    joined = pc.binary_join_element_wise(*parts, "")
    return list(pc.cast(joined, pa.binary()).to_pylist())


def bar_parts_columns(
    symbols: pa.Array,
    us: npt.NDArray[np.int64],
    prices: tuple[pa.Array, pa.Array, pa.Array, pa.Array, pa.Array],
    ids: list[str | None],
) -> tuple[list[bytes], list[bytes]]:
    """`bar_parts` of every row, by column operations (pyarrow string joins)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    o, h, lo, c, v = prices
    head = _join(
        '{"type":"bar","symbol":"', symbols, '","ts":"', iso_column(us), '","open":"', o,
        '","high":"', h, '","low":"', lo, '","close":"', c, '","volume":"', v, '"',
    )  # fmt: skip
    ms_text = pc.cast(pa.array(us // 1000), pa.string())
    default = pc.binary_join_element_wise('"', symbols, ":", ms_text, '"', "")
    tail = _join(',"id":', _ids_json(ids, default), "}")
    return head, tail


def tick_parts_columns(
    symbols: pa.Array,
    us: npt.NDArray[np.int64],
    price: pa.Array,
    size: pa.Array,
    ids: list[str | None],
) -> tuple[list[bytes], list[bytes]]:
    """`tick_parts` of every row, by column operations."""
    head = _join(
        '{"type":"tick","symbol":"', symbols, '","ts":"', iso_column(us), '","price":"', price,
        '"',
    )  # fmt: skip
    tail = _join(',"size":"', size, '","id":', _ids_json(ids, "null"), "}")
    return head, tail


def interval_member(fixed_ms: int | None, calendar: str) -> bytes:
    """The interval member of a bar's JSON: `interval_s` for a fixed interval, else `calendar`."""
    if fixed_ms is not None:
        return f',"interval_s":{fixed_ms // 1000}'.encode()
    return f',"calendar":{json_text(calendar)}'.encode()


def bar_encoder(
    symbol: str, fixed_ms: int | None, calendar: str
) -> Callable[[int, Parts], tuple[int, int, bytes, bytes]]:
    """For one symbol's bars: `encode(open µs, (head, tail))` -> `(end ms, open ms, key,
    value)`, the times as `input_end_ms` and `to_ms` compute them, the value
    `model_dump_json()`'s bytes. The hot path of replay: one call a bar, one concatenation."""
    from models.market.interval import calendar_interval

    key = symbol.encode()
    member = interval_member(fixed_ms, calendar)
    window_end = None if fixed_ms is not None else calendar_interval(calendar).window_end

    if window_end is None:
        assert fixed_ms is not None
        length = fixed_ms

        def fixed(us: int, parts: Parts) -> tuple[int, int, bytes, bytes]:
            ms = int(us / 1_000_000 * 1000)  # ms_of
            return ms + length, ms, key, parts[0] + member + parts[1]

        return fixed

    def calendar_bar(us: int, parts: Parts) -> tuple[int, int, bytes, bytes]:
        ms = int(us / 1_000_000 * 1000)
        return window_end(ms), ms, key, parts[0] + member + parts[1]

    return calendar_bar


def bar_json(
    symbol: str,
    us: int,
    prices: tuple[str, str, str, str, str],
    interval: tuple[int | None, str],
    ident: str | None,
) -> bytes:
    """A `BarIn` as JSON: `prices` the `str()` of open, high, low, close and volume,
    `interval` (fixed ms or None, calendar text), `ident` None for the default id."""
    head, tail = bar_parts(symbol, us, prices, ident)
    return head + interval_member(*interval) + tail


def tick_json(symbol: str, us: int, price: str, size: str, ident: str | None) -> bytes:
    """A `Tick` as JSON (`price` and `size` the `str()` of their Decimals)."""
    head, tail = tick_parts(symbol, us, price, size, ident)
    return head + tail


def decode(head: bytes, tail: bytes) -> dict[str, Any]:
    """The fields of a message from its parts (the model path: `MarketStream.messages`)."""
    return dict(json.loads(head + b"}"), **json.loads(b"{" + tail[1:]))
