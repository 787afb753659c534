"""Runs of replayed bars gathered as columns: ingest's block path (`PartitionIngest.blocks`).

A backtest feeds ingest a million bars in replay's layout, each of which the bar builder
passes through one for one: an input bar of the window's own interval, on the grid, closing
its window at once (no allowed lateness, nothing else open), neither late nor a duplicate.
Per bar the per-bar path builds a `BarIn`, a `Bar`, a `FeatureVector` and a `BarEvent`; the
block path reads the message's fields (`models.market.fast_bar.bar_fields`), appends them to a
`BarRun`, and hands the run on at once: one `BarColumns` (the bars table's rows), the run's
signals, one `BarBlock` (the desk's events), from one `FeatureState.update_block` and one
`TriggerState.evaluate_block` call.

What a run emits is, item for item and table by table, what the per-bar path emits for the
same records, and the state it leaves (bar builder, features, triggers, guard, clock, seq) is
the same: each bar is only taken after every check the per-bar path would make has passed
(`PartitionIngest._take_bar`), and anything else ends the run and takes the per-bar path.
tests/unit/test_ingest_blocks.py compares the two on generated records and batch cuts.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from models.config.settings import RouterConfig
from models.core.blocks import BarBlock, BarColumns
from models.core.messages import Branch, Signal
from models.core.packed import BarFloats
from models.market.bars import BarBuilder
from models.market.fast_bar import BarFields
from models.signals.features import FeatureState
from models.signals.router import route
from models.signals.triggers import TriggerState

__all__ = ["BarRun", "first_false", "passes_through", "run_block"]

Ints = npt.NDArray[np.int64]


class BarRun:
    """The bars of one symbol taken so far in a batch, with each bar's end and partition clock
    as the per-bar path stamps it, and the run's first record (for a dead letter). A bar is
    kept as the fields `bar_fields` read (`BarFields`: the tuple exists already, so the hot loop
    only appends) and the run turns into columns once, at its end (`columns`)."""

    __slots__ = ("clock_ms", "end_ms", "fields", "first", "symbol")

    def __init__(self, symbol: str, first: tuple[int, int, bytes | None]) -> None:
        self.symbol = symbol
        self.first = first  # (offset, record ms, value) of the run's first record
        self.fields: list[BarFields] = []
        self.end_ms: list[int] = []
        self.clock_ms: list[int] = []

    def __len__(self) -> int:
        return len(self.end_ms)

    def add(self, fields: BarFields, end_ms: int, clock_ms: int) -> None:
        """One bar, closed as the bar builder closes a window holding this one input bar
        (ingest's loop appends to the three lists itself)."""
        self.fields.append(fields)
        self.end_ms.append(end_ms)
        self.clock_ms.append(clock_ms)

    def columns(self) -> BarColumns:
        """The run's bars as columns, with their `BarFloats`."""
        n = len(self.end_ms)
        _, start, o, h, lo, c, v, _, _, cf, hf, lf, vf = map(list, zip(*self.fields))  # noqa: B905
        # `_Window.to_bar`'s vwap of a window made of one input bar (its notional is
        # `(high + low + close) / 3 * volume`, models/market/bars.py): the same Decimal steps.
        vwap = [
            (hi + low + close) / 3 * vol / vol if vol > 0 else close
            for hi, low, close, vol in zip(h, lo, c, v)  # noqa: B905
        ]
        floats = BarFloats(*(np.array(x, np.float64) for x in (cf, hf, lf, vf)))
        return BarColumns(self.symbol, start, self.end_ms, o, h, lo, c, v, [1] * n, vwap, floats)


def run_block(
    cols: BarColumns,
    clock_ms: list[int],
    features: FeatureState,
    triggers: TriggerState,
    router: RouterConfig,
    partition: str,
    first_seq: int,
) -> tuple[list[Signal], BarBlock]:
    """The run's signals in bar order (each bar's in configuration order) and its block:
    what `PartitionIngest._on_bar` makes of each bar, for all of them at once."""
    feats = features.update_block(cols)
    fired = triggers.evaluate_block(cols, feats)
    signals: list[Signal] = []
    branches: dict[int, Branch] = {}
    for i in sorted(fired):
        sigs = fired[i]
        signals.extend(sigs)
        branch = route(sigs, router)
        if branch is not None:
            branches[i] = branch
    return signals, BarBlock(cols, feats, fired, branches, partition, clock_ms, first_seq)


def first_false(flags: npt.NDArray[np.bool_]) -> int:
    """The index of the first False in `flags` (its length: none)."""
    if bool(flags.all()):
        return len(flags)
    return int(np.argmin(flags))


def passes_through(
    builder: BarBuilder, ts_ms: Ints, end_ms: Ints, keys: Callable[[int], list[str]]
) -> int:
    """How many of these input bars, in order, `builder.pass_through` lets through one after
    the other (each with its key, `keys(m)` giving the first m), with the builder's state
    moved as those calls move it; the first bar it would refuse is left unchanged for the
    caller (`add` decides it).

    The checks before the duplicate test are comparisons with the window, the grid and the
    watermark, which only the previous bar moves (to its end): columns at once. A key is new
    when it is in neither generation of remembered ids and not earlier in the run; the first
    that is not ends the run here (the per-record path then decides it, with the ids as they
    are by then). The new keys enter the generations as `_seen` adds them, one at a time: the
    same sets, filled in the same order, swapped at the same counts."""
    fixed = builder.interval.fixed_ms
    n = len(end_ms)
    if fixed is None or builder.allowed_lateness_ms or builder.windows or not n:
        return 0
    fits = (end_ms - ts_ms == fixed) & (ts_ms % fixed == 0)
    fits[0] &= bool(end_ms[0] > builder.watermark)
    fits[1:] &= end_ms[1:] > end_ms[:-1]
    m = first_false(fits)
    if not m:
        return 0
    new = keys(m)
    recent, older = builder.recent_ids, builder.older_ids
    distinct = set(new)
    if len(distinct) < m or not recent.isdisjoint(distinct) or not older.isdisjoint(distinct):
        seen: set[str] = set()
        for i, key in enumerate(new):
            if key in recent or key in older or key in seen:
                m = i
                break
            seen.add(key)
        if not m:
            return 0
    window = builder.dedupe_window
    if window > 0:
        half = (window + 1) // 2
        at = 0
        while at < m:
            chunk = new[at : min(m, at + max(1, half - len(recent)))]
            recent.update(chunk)
            at += len(chunk)
            if len(recent) >= half:
                builder.older_ids, builder.recent_ids = recent, set()
                recent = builder.recent_ids
    builder.watermark = int(end_ms[m - 1])
    return m
