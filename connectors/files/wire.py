"""Market messages as the bytes `model_dump_json()` gives, built without pydantic objects.

Replay publishes millions of bars; building a `BarIn` and serialising it through pydantic costs
~10 µs a message, more than everything else on the path together (issue 11). The wire format
is `models.core.messages` serialised by pydantic: fields in declaration order, Decimals as
their `str()`, times as `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`, `interval_s` or `calendar` (the other
one left out), strings escaped as pydantic-core escapes them. The functions here write exactly
that from the texts the file scan keeps (`connectors.files.market_file` stores the `str()` of
each validated Decimal); tests/unit/test_replay_wire.py proves the bytes equal
`model_dump_json()` on generated messages, edge cases included. Nothing here changes what is
on the wire: ingest (`models.market.parsing`) reads these bytes as it reads any producer's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic_core import to_json

__all__ = ["bar_encoder", "bar_json", "interval_member", "iso_z", "json_text", "ms_of", "tick_json"]

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


def bar_encoder(
    symbol: str, fixed_ms: int | None, calendar: str
) -> Callable[[int, tuple[Any, ...]], tuple[int, int, bytes, bytes]]:
    """For one symbol's bars: `encode(open µs, payload)` -> `(end ms, open ms, key, value)`,
    the times as `input_end_ms` and `to_ms` compute them, the value `model_dump_json()`'s
    bytes. `payload` is `(open, high, low, close, volume, id)`: the `str()` of the Decimals, id
    None for the default `SYMBOL:open ms`. The hot path of replay: one call a bar, the time
    text from caches, no other call that can be avoided."""
    from models.market.interval import calendar_interval

    key = symbol.encode()
    head = f'{{"type":"bar","symbol":"{symbol}","ts":"'
    member = interval_member(fixed_ms, calendar)
    window_end = None if fixed_ms is not None else calendar_interval(calendar).window_end
    days, seconds = _days, _second_texts()

    def encode(us: int, payload: tuple[Any, ...]) -> tuple[int, int, bytes, bytes]:
        o, h, lo, c, v, ident = payload
        day, rem = divmod(us, _DAY_US)
        date = days.get(day) or _day_text(day)
        sec, frac = divmod(rem, 1_000_000)
        ts = f"{date}{seconds[sec]}.{frac:06d}Z" if frac else f"{date}{seconds[sec]}Z"
        ms = int(us / 1_000_000 * 1000)  # ms_of
        id_json = f'"{symbol}:{us // 1000}"' if ident is None else json_text(ident)
        value = (
            f'{head}{ts}","open":"{o}","high":"{h}","low":"{lo}","close":"{c}",'
            f'"volume":"{v}"{member},"id":{id_json}}}'
        )
        end = ms + fixed_ms if window_end is None else window_end(ms)  # type: ignore[operator]
        return end, ms, key, value.encode()

    return encode


def bar_json(
    symbol: str,
    us: int,
    prices: tuple[str, str, str, str, str],
    interval: tuple[int | None, str],
    ident: str | None,
) -> bytes:
    """A `BarIn` as JSON: `prices` the `str()` of open, high, low, close and volume,
    `interval` (fixed ms or None, calendar text), `ident` None for the default id."""
    return bar_encoder(symbol, *interval)(us, (*prices, ident))[3]


def interval_member(fixed_ms: int | None, calendar: str) -> str:
    """The interval member of a bar's JSON: `interval_s` for a fixed interval, else `calendar`."""
    if fixed_ms is not None:
        return f',"interval_s":{fixed_ms // 1000}'
    return f',"calendar":{json_text(calendar)}'


def tick_json(symbol: str, us: int, price: str, size: str, ident: str | None) -> bytes:
    """A `Tick` as JSON (`price` and `size` the `str()` of their Decimals)."""
    id_json = "null" if ident is None else json_text(ident)
    return (
        f'{{"type":"tick","symbol":"{symbol}","ts":"{iso_z(us)}","price":"{price}",'
        f'"size":"{size}","id":{id_json}}}'
    ).encode()
