"""Blocks of bars through features and triggers are exactly bar by bar: the same bits, the same
signals, the same state after (pickled), at any cut, with blocks and single bars mixed."""

from __future__ import annotations

import math
import pickle
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.config.settings import (
    BreakoutTrigger,
    CrossoverTrigger,
    DrawdownTrigger,
    FeaturesConfig,
    ThresholdTrigger,
    TriggerSpec,
    VolumeSpikeTrigger,
)
from models.core.blocks import BarColumns, FeatureColumns
from models.core.messages import Bar, FeatureVector, Signal
from models.signals import features as features_module
from models.signals import kernels
from models.signals import triggers as triggers_module
from models.signals.features import FeatureState
from models.signals.indicators import REGISTRY, SmaFeature, block_method, register
from models.signals.triggers import TriggerState
from tests.support.builders import bar as flat_bar
from tests.support.builders import walk_bar

SMALL = FeaturesConfig(
    sma_fast=3, sma_slow=5, ema=4, rsi=4, volatility=4, vwap=3, volume_z=4, breakout=5
)


def _extras(periods: Sequence[int]) -> list[str]:
    """Every registered kind that takes a period, at each of `periods` it allows."""
    names = []
    for kind, spec in REGISTRY.items():
        if spec.min_period is None:
            continue
        names += [f"{kind}_{p}" for p in periods if p >= spec.min_period]
    return names


EXTRAS = _extras((1, 2, 3, 7, 20))


def _triggers() -> list[TriggerSpec]:
    return [
        CrossoverTrigger(kind="crossover", name="cross"),
        CrossoverTrigger(kind="crossover", name="close_cross", fast="close", slow="ema"),
        BreakoutTrigger(kind="breakout", name="breakout"),
        VolumeSpikeTrigger(kind="volume_spike", name="spike", z=1.2),
        DrawdownTrigger(kind="drawdown", name="dd", pct=0.02),
        ThresholdTrigger(kind="threshold", name="low_rsi", feature="rsi", below=35.0),
        ThresholdTrigger(
            kind="threshold", name="high_rsi", feature="rsi", above=65.0, direction="flat"
        ),
        ThresholdTrigger(kind="threshold", name="dear", feature="close", above=100.0),
    ]


# -- generated bars ---------------------------------------------------------------------------

_SCALES = {
    "plain": (Decimal("1"), 2),
    "huge": (Decimal("1e9"), 0),
    "tiny": (Decimal("1e-6"), 10),
    "absurd": (Decimal("1e200"), 0),  # beyond the block kernels' range: the per-bar fallback
}


@st.composite
def bar_runs(draw: st.DrawFn, max_size: int = 90) -> list[Bar]:
    """Runs of one symbol's bars: random walks, flat stretches, zero and constant volumes, at
    plain, huge, tiny and absurd price scales, now and then a zero or negative price."""
    n = draw(st.integers(1, max_size))
    scale, places = _SCALES[draw(st.sampled_from(sorted(_SCALES)))]
    quantum = Decimal(1).scaleb(-places)
    flat = draw(st.booleans())
    const_volume = draw(st.booleans())
    odd_prices = draw(st.integers(0, 3)) == 0
    steps = draw(st.lists(st.integers(-6, 6), min_size=n, max_size=n))
    volumes = draw(st.lists(st.integers(0, 50), min_size=n, max_size=n))
    spreads = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    level = 100
    bars = []
    prev = Decimal(level) * scale
    for i in range(n):
        if not flat:
            level = max(1, level + steps[i])
        close = (Decimal(level) * scale).quantize(quantum) if places else Decimal(level) * scale
        if odd_prices and steps[i] == 6:
            close = Decimal(0) if volumes[i] % 2 else -close
        spread = Decimal(spreads[i]) * scale
        hi, lo = max(prev, close) + spread, min(prev, close) - spread
        volume = Decimal(7 if const_volume else volumes[i] * 10)
        bars.append(walk_bar(i, prev, hi, lo, close, volume))
        prev = close
    return bars


@contextmanager
def block_path_from(min_bars: int) -> Iterator[None]:
    """Take the block path from `min_bars` bars (1: every block, however short)."""
    saved = features_module.FAST_MIN_BARS, triggers_module.FAST_MIN_BARS
    features_module.FAST_MIN_BARS = triggers_module.FAST_MIN_BARS = min_bars
    try:
        yield
    finally:
        features_module.FAST_MIN_BARS, triggers_module.FAST_MIN_BARS = saved


def _bits(x: float) -> object:
    return "nan" if math.isnan(x) else struct.pack("<d", x)


def _row_bits(rows: Sequence[tuple[float, ...]]) -> list[tuple[object, ...]]:
    return [tuple(_bits(v) for v in row) for row in rows]


def _signal_text(signals: Sequence[Signal]) -> list[tuple[str, str, set[str]]]:
    """Exact: a float's shortest round trip tells its bits (-0.0 included) and the repr of
    the fields their types (the block path builds its signals unvalidated)."""
    return [(s.model_dump_json(), repr(s.__dict__), s.model_fields_set) for s in signals]


def _features_pickled(state: FeatureState) -> bytes:
    """What the features hold, pickled: the indicators' state (deques, running values, bit for
    bit) and the bar count. The configuration is left out: a pydantic model's fields-set
    pickles in an order a pickle round trip may change, with no bearing on the features."""
    return pickle.dumps((state.bars_seen, state.names, list(state._instances.items())))


def _triggers_pickled(triggers: TriggerState) -> bytes:
    """The rules' edge memory (armed flags, last sides), pickled; their specs left out."""
    return pickle.dumps(
        [{k: v for k, v in vars(rule).items() if k != "spec"} for rule in triggers._rules]
    )


def _bar_by_bar(
    state: FeatureState, triggers: TriggerState, bars: Sequence[Bar]
) -> tuple[list[FeatureVector], list[list[Signal]]]:
    vectors = [state.update(b) for b in bars]
    return vectors, [triggers.evaluate(fv) for fv in vectors]


def _cuts(data: st.DataObject, n: int) -> list[tuple[int, int, bool]]:
    """The run cut into pieces: (lo, hi, as a block) or bar by bar."""
    points = sorted(set(data.draw(st.lists(st.integers(0, n), max_size=5))) | {0, n})
    pieces = list(pairwise(points))
    return [(lo, hi, data.draw(st.booleans())) for lo, hi in pieces]


def _mixed(
    state: FeatureState, triggers: TriggerState, bars: list[Bar], cuts: list[tuple[int, int, bool]]
) -> tuple[list[tuple[float, ...]], list[list[Signal]]]:
    rows: list[tuple[float, ...]] = []
    fired: list[list[Signal]] = []
    for lo, hi, as_block in cuts:
        part = bars[lo:hi]
        if as_block:
            cols = BarColumns.of_bars(part)
            fcols = state.update_block(cols)
            signals = triggers.evaluate_block(cols, fcols)
            assert all(signals[i] for i in signals) and list(signals) == sorted(signals)
            rows += fcols.rows
            fired += [signals.get(i, []) for i in range(len(part))]
        else:
            vectors, sigs = _bar_by_bar(state, triggers, part)
            rows += FeatureColumns.of_vectors(state.names, vectors).rows
            fired += sigs
    return rows, fired


@settings(max_examples=120, derandomize=True, deadline=None)
@given(bar_runs(), st.data())
def test_blocks_and_single_bars_mixed_equal_bar_by_bar(
    bars: list[Bar], data: st.DataObject
) -> None:
    extra = [*EXTRAS, *data.draw(st.lists(st.sampled_from(_extras((4, 5, 11))), max_size=3))]
    ref_state, ref_triggers = FeatureState(SMALL, extra), TriggerState(_triggers())
    vectors, ref_fired = _bar_by_bar(ref_state, ref_triggers, bars)
    ref_rows = FeatureColumns.of_vectors(ref_state.names, vectors).rows

    state, triggers = FeatureState(SMALL, extra), TriggerState(_triggers())
    with block_path_from(data.draw(st.sampled_from([1, 1, 4, 16]))):
        rows, fired = _mixed(state, triggers, bars, _cuts(data, len(bars)))
    assert _row_bits(rows) == _row_bits(ref_rows)
    assert [_signal_text(s) for s in fired] == [_signal_text(s) for s in ref_fired]
    assert _features_pickled(state) == _features_pickled(ref_state)
    assert _triggers_pickled(triggers) == _triggers_pickled(ref_triggers)
    assert state.bars_seen == ref_state.bars_seen == len(bars)


@settings(max_examples=40, derandomize=True, deadline=None)
@given(bar_runs(max_size=60), bar_runs(max_size=60), st.data())
def test_a_restored_state_goes_on_as_the_original(
    before: list[Bar], after: list[Bar], data: st.DataObject
) -> None:
    """Snapshot after a block (Bytewax recovery), restore, and carry on with blocks: as the
    state that never stopped, bar by bar."""
    after = [
        b.model_copy(update={"start_ms": b.start_ms + 10**9, "end_ms": b.end_ms + 10**9})
        for b in after
    ]
    ref_state, ref_triggers = FeatureState(SMALL, EXTRAS), TriggerState(_triggers())
    _, ref_fired = _bar_by_bar(ref_state, ref_triggers, before + after)
    state, triggers = FeatureState(SMALL, EXTRAS), TriggerState(_triggers())
    with block_path_from(1):
        _mixed(state, triggers, before, [(0, len(before), True)])
        state, triggers = pickle.loads(pickle.dumps(state)), pickle.loads(pickle.dumps(triggers))
        _, fired = _mixed(state, triggers, after, _cuts(data, len(after)))
    assert [_signal_text(s) for s in fired] == [_signal_text(s) for s in ref_fired[len(before) :]]
    assert _features_pickled(state) == _features_pickled(ref_state)


def _wave(n: int, period: int = 23, volume_every: int = 17) -> list[Bar]:
    """A swinging, trending series with volume bursts: every trigger kind fires on it."""
    bars = []
    prev = Decimal(100)
    for i in range(n):
        swing = Decimal(round(12 * math.sin(2 * math.pi * i / period), 2))
        close = Decimal(100) + swing - Decimal(i) / 20
        vol = Decimal(400 if i % volume_every == 0 else 20 + i % 5)
        hi, lo = max(prev, close), min(prev, close)
        bars.append(walk_bar(i, prev, hi, lo, close, vol))
        prev = close
    return bars


@pytest.mark.parametrize("block", [16, 50, 400])
def test_every_trigger_kind_fires_on_blocks_as_bar_by_bar(block: int) -> None:
    bars = _wave(400)
    ref_state, ref_triggers = FeatureState(SMALL), TriggerState(_triggers())
    _, ref_fired = _bar_by_bar(ref_state, ref_triggers, bars)
    state, triggers = FeatureState(SMALL), TriggerState(_triggers())
    cuts = [(lo, min(lo + block, len(bars)), True) for lo in range(0, len(bars), block)]
    with block_path_from(1):
        _, fired = _mixed(state, triggers, bars, cuts)
    kinds = {(s.kind, s.direction) for sigs in fired for s in sigs}
    assert {k for k, _ in kinds} == {
        "crossover",
        "breakout",
        "volume_spike",
        "drawdown",
        "threshold",
    }
    assert {
        ("crossover", "long"),
        ("crossover", "flat"),
        ("breakout", "long"),
        ("breakout", "flat"),
    } <= {(k, d.value) for k, d in kinds}
    assert [_signal_text(s) for s in fired] == [_signal_text(s) for s in ref_fired]
    assert _triggers_pickled(triggers) == _triggers_pickled(ref_triggers)


def test_every_registered_kind_has_a_block_method_or_is_looped() -> None:
    """The defaults all run as blocks; atr (talipp) goes through the generic loop."""
    fast = {
        kind for kind, spec in REGISTRY.items() if block_method(spec.build(spec.min_period or 0))
    }
    assert fast == set(REGISTRY) - {"atr"}


class EveryOtherClose:
    """A kind written without a block method (registered by the test that uses it)."""

    def __init__(self, period: int = 0) -> None:
        self.n = 0

    def update(self, bar: Bar) -> float | None:
        self.n += 1
        return float(bar.close) if self.n % 2 else None

    def buffer_len(self) -> int:
        return 0


def test_a_new_kind_without_a_block_method_works_through_its_update() -> None:
    register("test_last_close", "every other close (test only)", min_period=None)(EveryOtherClose)
    try:
        bars = _wave(40)
        ref = FeatureState(SMALL, ["test_last_close"])
        want = FeatureColumns.of_vectors(ref.names, [ref.update(b) for b in bars]).rows
        state = FeatureState(SMALL, ["test_last_close"])
        with block_path_from(1):
            got = state.update_block(BarColumns.of_bars(bars)).rows
        assert _row_bits(got) == _row_bits(want)
        assert _features_pickled(state) == _features_pickled(ref)
    finally:
        del REGISTRY["test_last_close"]


class DoubledSma(SmaFeature):
    __slots__ = ()

    def update(self, bar: Bar) -> float | None:
        v = super().update(bar)
        return None if v is None else 2 * v


def test_a_subclass_overriding_update_does_not_inherit_the_block_method() -> None:
    assert block_method(SmaFeature(3)) is not None
    assert block_method(DoubledSma(3)) is None


@pytest.mark.parametrize("count", [3, 40])  # below and above the numpy path's threshold
def test_window_sums_are_builtin_sum_bit_for_bit(count: int) -> None:
    """Values where the plain and the compensated sum differ: the kernels follow `sum`
    (plain left to right up to CPython 3.11, `PLAIN_SUM`; `sum` itself otherwise)."""
    values = [1e16, 1.0, -1e16, 3.5, 0.1, 0.2, -0.0, 7e-3] * 8
    p = 3
    ext = np.array(values)
    sums = kernels.window_sums(ext, p, 1, count)
    want = [sum(values[s : s + p]) for s in range(1, 1 + count)]
    assert [_bits(x) for x in sums.tolist()] == [_bits(x) for x in want]
    mean = sums / p
    for pow2 in (True, False):
        dev = kernels.deviation_sums(ext, p, 1, count, mean, pow2=pow2).tolist()
        means = mean.tolist()
        want = [
            sum([(x - m) ** 2 if pow2 else (x - m) * (x - m) for x in values[s : s + p]])
            for s, m in zip(range(1, 1 + count), means, strict=True)
        ]
        assert [_bits(x) for x in dev] == [_bits(x) for x in want]
    plain = sum([1e16, 1.0, -1e16]) == 0.0
    assert plain is kernels.PLAIN_SUM


def test_volatility_squares_as_python_does_on_a_long_walk() -> None:
    """`(x - mean) ** 2` is libm's pow, which differs from `x * x` in about one square in a
    thousand: a long walk makes sure the blocks square as Python does (and that this data
    would tell the difference)."""
    rng = np.random.default_rng(11)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, 3000)))
    bars = [
        flat_bar("SIMA", 60_000 * i, c, volume=Decimal(1))
        for i, c in enumerate(Decimal(f"{x:.4f}") for x in closes)
    ]
    names = ["volatility_2", "volatility_7", "volatility_30"]
    ref = FeatureState(SMALL, names)
    want = FeatureColumns.of_vectors(ref.names, [ref.update(b) for b in bars]).rows
    state = FeatureState(SMALL, names)
    got = [
        row
        for lo in range(0, 3000, 500)
        for row in state.update_block(BarColumns.of_bars(bars[lo : lo + 500])).rows
    ]
    assert _row_bits(got) == _row_bits(want)
    assert _features_pickled(state) == _features_pickled(ref)
    returns = np.log(closes[1:] / closes[:-1])
    devs = (returns - returns.mean()).tolist()
    assert any(d**2 != d * d for d in devs)


_deviations = st.lists(
    st.one_of(
        st.floats(min_value=-1e150, max_value=1e150, allow_nan=False),
        st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e-151, -3e-160, 5e-324]),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, derandomize=True, deadline=None)
@given(_deviations)
def test_volatilitys_squares_are_pythons_pow(values: list[float]) -> None:
    """The volatility kernel's squares (`math.pow` of magnitudes, 0 and 1 answered as
    `float_pow` answers them) are `d ** 2` bit for bit; below 1e-150 Python's `**` itself."""
    dev = np.array(values).reshape(1, -1)
    want: list[float] = []
    try:
        want = [d**2 for d in values]
    except OverflowError:  # an underflow `**` refuses: then the kernel raises the same
        with pytest.raises(OverflowError):
            kernels._squares(dev)
        return
    assert [x.hex() for x in kernels._squares(dev).ravel().tolist()] == [x.hex() for x in want]
