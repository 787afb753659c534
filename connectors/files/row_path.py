"""The row path of a market-file scan: one row validated by pydantic into a spilled record.

`connectors.files.fast_rows` takes a chunk by column operations only where it can prove the
outcome equals this path's; every other chunk comes here, row by row, and this is what words
each problem the user sees.
"""

from __future__ import annotations

import heapq
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from connectors.files.market_source import RowProblem
from connectors.files.wire import bar_parts, tick_parts
from models.core.messages import BarIn, Tick

__all__ = ["BAD_BAR", "BAR", "TICK", "Problems", "Rec", "record"]

# A spilled record: (open µs, seq, row, symbol, kind, payload)
BAR, TICK, BAD_BAR = 0, 1, 2
Rec = tuple[int, int, int, str, int, tuple[Any, ...]]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Problems:
    """The `limit` lowest-row problems (all of them when None), and how many there were."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.total = 0
        self._heap: list[tuple[int, int, str]] = []  # max-heap on row via negation

    def add(self, row: int, reason: str) -> None:
        self.total += 1
        item = (-row, -self.total, reason)
        if self.limit is None or len(self._heap) < self.limit:
            heapq.heappush(self._heap, item)
        elif item > self._heap[0]:
            heapq.heapreplace(self._heap, item)

    def add_to(self, other: Problems) -> None:
        """Every problem counted here counted there, the kept ones kept there."""
        kept = self.sorted()
        for row, reason in kept:
            other.add(row, reason)
        other.total += self.total - len(kept)

    def sorted(self) -> list[RowProblem]:
        items = sorted(self._heap, key=lambda t: (-t[0], -t[1]))
        return [RowProblem(-r, reason) for r, _, reason in items]


def _validation_reason(err: ValidationError) -> str:
    parts = []
    for e in err.errors(include_url=False):
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if not loc:
            parts.append(msg)
        elif e["type"] == "missing":
            parts.append(f"{loc}: {msg}")
        else:
            parts.append(f"{loc}={e['input']!r}: {msg}")
    return "; ".join(parts)


def record(
    cols: dict[str, list[Any]],
    i: int,
    us: int,
    seq: int,
    row: int,
    sym: str,
    is_bars: bool,
    fixed_interval: int | None,
    size_key: str | None,
    id_key: str | None,
    volume_key: str | None,
) -> Rec | str:
    """The row as a spilled record, validated; an invalid tick is its reason (an invalid bar
    is kept as a `BAD_BAR` record: it still counts for duplicates and the interval)."""
    ts = _EPOCH + timedelta(microseconds=us)
    try:
        if is_bars:
            data: dict[str, Any] = {
                "symbol": sym,
                "ts": ts,
                "open": str(cols["open"][i]).strip(),
                "high": str(cols["high"][i]).strip(),
                "low": str(cols["low"][i]).strip(),
                "close": str(cols["close"][i]).strip(),
                # Checked against the real interval when it is known (inferred: later).
                "interval_s": fixed_interval or 1,
                # A bar is identified by symbol and open time, so a re-replay dedupes.
                "id": _cell(cols, id_key, i) or f"{sym}:{us // 1000}",
            }
            if volume := _cell(cols, volume_key, i):
                data["volume"] = volume
            bar = BarIn.model_validate(data)
            prices = (bar.open, bar.high, bar.low, bar.close, bar.volume)
            texts = (str(prices[0]), str(prices[1]), str(prices[2]), str(prices[3]), str(prices[4]))
            return (us, seq, row, sym, BAR, bar_parts(sym, us, texts, bar.id))
        tick: dict[str, Any] = {"symbol": sym, "ts": ts, "price": str(cols["price"][i]).strip()}
        if size := _cell(cols, size_key, i):
            tick["size"] = size
        if tick_id := _cell(cols, id_key, i):
            tick["id"] = tick_id
        t = Tick.model_validate(tick)
        return (us, seq, row, sym, TICK, tick_parts(sym, us, str(t.price), str(t.size), t.id))
    except ValidationError as err:
        reason = _validation_reason(err)
        if is_bars:
            return (us, seq, row, sym, BAD_BAR, (reason,))
        return reason


def _cell(cols: dict[str, list[Any]], key: str | None, i: int) -> str:
    """Stripped text of an optional column; empty means "not given" (volume, size, id)."""
    return "" if key is None else str(cols[key][i]).strip()
