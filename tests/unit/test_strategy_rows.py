"""A compiled strategy over feature rows (`models.strategy.rows`) stops exactly where its
`on_bar` would first act, with the same crossing memory as bar by bar.

Generated rows (values, ties, NaN for missing), closes, bar ends (mostly rising, sometimes a
replayed or older bar), positions (flat, long, short, in flight without a fill) and entry
prices, for strategies with crossings, thresholds, groups, stops and take-profit, long, short
and both ways.
"""

from __future__ import annotations

import copy
import math
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from models.core.blocks import FeatureColumns
from models.strategy.compiler import CompiledStrategy, StrategyLimits, compile_strategy
from models.strategy.rows import RowProbe
from models.strategy.spec import StrategySpec

NAMES = ("sma_3", "sma_5", "rsi_7")
SPECS: list[dict[str, Any]] = [
    {
        "entry": {"left": "sma_3", "op": "crosses_above", "right": "sma_5"},
        "exit": {"left": "sma_3", "op": "crosses_below", "right": "sma_5"},
    },
    {
        "entry": {"left": "close", "op": ">", "right": "sma_5"},
        "exit": {"left": "rsi_7", "op": ">=", "right": 60},
        "stop_loss_pct": 0.02,
        "take_profit_pct": 0.03,
    },
    {
        "entry": {
            "match": "all",
            "conditions": [
                {"left": "rsi_7", "op": "crosses_below", "right": 45},
                {"left": "close", "op": "<=", "right": "sma_3"},
            ],
        },
        "exit": {
            "match": "any",
            "conditions": [
                {"left": "sma_3", "op": "crosses_above", "right": "sma_5"},
                {"left": "ema_9", "op": "<", "right": 1},
            ],
        },
        "take_profit_pct": 0.01,
    },
]


def compiled(doc: dict[str, Any], direction: str) -> CompiledStrategy:
    spec = StrategySpec.model_validate(
        {
            "name": "t",
            "version": 1,
            "universe": ["S"],
            "position_fraction": 0.5,
            "stop_loss_pct": None,
            "take_profit_pct": None,
            "target_weights": [],
            "horizon_bars": 10_000,
            "rationale": "",
            "confidence": 0.5,
            "direction": direction,
            **doc,
        }
    )
    limits = StrategyLimits(features=None, max_position_fraction=Decimal(1))
    result = compile_strategy(spec, ["S"], limits)
    assert isinstance(result, CompiledStrategy), result
    return result


value = st.one_of(st.sampled_from([math.nan, 10.0, 10.5]), st.floats(9, 11, width=16))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    which=st.integers(0, len(SPECS) - 1),
    direction=st.sampled_from(["long", "short", "both"]),
    rows=st.lists(st.tuples(value, value, st.floats(30, 70, width=16)), min_size=1, max_size=80),
    steps=st.lists(st.sampled_from([1, 1, 1, 1, 0, -1]), min_size=80, max_size=80),
    position=st.sampled_from(["0", "3", "-2"]),
    entry=st.sampled_from([None, "10.2", "10"]),
    warm=st.integers(0, 5),
    lo=st.integers(0, 3),
    with_floats=st.booleans(),
)
def test_rows_stop_where_on_bar_first_acts(
    which: int,
    direction: str,
    rows: list[tuple[float, float, float]],
    steps: list[int],
    position: str,
    entry: str | None,
    warm: int,
    lo: int,
    with_floats: bool,
) -> None:
    strategy = compiled(SPECS[which], direction)
    n = len(rows)
    closes = [Decimal(repr(round(10 + (i % 7) * 0.1 - 0.3, 2))) for i in range(n)]
    ends, t = [], 1_000
    for k in range(n):
        t += 60 * steps[k]
        ends.append(t)
    features = FeatureColumns(NAMES, list(rows))
    held, price = Decimal(position), None if entry is None else Decimal(entry)
    for k in range(min(warm, n)):  # some memory before the run
        fv = features.vector(k, "S", ends[k] - 10_000, float(closes[k]))
        strategy.on_bar("S", fv, held, price)
    lo = min(lo, n)
    by_bar = copy.deepcopy(strategy)
    expected = n
    for i in range(lo, n):
        fv = features.vector(i, "S", ends[i], float(closes[i]))
        probe_copy = copy.deepcopy(by_bar)
        if by_bar.on_bar("S", fv, held, price):
            by_bar = probe_copy  # the acting bar is left to the per-bar path
            expected = i
            break
    floats = [float(c) for c in closes] if with_floats else None  # as `BarColumns.floats`
    got = RowProbe(strategy, NAMES).quiet_until(
        "S", features.rows, closes, ends, lo, n, held, price, floats
    )
    assert got == expected
    assert strategy.memory("S") == by_bar.memory("S")
