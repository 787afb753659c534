"""The recent bars of each symbol, kept in the desk's state for the validation gate.

A new GPT strategy is validated on its symbols' recent history (`models.review.validation`);
the desk is the one place that sees every bar in stream order, so it keeps them: a ring of the
last `window_bars + HEADROOM` bars per symbol, as numpy rows (times as int64, prices and volume
as float64: the `float()` of the bar's Decimals, the floats the vectorised evaluator and the
desk's indicators read). A window is cut at the decision's trigger bar (`window`), so an answer
arriving a few bars late is judged on the bars its question saw: `HEADROOM` bars of slack keep
the full window for answers up to that many bars late (the `gpt.max_wait` of a minute-bar run
is 15 bars).

Fed on every bar: the per-bar path (`add`) and the block path's quiet runs (`add_columns`, the
floats ingest already parsed where it did). Kept only when it can be used (`wiring`): validation
enabled and GPT asked; a backtest of a strategy file keeps nothing and pays nothing.

It is part of the desk's snapshot: it pickles as the rows in use, in order (never the unused
part of a ring), and restores to the same windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from models.config.settings import Settings
from models.core.blocks import BarColumns
from models.core.messages import Bar
from models.review.loop import DEFAULT_REVIEWERS, ProposedStrategy, Reviewer
from models.review.validation import ValidationReviewer
from models.vectorized.bars import BarArrays

if TYPE_CHECKING:
    from models.strategy.active import ActiveStrategy
    from models.strategy.compiler import CompiledStrategy

__all__ = ["HEADROOM", "BarHistory", "BarRing", "proposed_strategy", "wiring"]

HEADROOM: Final = 1024
_PRICES: Final = 6  # open, high, low, close, volume, vwap


@dataclass(slots=True)
class BarRing:
    """The last `capacity` bars of one symbol; `count` bars written in all."""

    capacity: int
    times: npt.NDArray[np.int64] = field(init=False)  # (capacity, 2): start, end
    prices: npt.NDArray[np.float64] = field(init=False)  # (capacity, 6)
    count: int = 0

    def __post_init__(self) -> None:
        self.times = np.zeros((self.capacity, 2), dtype=np.int64)
        self.prices = np.zeros((self.capacity, _PRICES), dtype=np.float64)

    def last_end(self) -> int | None:
        if self.count == 0:
            return None
        return int(self.times[(self.count - 1) % self.capacity, 1])

    def add(self, bar: Bar) -> None:
        last = self.last_end()
        if last is not None and bar.end_ms <= last:
            return  # a bar already kept (time order is the symbol's stream order)
        i = self.count % self.capacity
        self.times[i] = (bar.start_ms, bar.end_ms)
        self.prices[i] = (
            float(bar.open),
            float(bar.high),
            float(bar.low),
            float(bar.close),
            float(bar.volume),
            float(bar.vwap),
        )
        self.count += 1

    def add_rows(self, times: npt.NDArray[np.int64], prices: npt.NDArray[np.float64]) -> None:
        """Rows in time order (after the kept ones: earlier rows are dropped)."""
        last = self.last_end()
        if last is not None and len(times) and times[0, 1] <= last:
            keep = times[:, 1] > last
            times, prices = times[keep], prices[keep]
        m = len(times)
        if m > self.capacity:
            times, prices = times[-self.capacity :], prices[-self.capacity :]
            self.count += m - self.capacity
            m = self.capacity
        i = self.count % self.capacity
        first = min(m, self.capacity - i)
        self.times[i : i + first] = times[:first]
        self.prices[i : i + first] = prices[:first]
        if first < m:
            self.times[: m - first] = times[first:]
            self.prices[: m - first] = prices[first:]
        self.count += m

    def ordered(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """The kept rows, oldest first (copies when the ring has wrapped)."""
        if self.count <= self.capacity:
            return self.times[: self.count], self.prices[: self.count]
        i = self.count % self.capacity
        return (
            np.concatenate((self.times[i:], self.times[:i])),
            np.concatenate((self.prices[i:], self.prices[:i])),
        )

    def __getstate__(self) -> dict[str, Any]:
        times, prices = self.ordered()
        return {"capacity": self.capacity, "times": times.copy(), "prices": prices.copy()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.capacity = state["capacity"]
        self.__post_init__()
        self.count = 0
        self.add_rows(state["times"], state["prices"])


@dataclass(slots=True)
class BarHistory:
    """The rings of the symbols GPT may trade (`symbols`), `window_bars` each plus headroom."""

    window_bars: int
    symbols: frozenset[str]
    rings: dict[str, BarRing] = field(default_factory=dict)

    def _ring(self, symbol: str) -> BarRing | None:
        ring = self.rings.get(symbol)
        if ring is None and symbol in self.symbols:
            ring = self.rings[symbol] = BarRing(self.window_bars + HEADROOM)
        return ring

    def add(self, bar: Bar) -> None:
        ring = self._ring(bar.symbol)
        if ring is not None:
            ring.add(bar)

    def add_columns(self, cols: BarColumns, lo: int, hi: int) -> None:
        """Bars `lo..hi-1` of a block's columns (only the last ring's worth are converted)."""
        ring = self._ring(cols.symbol)
        if ring is None or hi <= lo:
            return
        lo = max(lo, hi - ring.capacity)
        times = np.empty((hi - lo, 2), dtype=np.int64)
        times[:, 0] = cols.start_ms[lo:hi]
        times[:, 1] = cols.end_ms[lo:hi]
        prices = np.empty((hi - lo, _PRICES), dtype=np.float64)
        floats = cols.floats
        prices[:, 0] = [float(x) for x in cols.open[lo:hi]]
        if floats is not None:  # bit for bit the float() of the Decimals (BarFloats)
            prices[:, 1] = floats.high[lo:hi]
            prices[:, 2] = floats.low[lo:hi]
            prices[:, 3] = floats.close[lo:hi]
            prices[:, 4] = floats.volume[lo:hi]
        else:
            prices[:, 1] = [float(x) for x in cols.high[lo:hi]]
            prices[:, 2] = [float(x) for x in cols.low[lo:hi]]
            prices[:, 3] = [float(x) for x in cols.close[lo:hi]]
            prices[:, 4] = [float(x) for x in cols.volume[lo:hi]]
        prices[:, 5] = [float(x) for x in cols.vwap[lo:hi]]
        ring.add_rows(times, prices)

    def window(self, symbol: str, until_ms: int) -> BarArrays:
        """The last `window_bars` bars of `symbol` ending at or before `until_ms`."""
        ring = self.rings.get(symbol)
        if ring is None:
            times = np.zeros((0, 2), dtype=np.int64)
            prices = np.zeros((0, _PRICES), dtype=np.float64)
        else:
            times, prices = ring.ordered()
        stop = int(np.searchsorted(times[:, 1], until_ms, side="right"))
        start = max(0, stop - self.window_bars)
        t, p = times[start:stop], prices[start:stop]
        return BarArrays(
            symbol=symbol,
            start_ms=t[:, 0].copy(),
            end_ms=t[:, 1].copy(),
            open=p[:, 0].copy(),
            high=p[:, 1].copy(),
            low=p[:, 2].copy(),
            close=p[:, 3].copy(),
            volume=p[:, 4].copy(),
            vwap=p[:, 5].copy(),
        )


def wiring(settings: Settings, *, asks_gpt: bool) -> tuple[BarHistory | None, tuple[Reviewer, ...]]:
    """The desk's bar history and reviewers: the validation gate joins the risk gate, and the
    bars are kept, only when validation is enabled and GPT is asked (it writes strategies)."""
    if not (settings.validation.enabled and asks_gpt):
        return None, DEFAULT_REVIEWERS
    gpt_symbols = frozenset(settings.symbols) - settings.standing_symbols()
    history = BarHistory(settings.validation.window_bars, gpt_symbols)
    return history, (*DEFAULT_REVIEWERS, ValidationReviewer())


def proposed_strategy(
    history: BarHistory | None,
    new: CompiledStrategy | None,
    running: ActiveStrategy | None,
    trigger: Bar,
) -> ProposedStrategy | None:
    """What the validation gate judges for an answer: its strategy, unless it is the one that
    already runs (it keeps running, nothing new starts) or nothing is kept; with the windows of
    its universe up to the decision's `trigger` bar: the trigger's symbol up to and including
    it, the others' bars ending before it (one ending at the same time may reach the desk just
    before or just after the trigger: left out, the window is the same either way)."""
    if history is None or new is None:
        return None
    if running is not None and running.strategy is new:
        return None
    end = trigger.end_ms
    windows = {
        sym: history.window(sym, end if sym == trigger.symbol else end - 1)
        for sym in sorted(new.universe)
    }
    return ProposedStrategy(new.spec, windows)


def restored(kept: BarHistory | None, settings: Settings, decider: object) -> BarHistory | None:
    """The history after a restore, as this configuration wants it (`decider`: the desk's GPT
    decider, None when GPT is not asked): the snapshot's bars when it keeps them (re-windowed if
    `window_bars` changed), a fresh history when the snapshot had none, none when it keeps none.
    A restart can then never skip the gate for want of a history."""
    fresh, _ = wiring(settings, asks_gpt=decider is not None)
    if fresh is None or kept is None:
        return fresh
    if kept.window_bars == fresh.window_bars and kept.symbols == fresh.symbols:
        return kept
    for symbol, ring in sorted(kept.rings.items()):
        target = fresh._ring(symbol)
        if target is not None:
            target.add_rows(*ring.ordered())
    return fresh
