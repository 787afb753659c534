"""Items crossing processes (dataflows/wire.py): what arrives is what was sent, field for
field, pickled once however often Bytewax pickles it."""

from __future__ import annotations

import pickle
from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dataflows.wire import Packed, packed, shipped, unpacked
from models.core.blocks import BarBlock, BarColumns, FeatureColumns
from models.core.packed import PackedBars


def crossed(item: Any) -> Any:
    """What a step in another process receives: Bytewax unpickles what it pickled."""
    return pickle.loads(pickle.dumps(packed(item)))


@st.composite
def blocks(draw: st.DrawFn) -> BarBlock:
    n = draw(st.integers(1, 20))
    prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(10_000), places=4)
    texts = [[str(draw(prices)) for _ in range(n)] for _ in range(5)]
    start = [60_000 * i for i in range(n)]
    cols = BarColumns.of_packed(
        "SIMA", PackedBars.of_texts(start, [s + 60_000 for s in start], texts)
    )
    feats = FeatureColumns(("sma",), [(float(i) / 3,) for i in range(n)])
    return BarBlock(cols, feats, {}, {}, "market#0", start, draw(st.integers(0, 10**9)))


@given(blocks())
def test_a_lane_of_blocks_and_rows_arrives_as_sent(block: BarBlock) -> None:
    lane = [block, block.bars, {"other": (1, 2.5, None, Decimal("1.50"))}]
    got = crossed(lane)
    assert got[0].bars == block.bars and got[0].features == block.features
    assert got[0].clock_ms == block.clock_ms and got[0].first_seq == block.first_seq
    assert got[1] == block.bars and got[2] == lane[2]
    assert got[0].bars is got[1]  # one object still, as in one pickle: its columns sent once


def test_packing_is_pickled_once() -> None:
    one = [Decimal("1.25")]
    cols = BarColumns("SIMA", [0], [60_000], one, one, one, one, one, [3], [Decimal("1.2500")])
    lane = [cols, cols]
    pk = packed(lane)
    assert isinstance(pk, Packed)
    # Bytewax pickles an item twice; a packed item's pickle is its bytes, made once.
    assert len(pickle.dumps(pk)) < len(pk.data) + 100
    assert crossed(lane) == lane
    assert unpacked(pk) == lane and unpacked(lane) is lane
    assert pickle.loads(pickle.dumps(shipped(lane))) == lane
