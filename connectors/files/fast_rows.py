"""The build pass of a market file, a chunk at a time with column operations (issue 11).

Validating every row through pydantic costs ~10 µs a row, most of a million-row scan. Almost
every chunk of a real file is clean, and for a clean chunk the outcome is known without a model:
`fast_records` proves, with column operations (pyarrow compute, numpy), that every row of the
chunk would pass `connectors.files.market_file._record` and what it would store, and returns
the records; when it cannot prove that for every row it returns None and the chunk takes the
row-by-row path, which then finds and words the problems exactly as before. "Proves" is meant
literally:
- a number is taken only in the shapes whose text is already the `str()` of its Decimal
  (`PRICE_RE`, `AMOUNT_RE`: no sign, exponent or leading zero, at most six leading zeros
  after the point), so the stored text is the one the validated Decimal would give;
- bounds and `low <= open, close <= high` are decided on correctly rounded doubles, which keep
  order (a < b implies double(a) <= double(b)), so only a strict double comparison (or equal
  texts) counts as passed; equal doubles of different texts go to the row path;
- times are computed with the row path's arithmetic (`float(text) * scale`, rounded half-even,
  clamped), symbols checked against the same pattern, ids against the same length.
tests/unit/test_replay_wire.py runs both paths on generated files and compares every record.
"""

from __future__ import annotations

import re
from itertools import repeat
from typing import TYPE_CHECKING, Any

from connectors.files.arrow_csv import trimmed
from connectors.files.market_source import Chunk
from connectors.files.row_path import BAR, TICK
from connectors.files.wire import bar_parts_columns, tick_parts_columns
from models.core.messages import MAX_AMOUNT, MIN_PRICE
from models.market.parsing import EPOCH_SENTINEL_MS, MAX_EVENT_MS, MIN_EVENT_MS

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pyarrow as pa

__all__ = ["AMOUNT_RE", "PRICE_RE", "fast_records"]

PRICE_RE = r"^(?:[1-9][0-9]*(?:\.[0-9]+)?|0\.0{0,5}[1-9][0-9]*)$"
"""Positive decimals written as `str(Decimal(text))` writes them."""
AMOUNT_RE = r"^(?:[1-9][0-9]*(?:\.[0-9]+)?|0\.0{0,5}[1-9][0-9]*|0(?:\.0{1,6})?)$"
"""`PRICE_RE` and zero (`0`, `0.0` .. `0.000000`)."""
_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9._/:-]{0,31}")  # models.core.messages.SYMBOL_PATTERN
_MAX_ID = 128  # BarIn.id, Tick.id max_length
_MAX_ABS_US = 6 * 10**16  # market_file._MAX_ABS_US

_DIGITS = r"^[0-9]+(\.[0-9]+)?$"


class _Numbers:
    """A column of number texts: the stored texts and their doubles, or None (not provable)."""

    def __init__(self, texts: list[Any] | pa.Array, pattern: str, empty: str | None) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        self.texts: pa.Array | None = None
        self.values: npt.NDArray[np.float64] | None = None
        try:
            if not isinstance(texts, pa.Array):
                texts = pa.array(texts, type=pa.string())
            arr = pc.utf8_trim(texts, characters=" \t")
        except (pa.ArrowException, TypeError):
            return
        if arr.null_count:
            return
        if empty is not None:
            arr = pc.if_else(pc.equal(arr, ""), empty, arr)
        if not pc.all(pc.match_substring_regex(arr, pattern)).as_py():
            return
        self.texts = arr
        self.values = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)

    def ok(self) -> bool:
        return self.texts is not None


def _le(a: _Numbers, b: _Numbers) -> npt.NDArray[np.bool_]:
    """Rows where a <= b is certain: strictly smaller doubles, or the same text."""
    import numpy as np
    import pyarrow.compute as pc

    assert a.values is not None and b.values is not None
    same = pc.equal(a.texts, b.texts).to_numpy(zero_copy_only=False)
    return np.asarray((a.values < b.values) | same)


def _in_bounds(col: _Numbers, low: float | None) -> bool:
    import numpy as np

    v = col.values
    assert v is not None
    ok = v < float(MAX_AMOUNT)
    if low is not None:
        ok &= v > low
    return bool(np.all(ok))


def _digit_floats(arr: pa.Array) -> npt.NDArray[np.float64] | None:
    """`float()` of cells that are plain digits (with a fraction), by pyarrow: for those its
    correctly rounded parse is Python's; None when any cell is another shape."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    text = trimmed(arr)
    if text is None or not pc.all(pc.match_substring_regex(text, _DIGITS)).as_py():
        return None
    return np.asarray(pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False))


def _times(
    chunk: Chunk, time_key: str, scale: float | None, parsed: Any
) -> npt.NDArray[np.int64] | None:
    """The rows' epoch µs as the row path computes them, or None if any is missing/implausible."""
    import numpy as np

    time_us = chunk.time_us
    if time_us is not None or scale is None:
        if time_us is None:
            time_us = parsed([str(t).strip() for t in chunk.columns[time_key]])
        if any(v is None for v in time_us):
            return None
        us = np.array(time_us, dtype=np.int64)
    else:
        x = None
        if chunk.arrays is not None:
            x = _digit_floats(chunk.arrays[time_key])
        if x is None:
            try:
                x = np.array([float(str(t).strip()) for t in chunk.columns[time_key]])
            except ValueError:
                return None
        with np.errstate(over="ignore", invalid="ignore"):
            x = x * scale
        if not np.all(np.isfinite(x)):
            return None
        us = np.rint(np.clip(x, -_MAX_ABS_US, _MAX_ABS_US)).astype(np.int64)
    ms = us // 1000
    plausible = ((ms <= -EPOCH_SENTINEL_MS) | (ms >= EPOCH_SENTINEL_MS)) & (
        (ms >= MIN_EVENT_MS) & (ms < MAX_EVENT_MS)
    )
    return us if bool(np.all(plausible)) else None


def _symbols(sym_col: list[Any] | None, n: int, default: str | None) -> list[str] | None:
    if sym_col is None:
        return None if default is None else [default] * n
    names: dict[Any, str | None] = {}
    out: list[str] = []
    for cell in sym_col:
        sym = names.get(cell, "")
        if sym == "":
            raw = cell.strip()
            sym = raw.upper() if raw else default
            if sym is not None and not _SYMBOL.fullmatch(sym):
                sym = None
            names[cell] = sym
        if sym is None:
            return None
        out.append(sym)
    return out


def _ids(col: list[Any] | None, n: int) -> list[str | None] | None:
    if col is None:
        return [None] * n
    ids = [str(x).strip() or None for x in col]
    if any(i is not None and len(i) > _MAX_ID for i in ids):
        return None
    return ids


def _listed(cols: dict[str, Any], key: str | None) -> list[Any] | None:
    if key is None:
        return None
    col = cols[key]
    return col if isinstance(col, list) else list(col.to_pylist())


def _symbol_column(syms: list[str]) -> pa.Array:
    import pyarrow as pa

    return pa.array(syms, type=pa.string())


def fast_records(
    chunk: Chunk,
    first_seq: int,
    *,
    time_key: str,
    scale: float | None,
    parse_times: Any,
    sym_key: str | None,
    default_symbol: str | None,
    is_bars: bool,
    size_key: str | None,
    id_key: str | None,
    volume_key: str | None,
) -> tuple[list[tuple[Any, ...]], npt.NDArray[np.int64], list[str]] | None:
    """The chunk's records `(open µs, seq, row, symbol, kind, (head, tail))` in row order and
    their open µs and symbols, or None when any row needs the row-by-row path. The payload is the
    message's JSON around its interval member (`connectors.files.wire`)."""
    rownums = chunk.rownums
    n = len(rownums)
    if n == 0:
        return None
    us = _times(chunk, time_key, scale, parse_times)
    if us is None:
        return None
    cols: dict[str, Any] = chunk.arrays if chunk.arrays is not None else chunk.columns
    syms = _symbols(_listed(cols, sym_key), n, default_symbol)
    if syms is None:
        return None
    ids = _ids(_listed(cols, id_key), n)
    if ids is None:
        return None
    min_price = float(MIN_PRICE)
    if is_bars:
        o, h, lo, c = (_Numbers(cols[k], PRICE_RE, None) for k in ("open", "high", "low", "close"))
        vol_texts = cols[volume_key] if volume_key is not None else ["0"] * n
        v = _Numbers(vol_texts, AMOUNT_RE, "0")
        if not all(x.ok() for x in (o, h, lo, c, v)):
            return None
        if not all(_in_bounds(x, min_price) for x in (o, h, lo, c)) or not _in_bounds(v, None):
            return None
        import numpy as np

        consistent = _le(lo, o) & _le(o, h) & _le(lo, c) & _le(c, h)
        if not bool(np.all(consistent)):
            return None
        assert o.texts is not None and h.texts is not None and lo.texts is not None
        assert c.texts is not None and v.texts is not None
        prices = (o.texts, h.texts, lo.texts, c.texts, v.texts)
        heads, tails = bar_parts_columns(_symbol_column(syms), us, prices, ids)
        kind = BAR
    else:
        price = _Numbers(cols["price"], PRICE_RE, None)
        size_texts = cols[size_key] if size_key is not None else ["0"] * n
        size = _Numbers(size_texts, AMOUNT_RE, "0")
        if not (price.ok() and size.ok()):
            return None
        if not (_in_bounds(price, min_price) and _in_bounds(size, None)):
            return None
        assert price.texts is not None and size.texts is not None
        heads, tails = tick_parts_columns(_symbol_column(syms), us, price.texts, size.texts, ids)
        kind = TICK
    records = list(
        zip(
            us.tolist(),
            range(first_seq, first_seq + n),
            rownums,
            syms,
            repeat(kind, n),
            zip(heads, tails, strict=True),
            strict=True,
        )
    )
    return records, us, syms
