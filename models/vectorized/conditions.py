"""A strategy's entry and exit condition trees over whole columns: one boolean per bar.

The semantics are the compiler's (`models.strategy.compiler.CompareNode`), column-wise:
- a missing value (NaN here, None in the desk) makes a comparison false; numpy's comparisons
  with NaN are false, so `>`, `>=`, `<`, `<=` need nothing more;
- `crosses_above` / `crosses_below` follow `models.signals.crossing`: each bar has a strict side
  (+1 above, -1 below, 0 when equal or missing); the side "before" a bar is the last non-zero
  side of the bars before it (0 if none); a bar crosses above when its side is +1 and the side
  before it was -1. A forward fill of the non-zero sides, shifted by one bar, is that memory.
- groups are `all` (logical and) / `any` (logical or) of their children.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import numpy as np

from models.strategy.spec import Comparison, ConditionNode
from models.vectorized.bars import FloatArray

__all__ = ["BoolArray", "crosses", "evaluate", "strict_side"]

BoolArray = np.ndarray[Any, np.dtype[np.bool_]]

_THRESHOLDS: Final = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}


def strict_side(left: FloatArray, right: FloatArray) -> np.ndarray[Any, np.dtype[np.int8]]:
    """+1 where left > right, -1 where left < right, 0 where equal or either is NaN."""
    return (np.greater(left, right).astype(np.int8) - np.less(left, right).astype(np.int8)).astype(
        np.int8
    )


def side_before(side: np.ndarray[Any, np.dtype[np.int8]]) -> np.ndarray[Any, np.dtype[np.int8]]:
    """The last non-zero side strictly before each bar (0 when there is none)."""
    n = len(side)
    idx = np.where(side != 0, np.arange(n), -1)
    np.maximum.accumulate(idx, out=idx)
    last = np.where(idx >= 0, side[np.maximum(idx, 0)], 0).astype(np.int8)
    before = np.zeros(n, dtype=np.int8)
    before[1:] = last[:-1]
    return before


def crosses(left: FloatArray, right: FloatArray, above: bool) -> BoolArray:
    """Where left crosses above (or below) right, as `models.signals.crossing.step` says."""
    side = strict_side(left, right)
    before = side_before(side)
    want = 1 if above else -1
    result: BoolArray = (side == want) & (before == -want)
    return result


def _operand(value: str | float, columns: Mapping[str, FloatArray], n: int) -> FloatArray:
    if isinstance(value, str):
        return columns[value]
    return np.full(n, float(value), dtype=np.float64)


def _compare(node: Comparison, columns: Mapping[str, FloatArray], n: int) -> BoolArray:
    left = _operand(node.left, columns, n)
    right = _operand(node.right, columns, n)
    if node.op == "crosses_above":
        return crosses(left, right, True)
    if node.op == "crosses_below":
        return crosses(left, right, False)
    result: BoolArray = _THRESHOLDS[node.op](left, right)
    return result


def evaluate(
    node: ConditionNode,
    columns: Mapping[str, FloatArray],
    n: int,
    memo: dict[Comparison, BoolArray] | None = None,
) -> BoolArray:
    """Whether `node` holds at each of `n` bars; `columns` holds every operand name it reads.
    `memo` shares a comparison's column between the entry and exit trees (comparisons are
    frozen, hashable models)."""
    cache: dict[Comparison, BoolArray] = {} if memo is None else memo
    if isinstance(node, Comparison):
        if node not in cache:
            cache[node] = _compare(node, columns, n)
        return cache[node]
    parts = [evaluate(c, columns, n, cache) for c in node.conditions]
    out = parts[0].copy()
    for p in parts[1:]:
        if node.match == "all":
            out &= p
        else:
            out |= p
    return out
