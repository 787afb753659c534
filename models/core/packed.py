"""Bars as a Kafka batch gave them: Arrow and numpy columns, with no Python object per bar.

Ingest reads a batch of replayed bars as columns at once (models/market/bar_batch.py). A
`PackedBars` keeps what that read made, for a run of bars of one symbol: the message's text
of each price and the volume (an Arrow string column: `Decimal(text)` is exactly the per-bar
path's value, digits and exponent), the same values as `decimal128(38, 12)` (the bars
table's type: the store writes them as they are), the floats the feature kernels read
(`BarFloats`), and the start and end times as int64. `BarColumns` makes `Decimal`s from it
only when a reader asks (the desk's acting bars, `bars()`), so a bar the desk only marks costs
one `Decimal` (its close), and blocks pickle as buffers, not as a million objects.

The one computed column, vwap, is what `_Window.to_bar` makes of a window holding one input
bar: `(high + low + close) / 3 * volume / volume` in `Decimal`'s default context (28
significant digits, half-even), the close when the volume is 0. `vwap_columns` gives what
the store and the kernels need of it without those steps, exactly:
- the stored value is that Decimal rounded half-even to 12 places. With `x = (h + l + c) / 3`
  exact, the three rounded steps leave the result within `1.6e-27 * x` of `x` (each step's
  rounding is at most half a unit in the 28th digit of its result); `x * 10**12` is an
  integer or an integer plus 1/3 or 2/3 (the prices have at most 12 places), at least 1/6 of
  a unit from a rounding tie, so for `x < 1e14` both round to the same 12 places:
  `S // 3`, plus one when `S % 3 == 2`, with `S` the sum at scale 12;
- the float is the float nearest the Decimal. It is the float nearest `x` (one correctly
  rounded division of two exact doubles) unless `x` lies within that `1.6e-27 * x` of a tie
  between two floats; the distance from `x` to the tie is computed exactly enough with an
  error-free product, and a block where any bar comes within `1e-24 * x` (about one bar in
  10**8) takes the Decimal steps, as does one whose values do not fit these bounds or when the
  decimal context is not the default one.
tests/unit/test_packed_bars.py checks both against the Decimal steps on generated bars.
"""

from __future__ import annotations

import decimal
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

SCALE: Final = 12
"""The decimal columns' scale: the bars table's `Decimal(38, 12)`."""
DECIMAL128: Final = pa.decimal128(38, SCALE)

OPEN, HIGH, LOW, CLOSE, VOLUME = range(5)
PRICE_FIELDS: Final = ("open", "high", "low", "close", "volume")

_FIT: Final = 1 << 61  # scale-12 integers below this sum three times within int64
_TIE_MARGIN: Final = 1e-24  # relative distance from a float tie that the Decimal steps cannot cross
_ZERO: Final = pa.scalar(Decimal(0), DECIMAL128)
_SPLIT: Final = 134217729.0  # 2**27 + 1: Veltkamp's splitting constant


@dataclass(frozen=True, slots=True)
class BarFloats:
    """`float()` of four of a `BarColumns`' Decimal columns, bit for bit (`close[i]` is
    `float(cols.close[i])`, and so on), made where that is cheaper than converting the Decimals
    again: ingest takes them from the message text (`float(t)` is `float(Decimal(t))`, both
    correctly rounded conversions of one value; models/market/fast_bar.py says why), and the
    feature and trigger kernels read them instead of converting."""

    close: Floats
    high: Floats
    low: Floats
    volume: Floats

    def slice(self, lo: int, hi: int) -> BarFloats:
        return BarFloats(self.close[lo:hi], self.high[lo:hi], self.low[lo:hi], self.volume[lo:hi])


@dataclass(frozen=True, slots=True)
class PackedBars:
    """A run of bars as columns of the batch they came in (see the module doc): `text[k]` and
    `dec[k]` are the Arrow columns of `PRICE_FIELDS[k]`, `floats` the float of four of them."""

    start_ms: Ints
    end_ms: Ints
    text: tuple[Any, ...]
    dec: tuple[Any, ...]
    floats: BarFloats

    def __len__(self) -> int:
        return len(self.end_ms)

    def slice(self, lo: int, hi: int) -> PackedBars:
        n = max(0, min(hi, len(self)) - max(lo, 0))
        return PackedBars(
            self.start_ms[lo:hi],
            self.end_ms[lo:hi],
            tuple(a.slice(lo, n) for a in self.text),
            tuple(a.slice(lo, n) for a in self.dec),
            self.floats.slice(lo, hi),
        )

    @classmethod
    def of_texts(
        cls, start_ms: Sequence[int], end_ms: Sequence[int], texts: Sequence[Sequence[str]]
    ) -> PackedBars:
        """Bars from the texts of open, high, low, close and volume (plain decimals of at most
        12 places, as ingest accepts them), converted as ingest converts them."""
        text = tuple(pa.array(list(t), pa.string()) for t in texts)
        dec = tuple(t.cast(DECIMAL128) for t in text)
        floats = BarFloats(
            *(text[k].cast(pa.float64()).to_numpy() for k in (CLOSE, HIGH, LOW, VOLUME))
        )
        return cls(np.array(start_ms, np.int64), np.array(end_ms, np.int64), text, dec, floats)

    def texts(self, k: int) -> list[str]:
        return self.text[k].to_pylist()  # type: ignore[no-any-return]

    def __getstate__(self) -> tuple[Any, ...]:
        """The run's own values only: an Arrow slice pickles its whole buffers, so each column
        is copied to its own first (a block is a few thousand bars of a batch's arrays)."""
        f = self.floats
        return (
            np.ascontiguousarray(self.start_ms),
            np.ascontiguousarray(self.end_ms),
            tuple(pa.concat_arrays([a]) for a in self.text),
            tuple(pa.concat_arrays([a]) for a in self.dec),
            tuple(np.ascontiguousarray(x) for x in (f.close, f.high, f.low, f.volume)),
        )

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        start, end, text, dec, floats = state
        for name, value in (
            ("start_ms", start),
            ("end_ms", end),
            ("text", text),
            ("dec", dec),
            ("floats", BarFloats(*floats)),
        ):
            object.__setattr__(self, name, value)


def unscaled(array: Any) -> Ints | None:
    """The unscaled integers of a `decimal128` Arrow array without nulls, or None when one
    does not fit 64 bits."""
    n, offset = len(array), array.offset
    words = np.frombuffer(array.buffers()[1], np.int64, 2 * (offset + n))[2 * offset :]
    low, high = words[0::2], words[1::2]
    if not np.array_equal(high, low >> 63):
        return None
    return low


def decimal128_of(values: Ints) -> Any:
    """A `decimal128(38, 12)` Arrow array of the unscaled int64 `values`."""
    words = np.empty(2 * len(values), np.int64)
    words[0::2] = values
    words[1::2] = values >> 63
    return pa.Array.from_buffers(DECIMAL128, len(values), [None, pa.py_buffer(words)])


def _default_context() -> bool:
    ctx = decimal.getcontext()
    return ctx.prec == 28 and ctx.rounding == decimal.ROUND_HALF_EVEN


def _two_product(a: Floats, b: float) -> tuple[Floats, Floats]:
    """`(p, e)` with `p = fl(a * b)` and `p + e == a * b` exactly (Dekker, Veltkamp split)."""
    p = a * b
    ca = _SPLIT * a
    a_hi = ca - (ca - a)
    a_lo = a - a_hi
    cb = _SPLIT * b
    b_hi = cb - (cb - b)
    b_lo = b - b_hi
    e = ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    return p, e


def vwap_columns(bars: PackedBars) -> tuple[Any, Floats] | None:
    """`(stored, floats)`: the run's vwap as the bars table stores it (`decimal128(38, 12)`)
    and as `float()` of the Decimal, from the integers (the module doc says why they are the
    same); None when a bar needs the Decimal steps."""
    if not _default_context() or not len(bars):
        return None
    h, lo, c = (unscaled(bars.dec[k]) for k in (HIGH, LOW, CLOSE))
    if h is None or lo is None or c is None:
        return None
    if int(h.max()) >= _FIT or int(lo.max()) >= _FIT or int(c.max()) >= _FIT:
        return None
    total = h + lo + c  # (h + l + c) * 10**12, exact: every price is positive and fits
    traded = pc.greater(bars.dec[VOLUME], _ZERO).to_numpy(zero_copy_only=False)
    stored = np.where(traded, total // 3 + (total % 3 == 2), c)
    # x = total / third exactly, with total = high + low (an int64 split into a double and
    # the small integer it was rounded by: both exact doubles).
    third = 3.0 * 10**SCALE
    high = total.astype(np.float64)
    low = (total - high.astype(np.int64)).astype(np.float64)
    first = high / third
    p, e = _two_product(first, third)
    nearest = first + (((high - p) - e) + low) / third  # x's float, unless x is near a tie
    p, e = _two_product(nearest, third)
    residual = ((high - p) - e) + low  # (x - nearest) * third, to 1 part in 2**51
    gap = np.where(
        residual > 0, np.nextafter(nearest, np.inf) - nearest, nearest - np.nextafter(nearest, 0)
    )
    # Negative when `nearest` is not the float nearest x: then the Decimal steps too.
    to_tie = gap / 2 - np.abs(residual) / third
    if bool(np.any(traded & (to_tie <= _TIE_MARGIN * nearest))):
        return None
    floats = np.where(traded, nearest, bars.floats.close)
    return decimal128_of(stored), floats


def vwap_decimals(
    high: list[Decimal], low: list[Decimal], close: list[Decimal], volume: list[Decimal]
) -> list[Decimal]:
    """`_Window.to_bar`'s vwap of windows of one input bar each: the Decimal steps."""
    return [
        (h + lo + c) / 3 * v / v if v > 0 else c
        for h, lo, c, v in zip(high, low, close, volume, strict=True)
    ]


def vwap_decimal(high: Decimal, low: Decimal, close: Decimal, volume: Decimal) -> Decimal:
    return (high + low + close) / 3 * volume / volume if volume > 0 else close
