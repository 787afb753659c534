"""Read a market-data file (CSV or Parquet) into validated messages, streaming, in bounded memory.

A file's problems are known before a single record is sent, so the user sees "row 18:
high='-1': must be a finite number > 0" at the prompt, with the line number of the file,
instead of hunting for it later in the dead-letter table. Bad rows are *reported*, never
dropped silently and never published; the pipeline's dead-letter path is for what arrives over
Kafka from producers we do not control.

Prices are parsed from the file's text (CSV is read as strings), so `104.06` becomes
`Decimal("104.06")`, never the nearest binary float.

How a file of any size is read without holding it (issue 9, item 6):
1. Profile pass (`connectors.files.market_source`): the header, which columns carry data, and what
   the time column holds (all epoch numbers, and then their unit from the median magnitude;
   or times of day to join with a date column). These are properties of the whole file.
2. Build pass: rows in chunks -> validated records, written as sorted runs of at most
   `RUN_ROWS` records to a temporary directory (compact tuples, not models).
3. The runs are merged by open time (concatenated when the file was already in order, the
   usual case); for bar files one pass over the merged stream finds duplicate bars and infers
   each symbol's interval (median spacing) from a bounded count of gaps, or a calendar interval
   (`1w`, `1mo`, `3mo`, `12mo`) when every stamp is the first or the last day of its period
   (`models.market.interval.CalendarFit`): a monthly file is months, not 31-day bars.
4. `MarketStream.messages()` merges the runs again and re-orders them by END time (a bar is
   complete at open + interval, a calendar bar where its period ends) through a heap that only
   holds bars not yet complete at the current open time: one or two per symbol.
Memory is bounded by the chunk and run sizes and the number of symbols, never the row count.
"""

from __future__ import annotations

import heapq
import itertools
import math
import pickle
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

from connectors.files.bar_scan import BarScan
from connectors.files.fast_rows import fast_records
from connectors.files.market_source import (
    MarketFileError,
    ReplayError,
    RowProblem,
    TimeProfile,
    open_source,
)
from connectors.files.row_path import BAD_BAR, BAR, TICK, Problems, Rec, record
from connectors.files.wire import (
    Parts,
    bar_encoder,
    decode,
    interval_member,
    ms_of,
)
from models.config.base import parse_bar_interval
from models.core.messages import SYMBOL_PATTERN, BarIn, Tick
from models.market.bars import input_end_ms
from models.market.interval import BarInterval
from models.market.parsing import event_time_problem

__all__ = [
    "MarketFile",
    "MarketFileError",
    "MarketStream",
    "MergedStreams",
    "ReplayError",
    "RowProblem",
    "load_market_file",
    "open_market_file",
]

MarketMsg = Tick | BarIn
Wire = tuple[int, int, bytes, bytes]
"""(end ms, open ms, key, value) of one encoded message (`MarketStream.encoded`)."""
_T = TypeVar("_T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SYMBOL_RE = re.compile(SYMBOL_PATTERN)
# Beyond any plausible epoch, in µs: keeps float -> int -> timedelta from overflowing.
_MAX_ABS_US = 6 * 10**16  # ~1900 years either side of 1970
_MAX_INTERVAL_S = 31 * 86400

# Accepted column names, compared case-insensitively after stripping; first match wins.
_TIME_COLUMNS = ("ts", "timestamp", "time", "datetime", "date", "open_time", "", "unnamed: 0")
_INDEX_NAMES = ("index", "level_0")
_SIZE_COLUMNS = ("size", "qty", "quantity", "volume", "amount")
_SYMBOL_COLUMNS = ("symbol", "ticker")

RUN_ROWS = 50_000
"""Records per sorted run on disk: the most the build pass holds at once."""
BLOCK_ROWS = 1_000
"""Records per pickled block of a run: what a merge holds per run."""
MAX_FANIN = 64
"""Runs merged at once; more are first merged into longer runs, so memory stays bounded."""
SCAN_WHILE_BUILDING = True
"""Run the bar pass while building the runs when the file is in order (False: always after,
over the merged runs; the tests compare both)."""
KEEP_PROBLEMS = 10_000
"""Row problems kept for `open_market_file` (the first by row); all are counted."""

_BAR, _TICK, _BAD_BAR = BAR, TICK, BAD_BAR
_Rec = Rec


@dataclass(frozen=True)
class MarketFile:
    """What a file yielded: valid messages in publishing order (by end time), and every
    rejected row."""

    path: Path
    kind: Literal["bars", "ticks"]
    rows: int
    messages: list[MarketMsg]
    problems: list[RowProblem]
    intervals: dict[str, BarInterval] = field(default_factory=dict)

    @property
    def symbols(self) -> list[str]:
        return sorted({m.symbol for m in self.messages})


# --------------------------------------------------------------------------------------------
# Runs on disk
# --------------------------------------------------------------------------------------------


class _Runs:
    """Sorted runs of records in a temporary directory, each a sequence of pickled blocks."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="stratflow-replay-"))
        self.paths: list[Path] = []
        self._n = 0
        self.records = 0  # written by the build pass

    def add(self, records: list[_Rec]) -> None:
        """A run of the build pass (counted: `records`)."""
        self.records += len(records)
        self.write(records)

    def write(self, records: Iterable[_Rec]) -> None:
        path = self.dir / f"run{self._n}.pkl"
        self._n += 1
        with path.open("wb") as fh:
            it = iter(records)
            while block := list(itertools.islice(it, BLOCK_ROWS)):
                pickle.dump(block, fh, protocol=pickle.HIGHEST_PROTOCOL)
        self.paths.append(path)

    @staticmethod
    def read(path: Path) -> Iterator[_Rec]:
        with path.open("rb") as fh:
            while True:
                try:
                    block: list[_Rec] = pickle.load(fh)
                except EOFError:
                    return
                yield from block

    def compact(self) -> None:
        """Merge groups of runs until at most MAX_FANIN remain (a file of billions of rows)."""
        while len(self.paths) > MAX_FANIN:
            groups = [self.paths[i : i + MAX_FANIN] for i in range(0, len(self.paths), MAX_FANIN)]
            self.paths = []
            for group in groups:
                self.write(heapq.merge(*(self.read(p) for p in group), key=_open_key))
                for p in group:
                    p.unlink()

    def merged(self, in_order: bool) -> Iterator[_Rec]:
        """Every record by (open time, seq); runs written in order are simply chained."""
        if in_order:
            return itertools.chain.from_iterable(self.read(p) for p in self.paths)
        return heapq.merge(*(self.read(p) for p in self.paths), key=_open_key)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _open_key(rec: _Rec) -> tuple[int, int]:
    return rec[0], rec[1]


# --------------------------------------------------------------------------------------------
# The stream
# --------------------------------------------------------------------------------------------


class MarketStream:
    """A scanned file: its problems, counts and intervals are known; `messages()` yields the
    valid messages in publishing order (by end time, ties in file order) from
    temporary files, as often as asked. Close it (or use `with`) to remove those files."""

    def __init__(
        self,
        path: Path,
        kind: Literal["bars", "ticks"],
        rows: int,
        runs: _Runs,
        in_order: bool,
        problems: Problems,
        intervals: dict[str, BarInterval],
        count: int,
        symbols: set[str],
    ) -> None:
        self.path = path
        self.kind: Literal["bars", "ticks"] = kind
        self.rows = rows
        self.count = count
        self.intervals = intervals
        self.in_order = in_order
        self._runs = runs
        self._problems = problems
        self._symbols = symbols

    @property
    def problems(self) -> list[RowProblem]:
        """The first problems by row (all of them up to the kept limit)."""
        return self._problems.sorted()

    @property
    def problem_count(self) -> int:
        return self._problems.total

    @property
    def symbols(self) -> list[str]:
        return sorted(self._symbols)

    def messages(self) -> Iterator[MarketMsg]:
        """The messages as models (tests, small files, the demo), in publishing order."""

        def tick(sym: str, us: int, parts: Parts) -> MarketMsg:
            f = decode(*parts)
            return Tick.model_construct(
                symbol=sym,
                ts=_us_to_datetime(us),
                price=Decimal(f["price"]),
                size=Decimal(f["size"]),
                id=f["id"],
            )

        def bar(sym: str, iv: BarInterval) -> Callable[[int, Parts], MarketMsg]:
            fixed = iv.fixed_ms
            interval_s = None if fixed is None else fixed // 1000
            calendar = iv.text if fixed is None else None

            def make(us: int, parts: Parts) -> MarketMsg:
                f = decode(*parts)
                return BarIn.model_construct(
                    symbol=sym,
                    ts=_us_to_datetime(us),
                    open=Decimal(f["open"]),
                    high=Decimal(f["high"]),
                    low=Decimal(f["low"]),
                    close=Decimal(f["close"]),
                    volume=Decimal(f["volume"]),
                    interval_s=interval_s,
                    calendar=calendar,
                    id=f["id"],
                )

            return make

        return self._ordered(tick, bar)

    def encoded(self) -> Iterator[Wire]:
        """`(end ms, open ms, key, value)` of each message in the order of `messages()`: the
        key is the symbol, the value the bytes `model_dump_json()` gives for that message
        (written by the scan, `connectors.files.wire`), the times `input_end_ms` and `to_ms`
        of its `ts`."""
        if (uniform := self._uniform()) is not None:
            return self._straight(uniform)
        keys: dict[str, bytes] = {}

        def tick(sym: str, us: int, parts: Parts) -> Wire:
            key = keys.get(sym) or keys.setdefault(sym, sym.encode())
            ms = ms_of(us)
            return ms, ms, key, parts[0] + parts[1]

        def bar(sym: str, iv: BarInterval) -> Callable[[int, Parts], Wire]:
            return bar_encoder(sym, iv.fixed_ms, iv.text)

        return self._ordered(tick, bar)

    def _uniform(self) -> int | None:
        """The one length (ms; 0 for ticks) of every message when end order is open order:
        ticks only, or bars of one fixed interval with no duplicate or invalid bar among the
        records (nothing to skip). Ordered by (end, seq) = (open + length, seq), they come
        in the runs' (open, seq) order: no heap needed. None otherwise."""
        if self._runs.records != self.count:
            return None
        if self.kind == "ticks":
            return 0
        lengths = {iv.fixed_ms for iv in self.intervals.values()}
        if len(lengths) != 1 or None in lengths:
            return None
        return lengths.pop()

    def _straight(self, length: int) -> Iterator[Wire]:
        """`encoded()` when `_uniform()`: the runs in order, one concatenation a message."""
        member = b""
        if length:
            member = interval_member(length, "")
        keys = {sym: sym.encode() for sym in self._symbols}
        for us, _seq, _row, sym, _kind, (head, tail) in self._runs.merged(self.in_order):
            ms = int(us / 1_000_000 * 1000)  # wire.ms_of
            yield ms + length, ms, keys[sym], head + member + tail

    def _ordered(
        self,
        tick: Callable[[str, int, tuple[Any, ...]], _T],
        bar: Callable[[str, BarInterval], Callable[[int, tuple[Any, ...]], _T]],
    ) -> Iterator[_T]:
        """Every valid record, made by `tick(symbol, µs, payload)` or by `bar(symbol,
        interval)(µs, payload)` (one maker a symbol), in publishing order (by end time, ties in
        file order)."""
        pending: list[tuple[int, int, _T]] = []  # (end µs, seq, item)
        last: dict[str, int] = {}
        intervals = self.intervals
        makers = {sym: bar(sym, iv) for sym, iv in intervals.items()}
        push, pop = heapq.heappush, heapq.heappop
        for us, seq, _row, sym, kind, payload in self._runs.merged(self.in_order):
            if kind == _TICK:
                item = tick(sym, us, payload)
                end = us
            else:
                if last.get(sym) == us:  # a duplicate bar (reported by the scan)
                    continue
                last[sym] = us
                if kind == _BAD_BAR:
                    continue
                iv = intervals[sym]
                fixed = iv.fixed_ms
                item = makers[sym](us, payload)
                end = us + fixed * 1000 if fixed is not None else iv.window_end(us // 1000) * 1000
            # Everything still to come opens at `us` or later, so it ends at `us` or later:
            # what ended before is final. Ties wait, as a later record may sort before them.
            while pending and pending[0][0] < us:
                yield pop(pending)[2]
            if not pending and end == us:
                yield item  # a tick with nothing waiting: the common case, no heap
            else:
                push(pending, (end, seq, item))
        while pending:
            yield pop(pending)[2]

    def close(self) -> None:
        self._runs.close()

    def __enter__(self) -> MarketStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class MergedStreams:
    """Several scanned files as one stream, merged by end time (ties: the earlier file first),
    so `stratflow replay daily.csv hourly.csv` publishes no daily close before its day's hours
    whatever the order of the files."""

    def __init__(self, streams: Sequence[MarketStream]) -> None:
        self.streams = list(streams)
        self.count = sum(s.count for s in self.streams)

    @property
    def symbols(self) -> list[str]:
        return sorted({sym for s in self.streams for sym in s.symbols})

    def messages(self) -> Iterator[MarketMsg]:
        if len(self.streams) == 1:
            return self.streams[0].messages()
        return heapq.merge(*(s.messages() for s in self.streams), key=input_end_ms)

    def encoded(self) -> Iterator[Wire]:
        """`MarketStream.encoded` of the merged streams, in the order of `messages()`."""
        if len(self.streams) == 1:
            return self.streams[0].encoded()
        return heapq.merge(*(s.encoded() for s in self.streams), key=itemgetter(0))


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


def _us_to_datetime(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _pick(names: Iterable[str], candidates: Iterable[str]) -> str | None:
    present = set(names)
    for c in candidates:
        if c in present:
            return c
    return None


def _check_symbol(symbol: str, what: str) -> str:
    sym = symbol.strip().upper()
    if not _SYMBOL_RE.match(sym):
        raise MarketFileError(
            f"{what} {sym!r} is not a valid symbol (A-Z, 0-9 and . _ / : - , max 32); pass symbol="
        )
    return sym


def _parse_times(text: list[str], profile: TimeProfile) -> list[int | None]:
    """Epoch microseconds (UTC) per value, None where unparseable: epoch numbers in the unit the
    profile pass chose for the whole file, else ISO-8601 (naive means UTC)."""
    scale = profile.scale
    if scale is not None:
        out: list[int | None] = []
        for t in text:
            x = float(t) * scale if t else math.nan
            # Clamped, not dropped: the row is then refused as out of range, with its text.
            out.append(None if math.isnan(x) else round(max(-_MAX_ABS_US, min(_MAX_ABS_US, x))))
        return out
    import pandas as pd  # here, not at import: see connectors.files.market_source

    parsed = pd.to_datetime(pd.Series(text), utc=True, errors="coerce", format="ISO8601")
    ints = parsed.dt.as_unit("us").astype("int64").tolist()
    return [None if bad else v for v, bad in zip(ints, parsed.isna().tolist(), strict=True)]


def open_market_file(
    path: str | Path,
    symbol: str | None = None,
    interval: str | None = None,
    *,
    keep_problems: int | None = KEEP_PROBLEMS,
) -> MarketStream:
    """Scan an OHLCV bar file or a trade file (CSV or Parquet) in bounded memory.

    Bars need a time column (or unnamed index) and open/high/low/close, volume optional; trades
    need a time column and price, size optional. Column names are case-insensitive. A `symbol`
    column wins over the `symbol` argument, which otherwise names every row (default: the file
    stem upper-cased). `interval` ("1d", "1h", "60", or a calendar "1w", "1mo", "3mo") is
    inferred from the bar times when not given (`_interval_of`). Whole-file problems raise
    `MarketFileError`.
    """
    p = Path(path)
    source = open_source(p)
    names = source.names
    time_key = source.time_key
    if time_key is None:
        raise MarketFileError(
            f"{p}: no time column (one of ts, timestamp, time, datetime, date, or an unnamed "
            f"first column); found: {', '.join(names.values())}"
        )
    is_bars = all(c in names for c in ("open", "high", "low", "close"))
    if not is_bars and "price" not in names:
        raise MarketFileError(
            f"{p}: need open/high/low/close (bars) or price (trades) columns; "
            f"found: {', '.join(names.values())}"
        )
    symbol_key = _pick(names, _SYMBOL_COLUMNS)
    default_symbol: str | None = None
    if symbol is not None:
        default_symbol = _check_symbol(symbol, "symbol")
    elif symbol_key is None:
        default_symbol = _check_symbol(p.stem, "file name gives symbol")
    given: BarInterval | None = None
    fixed_interval: int | None = None  # seconds, for the row checks of a fixed interval
    if interval is not None:
        try:
            given = parse_bar_interval(interval)
        except ValueError as exc:
            raise MarketFileError(f"interval: {exc}") from None
        if given.fixed_ms is not None:
            fixed_interval = given.fixed_ms // 1000
            if not 1 <= fixed_interval <= _MAX_INTERVAL_S:
                raise MarketFileError(f"interval {interval!r} must be between 1 s and 31 days")

    problems = Problems(keep_problems)
    for row, reason in source.problems:
        problems.add(row, reason)
    time_name = names[time_key]
    size_key = _pick(names, _SIZE_COLUMNS)
    id_key = "id" if "id" in names else None
    volume_key = "volume" if "volume" in names else None
    runs = _Runs()
    try:
        buffer: list[_Rec] = []
        in_order = True
        newest: tuple[int, int] = (-(2**63), -1)
        any_time = False
        n = 0
        tick_symbols: set[str] = set()
        ticks = 0
        # The bar pass, fed while building for as long as the file is in order.
        scan_problems = Problems(keep_problems)
        scan = BarScan(scan_problems, given) if is_bars and SCAN_WHILE_BUILDING else None
        for chunk in source.chunks():
            n += len(chunk.rownums)
            first_seq = n - len(chunk.rownums)
            fast = fast_records(
                chunk, first_seq, time_key=time_key, scale=source.time_profile.scale,
                parse_times=lambda text: _parse_times(text, source.time_profile),
                sym_key=symbol_key, default_symbol=default_symbol, is_bars=is_bars,
                size_key=size_key, id_key=id_key, volume_key=volume_key,
            )  # fmt: skip
            if fast is not None:  # every row provably valid: no row-by-row validation
                records, opens, syms = fast
                any_time = True
                if not is_bars:
                    tick_symbols.update(r[3] for r in records)
                    ticks += len(records)
                if in_order and (
                    (int(opens[0]), first_seq) < newest or bool((opens[1:] < opens[:-1]).any())
                ):
                    in_order = False
                newest = (int(opens[-1]), first_seq + len(records) - 1)
                if scan is not None and in_order:
                    scan.add_chunk(opens, chunk.rownums, syms)
                buffer.extend(records)
                if len(buffer) >= RUN_ROWS:
                    if not in_order:
                        buffer.sort(key=_open_key)
                    runs.add(buffer)
                    buffer = []
                continue
            cols = chunk.columns
            if chunk.time_us is not None:
                shown_times = [""] * len(chunk.time_us)
            else:
                shown_times = [str(t).strip() for t in cols[time_key]]
            sym_col = cols[symbol_key] if symbol_key is not None else None
            times = chunk.time_us
            if times is None:
                times = _parse_times(shown_times, source.time_profile)
            for i, row in enumerate(chunk.rownums):
                us = times[i]
                if us is None:
                    problems.add(row, f"{time_name}={cols[time_key][i]!r}: not a valid time")
                    continue
                any_time = True
                if (why := event_time_problem(us // 1000)) is not None:
                    text = shown_times[i] or _us_to_datetime(us).isoformat()
                    problems.add(row, f"{time_name}={text!r}: {why}")
                    continue
                raw = sym_col[i].strip() if sym_col is not None else ""
                sym = raw.upper() if raw else default_symbol
                if sym is None:
                    problems.add(row, "symbol is empty")
                    continue
                seq = n - len(chunk.rownums) + i
                rec = record(
                    cols, i, us, seq, row, sym, is_bars, fixed_interval, size_key, id_key,
                    volume_key,
                )  # fmt: skip
                if isinstance(rec, str):  # an invalid tick: reported now
                    problems.add(row, rec)
                    continue
                if rec[4] == _TICK:
                    tick_symbols.add(sym)
                    ticks += 1
                key = (us, seq)
                if key < newest:
                    in_order = False
                newest = key
                if scan is not None and in_order:
                    scan.add(us, row, sym, rec[4], rec[5])
                buffer.append(rec)
                if len(buffer) >= RUN_ROWS:
                    if not in_order:
                        buffer.sort(key=_open_key)
                    runs.add(buffer)
                    buffer = []
        if buffer:
            if not in_order:
                buffer.sort(key=_open_key)
            runs.add(buffer)
            buffer = []
        if n and not any_time:
            raise MarketFileError(
                f"{p}: no parseable time in column {time_name!r} "
                f"(expected ISO-8601 or epoch numbers), e.g. {source.first_time_text!r}"
            )
        runs.compact()
        intervals: dict[str, BarInterval] = {}
        if not is_bars:
            count, symbols = ticks, tick_symbols
        else:
            if scan is None or not in_order:  # by open time: the merged runs
                scan = BarScan(problems, given)
                for us, _seq, row, sym, kind, payload in runs.merged(in_order):
                    scan.add(us, row, sym, kind, payload)
            else:  # fed while building, in file order, which is open-time order
                scan_problems.add_to(problems)
            count, symbols, intervals = scan.count, scan.symbols, scan.intervals(p)
        return MarketStream(
            path=p,
            kind="bars" if is_bars else "ticks",
            rows=n + len(source.problems),
            runs=runs,
            in_order=in_order,
            problems=problems,
            intervals=intervals,
            count=count,
            symbols=symbols,
        )
    except BaseException:
        runs.close()
        raise


def load_market_file(
    path: str | Path, symbol: str | None = None, interval: str | None = None
) -> MarketFile:
    """The whole file in memory (small files, tests, the demo): `open_market_file`, with every
    message and every problem in lists."""
    with open_market_file(path, symbol, interval, keep_problems=None) as stream:
        return MarketFile(
            path=stream.path,
            kind=stream.kind,
            rows=stream.rows,
            messages=list(stream.messages()),
            problems=stream.problems,
            intervals=stream.intervals,
        )
