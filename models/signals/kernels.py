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
            return given.close
        return self._floats(self.cols.close)

    @cached_property
    def high(self) -> Floats:
        given = self._given
        if given is not None:
            return given.high
        return self._floats(self.cols.high)

    @cached_property
    def low(self) -> Floats:
        given = self._given
        if given is not None:
            return given.low
        return self._floats(self.cols.low)

    @cached_property
    def volume(self) -> Floats:
        given = self._given
        if given is not None:
            return given.volume
        return self._floats(self.cols.volume)

    @cached_property
    def vwap(self) -> Floats:
        return self.cols.vwap_floats()

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


# `d * d` is libm's `pow(d, 2.0)` wherever the exact square lies clearly inside its rounding
# interval. glibc's pow is within 0.511 ULP plus its log's share (relative error 1.5 * 2**-68
# times |2 log d| <= 46 for 1e-10 <= d <= 1e10: 0.0021 ULP), 0.514 ULP in all; when the
# exact square is within 0.45 ULP of `d * d` (`d * d + 1.111 * error` rounds back to it),
# every other double is at least 0.55 ULP away, so pow returns `d * d`. The rest (~10% of
# squares), squares at a power of two (the ULP differs on either side) and values outside
# [1e-10, 1e10] are taken by `math.pow` itself. The screen is checked on a sample at import
# (`_screen_holds`); a libm it does not hold for gets every square from `math.pow`.
_POW_SCREEN_FACTOR: Final = 0.5 / 0.45
_POW_RANGE: Final = (1e-10, 1e10)
_SPLIT: Final = 134217729.0  # 2**27 + 1: Veltkamp's splitting constant
_MANTISSA: Final = (1 << 52) - 1
_CHUNK: Final = 8192
"""Values per numpy step in the square kernels: arrays that stay in the cache (a block's
windows at once are ~100,000 values; in steps of this size the same work is ~2x faster)."""


def _pow_squares(mag: Floats) -> Floats:
    """`math.pow(x, 2.0)` of non-negative finite `x`, bit for bit (see above)."""
    flat = mag.ravel()
    square = flat * flat
    if not POW_SCREEN:
        at = np.arange(len(flat))
    else:
        low, high = _POW_RANGE
        risky = []
        for lo in range(0, len(flat), _CHUNK):
            x = flat[lo : lo + _CHUNK]
            sq = square[lo : lo + _CHUNK]
            c = _SPLIT * x
            x_hi = c - (c - x)
            x_lo = x - x_hi
            error = ((x_hi * x_hi - sq) + 2.0 * x_hi * x_lo) + x_lo * x_lo  # sq + error = x**2
            doubt = (sq + error * _POW_SCREEN_FACTOR) != sq
            doubt |= (sq.view(np.int64) & _MANTISSA) == 0
            doubt |= (x < low) | (x > high)
            risky.append(np.flatnonzero(doubt) + lo)
        at = np.concatenate(risky) if risky else np.zeros(0, np.int64)
    if len(at):
        square[at] = np.fromiter(map(math.pow, flat[at].tolist(), repeat(2.0)), np.float64, len(at))
    return square.reshape(mag.shape)


def _screen_holds() -> bool:
    """Whether `_pow_squares`' screen gives `math.pow` on a sample spread over the range,
    squares near the rounding boundary included."""
    global POW_SCREEN
    rng = np.random.default_rng(20261207)
    values = np.abs(rng.standard_normal(20_000)) * 10.0 ** rng.uniform(-12, 12, 20_000)
    values = np.concatenate((values, np.abs(rng.standard_normal(20_000)) * 1e-3))
    POW_SCREEN = True
    got = _pow_squares(values)
    want = np.fromiter(map(math.pow, values.tolist(), repeat(2.0)), np.float64, len(values))
    return bool(np.array_equal(got.view(np.int64), want.view(np.int64)))


POW_SCREEN = True
POW_SCREEN = _screen_holds()


def _squares(dev: Floats) -> Floats:
    """`d ** 2` of each value, as Python computes it. `float_pow` (Objects/floatobject.c)
    answers `0 ** 2` with 0.0 and `1 ** 2` with 1.0 itself, turns `(-d) ** 2` into `d ** 2`,
    and otherwise returns libm's `pow(d, 2.0)`; `math.pow` of a finite positive `d` returns
    that same `pow(d, 2.0)` with less call overhead (`_pow_squares` computes it, calling
    `math.pow` only where it must). The two differ only in how they report an underflow
    (math.pow returns the tiny value, `**` raises OverflowError): when a nonzero `|d|` is
    below 1e-150 (a square below 1e-300, near the subnormals), Python's `pow` does them all."""
    mag = np.abs(dev)
    nonzero = mag[mag != 0.0]
    if nonzero.size and nonzero.min() < _TINY:
        flat = dev.ravel().tolist()
        # pow(d, 2.0) is `d ** 2` (float_pow converts the int 2 to 2.0 first)
        return np.fromiter(map(pow, flat, repeat(2.0)), np.float64, len(flat)).reshape(dev.shape)
    squares = _pow_squares(mag)
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
        sums = []
        for t in range(count):
            m, s = means[t], first + t
            if pow2:
                sums.append(sum([(x - m) ** 2 for x in values[s : s + p]]))
            else:
                sums.append(sum((x - m) * (x - m) for x in values[s : s + p]))
        return np.fromiter(sums, np.float64, count)
    view = windows(ext, p, first, count)
    out = np.empty(count)
    rows = max(1, _CHUNK // p)  # windows a step (`_CHUNK`): each window's terms as before
    for lo in range(0, count, rows):
        dev = view[lo : lo + rows] - mean[lo : lo + rows, None]
        squares = _squares(dev) if pow2 else dev * dev
        acc = 0.0 + squares[:, 0]
        for k in range(1, p):
            acc += squares[:, k]
        out[lo : lo + rows] = acc
    return out
