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
from typing import Final

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
from models.signals import crossing
from models.signals.names import FEATURE_NAMES

PRICE_INPUT: Final = "close"
TRIGGER_INPUTS: Final[tuple[str, ...]] = (*FEATURE_NAMES, PRICE_INPUT)

# Below this volatility the "distance in sigmas" of a breakout is meaningless (a flat series).
_MIN_VOLATILITY: Final = 1e-12


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


class _Rule:
    """One configured trigger plus the memory its edge detection needs."""

    spec: TriggerSpec

    def evaluate(self, fv: FeatureVector) -> Signal | None:
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
        fired: dict[int, list[Signal]] = {}
        symbol, end_ms, close = bars.symbol, bars.end_ms, bars.close
        for i in range(len(features)):
            signals = self.evaluate(features.vector(i, symbol, end_ms[i], float(close[i])))
            if signals:
                fired[i] = signals
        return fired
