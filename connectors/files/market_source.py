"""The rows of a CSV or Parquet market file, in chunks, after one profiling pass.

Some properties belong to the whole file and must be known before the first row is turned into
a message: the header (or, for a header-less file, the column names its shape implies), which
columns carry data at all (spreadsheets end lines with empty `,,` columns), whether a `time`
column holds times of day to be joined with a `date` column, and the unit of epoch-number
times, chosen once per file from the median magnitude. `open_source` reads the file once to
learn them, keeping only counters, then `chunks()` reads it again in pieces of `CHUNK_ROWS`.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple, TextIO

from connectors.files.arrow_csv import NotPlain, blank_mask, is_plain, read_batches, trimmed

if TYPE_CHECKING:
    # pandas and numpy (~0.5 s to import) are loaded where a file is read, not by everything
    # that imports this module's errors (every `stratflow` command imports ReplayError).
    import pandas as pd
    import pyarrow as pa

__all__ = ["MarketFileError", "ReplayError", "RowProblem", "TimeProfile", "open_source"]

CHUNK_ROWS = 20_000
"""Rows per chunk handed to the build pass."""

_NUMBER_RE = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")
# A time of day alone (HH:MM, HH:MM:SS, HH:MM:SS.fff): the second half of a split date/time pair.
_TIME_OF_DAY_RE = re.compile(r"^\s*\d{1,2}:\d{2}(:\d{2}(\.\d{1,9})?)?\s*$")
_EPOCH_UNITS = ((1e11, 1e6), (1e14, 1e3), (1e17, 1.0))  # (magnitude below, factor to µs)
# The same two patterns for stripped ASCII text, in pyarrow's (RE2) syntax.
_NUMBER_RE2 = r"^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$"
_TOD_RE2 = r"^[0-9]{1,2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?$"
_TIME_COLUMNS = ("ts", "timestamp", "time", "datetime", "date", "open_time", "", "unnamed: 0")
_INDEX_NAMES = ("index", "level_0")
_CANDIDATES = frozenset((*_TIME_COLUMNS, *_INDEX_NAMES))


class ReplayError(ValueError):
    """A replay problem phrased as one line for the user."""


class MarketFileError(ReplayError):
    """The file as a whole cannot be used (missing, unreadable, wrong columns)."""


class RowProblem(NamedTuple):
    """A row that was not loaded, as `(row, reason)`.

    `row` is where a person finds it: the line number in a CSV file (the header is line 1), the
    1-based row number in a Parquet file.
    """

    row: int
    reason: str

    def describe(self) -> str:
        return f"row {self.row}: {self.reason}"


@dataclass(frozen=True)
class TimeProfile:
    """How the time column's text becomes µs: `scale` (epoch number -> µs) when every present
    value is a number, None for ISO-8601 text."""

    scale: float | None


class Chunk:
    """Rows of a file: `columns` maps a normalised name to the cells' text (or native value);
    `time_us` holds pre-parsed times (Parquet datetime column); `arrays`, when the file was
    split by pyarrow, the same columns as string arrays, from which `columns` is made only if
    asked (the column path of `connectors.files.fast_rows` does not ask)."""

    def __init__(
        self,
        rownums: list[int],
        columns: dict[str, list[Any]] | None = None,
        time_us: list[int | None] | None = None,
        arrays: dict[str, pa.Array] | None = None,
    ) -> None:
        self.rownums = rownums
        self._columns = columns
        self.time_us = time_us
        self.arrays = arrays

    @property
    def columns(self) -> dict[str, list[Any]]:
        if self._columns is None:
            assert self.arrays is not None
            self._columns = {k: a.to_pylist() for k, a in self.arrays.items()}
        return self._columns


@dataclass
class _ColumnStats:
    """What the profile pass learns of one candidate time column, in O(1) memory."""

    present: int = 0
    numeric: bool = True
    bins: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    time_of_day: bool = True
    first: str | None = None

    def add(self, value: object) -> None:
        text = str(value).strip()
        if self.first is None:
            self.first = str(value)
        if not text:
            return
        self.present += 1
        if self.time_of_day and not _TIME_OF_DAY_RE.match(_pad_hour(text)):
            self.time_of_day = False
        if self.numeric:
            if _NUMBER_RE.match(text):
                mag = abs(float(text))
                self.bins[next((k for k, (b, _) in enumerate(_EPOCH_UNITS) if mag < b), 3)] += 1
            else:
                self.numeric = False

    def add_array(self, arr: pa.Array) -> None:
        """`add` of every cell of a string column, by column operations where they give the
        same answer (ASCII text; numbers pyarrow parses), else cell by cell."""
        import numpy as np
        import pyarrow.compute as pc

        if not len(arr):
            return
        text = trimmed(arr)
        if text is None:
            for v in arr.to_pylist():
                self.add(v)
            return
        if self.first is None:
            self.first = str(arr[0].as_py())
        present = text.filter(pc.not_equal(text, ""))
        if not len(present):
            return
        self.present += len(present)
        if self.time_of_day and not pc.all(pc.match_substring_regex(present, _TOD_RE2)).as_py():
            self.time_of_day = False
        if not self.numeric:
            return
        if not pc.all(pc.match_substring_regex(present, _NUMBER_RE2)).as_py():
            self.numeric = False
            return
        try:
            mags = np.abs(pc.cast(present, pa_float64()).to_numpy(zero_copy_only=False))
        except Exception:  # a shape pyarrow does not parse: Python's float() decides
            mags = np.abs(np.array([float(t) for t in present.to_pylist()]))
        bounds = [b for b, _ in _EPOCH_UNITS]
        counts = np.bincount(np.searchsorted(bounds, mags, side="right"), minlength=4)
        for k in range(4):
            self.bins[k] += int(counts[k])

    def scale(self) -> float | None:
        """The unit of the median (low) magnitude, as `statistics.median_low` would pick it:
        one corrupt row (1e308, a year-9999 time) must not change every other row's unit."""
        if not self.present or not self.numeric:
            return None
        index = (self.present - 1) // 2
        seen = 0
        for k, count in enumerate(self.bins):
            seen += count
            if index < seen:
                return _EPOCH_UNITS[k][1] if k < 3 else 1e-3
        return 1e-3  # unreachable: the bins hold every present value


def pa_float64() -> pa.DataType:
    import pyarrow as pa

    return pa.float64()


def _norm(name: object) -> str:
    return str(name).strip().lower()


def _pad_hour(text: str) -> str:
    """ "9:30" -> "09:30", which ISO-8601 needs."""
    return "0" + text if text[1:2] == ":" else text


def _pick(names: dict[str, str], candidates: tuple[str, ...]) -> str | None:
    for c in candidates:
        if c in names:
            return c
    return None


def _is_number(text: str) -> bool:
    try:
        return Decimal(text.strip()).is_finite()
    except (InvalidOperation, ValueError):
        return False


# Column names for files without a header line, by column count: Binance's public kline
# dumps (data.binance.vision, 12 columns), plain OHLCV and OHLC exports, and trade lists.
_HEADERLESS: Final[dict[int, list[str]]] = {
    12: [
        "time",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "close_time",
        "quote_volume",
        "trade_count",
        "taker_buy_base_volume",
        "taker_buy_quote_volume",
        "ignore",
    ],
    6: ["time", "open", "high", "low", "close", "volume"],
    5: ["time", "open", "high", "low", "close"],
    3: ["time", "price", "size"],
}


def _headerless_names(first: list[str], path: Path) -> list[str] | None:
    """The names to use when the first line is already data (every cell a number, as in
    Binance's kline dumps), or None when it is a header. A headerless shape not listed in
    `_HEADERLESS` is an error naming the shapes understood."""
    if not all(_is_number(f) for f in first):
        return None
    names = _HEADERLESS.get(len(first))
    if names is None:
        shapes = "; ".join(f"{n}: {', '.join(c)}" for n, c in sorted(_HEADERLESS.items()))
        raise MarketFileError(
            f"{path}: the first line has no column names and {len(first)} numbers; without a "
            f"header line the columns must be one of ({shapes}); add a header line"
        )
    return names


def _sniff_dialect(fh: TextIO) -> type[csv.Dialect] | str:
    """Comma, semicolon, tab or pipe: exports from spreadsheets and brokers use all of them."""
    sample = fh.read(64 * 1024)
    fh.seek(0)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        return "excel"


class Source:
    """A profiled file: final column names, the time column and its profile, the rows the
    profile pass refused (wrong field count), and `chunks()` to read the rows."""

    names: dict[str, str]  # normalised -> original header, for messages
    time_key: str | None
    time_profile: TimeProfile
    first_time_text: str
    problems: list[RowProblem]
    _merge_date_time: bool

    def _finish(self, stats: dict[str, _ColumnStats], has_datetime: bool) -> None:
        names = self.names
        self._merge_date_time = False
        if not has_datetime and "date" in names and "time" in names:
            tod = stats.get("time")
            if tod is not None and tod.present and tod.time_of_day:
                # A `date` column plus a time-of-day `time` column (MetaTrader, FX and
                # intraday vendor exports) become one `date time` column named `time`.
                self._merge_date_time = True
                names["time"] = f"{names['date']}+{names['time']}"
        self.time_key = _pick(names, (*_TIME_COLUMNS, *_INDEX_NAMES))
        self.time_profile = TimeProfile(None)
        self.first_time_text = "?" if has_datetime else ""
        if self.time_key is not None and not has_datetime:
            st = stats.get(self.time_key, _ColumnStats())
            if self._merge_date_time:
                date_first = (stats.get("date") or _ColumnStats()).first or ""
                self.first_time_text = f"{date_first.strip()} {_pad_hour(st.first or '')}"
            else:
                self.first_time_text = st.first or ""
                self.time_profile = TimeProfile(st.scale())

    def _merged(self, chunk: Chunk) -> Chunk:
        if self._merge_date_time:
            cols = chunk.columns
            chunk.arrays = None  # the merged column exists as text only
            times = [_pad_hour(str(t).strip()) for t in cols["time"]]
            dates = [str(d).strip() for d in cols["date"]]
            cols["time"] = [
                f"{d} {t}" if d and t else "" for d, t in zip(dates, times, strict=True)
            ]
        return chunk

    def chunks(self) -> Iterator[Chunk]:
        raise NotImplementedError


class _CsvSource(Source):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems = []
        header: list[str] | None = None
        has_data: list[bool] = []
        empty: list[int] = []  # columns without data so far: usually none after the first row
        stats_by_index: dict[int, _ColumnStats] = {}
        self._arrow: tuple[str, int, int] | None = None  # (delimiter, skip, first data line)
        try:
            header, has_data, stats_by_index = self._arrow_profile()
        except NotPlain:
            self._arrow = None
            header = None
        for _line, fields in [] if header is not None else self._rows(profile=True):
            if header is None:
                header = fields
                has_data = [False] * len(header)
                empty = list(range(len(header)))
                stats_by_index = {
                    i: _ColumnStats() for i, h in enumerate(header) if _norm(h) in _CANDIDATES
                }
                continue
            if empty:
                for i in [i for i in empty if fields[i].strip()]:
                    has_data[i] = True
                    empty.remove(i)
            for i, st in stats_by_index.items():
                st.add(fields[i])
        if header is None:
            raise MarketFileError(f"{path}: file is empty")
        # Spreadsheet exports often end every line with empty, unnamed columns
        # ("...,Volume,,"). Those carry nothing; dropping them keeps "duplicate column names"
        # for real duplicates.
        keep = [i for i, h in enumerate(header) if h.strip() or has_data[i] or header.count(h) == 1]
        self.names = {_norm(header[i]): header[i] for i in keep}
        if len(self.names) != len(keep):
            raise MarketFileError(f"{path}: duplicate column names in header {header}")
        self._keep = keep
        self._header = header
        stats = {_norm(header[i]): st for i, st in stats_by_index.items() if i in keep}
        if "time" in self.names and "time" not in stats:
            stats["time"] = _ColumnStats()
        self._finish(stats, has_datetime=False)

    def _arrow_profile(self) -> tuple[list[str], list[bool], dict[int, _ColumnStats]]:
        """The profile pass by pyarrow (`connectors.files.arrow_csv`); `NotPlain` when the
        file needs the `csv` module."""
        path = self.path
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                dialect = _sniff_dialect(fh)
                reader = csv.reader(fh, dialect=dialect)
                first = next(reader, None)
                line = reader.line_num
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise NotPlain(str(exc)) from None
        if first is None or line != 1 or len(first) < 2 or not is_plain(path, dialect):
            raise NotPlain("not a plain file")
        names = _headerless_names(first, path)
        header = first if names is None else names
        skip = 1 if names is None else 0
        has_data = [False] * len(header)
        stats = {i: _ColumnStats() for i, h in enumerate(header) if _norm(h) in _CANDIDATES}
        delimiter = (
            csv.get_dialect(dialect).delimiter if isinstance(dialect, str) else dialect.delimiter
        )
        import numpy as np

        for batch in read_batches(path, delimiter, len(header), skip):
            blank_rows = None
            for i in range(len(header)):
                blank = blank_mask(batch.column(i))
                blank_rows = blank if blank_rows is None else blank_rows & blank
                if not has_data[i] and not bool(np.all(blank)):
                    has_data[i] = True
            if blank_rows is not None and bool(np.any(blank_rows)):
                raise NotPlain("a blank row")  # the csv path skips it without a number
            for i, st in stats.items():
                st.add_array(batch.column(i))
        self._arrow = (delimiter, skip, 2 if skip else 1)
        return header, has_data, stats

    def _arrow_chunks(self) -> Iterator[Chunk]:
        assert self._arrow is not None
        delimiter, skip, line = self._arrow
        keys = [_norm(self._header[i]) for i in self._keep]
        for batch in read_batches(self.path, delimiter, len(self._header), skip):
            for start in range(0, batch.num_rows, CHUNK_ROWS):
                piece = batch.slice(start, CHUNK_ROWS)
                rows = piece.num_rows
                arrays = {k: piece.column(i) for k, i in zip(keys, self._keep, strict=True)}
                yield self._merged(Chunk(list(range(line, line + rows)), arrays=arrays))
                line += rows

    def _rows(self, profile: bool) -> Iterator[tuple[int, list[str]]]:
        """(line, fields) of the header and of every row with the header's field count; the
        others are problems (recorded by the profile pass only)."""
        path = self.path
        try:
            with open(path, newline="", encoding="utf-8-sig") as fh:
                reader = csv.reader(fh, dialect=_sniff_dialect(fh))
                width: int | None = None
                for fields in reader:
                    if not fields or all(not f.strip() for f in fields):
                        continue
                    if width is None:
                        names = _headerless_names(fields, path)
                        width = len(fields)
                        if names is None:
                            yield reader.line_num, fields
                            continue
                        yield 0, names
                    if len(fields) != width:
                        if profile:
                            reason = f"expected {width} fields, found {len(fields)}"
                            self.problems.append(RowProblem(reader.line_num, reason))
                        continue
                    yield reader.line_num, fields
        except UnicodeDecodeError:
            raise MarketFileError(f"{path}: not a UTF-8 text file") from None
        except csv.Error as exc:
            raise MarketFileError(f"{path}: not valid CSV ({exc})") from None
        except OSError as exc:  # permission denied, I/O error, a FIFO that went away...
            raise MarketFileError(f"{path}: cannot read ({exc.strerror or exc})") from None

    def chunks(self) -> Iterator[Chunk]:
        if self._arrow is not None:
            try:
                yield from self._arrow_chunks()
            except NotPlain as exc:  # the file changed since the profile pass
                raise MarketFileError(f"{self.path}: cannot read ({exc})") from None
            return
        keys = [_norm(self._header[i]) for i in self._keep]
        rows = self._rows(profile=False)
        next(rows)  # the header
        while True:
            rownums: list[int] = []
            data: list[list[str]] = []
            for line, fields in rows:
                rownums.append(line)
                data.append(fields)
                if len(rownums) >= CHUNK_ROWS:
                    break
            if not rownums:
                return
            columns = {k: [r[i] for r in data] for k, i in zip(keys, self._keep, strict=True)}
            yield self._merged(Chunk(rownums, columns))


class _ParquetSource(Source):
    BATCH = CHUNK_ROWS

    def __init__(self, path: Path) -> None:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path = path
        self.problems = []
        try:
            self._file = pq.ParquetFile(path)
        except Exception as exc:
            raise MarketFileError(f"{path}: cannot read Parquet ({type(exc).__name__})") from None
        names: dict[str, str] | None = None
        stats: dict[str, _ColumnStats] = {}
        has_datetime = False
        for frame in self._frames():
            if names is None:
                names = {_norm(c): str(c) for c in frame.columns}
                if len(names) != len(frame.columns):
                    raise MarketFileError(f"{path}: duplicate column names {list(frame.columns)}")
                stats = {k: _ColumnStats() for k in names if k in _CANDIDATES}
                time_key = _pick(names, (*_TIME_COLUMNS, *_INDEX_NAMES))
                has_datetime = time_key is not None and pd.api.types.is_datetime64_any_dtype(
                    frame[names[time_key]]
                )
            for key, st in stats.items():
                st.add_array(pa.array(_texts(frame[names[key]]), type=pa.string()))
        assert names is not None
        self.names = names
        self._has_datetime = has_datetime
        self._finish(stats, has_datetime)

    def _frames(self) -> Iterator[pd.DataFrame]:
        try:
            empty = True
            for batch in self._file.iter_batches(batch_size=self.BATCH):
                empty = False
                yield _indexed(batch.to_pandas())
            if empty:
                yield _indexed(self._file.schema_arrow.empty_table().to_pandas())
        except MarketFileError:
            raise
        except Exception as exc:
            raise MarketFileError(
                f"{self.path}: cannot read Parquet ({type(exc).__name__})"
            ) from None

    def chunks(self) -> Iterator[Chunk]:
        import pandas as pd

        start = 1
        for frame in self._frames():
            if not len(frame):
                continue
            columns: dict[str, list[Any]] = {}
            time_us: list[int | None] | None = None
            for col in frame.columns:
                key = _norm(col)
                series = frame[col]
                if key == self.time_key and self._has_datetime:
                    ts = pd.to_datetime(series, utc=True)
                    ints = ts.dt.as_unit("us").astype("int64").tolist()
                    time_us = [None if m else v for v, m in zip(ints, ts.isna(), strict=True)]
                    columns[key] = ["" for _ in range(len(frame))]
                    continue
                columns[key] = _texts(series)
            rownums = list(range(start, start + len(frame)))
            start += len(frame)
            yield self._merged(Chunk(rownums, columns, time_us))


def _indexed(frame: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    return frame if isinstance(frame.index, pd.RangeIndex) else frame.reset_index()


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _texts(series: pd.Series) -> list[str]:
    import numpy as np

    if series.dtype in (np.float32, np.float16):
        # str() of the numpy scalar: the shortest text that round-trips in its own width
        # ("101.1"); tolist() would widen it to a double first ("101.0999984741211").
        return ["" if np.isnan(v) else str(v) for v in series.to_numpy()]
    # str() of the stored value: shortest round-trip text of a double, exact for Decimal.
    if series.dtype == np.int64:  # never missing
        return list(map(str, series.tolist()))
    if series.dtype == np.float64:
        values = series.to_numpy()
        texts = list(map(str, values.tolist()))
        for i in np.flatnonzero(np.isnan(values)).tolist():
            texts[i] = ""
        return texts
    return ["" if _missing(v) else str(v) for v in series.tolist()]


def open_source(p: Path) -> Source:
    """Check the path and type, and profile the file."""
    try:
        if not p.exists():
            raise MarketFileError(f"file not found: {p}")
        if not p.is_file():
            raise MarketFileError(f"not a file: {p}")
    except OSError as exc:  # e.g. a name too long for the file system
        raise MarketFileError(f"cannot open {str(p)[:200]!r}: {exc.strerror or exc}") from None
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] in (".parquet", ".pq"):
        return _ParquetSource(p)
    if (
        not suffixes
        or suffixes[-1] in (".csv", ".txt", ".tsv")
        or suffixes[-2:] in ([".csv", ".gz"], [".tsv", ".gz"])
    ):
        if suffixes and suffixes[-1] == ".gz":
            raise MarketFileError(f"{p}: compressed CSV is not supported; decompress it first")
        return _CsvSource(p)
    raise MarketFileError(
        f"{p}: unsupported file type {p.suffix!r}; use .csv, .tsv, .txt or .parquet"
    )
