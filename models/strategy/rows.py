"""A compiled strategy run over a block's feature rows, for the bars on which it does nothing.

On most bars a strategy returns no action; the desk's block path (`models.desk.quiet`) handles
such bars without building a `FeatureVector` each. `RowProbe` evaluates the strategy's
conditions on `FeatureColumns` rows (floats, NaN where the vector has None) and advances its
`crosses_*` memory exactly as `CompiledStrategy.on_bar` would, bar after bar, and stops at the
first bar on which `on_bar` would return any action: that bar, and what follows, is the
per-bar path's. Why the float reading is the same decision:
- a threshold on a missing value is false, and so is any comparison with NaN;
- the crossing rule (`models.signals.crossing`) treats None and NaN alike (no strict side);
- stops and take-profit compare `Decimal(repr(close))` with the entry's thresholds in Decimal,
  as `on_bar` does; the float close decides only when it is clearly (1e-9 relative, far beyond
  the 1e-16 of either conversion) on one side, else the Decimal comparison is made.
Bars are taken in chunks (16, doubling while the strategy stays quiet), each condition over a
chunk at once; the memory is committed after each chunk as the per-bar path would have left it
(the same dict, keys in the same order). A replayed or older bar sends the rest bar by bar.
"""

from __future__ import annotations

import math
import operator
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import accumulate
from typing import Final

import numpy as np
import numpy.typing as npt

from models.signals import crossing
from models.strategy.compiler import (
    CompareNode,
    CompiledStrategy,
    Const,
    GroupNode,
    Node,
    Pair,
    Term,
)

Closes = Sequence[float] | npt.NDArray[np.float64]
"""`float()` of each close: a list, or the numpy column ingest parsed (`BarFloats`)."""

_ONE: Final = Decimal(1)
_NAN: Final = math.nan
_MARGIN: Final = 1e-9

Row = tuple[float, ...]
Getter = Callable[[Row, float], float]
Before = list[int] | None  # last strict side of each pair before the bar (None: no crosses)
Holds = Callable[[Row, float, Before], bool]

_OPS: Final[dict[str, Callable[[float, float], bool]]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def _getter(term: Term, index: dict[str, int]) -> Getter:
    if isinstance(term, Const):
        value = term.value
        return lambda row, close: value
    if term.name == "close":  # the bar's close overrides a feature of that name
        return lambda row, close: close
    j = index.get(term.name)
    if j is None:  # not in the vector: always missing
        return lambda row, close: _NAN
    return lambda row, close: row[j]


def _holds(node: Node, index: dict[str, int], pairs: dict[Pair, int]) -> Holds:
    if isinstance(node, GroupNode):
        children = [_holds(c, index, pairs) for c in node.children]
        if node.require_all:
            return lambda row, close, before: all(c(row, close, before) for c in children)
        return lambda row, close, before: any(c(row, close, before) for c in children)
    return _compare(node, index, pairs)


def _compare(node: CompareNode, index: dict[str, int], pairs: dict[Pair, int]) -> Holds:
    left, right = _getter(node.left, index), _getter(node.right, index)
    if node.op in _OPS:
        op = _OPS[node.op]
        return lambda row, close, before: op(left(row, close), right(row, close))
    k = pairs[(node.left, node.right)]
    if node.op == "crosses_above":

        def above(row: Row, close: float, before: Before) -> bool:
            return (
                before is not None
                and before[k] == crossing.BELOW
                and left(row, close) > right(row, close)
            )

        return above

    def below(row: Row, close: float, before: Before) -> bool:
        return (
            before is not None
            and before[k] == crossing.ABOVE
            and left(row, close) < right(row, close)
        )

    return below


def _at_or_below(close: float, threshold: Decimal, approx: float) -> bool:
    """`Decimal(repr(close)) <= threshold`, from the floats when they clearly decide."""
    margin = abs(approx) * _MARGIN
    if close < approx - margin:
        return True
    if close > approx + margin:
        return False
    return Decimal(repr(close)) <= threshold


def _at_or_above(close: float, threshold: Decimal, approx: float) -> bool:
    margin = abs(approx) * _MARGIN
    if close > approx + margin:
        return True
    if close < approx - margin:
        return False
    return Decimal(repr(close)) >= threshold


class RowProbe:
    """A strategy's conditions over the rows of one feature layout (`names`)."""

    def __init__(self, strategy: CompiledStrategy, names: tuple[str, ...]) -> None:
        index = {name: j for j, name in enumerate(names)}
        pairs = {pair: k for k, pair in enumerate(strategy.pairs)}
        self.strategy = strategy
        self.entry_plan = _plan(strategy.entry, index, pairs)
        self.exit_plan = _plan(strategy.exit, index, pairs)
        self.pair_slots = [(_slot(lt, index), _slot(rt, index)) for lt, rt in strategy.pairs]
        self.entry = _holds(strategy.entry, index, pairs)
        self.exit = _holds(strategy.exit, index, pairs)
        self.sides: list[tuple[Getter, Getter]] = [
            (_getter(left, index), _getter(right, index)) for left, right in strategy.pairs
        ]

    def quiet_until(
        self,
        symbol: str,
        rows: Sequence[Row],
        closes: Sequence[Decimal],
        ends: Sequence[int],
        lo: int,
        hi: int,
        position: Decimal,
        entry_price: Decimal | None,
        floats: Closes | None = None,
    ) -> int:
        """The first bar in `lo..hi-1` on which `on_bar(symbol, ...)` would return an action
        (`hi` when none would), with the strategy's memory advanced over the bars before it
        exactly as `on_bar` would have; `position` and `entry_price` as the desk passes them,
        the same on every bar (the book does not move on a quiet bar). `floats`, when given, is
        `float()` of each close (`BarColumns.floats`: read instead of converting again).

        Bars newer than the memory's last, in time order (always, from ingest) are taken in
        chunks, each condition evaluated over a chunk at once (`_chunk_acts`); otherwise bar
        by bar (`_loop`), as `on_bar` reads them."""
        strategy = self.strategy
        if symbol not in strategy.universe or lo >= hi:
            return hi
        last_ts, before = strategy.memory(symbol)
        cur = [before.get(p, crossing.UNKNOWN) for p in strategy.pairs]
        stops = None
        if position != 0 and entry_price is not None and entry_price > 0:
            stops = _stop_levels(strategy, entry_price, position < 0)
            if stops == (None, None):  # neither a stop nor a target: nothing to check
                stops = None
        start, size, stop = lo, _FIRST_CHUNK, hi
        while start < hi:
            end = min(hi, start + size)
            if self.sides and not _newer(ends, start, end, last_ts):
                return self._loop(
                    symbol, rows, closes, ends, start, hi, position, entry_price, floats
                )
            last_ts = ends[end - 1]
            acts, after = self._chunk_acts(rows, closes, start, end, cur, position, stops, floats)
            if True in acts:
                first = acts.index(True)
                stop = start + first
                end = stop
                cur = [sides[first] for sides in after]
            else:
                cur = [sides[-1] for sides in after]
            if end > start and self.sides:
                strategy.remember(symbol, ends[end - 1], before, cur)
            if stop < hi:
                break
            start, size = end, min(size * 2, _LAST_CHUNK)
        return stop

    def _chunk_acts(
        self,
        rows: Sequence[Row],
        closes: Sequence[Decimal],
        lo: int,
        hi: int,
        cur: list[int],
        position: Decimal,
        stops: tuple[Levels, Levels] | None,
        floats: Closes | None = None,
    ) -> tuple[list[bool], list[list[int]]]:
        """Whether `on_bar` acts on each bar of `lo..hi-1` (bars newer than the memory, in
        order), and each pair's last strict side before each bar and after the last."""
        chunk = _Chunk(rows[lo:hi], closes[lo:hi], None if floats is None else floats[lo:hi])
        after: list[list[int]] = []
        for k, (left, right) in enumerate(self.pair_slots):
            lv, rv = chunk.values(left), chunk.values(right)
            # Each bar's strict side, (a > b) - (a < b): 0 when equal or NaN.
            raw = list(map(operator.sub, map(operator.gt, lv, rv), map(operator.lt, lv, rv)))
            chunk.raw.append(raw)
            if 0 in raw:  # the last strict side carries over the bars without one
                after.append(list(accumulate(raw, _carry, initial=cur[k])))
            else:  # every bar has one: it is the side after that bar
                after.append([cur[k], *raw])
        chunk.before = after
        direction = self.strategy.spec.direction
        if position == 0:
            e, x = chunk.holds(self.entry_plan), chunk.holds(self.exit_plan)
            op = operator.ne if direction == "both" else operator.gt  # e and not x
            return list(map(op, e, x)), after
        short = position < 0
        if direction == "both":
            acts = chunk.holds(self.entry_plan if short else self.exit_plan)
        elif short != (direction == "short"):
            acts = [False] * chunk.n
        else:
            acts = chunk.holds(self.exit_plan)
        if stops is not None:
            stop_at, take_at = stops
            hit = [
                math.isfinite(c) and _stopped(c, short, stop_at, take_at) for c in chunk.closes()
            ]
            acts = list(map(operator.or_, acts, hit))
        return acts, after

    def _loop(
        self,
        symbol: str,
        rows: Sequence[Row],
        closes: Sequence[Decimal],
        ends: Sequence[int],
        lo: int,
        hi: int,
        position: Decimal,
        entry_price: Decimal | None,
        floats: Closes | None = None,
    ) -> int:
        """`quiet_until` bar by bar, each read as `on_bar` reads it."""
        strategy = self.strategy
        direction = strategy.spec.direction
        entry, exit_ = self.entry, self.exit
        sides = self.sides
        last_ts, before0 = strategy.memory(symbol)
        cur: list[int] = [before0.get(p, crossing.UNKNOWN) for p in strategy.pairs]
        advanced = False
        stops = position != 0 and entry_price is not None and entry_price > 0
        short = position < 0
        stop_at = take_at = None
        if stops:
            assert entry_price is not None
            stop_at, take_at = _stop_levels(strategy, entry_price, short)
        stop = hi
        for i in range(lo, hi):
            row = rows[i]
            cf = float(closes[i]) if floats is None else floats[i]
            finite = math.isfinite(cf)
            if not finite:
                cf = _NAN
            ts = ends[i]
            before: Before = None
            new: list[int] | None = None
            if sides and (last_ts is None or ts > last_ts):
                before = cur
                new = [
                    _side(old, g(row, cf), h(row, cf))
                    for old, (g, h) in zip(cur, sides, strict=True)
                ]
            if position != 0:
                if stops and finite and _stopped(cf, short, stop_at, take_at):
                    stop = i
                    break
                if direction == "both":
                    turn = entry if short else exit_
                    acts = turn(row, cf, before)
                elif short != (direction == "short"):
                    acts = False
                else:
                    acts = exit_(row, cf, before)
            else:
                e, x = entry(row, cf, before), exit_(row, cf, before)
                acts = e != x if direction == "both" else (e and not x)
            if acts:
                stop = i
                break
            if new is not None:
                cur, last_ts, advanced = new, ts, True
        if advanced:
            assert last_ts is not None
            strategy.remember(symbol, last_ts, before0, cur)
        return stop


_FIRST_CHUNK: Final = 16  # bars evaluated at once, doubling while the strategy stays quiet
_LAST_CHUNK: Final = 1024


def _newer(ends: Sequence[int], lo: int, hi: int, last_ts: int | None) -> bool:
    """Bars `lo..hi-1` end after `last_ts` and each after the one before."""
    if last_ts is not None and ends[lo] <= last_ts:
        return False
    run = ends[lo:hi]
    return all(map(operator.lt, run, run[1:]))


def _carry(last: int, side: int) -> int:
    return side or last


# A term as a chunk reads it: a row column (>= 0), the close, always missing, or a constant.
_CLOSE: Final = -1
_MISSING: Final = -2
_CONST: Final = -3
Slot = tuple[int, float]  # (kind or column, the constant's value)


def _slot(term: Term, index: dict[str, int]) -> Slot:
    if isinstance(term, Const):
        return (_CONST, term.value)
    if term.name == "close":  # the bar's close overrides a feature of that name
        return (_CLOSE, 0.0)
    j = index.get(term.name)
    return (_MISSING, 0.0) if j is None else (j, 0.0)


@dataclass(frozen=True, slots=True)
class _Plan:
    """A condition node with its terms resolved against one feature layout: `kind` "cmp"
    (`op` on the two slots), "above"/"below" (crossing pair `pair`), "all"/"any" (`parts`)."""

    kind: str
    left: Slot = (_MISSING, 0.0)
    right: Slot = (_MISSING, 0.0)
    op: Callable[[float, float], bool] = operator.gt
    pair: int = 0
    parts: tuple[_Plan, ...] = ()


def _plan(node: Node, index: dict[str, int], pairs: dict[Pair, int]) -> _Plan:
    if isinstance(node, GroupNode):
        parts = tuple(_plan(c, index, pairs) for c in node.children)
        return _Plan("all" if node.require_all else "any", parts=parts)
    left, right = _slot(node.left, index), _slot(node.right, index)
    if node.op in _OPS:
        return _Plan("cmp", left, right, _OPS[node.op])
    kind = "above" if node.op == "crosses_above" else "below"
    return _Plan(kind, left, right, pair=pairs[(node.left, node.right)])


class _Chunk:
    """The columns of a run of bars, each read once: feature values, closes, and the last
    strict side of each crossing pair before each bar (`before`, set by the probe)."""

    __slots__ = ("_closes", "_floats", "_values", "before", "n", "raw", "rows")

    def __init__(
        self, rows: Sequence[Row], closes: Sequence[Decimal], floats: Closes | None = None
    ) -> None:
        self.rows = rows
        self.n = len(rows)
        self._closes = closes
        self._floats: list[float] | None = (
            None
            if floats is None
            else floats.tolist()  # Python floats, the same values
            if isinstance(floats, np.ndarray)
            else list(floats)
        )
        self._values: dict[int, list[float]] = {}
        self.before: list[list[int]] = []
        self.raw: list[list[int]] = []  # each pair's strict side on each bar (0: none)

    def closes(self) -> list[float]:
        """The bars' closes as `FeatureVector.close` (the float of the close)."""
        if self._floats is None:
            self._floats = list(map(float, self._closes))
        return self._floats

    def values(self, slot: Slot) -> list[float]:
        """The term on each bar, NaN where `on_bar` reads None."""
        kind = slot[0]
        if kind == _CONST:
            return [slot[1]] * self.n
        got = self._values.get(kind)
        if got is None:
            if kind >= 0:
                got = list(map(operator.itemgetter(kind), self.rows))
            elif kind == _CLOSE:
                got = [c if c - c == 0.0 else _NAN for c in self.closes()]  # finite, else None
            else:
                got = [_NAN] * self.n
            self._values[kind] = got
        return got

    def holds(self, plan: _Plan) -> list[bool]:
        """Whether the node holds on each bar, as `Node.holds` on that bar's vector."""
        kind = plan.kind
        if kind == "all" or kind == "any":
            op = operator.and_ if kind == "all" else operator.or_
            out = self.holds(plan.parts[0])
            for part in plan.parts[1:]:
                out = list(map(op, out, self.holds(part)))
            return out
        if kind == "cmp":
            return list(map(plan.op, self.values(plan.left), self.values(plan.right)))
        # A cross: the side before the bar BELOW (-1) and the bar's own ABOVE (1), left > right,
        # i.e. their difference 2 (above); or ABOVE then BELOW, -2 (below). The pair's terms are
        # the node's, so its strict sides (`raw`) are the comparison of the node's values.
        before = self.before[plan.pair]  # one longer: the side after the last
        turn = _UP if kind == "above" else _DOWN
        return list(map(turn.__eq__, map(operator.sub, self.raw[plan.pair], before)))


_UP: Final = crossing.ABOVE - crossing.BELOW  # a side's change on a cross above
_DOWN: Final = crossing.BELOW - crossing.ABOVE


def _side(last: int, left: float, right: float) -> int:
    """`crossing.step`'s new last side (NaN: no strict side, the last one stays)."""
    if left > right:
        return crossing.ABOVE
    if left < right:
        return crossing.BELOW
    return last


Levels = tuple[Decimal, float] | None


def _stop_levels(
    strategy: CompiledStrategy, entry_price: Decimal, short: bool
) -> tuple[Levels, Levels]:
    """The stop and take-profit thresholds as `CompiledStrategy._stops` computes them."""
    sign = -_ONE if short else _ONE
    stop = take = None
    if strategy.stop_loss is not None:
        level = entry_price * (_ONE - sign * strategy.stop_loss)
        stop = (level, float(level))
    if strategy.take_profit is not None:
        level = entry_price * (_ONE + sign * strategy.take_profit)
        take = (level, float(level))
    return stop, take


def _stopped(close: float, short: bool, stop: Levels, take: Levels) -> bool:
    """Whether a stop or take-profit fires: long, the close at or below the stop or at or above
    the target; short, the mirror ((close - level) * sign compared with 0, exact)."""
    if stop is not None:
        hit = _at_or_above(close, *stop) if short else _at_or_below(close, *stop)
        if hit:
            return True
    if take is not None:
        return _at_or_below(close, *take) if short else _at_or_above(close, *take)
    return False


_PROBES: weakref.WeakKeyDictionary[CompiledStrategy, dict[tuple[str, ...], RowProbe]] = (
    weakref.WeakKeyDictionary()
)


def probe(strategy: CompiledStrategy, names: tuple[str, ...]) -> RowProbe:
    """The strategy's probe for rows of `names` (kept beside the strategy, not in it: the
    strategy is pickled with the desk, the probe is rebuilt). The last one is at hand (one
    lookup a run of quiet bars: most runs ask for the same one)."""
    if _LAST:
        kept, kept_names, kept_probe = _LAST[0]
        if kept is strategy and kept_names == names:
            return kept_probe
    made = _PROBES.get(strategy)
    if made is None:
        made = _PROBES[strategy] = {}
    got = made.get(names)
    if got is None:
        got = made[names] = RowProbe(strategy, names)
    _LAST[:] = [(strategy, names, got)]
    return got


_LAST: list[tuple[CompiledStrategy, tuple[str, ...], RowProbe]] = []  # what `probe` gave last
