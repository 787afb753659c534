"""One symbol's bars as columns of float64 (prices, volume) and int64 (times).

The desk reads `Decimal` prices and converts them with `float()` wherever an indicator needs
them; these columns hold the same floats, so a feature computed from a column is the feature the
desk computes (`models.vectorized.features`). `from_bars` and `to_bars` convert both ways
exactly: a float becomes the `Decimal` of its shortest repr, which `float()` gives back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from models.core.messages import Bar

__all__ = ["BarArrays", "FloatArray"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True, eq=False)
class BarArrays:
    """Columns of equal length, oldest bar first; `end_ms` strictly increasing."""

    symbol: str
    start_ms: IntArray
    end_ms: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    vwap: FloatArray

    def __post_init__(self) -> None:
        n = len(self.close)
        for name in ("start_ms", "end_ms", "open", "high", "low", "volume", "vwap"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"bars: column {name} has {len(getattr(self, name))} rows, not {n}"
                )
        if n > 1 and not bool(np.all(np.diff(self.end_ms) > 0)):
            raise ValueError("bars: end times must be strictly increasing")
        if n and not bool(np.all(np.isfinite(self.close)) and np.all(np.isfinite(self.open))):
            raise ValueError("bars: open and close must be finite")

    def __len__(self) -> int:
        return len(self.close)

    def slice(self, lo: int, hi: int) -> BarArrays:
        """Bars `[lo, hi)`: views of these columns (a window, a warm-up, a cut history)."""
        return BarArrays(
            self.symbol,
            self.start_ms[lo:hi],
            self.end_ms[lo:hi],
            self.open[lo:hi],
            self.high[lo:hi],
            self.low[lo:hi],
            self.close[lo:hi],
            self.volume[lo:hi],
            self.vwap[lo:hi],
        )

    @classmethod
    def from_columns(
        cls,
        symbol: str,
        start_ms: Sequence[int] | IntArray,
        length_ms: int,
        open: Sequence[float] | FloatArray,
        high: Sequence[float] | FloatArray,
        low: Sequence[float] | FloatArray,
        close: Sequence[float] | FloatArray,
        volume: Sequence[float] | FloatArray,
        vwap: Sequence[float] | FloatArray | None = None,
    ) -> BarArrays:
        """Bars of one length; vwap defaults to the close (as a bar of one trade)."""
        start = np.asarray(start_ms, dtype=np.int64)
        closes = np.asarray(close, dtype=np.float64)
        return cls(
            symbol=symbol,
            start_ms=start,
            end_ms=start + np.int64(length_ms),
            open=np.asarray(open, dtype=np.float64),
            high=np.asarray(high, dtype=np.float64),
            low=np.asarray(low, dtype=np.float64),
            close=closes,
            volume=np.asarray(volume, dtype=np.float64),
            vwap=closes.copy() if vwap is None else np.asarray(vwap, dtype=np.float64),
        )

    @classmethod
    def from_bars(cls, bars: Sequence[Bar]) -> BarArrays:
        """The columns of desk bars (one symbol, in time order)."""
        symbols = {b.symbol for b in bars}
        if len(symbols) > 1:
            raise ValueError(f"bars: one symbol expected, got {', '.join(sorted(symbols))}")

        def col(name: str) -> FloatArray:
            return np.array([float(getattr(b, name)) for b in bars], dtype=np.float64)

        return cls(
            symbol=next(iter(symbols), ""),
            start_ms=np.array([b.start_ms for b in bars], dtype=np.int64),
            end_ms=np.array([b.end_ms for b in bars], dtype=np.int64),
            open=col("open"),
            high=col("high"),
            low=col("low"),
            close=col("close"),
            volume=col("volume"),
            vwap=col("vwap"),
        )

    def bar(self, i: int) -> Bar:
        """Bar `i` as the desk gets it (each float as the Decimal of its repr)."""

        def dec(x: np.float64) -> Decimal:
            return Decimal(repr(float(x)))

        return Bar(
            symbol=self.symbol,
            start_ms=int(self.start_ms[i]),
            end_ms=int(self.end_ms[i]),
            open=dec(self.open[i]),
            high=dec(self.high[i]),
            low=dec(self.low[i]),
            close=dec(self.close[i]),
            volume=dec(self.volume[i]),
            trades=1,
            vwap=dec(self.vwap[i]),
        )

    def to_bars(self) -> list[Bar]:
        return [self.bar(i) for i in range(len(self))]
