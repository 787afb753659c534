"""A block is exactly the per-bar items it stands for (models/core/blocks.py's contract)."""

from __future__ import annotations

import pickle
from decimal import Decimal

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.config.settings import Settings
from models.core.blocks import (
    BarBlock,
    BarColumns,
    BarFloats,
    FeatureColumns,
    PositionColumns,
    count_of,
    expand_rows,
)
from models.core.events import BarEvent
from models.core.messages import Bar, Direction, PositionSnapshot, Signal
from models.signals.features import FeatureState
from models.signals.router import route
from models.signals.triggers import TriggerState
from tests.support.builders import bar as flat_bar
from tests.support.builders import walk_bar

_prices = st.decimals(min_value=Decimal("1"), max_value=Decimal("500"), places=2)


@st.composite
def bar_runs(draw: st.DrawFn) -> list[Bar]:
    n = draw(st.integers(1, 120))
    closes = draw(st.lists(_prices, min_size=n, max_size=n))
    bars = []
    prev = closes[0]
    for i, close in enumerate(closes):
        lo, hi = min(prev, close), max(prev, close)
        vol = Decimal(draw(st.integers(0, 1000)))
        bars.append(walk_bar(i, prev, hi, lo, close, vol))
        prev = close
    return bars


def _settings() -> Settings:
    """The default triggers on short windows, so short runs warm up and fire."""
    return Settings.model_validate(
        {
            "symbols": {"SIMA": {}},
            "features": {"sma_fast": 3, "sma_slow": 5, "breakout": 5, "rsi": 4, "volatility": 4},
        }
    )


def _events(cfg: Settings, bars: list[Bar]) -> tuple[tuple[str, ...], list[BarEvent]]:
    features = FeatureState(cfg.features)
    triggers = TriggerState(cfg.triggers)
    events = []
    for i, bar in enumerate(bars):
        fv = features.update(bar)
        signals = triggers.evaluate(fv)
        events.append(
            BarEvent(bar, fv, signals, route(signals, cfg.router), "m#0", bar.end_ms, i + 1)
        )
    return features.names, events


@settings(max_examples=40, derandomize=True, deadline=None)
@given(bar_runs(), st.data())
def test_a_block_gives_back_its_events_and_slices_keep_them(
    bars: list[Bar], data: st.DataObject
) -> None:
    cfg = _settings()
    names, events = _events(cfg, bars)
    block = BarBlock.of_events(names, events)
    assert len(block) == len(events)
    assert block.events() == events
    assert block.bars.bars() == bars
    lo = data.draw(st.integers(0, len(bars)))
    hi = data.draw(st.integers(lo, len(bars)))
    assert block.slice(lo, hi).events() == events[lo:hi]
    # Pickled (signals as their field values, the clock as one buffer) and back: the same
    # events, down to each signal's fields set.
    restored = pickle.loads(pickle.dumps(block))
    assert restored.events() == events and repr(restored.events()) == repr(events)
    assert [s.model_fields_set for e in restored.events() for s in e.signals] == [
        s.model_fields_set for e in events for s in e.signals
    ]


def test_a_signal_with_a_default_left_unset_pickles_as_itself() -> None:
    partial = Signal(
        symbol="S",
        ts_ms=1,
        trigger="t",
        kind="k",
        direction=Direction.LONG,
        strength=1.0,
        strategic=False,
    )
    cfg = _settings()
    names, events = _events(
        cfg, [walk_bar(0, Decimal(1), Decimal(2), Decimal(1), Decimal(2), Decimal(3))]
    )
    block = BarBlock.of_events(names, events)
    object.__setattr__(block, "signals", {0: [partial]})
    (got,) = pickle.loads(pickle.dumps(block)).signals[0]
    assert got == partial and got.model_fields_set == partial.model_fields_set
    assert "detail" not in got.model_fields_set


@settings(max_examples=40, derandomize=True, deadline=None)
@given(bar_runs(), st.data())
def test_block_features_and_triggers_equal_bar_by_bar_at_any_cut(
    bars: list[Bar], data: st.DataObject
) -> None:
    cfg = _settings()
    _, events = _events(cfg, bars)
    cut = data.draw(st.integers(0, len(bars)))
    features = FeatureState(cfg.features)
    triggers = TriggerState(cfg.triggers)
    got: list[BarEvent] = []
    for part in (bars[:cut], bars[cut:]):
        if not part:
            continue
        cols = BarColumns.of_bars(part)
        fcols = features.update_block(cols)
        fired = triggers.evaluate_block(cols, fcols)
        for i, bar in enumerate(part):
            fv = fcols.vector(i, bar.symbol, bar.end_ms, float(bar.close))
            signals = fired.get(i, [])
            got.append(
                BarEvent(
                    bar, fv, signals, route(signals, cfg.router), "m#0", bar.end_ms, len(got) + 1
                )
            )
    assert got == events


def test_position_columns_are_the_snapshots_of_a_still_book() -> None:
    marks = [Decimal("10.5"), Decimal("11"), Decimal("9.75")]
    qty, avg, cash = Decimal(3), Decimal("10"), Decimal("970")
    cols = PositionColumns(
        "SIMA",
        qty,
        avg,
        Decimal("1.5"),
        cash,
        [1, 2, 3],
        marks,
        [(m - avg) * qty for m in marks],
        [cash + qty * m for m in marks],
    )
    rows = cols.rows()
    assert rows[1] == PositionSnapshot(
        ts_ms=2,
        symbol="SIMA",
        quantity=qty,
        avg_cost=avg,
        mark_price=Decimal("11"),
        realized_pnl=Decimal("1.5"),
        unrealized_pnl=Decimal("3"),
        cash=cash,
        equity=Decimal("1003"),
    )
    assert count_of([cols, rows[0]]) == 4
    assert list(expand_rows([rows[0], cols])) == [rows[0], *rows]


def test_the_generated_runs_do_fire_triggers() -> None:
    """The equality above is only worth something if triggers fire on such runs."""
    zigzag = [Decimal(100 + (i % 7) * 3 - (i % 11) * 2) for i in range(80)]
    bars = [
        flat_bar("SIMA", 60_000 * i, c, volume=Decimal(10 + i % 5)) for i, c in enumerate(zigzag)
    ]
    cfg = _settings()
    _, events = _events(cfg, bars)
    assert sum(len(e.signals) for e in events) >= 5
    features, triggers = FeatureState(cfg.features), TriggerState(cfg.triggers)
    cols = BarColumns.of_bars(bars)
    fired = triggers.evaluate_block(cols, features.update_block(cols))
    assert {i: s for i, s in fired.items()} == {
        i: e.signals for i, e in enumerate(events) if e.signals
    }


def _with_floats(cols: BarColumns) -> BarColumns:
    floats = BarFloats(
        *(np.array([float(x) for x in c]) for c in (cols.close, cols.high, cols.low, cols.volume))
    )
    lists = (cols.start_ms, cols.end_ms, cols.open, cols.high, cols.low, cols.close)
    return BarColumns(cols.symbol, *lists, cols.volume, cols.trades, cols.vwap, floats)


def _floats(cols: BarColumns) -> list[list[float]]:
    f = cols.floats
    assert f is not None
    return [x.tolist() for x in (f.close, f.high, f.low, f.volume)]


@settings(max_examples=15, derandomize=True, deadline=None)
@given(bar_runs(), st.data())
def test_bar_floats_are_derived_data(bars: list[Bar], data: st.DataObject) -> None:
    """Columns carrying their floats (`BarFloats`, as ingest makes them) equal the same columns
    without, slice with them, pickle without them, and give the features and triggers the
    same values as converting the Decimals."""
    plain = BarColumns.of_bars(bars)
    cols = _with_floats(plain)
    assert cols == plain and repr(cols) == repr(plain)
    lo = data.draw(st.integers(0, len(bars)))
    hi = data.draw(st.integers(lo, len(bars)))
    part = cols.slice(lo, hi)
    assert part == plain.slice(lo, hi) and _floats(part) == _floats(_with_floats(part))
    restored = pickle.loads(pickle.dumps(cols))
    assert restored == cols and restored.floats is None
    assert pickle.dumps(cols) == pickle.dumps(plain)
    cfg = _settings()
    results = []
    for c in (plain, cols):
        features, triggers = FeatureState(cfg.features), TriggerState(cfg.triggers)
        fcols = features.update_block(c)
        results.append((fcols, triggers.evaluate_block(c, fcols), pickle.dumps(features)))
    assert repr(results[0]) == repr(results[1])


@settings(max_examples=15, derandomize=True, deadline=None)
@given(bar_runs(), st.data())
def test_feature_columns_of_a_matrix_are_the_rows(bars: list[Bar], data: st.DataObject) -> None:
    """The kernels' matrix form (`FeatureColumns.of_matrix`) equals the per-bar rows, reads a
    column or a value without making the rows, slices, and pickles as the matrix."""
    cfg = _settings()
    names, events = _events(cfg, bars)
    plain = FeatureColumns.of_vectors(names, [e.features for e in events])
    cols = FeatureState(cfg.features).update_block(BarColumns.of_bars(bars))
    if cols.matrix is None:  # a run too short for the kernels: rows bar by bar
        assert repr(cols) == repr(plain)
        return
    i = data.draw(st.integers(0, len(bars) - 1))
    j = data.draw(st.integers(0, len(names) - 1))
    assert _bits(cols.value(i, j)) == _bits(plain.rows[i][j])
    assert [_bits(x) for x in cols.column(j).tolist()] == [_bits(r[j]) for r in plain.rows]
    assert cols.values(i) == plain.values(i) or repr(cols.values(i)) == repr(plain.values(i))
    restored = pickle.loads(pickle.dumps(cols))
    assert restored._rows is None and restored.matrix is not None
    lo = data.draw(st.integers(0, len(bars)))
    hi = data.draw(st.integers(lo, len(bars)))
    assert repr(cols.slice(lo, hi)) == repr(plain.slice(lo, hi))
    assert repr(restored) == repr(plain) and repr(cols) == repr(plain)


def _bits(x: float) -> str:
    return x.hex()
