"""Declarative trigger detection over feature vectors.

Triggers are configured, not coded: each `TriggerSpec` becomes a small rule object holding the
memory it needs, and `TriggerState` (one per symbol, pickled by Bytewax recovery like the feature
state) runs them all on every feature vector.

Every rule is edge-triggered. A strategy wants to hear "RSI just went oversold", not "RSI is
still oversold" on every bar, so a condition fires once when it becomes true and is re-armed only
once it has been observed false again. A condition that cannot be evaluated (a feature is None:
still warming up, or undefined such as a z-score over constant volumes) neither fires nor
re-arms: an unknown is not evidence that the condition went away. Level rules start armed, so a
condition already true on the first evaluable bar fires; a crossover is an event between two
observations, so it needs one observed side before it can fire (models/signals/crossing.py defines a
cross, ties included, for the trigger and GPT strategies alike).

Names a trigger may read: every key of `FEATURE_NAMES` plus `close` (the bar close carried on
the feature vector itself, so e.g. "close crosses sma_slow" can be configured).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from functools import cached_property
from typing import Final

import numpy as np
import numpy.typing as npt

from models.config.settings import (
    BreakoutTrigger,
    CrossoverTrigger,
    DrawdownTrigger,
    ThresholdTrigger,
    TriggerSpec,
    VolumeSpikeTrigger,
)
from models.core.blocks import BarColumns, FeatureColumns
from models.core.messages import Direction, FeatureVector, Signal
from models.core.trusted import trusted
from models.signals import crossing
from models.signals.names import FEATURE_NAMES

PRICE_INPUT: Final = "close"
TRIGGER_INPUTS: Final[tuple[str, ...]] = (*FEATURE_NAMES, PRICE_INPUT)

# Below this volatility the "distance in sigmas" of a breakout is meaningless (a flat series).
_MIN_VOLATILITY: Final = 1e-12

FAST_MIN_BARS = 16
"""Blocks shorter than this are evaluated bar by bar (the block path's numpy calls are a fixed
cost per rule)."""

Mask = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]
Fired = list[tuple[int, Signal]]


def _read(fv: FeatureVector, name: str) -> float | None:
    return fv.close if name == PRICE_INPUT else fv.values.get(name)


def _rel_distance(value: float, reference: float) -> float:
    """Distance as a fraction of the reference, so strengths compare across price levels."""
    diff = abs(value - reference)
    return diff / abs(reference) if reference != 0 else diff


def _clean_strength(x: float) -> float:
    """Signal.strength must be a finite non-negative float; never let an edge case break that."""
    if math.isnan(x) or x < 0:
        return 0.0
    return min(x, sys.float_info.max)


def _check_input(spec: CrossoverTrigger | ThresholdTrigger, field: str, name: str) -> None:
    if name not in TRIGGER_INPUTS:
        raise ValueError(
            f"trigger {spec.name!r} ({spec.kind}): unknown feature {name!r} in {field!r}; "
            f"valid features: {', '.join(TRIGGER_INPUTS)}"
        )


class _Block:
    """A block's trigger inputs: each name's column as floats (NaN where the vector has None)
    for the conditions, and single values (as `FeatureVector` holds them) for the few bars
    that fire."""

    def __init__(self, bars: BarColumns, features: FeatureColumns) -> None:
        self.symbol = bars.symbol
        self.end_ms = bars.end_ms
        self._bars = bars
        self._features = features
        self._n = len(features)
        self._index = {name: j for j, name in enumerate(features.names)}
        self._columns: dict[str, Floats] = {}
        self._lists: dict[str, list[float]] = {}  # a column as Python floats, for the fired bars

    @cached_property
    def close(self) -> Floats:
        """`FeatureVector.close` of each bar: float(bar.close)."""
        cols = self._bars
        given = cols.floats
        if given is not None and len(given.close) == len(cols):  # converted already
            return given.close
        return np.fromiter(map(float, cols.close), np.float64, len(cols))

    @cached_property
    def closes(self) -> list[float]:
        return self.close.tolist()  # type: ignore[no-any-return]

    def column(self, name: str) -> Floats:
        if name == PRICE_INPUT:
            return self.close
        col = self._columns.get(name)
        if col is None:
            j = self._index.get(name)
            # `values.get` of a name the vector lacks: None at every bar
            col = np.full(self._n, math.nan) if j is None else self._features.column(j)
            self._columns[name] = col
        return col

    def known(self, name: str) -> Mask:
        """Where `_read` gives a value (not None): the close always, a feature where defined."""
        if name == PRICE_INPUT:
            return np.ones(self._n, dtype=np.bool_)
        return ~np.isnan(self.column(name))

    def value(self, i: int, name: str) -> float | None:
        """`_read(fv, name)` of bar i's vector."""
        if name == PRICE_INPUT:
            return self.closes[i]
        values = self._lists.get(name)
        if values is None:
            j = self._index.get(name)
            if j is None:
                return None
            values = self._lists[name] = self._features.column(j).tolist()
        v: float = values[i]
        return None if math.isnan(v) else v


def _edges(armed: bool, known: Mask, condition: Mask) -> tuple[list[int], bool]:
    """`_edge` over a block: the bars that fire and the armed state afterwards. Only known bars
    count; before each, the rule is armed unless the previous known bar's condition held."""
    at = np.flatnonzero(known)
    if at.size == 0:
        return [], armed
    held = condition[at]
    before = np.empty_like(held)
    before[0] = not armed
    before[1:] = held[:-1]
    return at[held & ~before].tolist(), not bool(held[-1])


class _Rule:
    """One configured trigger plus the memory its edge detection needs."""

    spec: TriggerSpec

    def evaluate(self, fv: FeatureVector) -> Signal | None:
        raise NotImplementedError

    def evaluate_many(self, block: _Block) -> Fired:
        """`evaluate` over every bar of a block: (bar, signal) where one fires, and the same
        memory afterwards."""
        raise NotImplementedError

    def _signal(
        self,
        fv: FeatureVector,
        direction: Direction,
        strength: float,
        detail: dict[str, float | str | None],
    ) -> Signal:
        return Signal(
            symbol=fv.symbol,
            ts_ms=fv.ts_ms,
            trigger=self.spec.name,
            kind=self.spec.kind,
            direction=direction,
            strength=_clean_strength(strength),
            strategic=self.spec.strategic,
            detail=detail,
        )

    def _fire(
        self,
        block: _Block,
        i: int,
        direction: Direction,
        strength: float,
        detail: dict[str, float | str | None],
    ) -> tuple[int, Signal]:
        """Bar i's signal as `_signal` builds it, unvalidated (`models.core.trusted`): every
        field is already of its declared type (floats from the rows, the spec's own name, kind
        and flag), which is all the validation would check."""
        signal = trusted(
            Signal,
            {
                "symbol": block.symbol,
                "ts_ms": block.end_ms[i],
                "trigger": self.spec.name,
                "kind": self.spec.kind,
                "direction": direction,
                "strength": _clean_strength(strength),
                "strategic": self.spec.strategic,
                "detail": detail,
            },
        )
        return i, signal


def _edge(armed: bool, condition: bool) -> tuple[bool, bool]:
    """(fire, armed afterwards) for a level condition observed on this bar."""
    if condition:
        return armed, False
    return False, True


class _CrossoverRule(_Rule):
    def __init__(self, spec: CrossoverTrigger) -> None:
        _check_input(spec, "fast", spec.fast)
        _check_input(spec, "slow", spec.slow)
        if spec.fast == spec.slow:
            raise ValueError(
                f"trigger {spec.name!r} (crossover): fast and slow are both {spec.fast!r}"
            )
        self.spec = spec
        self.fast = spec.fast
        self.slow = spec.slow
        # Last strict side of fast vs slow (models/signals/crossing.py: the one definition of a
        # cross,
        # shared with GPT strategies' crosses_*).
        self.side: crossing.Side = crossing.UNKNOWN

    def evaluate(self, fv: FeatureVector) -> Signal | None:
        fast = _read(fv, self.fast)
        slow = _read(fv, self.slow)
        cross, self.side = crossing.step(self.side, fast, slow)
        if cross == crossing.UNKNOWN or fast is None or slow is None:
            return None
        return self._signal(
            fv,
            Direction.LONG if cross == crossing.ABOVE else Direction.FLAT,
            _rel_distance(fast, slow),
            {self.fast: fast, self.slow: slow},
        )

    def evaluate_many(self, block: _Block) -> Fired:
        fast, slow = block.column(self.fast), block.column(self.slow)
        side = np.where(fast > slow, crossing.ABOVE, np.where(fast < slow, crossing.BELOW, 0))
        at = np.flatnonzero(side)  # strict sides only: equal or NaN (None) keep the last one
        if at.size == 0:
            return []
        sides = side[at]
        before = np.empty_like(sides)
        before[0] = self.side
        before[1:] = sides[:-1]
        crossed = (before != crossing.UNKNOWN) & (before != sides)
        self.side = int(sides[-1])
        out: Fired = []
        for i, now in zip(at[crossed].tolist(), sides[crossed].tolist(), strict=True):
            f, s = block.value(i, self.fast), block.value(i, self.slow)
            assert f is not None and s is not None  # a strict side needs both
            direction = Direction.LONG if now == crossing.ABOVE else Direction.FLAT
            detail: dict[str, float | str | None] = {self.fast: f, self.slow: s}
            out.append(self._fire(block, i, direction, _rel_distance(f, s), detail))
        return out


class _BreakoutRule(_Rule):
    def __init__(self, spec: BreakoutTrigger) -> None:
        self.spec = spec
        self.armed_up = True
        self.armed_down = True

    def evaluate(self, fv: FeatureVector) -> Signal | None:
        values = fv.values
        close = fv.close
        high = values.get("channel_high")
        low = values.get("channel_low")
        fired: tuple[Direction, float] | None = None
        if high is not None:
            fire, self.armed_up = _edge(self.armed_up, close > high)
            if fire:
                fired = (Direction.LONG, high)
        if low is not None:
            fire, self.armed_down = _edge(self.armed_down, close < low)
            if fire:
                fired = (Direction.FLAT, low)
        if fired is None:
            return None
        direction, level = fired
        volatility = values.get("volatility")
        return self._signal(
            fv,
            direction,
            _breakout_strength(close, level, volatility),
            {"close": close, "channel_high": high, "channel_low": low, "volatility": volatility},
        )

    def evaluate_many(self, block: _Block) -> Fired:
        close, high, low = block.close, block.column("channel_high"), block.column("channel_low")
        with np.errstate(invalid="ignore"):
            ups, self.armed_up = _edges(self.armed_up, ~np.isnan(high), close > high)
            downs, self.armed_down = _edges(self.armed_down, ~np.isnan(low), close < low)
        out: Fired = []
        down_at = set(downs)
        for i in sorted(set(ups) | down_at):
            c = block.closes[i]
            hi, lo = block.value(i, "channel_high"), block.value(i, "channel_low")
            volatility = block.value(i, "volatility")
            direction, level = (Direction.FLAT, lo) if i in down_at else (Direction.LONG, hi)
            assert level is not None
            detail: dict[str, float | str | None] = {
                "close": c,
                "channel_high": hi,
                "channel_low": lo,
                "volatility": volatility,
            }
            strength = _breakout_strength(c, level, volatility)
            out.append(self._fire(block, i, direction, strength, detail))
        return out


def _breakout_strength(close: float, level: float, volatility: float | None) -> float:
    """How far past the channel, in units of one bar's typical log move (so it is comparable
    across calm and wild symbols); the plain relative distance while volatility is unknown."""
    if close > 0 and level > 0:
        distance = abs(math.log(close / level))
    else:
        distance = _rel_distance(close, level)
    if volatility is not None and volatility > _MIN_VOLATILITY:
        return distance / volatility
    return distance


class _VolumeSpikeRule(_Rule):
    def __init__(self, spec: VolumeSpikeTrigger) -> None:
        self.spec = spec
        self.z = spec.z
        self.armed = True

    def evaluate(self, fv: FeatureVector) -> Signal | None:
        z = fv.values.get("volume_z")
        if z is None:
            return None
        fire, self.armed = _edge(self.armed, z >= self.z)
        if not fire:
            return None
        ret = fv.values.get("return_1")
        # Heavy volume on a falling bar is selling pressure; an unknown return counts as not
        # falling, the same as a flat bar.
        direction = Direction.FLAT if ret is not None and ret < 0 else Direction.LONG
        return self._signal(fv, direction, z, {"volume_z": z, "return_1": ret})

    def evaluate_many(self, block: _Block) -> Fired:
        z = block.column("volume_z")
        fires, self.armed = _edges(self.armed, ~np.isnan(z), z >= self.z)
        out: Fired = []
        for i in fires:
            value, ret = block.value(i, "volume_z"), block.value(i, "return_1")
            assert value is not None
            direction = Direction.FLAT if ret is not None and ret < 0 else Direction.LONG
            detail: dict[str, float | str | None] = {"volume_z": value, "return_1": ret}
            out.append(self._fire(block, i, direction, value, detail))
        return out


class _DrawdownRule(_Rule):
    def __init__(self, spec: DrawdownTrigger) -> None:
        self.spec = spec
        self.pct = spec.pct
        self.armed = True

    def evaluate(self, fv: FeatureVector) -> Signal | None:
        drawdown = fv.values.get("drawdown")
        if drawdown is None:
            return None
        fire, self.armed = _edge(self.armed, drawdown >= self.pct)
        if not fire:
            return None
        return self._signal(
            fv,
            Direction.FLAT,
            drawdown / self.pct,
            {"drawdown": drawdown, "peak_close": fv.values.get("peak_close"), "close": fv.close},
        )

    def evaluate_many(self, block: _Block) -> Fired:
        drawdown = block.column("drawdown")
        fires, self.armed = _edges(self.armed, ~np.isnan(drawdown), drawdown >= self.pct)
        out: Fired = []
        for i in fires:
            value = block.value(i, "drawdown")
            assert value is not None
            detail: dict[str, float | str | None] = {
                "drawdown": value,
                "peak_close": block.value(i, "peak_close"),
                "close": block.closes[i],
            }
            out.append(self._fire(block, i, Direction.FLAT, value / self.pct, detail))
        return out


class _ThresholdRule(_Rule):
    def __init__(self, spec: ThresholdTrigger) -> None:
        _check_input(spec, "feature", spec.feature)
        self.spec = spec
        self.feature = spec.feature
        self.above = spec.above
        self.below = spec.below
        self.direction = Direction(spec.direction)
        self.armed = True

    def evaluate(self, fv: FeatureVector) -> Signal | None:
        value = _read(fv, self.feature)
        if value is None:
            return None
        if self.above is not None:
            bound = self.above
            condition = value > bound
        else:
            assert self.below is not None  # the spec's validator guarantees exactly one bound
            bound = self.below
            condition = value < bound
        fire, self.armed = _edge(self.armed, condition)
        if not fire:
            return None
        return self._signal(
            fv,
            self.direction,
            _rel_distance(value, bound),
            {self.feature: value, "above": self.above, "below": self.below},
        )

    def evaluate_many(self, block: _Block) -> Fired:
        values = block.column(self.feature)
        with np.errstate(invalid="ignore"):
            if self.above is not None:
                bound, condition = self.above, values > self.above
            else:
                assert self.below is not None
                bound, condition = self.below, values < self.below
        fires, self.armed = _edges(self.armed, block.known(self.feature), condition)
        out: Fired = []
        for i in fires:
            value = block.value(i, self.feature)
            assert value is not None
            detail: dict[str, float | str | None] = {
                self.feature: value,
                "above": self.above,
                "below": self.below,
            }
            strength = _rel_distance(value, bound)
            out.append(self._fire(block, i, self.direction, strength, detail))
        return out


def _build(spec: TriggerSpec) -> _Rule:
    if isinstance(spec, CrossoverTrigger):
        return _CrossoverRule(spec)
    if isinstance(spec, BreakoutTrigger):
        return _BreakoutRule(spec)
    if isinstance(spec, VolumeSpikeTrigger):
        return _VolumeSpikeRule(spec)
    if isinstance(spec, DrawdownTrigger):
        return _DrawdownRule(spec)
    return _ThresholdRule(spec)


class TriggerState:
    """The configured triggers of one symbol with their edge memory; build once, then
    `evaluate` every feature vector of that symbol in order."""

    def __init__(self, specs: Sequence[TriggerSpec]) -> None:
        # Building validates feature names up front, so a typo in the config fails the start of
        # the run instead of silently never firing.
        self._rules: list[_Rule] = [_build(spec) for spec in specs]

    @property
    def specs(self) -> list[TriggerSpec]:
        return [rule.spec for rule in self._rules]

    def evaluate(self, fv: FeatureVector) -> list[Signal]:
        """Signals that fire on this bar, in configuration order (usually none)."""
        fired: list[Signal] = []
        for rule in self._rules:
            signal = rule.evaluate(fv)
            if signal is not None:
                fired.append(signal)
        return fired

    def evaluate_block(self, bars: BarColumns, features: FeatureColumns) -> dict[int, list[Signal]]:
        """`evaluate` for each bar of a block in order: the signals of the bars that fired any
        (by index in the block), and the same edge memory afterwards as bar by bar."""
        if len(features) < FAST_MIN_BARS:
            return self._evaluate_each(bars, features)
        block = _Block(bars, features)
        fired: dict[int, list[Signal]] = {}
        for rule in self._rules:  # configuration order within a bar, as `evaluate`
            for i, signal in rule.evaluate_many(block):
                fired.setdefault(i, []).append(signal)
        return {i: fired[i] for i in sorted(fired)}

    def _evaluate_each(self, bars: BarColumns, features: FeatureColumns) -> dict[int, list[Signal]]:
        fired: dict[int, list[Signal]] = {}
        symbol, end_ms, close = bars.symbol, bars.end_ms, bars.close
        for i in range(len(features)):
            signals = self.evaluate(features.vector(i, symbol, end_ms[i], float(close[i])))
            if signals:
                fired[i] = signals
        return fired
