"""Block arithmetic for the feature kernels: a run of bars at once, bit for bit as bar by bar.

`FeatureState.update_block` hands each indicator the block's columns as floats (`FloatBars`)
and the indicator's `update_many` runs its recurrence over them. What makes the result equal to
`update` bar by bar, bit for bit, is that every value goes through the same IEEE operations in
the same order:
- elementwise `+ - * /`, `sqrt` and comparisons are correctly rounded (or exact) in numpy as in
  Python, so they are vectorised freely; numpy never fuses a multiply and an add across ufuncs;
- `sum()` over a window is what `builtins.sum` does: on CPython up to 3.11 a plain left-to-right
  addition starting from `0 + x0`, which numpy repeats by adding the window's columns one after
  the other (`window_sums`); from 3.12 `sum` compensates (Neumaier), so `PLAIN_SUM` is False and
  every window is summed by `sum` itself;
- `x ** 2` is libm's `pow`, which is not `x * x` (about one value in a thousand differs, and
  numpy's `power` may use another library): those squares are taken by Python's `pow`;
- transcendental functions (`log`) are Python's `math` ones, called per value;
- a recurrence (`prev - d`, `m * x + (1 - m) * prev`) is sequential by nature: it runs in
  `itertools.accumulate`, the same operations in C-level iteration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cached_property
from itertools import repeat
from typing import Final

import numpy as np
import numpy.typing as npt

from models.core.blocks import BarColumns
from models.core.messages import Bar

Floats = npt.NDArray[np.float64]

NAN: Final = float("nan")


def _sums_left_to_right() -> bool:
    """True when `sum()` of floats is a plain left-to-right addition (CPython <= 3.11): 1e16 + 1
    rounds back to 1e16, so the plain sum below is 0.0, the compensated one 1.0."""
    probes = ([1e16, 1.0, -1e16], [1.0, 1e100, 1.0, -1e100], [0.1] * 10)
    plain = []
    for probe in probes:
        acc = 0.0 + probe[0]
        for x in probe[1:]:
            acc += x
        plain.append(acc)
    return [sum(p) for p in probes] == plain


PLAIN_SUM: Final = _sums_left_to_right()

# Below this many windows, summing each by `sum` beats numpy's per-column calls.
_NUMPY_WINDOWS: Final = 24


class FloatBars:
    """A block's bars as float columns, each converted once (`float(Decimal)`, as `update`
    does per bar; taken from the columns' `BarFloats` when they carry them), and materialised
    as `Bar`s only for an indicator without a block method."""

    def __init__(self, cols: BarColumns) -> None:
        self.cols = cols
        self.n = len(cols)
        given = cols.floats
        self._given = given if given is not None and len(given.close) == self.n else None

    def _floats(self, col: Sequence[object]) -> Floats:
        return np.fromiter(map(float, col), np.float64, self.n)  # type: ignore[arg-type]

    @cached_property
    def close(self) -> Floats:
        given = self._given
        if given is not None:  # the same floats, converted already (`BarFloats`)
            return np.array(given.close, np.float64)
        return self._floats(self.cols.close)

    @cached_property
    def high(self) -> Floats:
        given = self._given
        if given is not None:
            return np.array(given.high, np.float64)
        return self._floats(self.cols.high)

    @cached_property
    def low(self) -> Floats:
        given = self._given
        if given is not None:
            return np.array(given.low, np.float64)
        return self._floats(self.cols.low)

    @cached_property
    def volume(self) -> Floats:
        given = self._given
        if given is not None:
            return np.array(given.volume, np.float64)
        return self._floats(self.cols.volume)

    @cached_property
    def vwap(self) -> Floats:
        return self._floats(self.cols.vwap)

    @cached_property
    def bars(self) -> list[Bar]:
        return self.cols.bars()


# The block path handles values in this range (or zero): no sum, product or square of them
# overflows and no ratio of two of them underflows, so no NaN with an unforeseen payload can
# arise; anything else takes the per-bar path, which is always right.
_HUGE: Final = 1e150
_TINY: Final = 1e-150


def finite(*arrays: Floats) -> bool:
    """True when every value is zero or of magnitude within [1e-150, 1e150]."""
    for a in arrays:
        if a.size == 0 or (a.min() >= _TINY and a.max() <= _HUGE):  # all positive (NaN fails)
            continue
        mag = np.abs(a)
        if not bool(np.all((mag <= _HUGE) & ((mag >= _TINY) | (a == 0.0)))):
            return False
    return True


def windows(ext: Floats, p: int, first: int, count: int) -> Floats:
    """`ext[s:s + p]` for s in first..first+count-1 as rows of one read-only view."""
    view = ext[first : first + count + p - 1]
    return np.lib.stride_tricks.as_strided(
        view, shape=(count, p), strides=(view.strides[0], view.strides[0]), writeable=False
    )


def finite_scalar(x: float | None) -> bool:
    return x is None or (abs(x) <= _HUGE and (abs(x) >= _TINY or x == 0.0))


def extend(history: Sequence[float], new: Floats) -> Floats:
    """An indicator's kept history followed by the block's values, as one array."""
    if not history:
        return new
    return np.concatenate((np.fromiter(history, np.float64, len(history)), new))


def nans(n: int) -> Floats:
    return np.full(n, NAN)


def window_sums(ext: Floats, p: int, first: int, count: int) -> Floats:
    """`sum(ext[s:s + p])` for s in first..first+count-1, as `builtins.sum` gives each."""
    if count <= 0:
        return np.empty(0)
    if not PLAIN_SUM or count < _NUMPY_WINDOWS:
        values = ext.tolist()
        return np.fromiter(
            (sum(values[s : s + p]) for s in range(first, first + count)), np.float64, count
        )
    acc = 0.0 + ext[first : first + count]
    for k in range(1, p):
        acc += ext[first + k : first + k + count]
    return acc


def _squares(dev: Floats) -> Floats:
    """`d ** 2` of each value, as Python computes it. `float_pow` (Objects/floatobject.c)
    answers `0 ** 2` with 0.0 and `1 ** 2` with 1.0 itself, turns `(-d) ** 2` into `d ** 2`,
    and otherwise returns libm's `pow(d, 2.0)`; `math.pow` of a finite positive `d` returns
    that same `pow(d, 2.0)` with less call overhead. The two differ only in how they report an
    underflow (math.pow returns the tiny value, `**` raises OverflowError): when a nonzero `|d|`
    is below 1e-150 (a square below 1e-300, near the subnormals), Python's `pow` does them all."""
    mag = np.abs(dev)
    nonzero = mag[mag != 0.0]
    if nonzero.size and nonzero.min() < _TINY:
        flat = dev.ravel().tolist()
        # pow(d, 2.0) is `d ** 2` (float_pow converts the int 2 to 2.0 first)
        return np.fromiter(map(pow, flat, repeat(2.0)), np.float64, len(flat)).reshape(dev.shape)
    flat = mag.ravel().tolist()
    squares = np.fromiter(map(math.pow, flat, repeat(2.0)), np.float64, len(flat))
    squares = squares.reshape(dev.shape)
    squares[mag == 0.0] = 0.0
    squares[mag == 1.0] = 1.0
    return squares


def deviation_sums(
    ext: Floats, p: int, first: int, count: int, mean: Floats, *, pow2: bool
) -> Floats:
    """For each window s (as in `window_sums`) with its mean m: `sum((x - m) ** 2 ...)` when
    `pow2` (libm's pow, through Python), else `sum((x - m) * (x - m) ...)`, term by term in
    window order, as `builtins.sum` adds them."""
    if count <= 0:
        return np.empty(0)
    if not PLAIN_SUM or count < _NUMPY_WINDOWS:
        values, means = ext.tolist(), mean.tolist()
        out = []
        for t in range(count):
            m, s = means[t], first + t
            if pow2:
                out.append(sum([(x - m) ** 2 for x in values[s : s + p]]))
            else:
                out.append(sum((x - m) * (x - m) for x in values[s : s + p]))
        return np.fromiter(out, np.float64, count)
    dev = windows(ext, p, first, count) - mean[:, None]
    squares = _squares(dev) if pow2 else dev * dev
    acc = 0.0 + squares[:, 0]
    for k in range(1, p):
        acc += squares[:, k]
    return acc
