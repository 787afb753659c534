"""Event-time tumbling windows that turn one symbol's ticks (or finer bars) into closed bars.

Policy, stated once:
- Window `[start, start + interval)` on the UTC epoch grid, or a calendar window: an ISO week
  from Monday 00:00 UTC, a calendar month (or quarter, year) in UTC (`BarInterval`,
  models/market/interval.py, has the spellings and the arithmetic); an event belongs to the
  window containing its event time. An input bar counts by its open time and is complete at
  its end (`input_end_ms`: open + its interval; a calendar input bar, `BarIn.calendar`, is the
  period holding its stamp and ends where that period ends, so a monthly bar stamped on the
  1st or on the last day of January ends on February 1st; a tick ends at its time), so a
  replayed bar of the same interval closes its window at once instead of one bar late.
  Input bars must therefore be
  delivered by their end, as a live feed does (connectors/files/replay.py publishes them so), or a
  bar's close would be known before the bar is over.
- Off-grid input bars: an input bar belongs to the window that contains its last instant
  (`end - 1 ms`, `input_bar_window`). On the grid that is the window of its open, as before; a
  bar that crosses a window boundary (a 1h bar stamped 10:30 in 1h windows, a daily bar stamped
  05:00 UTC in 1d windows, calendar months in 31d windows, ISO weeks in months) is realigned
  to the window it ends
  in, never to the one it opens in: that window would publish the bar's close (from 11:30) as
  the 11:00 close, a look-ahead. The realigned window closes at its own end, so such a bar is
  released up to one window late and never early; nothing is dropped. `stratflow replay` says
  how many bars of a file are realigned (`off_grid_note`).
- Watermark = the newest event end seen for the symbol minus `allowed_lateness`. A window closes
  (is emitted, once) when the watermark reaches its end. Windows are driven by event time only,
  never by the wall clock, so a replay gives the same bars every time, crash or no crash.
- Late data: an event whose window has already closed is rejected with reason `late`; it goes
  to the dead letters and never changes an emitted bar.
- Duplicates: a message id seen among the symbol's recent ids is rejected with reason
  `duplicate`. "Recent" is at least the last `dedupe_window / 2` and at most the last
  `dedupe_window` ids (two generations of sets: cheap on the per-tick path, bounded memory);
  an input bar without id is a duplicate when its open time repeats. An empty id counts as no
  id (producers often send "" for a missing one). Ticks without ids cannot be told apart from
  genuine equal trades and are all counted.
- An input bar coarser than the window cannot be split and is rejected (`BarInterval.holds`:
  a calendar bar fits a calendar window made of whole periods of it, months in quarters;
  otherwise the bar's longest length must fit the window's shortest).
- Checks in this order: coarser, late, duplicate; a rejected event changes nothing.
- End of input (backtest, replay): `flush()` closes every open window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from models.core.messages import Bar, BarIn, Tick, to_ms
from models.core.trusted import trusted
from models.market.interval import BarInterval, calendar_interval

_ZERO = Decimal(0)


def input_end_ms(msg: Tick | BarIn, ts_ms: int | None = None) -> int:
    """When an input is complete, in epoch ms: a tick at its time, an input bar at its open plus
    its interval, a calendar input bar where its period ends (a monthly bar at the start of the
    next month). Inputs are ordered by this (replay) and it sets a partition's clock (ingest):
    a bar's close is not known before its end."""
    ts = to_ms(msg.ts) if ts_ms is None else ts_ms
    if isinstance(msg, Tick):
        return ts
    if msg.interval_s is not None:
        return ts + msg.interval_s * 1000
    return input_interval(msg).window_end(ts)


def input_interval(msg: BarIn) -> BarInterval:
    """The interval an input bar declares: `interval_s` seconds or its `calendar` period."""
    if msg.interval_s is not None:
        return BarInterval.fixed(msg.interval_s * 1000)
    return calendar_interval(msg.calendar or "")


def input_bar_window(ts_ms: int, end_ms: int, window: BarInterval) -> int:
    """Start of the window an input bar `[ts_ms, end_ms)` is folded into: the one that holds
    its last instant, so no window ever ends before the bar it carries does."""
    last = max(end_ms, ts_ms + 1) - 1
    fixed = window.fixed_ms
    return last - last % fixed if fixed is not None else window.window_start(last)


def input_bar_problem(msg: BarIn, window: BarInterval, ts_ms: int | None = None) -> str | None:
    """Why an input bar cannot be folded into `window`'s windows, or None: a bar coarser than
    the window cannot be split (a calendar bar fits a calendar window that is a whole number
    of its periods: months in quarters, not weeks in months). The bar builder refuses such a
    bar with this reason; `stratflow replay` warns with it before publishing."""
    fixed = window.fixed_ms
    if msg.interval_s is not None and fixed is not None:
        if msg.interval_s * 1000 > fixed:
            return f"bar interval {msg.interval_s}s is coarser than the {fixed // 1000}s window"
        return None
    inner = input_interval(msg)
    if not window.holds(inner):
        return f"bar interval {inner} is coarser than the {window} window"
    return None


def off_grid_note(msg: BarIn, window: BarInterval, ts_ms: int | None = None) -> str | None:
    """How an input bar that crosses a window boundary is realigned, or None when it lies
    inside one window (or cannot be folded at all: `input_bar_problem`)."""
    ts = to_ms(msg.ts) if ts_ms is None else ts_ms
    if input_bar_problem(msg, window, ts) is not None:
        return None
    end = input_end_ms(msg, ts)
    start = input_bar_window(ts, end, window)
    if window.window_start(ts) == start:
        return None
    return (
        f"off grid: {input_interval(msg)} bar {_iso(ts)}..{_iso(end)} crosses a "
        f"{window} window boundary; it is counted in the window it ends in, "
        f"{_iso(start)}..{_iso(window.window_end(start))}"
    )


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class _Window:
    start: int
    first_ms: int
    last_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    notional: Decimal
    trades: int

    def to_bar(self, symbol: str, end_ms: int) -> Bar:
        """The closed bar; built unvalidated (`models.core.trusted`): every value is one the
        validated input messages gave, or computed from them here."""
        vwap = self.notional / self.volume if self.volume > 0 else self.close
        return trusted(
            Bar,
            {
                "symbol": symbol,
                "start_ms": self.start,
                "end_ms": end_ms,
                "open": self.open,
                "high": self.high,
                "low": self.low,
                "close": self.close,
                "volume": self.volume,
                "trades": self.trades,
                "vwap": vwap,
            },
        )


@dataclass(slots=True)
class Rejected:
    """An input the bar builder refused, with the reason for the dead-letter row."""

    reason: str


@dataclass(slots=True)
class BarBuilder:
    """Per-symbol window state; small, picklable, so Bytewax can snapshot it."""

    symbol: str
    interval: BarInterval
    allowed_lateness_ms: int = 0
    dedupe_window: int = 10_000
    watermark: int = -(2**62)
    windows: dict[int, _Window] = field(default_factory=dict)
    recent_ids: set[str] = field(default_factory=set)
    older_ids: set[str] = field(default_factory=set)

    def _seen(self, key: str) -> bool:
        recent = self.recent_ids
        if key in recent or key in self.older_ids:
            return True
        if self.dedupe_window <= 0:
            return False
        recent.add(key)
        if len(recent) >= (self.dedupe_window + 1) // 2:
            self.older_ids, self.recent_ids = recent, set()
        return False

    def remembered_ids(self) -> int:
        return len(self.recent_ids) + len(self.older_ids)

    def __setstate__(self, state: tuple[object, dict[str, Any]]) -> None:
        """Restore a snapshot (pickle passes `(None, slot values)`); one written before
        calendar intervals holds `interval_ms`, the fixed interval it meant."""
        slots = dict(state[1])
        if "interval_ms" in slots:
            slots["interval"] = BarInterval.fixed(slots.pop("interval_ms"))
        for name, value in slots.items():
            object.__setattr__(self, name, value)

    def window_end(self, start: int) -> int:
        """End of the window that starts at `start`."""
        fixed = self.interval.fixed_ms
        return start + fixed if fixed is not None else self.interval.window_end(start)

    def add(self, msg: Tick | BarIn, ts_ms: int | None = None) -> list[Bar] | Rejected:
        """Fold one message in; returns the bars this event closed, or why it was refused.

        `ts_ms` is the message's event time in epoch ms when the caller already has it.
        """
        ts = to_ms(msg.ts) if ts_ms is None else ts_ms
        interval = self.interval
        fixed = interval.fixed_ms
        if isinstance(msg, Tick):
            end = ts
            o = h = lo = c = msg.price
            vol = msg.size
            notional = msg.price * msg.size
            dedupe_key = msg.id or None  # "" is how many producers spell "no id"
            start = ts - ts % fixed if fixed is not None else interval.window_start(ts)
        else:
            if (problem := input_bar_problem(msg, interval, ts)) is not None:
                return Rejected(problem)
            end = input_end_ms(msg, ts)
            o, h, lo, c, vol = msg.open, msg.high, msg.low, msg.close, msg.volume
            notional = (msg.high + msg.low + msg.close) / 3 * msg.volume
            dedupe_key = msg.id or f"bar@{ts}"
            start = input_bar_window(ts, end, interval)
        if (start + fixed if fixed is not None else interval.window_end(start)) <= self.watermark:
            return Rejected(
                f"late: window {start} closed (watermark {self.watermark}, "
                f"allowed lateness {self.allowed_lateness_ms} ms)"
            )
        if dedupe_key is not None and self._seen(dedupe_key):
            return Rejected(f"duplicate: id {dedupe_key!r} already seen")
        w = self.windows.get(start)
        if w is None:
            self.windows[start] = _Window(start, ts, ts, o, h, lo, c, vol, notional, 1)
        else:
            if ts < w.first_ms:
                w.first_ms, w.open = ts, o
            if ts >= w.last_ms:
                w.last_ms, w.close = ts, c
            if h > w.high:
                w.high = h
            if lo < w.low:
                w.low = lo
            w.volume += vol
            w.notional += notional
            w.trades += 1
        mark = end - self.allowed_lateness_ms
        if mark > self.watermark:
            self.watermark = mark
            return self._close_through(mark)
        return []

    def pass_through(self, ts_ms: int, end_ms: int, key: str) -> bool:
        """Fold in an input bar `[ts_ms, end_ms)` with dedupe key `key` (its id, else
        `bar@{ts_ms}`) when `add` would pass it straight through: it fills one window of the
        grid exactly, closes it at once (no allowed lateness, no other window open), and is
        neither late nor a duplicate. Then the state moves as `add` moves it (watermark, ids;
        no window left open) and the caller builds the bar `add` would return, the window's
        `to_bar` of this one input. Else False, and nothing changed: `add` decides.
        Ingest's block path (models/market/bar_runs.py) uses this instead of `add`."""
        fixed = self.interval.fixed_ms
        if (
            fixed is None
            or end_ms - ts_ms != fixed
            or ts_ms % fixed
            or self.allowed_lateness_ms
            or self.windows
            or end_ms <= self.watermark
            or self._seen(key)  # last: it remembers the key when it is new
        ):
            return False
        self.watermark = end_ms
        return True

    def _close_through(self, mark: int) -> list[Bar]:
        windows = self.windows
        if len(windows) == 1:  # the common case: one open window, usually not due yet
            (only,) = windows
            fixed = self.interval.fixed_ms  # inline: this runs on every tick that moves time
            end = only + fixed if fixed is not None else self.interval.window_end(only)
            if end > mark:
                return []
            return [windows.pop(only).to_bar(self.symbol, end)]
        ready = sorted((s, e) for s in windows if (e := self.window_end(s)) <= mark)
        return [windows.pop(s).to_bar(self.symbol, e) for s, e in ready]

    def flush(self) -> list[Bar]:
        """Close everything still open (end of a bounded input)."""
        if not self.windows:
            return []
        self.watermark = max(self.watermark, self.window_end(max(self.windows)))
        return self._close_through(self.watermark)
