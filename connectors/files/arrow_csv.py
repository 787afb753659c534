"""Reading a plain CSV file with pyarrow's parser instead of the `csv` module (issue 11).

Python's `csv` reader, twice over a million-line file (profile pass, then chunks), is most of
what is left of a scan once rows are validated by columns (`connectors.files.fast_rows`).
pyarrow splits lines in C++, but it is not the `csv` module: quoting rules, blank lines, `\\r`
line ends, a byte-order mark and row numbers can differ. So it is used only where the two
cannot differ, and `connectors.files.market_source._CsvSource` keeps the `csv` module for
every other file:
- no quote or escape character, NUL, lone `\\r` or byte-order mark anywhere in the file
  (`is_plain`, one pass over its bytes): then both split every line at the delimiter alone;
- the first record is on line 1, every line has the header's field count and no row is all
  blank (pyarrow refuses a short line, `ArrowProfile` refuses a blank row): then data row `i`
  is on line `first_line + i`, the number the `csv` path reports.
Whitespace is judged as `str.strip()` judges it: with the ASCII whitespace set for ASCII
columns, through Python for any other.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pyarrow as pa

__all__ = ["NotPlain", "blank_mask", "is_plain", "read_batches", "trimmed"]

# What str.strip() removes from an ASCII string.
ASCII_SPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"
_BLOCK = 16 << 20


class NotPlain(Exception):
    """The file needs the `csv` module (see the module docstring)."""


def is_plain(path: Path, dialect: type[csv.Dialect] | str) -> bool:
    """No byte in the file that could make pyarrow and the `csv` module split it differently."""
    d = csv.get_dialect(dialect) if isinstance(dialect, str) else dialect
    if d.skipinitialspace or d.delimiter is None or len(d.delimiter) != 1:
        return False
    banned = [b"\x00"]
    for ch in (d.quotechar, d.escapechar):
        if ch:
            banned.append(ch.encode())
    prev = b""
    with path.open("rb") as fh:
        head = fh.read(3)
        if head.startswith(b"\xef\xbb\xbf"):
            return False
        fh.seek(0)
        while block := fh.read(_BLOCK):
            if any(b in block for b in banned):
                return False
            joined = prev + block
            # Every \r starts a \r\n (a \r at the end of a block is checked with the next one).
            tail = joined[:-1] if joined.endswith(b"\r") else joined
            if tail.count(b"\r") != tail.count(b"\r\n"):
                return False
            prev = b"\r" if joined.endswith(b"\r") else b""
    return not prev  # a file ending in a lone \r


def read_batches(path: Path, delimiter: str, width: int, skip: int) -> Iterator[pa.RecordBatch]:
    """Every data line as strings (column `i` named `f{i}`); pyarrow raises on a line with
    another field count (`NotPlain` for the caller) and on invalid UTF-8."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    names = [f"f{i}" for i in range(width)]
    try:
        reader = pcsv.open_csv(
            path,
            read_options=pcsv.ReadOptions(
                column_names=names, skip_rows=skip, block_size=4 << 20, use_threads=False
            ),
            parse_options=pcsv.ParseOptions(
                delimiter=delimiter,
                quote_char=False,
                double_quote=False,
                escape_char=False,
                newlines_in_values=False,
                ignore_empty_lines=False,
            ),
            convert_options=pcsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        yield from reader
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise NotPlain(str(exc)) from None


def trimmed(arr: pa.Array) -> pa.Array | None:
    """`str.strip()` of every cell, or None when a cell is not ASCII (left to Python)."""
    import pyarrow.compute as pc

    if not pc.all(pc.string_is_ascii(arr)).as_py() and len(arr):
        return None
    return pc.utf8_trim(arr, characters=ASCII_SPACE)


def blank_mask(arr: pa.Array) -> npt.NDArray[np.bool_]:
    """Cells that are empty after `str.strip()`."""
    import numpy as np
    import pyarrow.compute as pc

    t = trimmed(arr)
    if t is None:
        return np.array([not s.strip() for s in arr.to_pylist()], dtype=bool)
    return np.asarray(pc.equal(t, "").to_numpy(zero_copy_only=False), dtype=bool)
