"""Turn a market-data file into topic messages and publish them, optionally in scaled real time.

Loading and publishing are separate steps on purpose: a file's problems are known before a single
record is sent, so the user sees "row 18: high='-1': must be a finite number > 0" at the prompt,
with the line number of the file, instead of hunting for it later in the dead-letter table. Bad
rows are therefore *reported*, never dropped silently and never published; the pipeline's
dead-letter path is for what arrives over Kafka from producers we do not control.

Prices are parsed from the file's text (CSV is read as strings), so `104.06` becomes
`Decimal("104.06")`, never the nearest binary float.
"""

from __future__ import annotations

import csv
import itertools
import math
import re
import statistics
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple, TextIO

import numpy as np
import pandas as pd
from pydantic import ValidationError

from connectors.broker import wait_for_broker
from connectors.kafka_io import DeliveryCounter, make_producer, publish
from models.config import parse_duration_ms
from models.messages import SYMBOL_PATTERN, BarIn, Tick, to_ms
from models.parsing import event_time_problem

__all__ = [
    "MarketFile",
    "MarketFileError",
    "ReplayError",
    "ReplayStats",
    "RowProblem",
    "load_market_file",
    "replay",
]

MarketMsg = Tick | BarIn

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SYMBOL_RE = re.compile(SYMBOL_PATTERN)
_NUMBER_RE = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")
# A time of day alone (HH:MM, HH:MM:SS, HH:MM:SS.fff): the second half of a split date/time pair.
_TIME_OF_DAY_RE = re.compile(r"^\s*\d{1,2}:\d{2}(:\d{2}(\.\d{1,9})?)?\s*$")
# Beyond any plausible epoch, in µs: keeps float -> int -> timedelta from overflowing.
_MAX_ABS_US = 6 * 10**16  # ~1900 years either side of 1970
_MAX_INTERVAL_S = 31 * 86400
_EPOCH_UNITS = ((1e11, 1e6), (1e14, 1e3), (1e17, 1.0))  # (magnitude below, factor to µs)

# Accepted column names, compared case-insensitively after stripping; first match wins.
_TIME_COLUMNS = ("ts", "timestamp", "time", "datetime", "date", "open_time", "", "unnamed: 0")
_INDEX_NAMES = ("index", "level_0")
_SIZE_COLUMNS = ("size", "qty", "quantity", "volume", "amount")
_SYMBOL_COLUMNS = ("symbol", "ticker")


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
class MarketFile:
    """What a file yielded: valid messages in event-time order, and every rejected row."""

    path: Path
    kind: Literal["bars", "ticks"]
    rows: int
    messages: list[MarketMsg]
    problems: list[RowProblem]
    interval_s: dict[str, int] = field(default_factory=dict)

    @property
    def symbols(self) -> list[str]:
        return sorted({m.symbol for m in self.messages})


@dataclass(frozen=True)
class ReplayStats:
    topic: str
    sent: int
    published: int
    failed: int
    elapsed_s: float
    msgs_per_s: float
    speed: float | None
    first_event_ms: int | None
    last_event_ms: int | None
    per_symbol: dict[str, int]
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        pace = "as fast as possible" if self.speed is None else f"at {self.speed:g}x event time"
        text = (
            f"published {self.published} of {self.sent} messages to {self.topic} "
            f"in {self.elapsed_s:.2f} s ({self.msgs_per_s:,.0f} msgs/s, {pace})"
        )
        if self.failed:
            text += f"; {self.failed} failed: {'; '.join(self.errors)}"
        return text


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


@dataclass
class _Table:
    """Columns as lists of text (or native values for Parquet), keyed by normalised name."""

    columns: dict[str, list[Any]]
    names: dict[str, str]  # normalised -> original header, for messages
    rownums: list[int]  # RowProblem.row of each kept row (CSV line or Parquet row)
    time_us: list[int | None] | None = None  # pre-parsed times (Parquet datetime columns)
    problems: list[RowProblem] = field(default_factory=list)


def _norm(name: object) -> str:
    return str(name).strip().lower()


def _sniff_dialect(fh: TextIO) -> type[csv.Dialect] | str:
    """Comma, semicolon, tab or pipe: exports from spreadsheets and brokers use all of them."""
    sample = fh.read(64 * 1024)
    fh.seek(0)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        return "excel"


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


def _is_number(text: str) -> bool:
    try:
        return Decimal(text.strip()).is_finite()
    except (InvalidOperation, ValueError):
        return False


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


def _read_csv(path: Path) -> _Table:
    """Parse with the csv module: exact text for every cell, and the line of every row."""
    problems: list[RowProblem] = []
    rownums: list[int] = []
    data: list[list[str]] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, dialect=_sniff_dialect(fh))
            header: list[str] | None = None
            for fields in reader:
                if not fields or all(not f.strip() for f in fields):
                    continue
                if header is None:
                    header = _headerless_names(fields, path)
                    if header is None:
                        header = fields
                        continue
                if len(fields) != len(header):
                    reason = f"expected {len(header)} fields, found {len(fields)}"
                    problems.append(RowProblem(reader.line_num, reason))
                    continue
                data.append(fields)
                rownums.append(reader.line_num)
    except UnicodeDecodeError:
        raise MarketFileError(f"{path}: not a UTF-8 text file") from None
    except csv.Error as exc:
        raise MarketFileError(f"{path}: not valid CSV ({exc})") from None
    except OSError as exc:  # permission denied, I/O error, a FIFO that went away...
        raise MarketFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if header is None:
        raise MarketFileError(f"{path}: file is empty")
    # Spreadsheet exports often end every line with empty, unnamed columns ("...,Volume,,").
    # Those carry nothing; dropping them keeps "duplicate column names" for real duplicates.
    keep = [
        i
        for i, h in enumerate(header)
        if h.strip() or any(r[i].strip() for r in data) or header.count(h) == 1
    ]
    names = {_norm(header[i]): header[i] for i in keep}
    if len(names) != len(keep):
        raise MarketFileError(f"{path}: duplicate column names in header {header}")
    columns = {_norm(header[i]): [r[i] for r in data] for i in keep}
    return _Table(columns, names, rownums, problems=problems)


def _read_parquet(path: Path) -> _Table:
    try:
        df = pd.read_parquet(path)
    except Exception as exc:
        raise MarketFileError(f"{path}: cannot read Parquet ({type(exc).__name__})") from None
    if not isinstance(df.index, pd.RangeIndex):
        df = df.reset_index()
    names = {_norm(c): str(c) for c in df.columns}
    if len(names) != len(df.columns):
        raise MarketFileError(f"{path}: duplicate column names {list(df.columns)}")
    columns: dict[str, list[Any]] = {}
    time_us: list[int | None] | None = None
    time_key = _pick(names, (*_TIME_COLUMNS, *_INDEX_NAMES))
    for col in df.columns:
        key = _norm(col)
        series = df[col]
        if key == time_key and pd.api.types.is_datetime64_any_dtype(series):
            ts = pd.to_datetime(series, utc=True)
            time_us = [None if pd.isna(v) else int(v) for v in ts.dt.as_unit("us").astype("int64")]
            time_us = [None if m else v for v, m in zip(time_us, ts.isna(), strict=True)]
            columns[key] = ["" for _ in range(len(df))]
            continue
        if series.dtype in (np.float32, np.float16):
            # str() of the numpy scalar: the shortest text that round-trips in its own width
            # ("101.1"); tolist() would widen it to a double first ("101.0999984741211").
            columns[key] = ["" if np.isnan(v) else str(v) for v in series.to_numpy()]
            continue
        # str() of the stored value: shortest round-trip text of a double, exact for Decimal.
        columns[key] = ["" if _missing(v) else str(v) for v in series.tolist()]
    return _Table(columns, names, list(range(1, len(df) + 1)), time_us=time_us)


def _pad_hour(text: str) -> str:
    """ "9:30" -> "09:30", which ISO-8601 needs."""
    return "0" + text if text[1:2] == ":" else text


def _merge_date_and_time(table: _Table) -> None:
    """A `date` column plus a time-of-day `time` column (MetaTrader, FX and intraday vendor
    exports) become one `date time` column under the name `time`; anything else is untouched.

    Without this, `time` wins the time-column pick and "09:30" is no date at all.
    """
    cols = table.columns
    if table.time_us is not None or "date" not in cols or "time" not in cols:
        return
    times = [_pad_hour(str(t).strip()) for t in cols["time"]]
    present = [t for t in times if t]
    if not present or not all(_TIME_OF_DAY_RE.match(t) for t in present):
        return
    dates = [str(d).strip() for d in cols["date"]]
    cols["time"] = [f"{d} {t}" if d and t else "" for d, t in zip(dates, times, strict=True)]
    table.names["time"] = f"{table.names['date']}+{table.names['time']}"


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _pick(names: dict[str, str], candidates: Iterable[str]) -> str | None:
    for c in candidates:
        if c in names:
            return c
    return None


def _parse_times(values: list[Any]) -> list[int | None]:
    """Epoch microseconds (UTC) per value, None where unparseable.

    Accepts ISO-8601 (naive means UTC) or epoch numbers; the unit of numbers is chosen once per
    file from their typical (median) magnitude (seconds, ms, µs or ns), as a mixed-unit column
    makes no sense. The median, not the maximum: one corrupt row (1e308, a year-9999 time) must
    not turn every other row's seconds into milliseconds; it stays a bad row of its own.
    """
    text = [str(v).strip() for v in values]
    present = [t for t in text if t]
    if present and all(_NUMBER_RE.match(t) for t in present):
        typical = statistics.median_low(abs(float(t)) for t in present)
        # seconds, milliseconds, microseconds, nanoseconds -> microseconds
        scale = next((f for bound, f in _EPOCH_UNITS if typical < bound), 1e-3)
        out: list[int | None] = []
        for t in text:
            x = float(t) * scale if t else math.nan
            # Clamped, not dropped: the row is then refused as out of range, with its text.
            out.append(None if math.isnan(x) else round(max(-_MAX_ABS_US, min(_MAX_ABS_US, x))))
        return out
    parsed = pd.to_datetime(pd.Series(text), utc=True, errors="coerce", format="ISO8601")
    ints = parsed.dt.as_unit("us").astype("int64").tolist()
    return [None if bad else v for v, bad in zip(ints, parsed.isna().tolist(), strict=True)]


def _cell(cols: dict[str, list[Any]], key: str | None, i: int) -> str:
    """Stripped text of an optional column; empty means "not given" (volume, size, id)."""
    return "" if key is None else str(cols[key][i]).strip()


def _us_to_datetime(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _validation_reason(err: ValidationError) -> str:
    parts = []
    for e in err.errors(include_url=False):
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if not loc:
            parts.append(msg)
        elif e["type"] == "missing":
            parts.append(f"{loc}: {msg}")
        else:
            parts.append(f"{loc}={e['input']!r}: {msg}")
    return "; ".join(parts)


def _check_symbol(symbol: str, what: str) -> str:
    sym = symbol.strip().upper()
    if not _SYMBOL_RE.match(sym):
        raise MarketFileError(
            f"{what} {sym!r} is not a valid symbol (A-Z, 0-9 and . _ / : - , max 32); pass symbol="
        )
    return sym


def _infer_intervals(times_by_symbol: dict[str, list[int]], path: Path) -> dict[str, int]:
    """Median spacing per symbol: robust to weekends, holidays and the odd missing bar."""
    out: dict[str, int] = {}
    for sym, times in times_by_symbol.items():
        distinct = sorted(set(times))
        if len(distinct) < 2:
            raise MarketFileError(
                f"{path}: cannot infer the bar interval of {sym} from a single bar;"
                " pass --interval (e.g. --interval 1d)"
            )
        gaps = [b - a for a, b in itertools.pairwise(distinct)]
        seconds = max(1, round(statistics.median(gaps) / 1e6))
        if seconds > _MAX_INTERVAL_S:
            raise MarketFileError(
                f"{path}: inferred bar interval of {sym} is {seconds / 86400:.0f} days, "
                "more than the 31-day maximum"
            )
        out[sym] = seconds
    return out


def load_market_file(
    path: str | Path, symbol: str | None = None, interval: str | None = None
) -> MarketFile:
    """Read an OHLCV bar file or a trade file (CSV or Parquet) into validated messages.

    Bars need a time column (or unnamed index) and open/high/low/close, volume optional; trades
    need a time column and price, size optional. Column names are case-insensitive. A `symbol`
    column wins over the `symbol` argument, which otherwise names every row (default: the file
    stem upper-cased). `interval` ("1d", "1h", "60") is inferred from the median spacing of the
    bar times when not given.
    """
    p = Path(path)
    try:
        if not p.exists():
            raise MarketFileError(f"file not found: {p}")
        if not p.is_file():
            raise MarketFileError(f"not a file: {p}")
    except OSError as exc:  # e.g. a name too long for the file system
        raise MarketFileError(f"cannot open {str(p)[:200]!r}: {exc.strerror or exc}") from None
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] in (".parquet", ".pq"):
        table = _read_parquet(p)
    elif (
        not suffixes
        or suffixes[-1] in (".csv", ".txt", ".tsv")
        or suffixes[-2:] in ([".csv", ".gz"], [".tsv", ".gz"])
    ):
        if suffixes and suffixes[-1] == ".gz":
            raise MarketFileError(f"{p}: compressed CSV is not supported; decompress it first")
        table = _read_csv(p)
    else:
        raise MarketFileError(
            f"{p}: unsupported file type {p.suffix!r}; use .csv, .tsv, .txt or .parquet"
        )

    names = table.names
    _merge_date_and_time(table)
    time_key = _pick(names, (*_TIME_COLUMNS, *_INDEX_NAMES))
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
    fixed_interval: int | None = None
    if interval is not None:
        try:
            ms = parse_duration_ms(interval)
        except ValueError as exc:
            raise MarketFileError(f"interval: {exc}") from None
        fixed_interval = ms // 1000
        if not 1 <= fixed_interval <= _MAX_INTERVAL_S:
            raise MarketFileError(f"interval {interval!r} must be between 1 s and 31 days")

    n = len(table.rownums)
    times = table.time_us if table.time_us is not None else _parse_times(table.columns[time_key])
    if n and all(t is None for t in times):
        sample = str(table.columns[time_key][0]) if table.time_us is None else "?"
        raise MarketFileError(
            f"{p}: no parseable time in column {names[time_key]!r} "
            f"(expected ISO-8601 or epoch numbers), e.g. {sample!r}"
        )

    problems = list(table.problems)

    symbols: list[str | None] = []
    for i in range(n):
        raw = table.columns[symbol_key][i].strip() if symbol_key is not None else ""
        symbols.append(raw.upper() if raw else default_symbol)

    good_rows: list[int] = []
    for i in range(n):
        row = table.rownums[i]
        us = times[i]
        shown = table.columns[time_key][i] if table.time_us is None else ""
        if us is None:
            problems.append(RowProblem(row, f"{names[time_key]}={shown!r}: not a valid time"))
        elif (why := event_time_problem(us // 1000)) is not None:
            text = shown or _us_to_datetime(us).isoformat()
            problems.append(RowProblem(row, f"{names[time_key]}={text!r}: {why}"))
        elif symbols[i] is None:
            problems.append(RowProblem(row, "symbol is empty"))
        else:
            good_rows.append(i)

    interval_by_symbol: dict[str, int] = {}
    if is_bars:
        per_symbol: dict[str, list[int]] = {}
        for i in good_rows:
            per_symbol.setdefault(str(symbols[i]), []).append(int(times[i] or 0))
        if fixed_interval is not None:
            interval_by_symbol = dict.fromkeys(per_symbol, fixed_interval)
        else:
            interval_by_symbol = _infer_intervals(per_symbol, p)

    cols = table.columns
    size_key = _pick(names, _SIZE_COLUMNS)
    id_key = "id" if "id" in names else None
    messages: list[tuple[int, int, MarketMsg]] = []
    seen: dict[tuple[str, int], int] = {}
    for i in good_rows:
        row = table.rownums[i]
        sym = str(symbols[i])
        us = int(times[i] or 0)
        ts = _us_to_datetime(us)
        try:
            msg: MarketMsg
            if is_bars:
                first = seen.get((sym, us))
                if first is not None:
                    reason = f"duplicate bar of {sym} at {ts.isoformat()} (first: row {first})"
                    problems.append(RowProblem(row, reason))
                    continue
                seen[(sym, us)] = row
                data: dict[str, Any] = {
                    "symbol": sym,
                    "ts": ts,
                    "open": cols["open"][i].strip(),
                    "high": cols["high"][i].strip(),
                    "low": cols["low"][i].strip(),
                    "close": cols["close"][i].strip(),
                    "interval_s": interval_by_symbol[sym],
                    # A bar is identified by symbol and open time, so a re-replay dedupes.
                    "id": _cell(cols, id_key, i) or f"{sym}:{us // 1000}",
                }
                if volume := _cell(cols, "volume" if "volume" in names else None, i):
                    data["volume"] = volume
                msg = BarIn.model_validate(data)
            else:
                tick: dict[str, Any] = {"symbol": sym, "ts": ts, "price": cols["price"][i].strip()}
                if size := _cell(cols, size_key, i):
                    tick["size"] = size
                if tick_id := _cell(cols, id_key, i):
                    tick["id"] = tick_id
                msg = Tick.model_validate(tick)
        except ValidationError as err:
            problems.append(RowProblem(row, _validation_reason(err)))
            continue
        messages.append((us, i, msg))

    messages.sort(key=lambda t: (t[0], t[1]))
    problems.sort(key=lambda q: q.row)
    return MarketFile(
        path=p,
        kind="bars" if is_bars else "ticks",
        rows=n + len(table.problems),
        messages=[m for _, _, m in messages],
        problems=problems,
        interval_s=interval_by_symbol,
    )


# --------------------------------------------------------------------------------------------
# Publishing
# --------------------------------------------------------------------------------------------


def _event_ms(msg: MarketMsg) -> int:
    return to_ms(msg.ts)


def replay(
    bootstrap: str,
    topic: str,
    messages: Iterable[MarketMsg],
    speed: float | None = None,
    progress: bool = False,
    *,
    flush_timeout_s: float = 60.0,
    connect_timeout_s: float = 10.0,
) -> ReplayStats:
    """Publish messages as JSON in event-time order, keyed by symbol.

    The key pins a symbol to one partition, which is what keeps its events in order for the
    pipeline. The record timestamp is the wall clock (the moment of publishing), as a live feed
    would stamp it, so the pipeline's future-skew check sees realistic record times. With
    `speed`, event time advances `speed` times faster than wall time; with None, no pacing.
    """
    if speed is not None and not (math.isfinite(speed) and speed > 0):
        raise ValueError(f"speed must be a positive number or None, got {speed!r}")
    # Sort on epoch ms, not on datetimes: a caller's naive datetime (taken as UTC, as the
    # pipeline does) must not break the comparison with aware ones.
    timed = sorted(((_event_ms(m), i, m) for i, m in enumerate(messages)), key=lambda t: t[:2])
    ordered: Sequence[MarketMsg] = [m for _, _, m in timed]
    event_ms = [ms for ms, _, _ in timed]
    del timed
    # Fail in seconds with one line, rather than queueing everything and timing out in flush().
    wait_for_broker(bootstrap, connect_timeout_s, label="bootstrap")
    counter = DeliveryCounter()
    # Paced replays imitate a live feed, so do not hold records back for batching.
    producer = make_producer(bootstrap, **({"linger.ms": 5} if speed is not None else {}))
    per_symbol: Counter[str] = Counter()
    total = len(ordered)
    first_ms = event_ms[0] if event_ms else None
    last_ms = event_ms[-1] if event_ms else None

    bar: Any = None
    task: Any = None
    if progress:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        bar = Progress(
            TextColumn("[bold]replay[/] {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        bar.start()
        task = bar.add_task(topic, total=total, rate="")

    t0 = time.monotonic()
    shown_at = t0
    sent = 0
    try:
        for msg, ms in zip(ordered, event_ms, strict=True):
            if speed is not None and first_ms is not None:
                due = t0 + (ms - first_ms) / 1000.0 / speed
                while (wait := due - time.monotonic()) > 0:
                    producer.poll(min(wait, 0.05))
            publish(
                producer,
                topic,
                msg.symbol.encode(),
                msg.model_dump_json().encode(),
                int(time.time() * 1000),
                on_delivery=counter,
            )
            sent += 1
            per_symbol[msg.symbol] += 1
            # Every 500 messages at full speed, and at least twice a second when paced.
            now = time.monotonic()
            if bar is not None and (sent % 500 == 0 or sent == total or now - shown_at >= 0.5):
                shown_at = now
                spent = now - t0
                rate = f"{sent / spent:>9,.0f} msg/s" if spent > 0 else ""
                bar.update(task, completed=sent, rate=rate)
    finally:
        remaining = producer.flush(flush_timeout_s)
        if bar is not None:
            bar.update(task, completed=sent)
            bar.stop()
    elapsed = time.monotonic() - t0
    errors = list(counter.errors)
    failed = counter.failed + remaining
    if remaining:
        errors.append(f"{remaining} not delivered within {flush_timeout_s:g} s")
    return ReplayStats(
        topic=topic,
        sent=sent,
        published=counter.delivered,
        failed=failed,
        elapsed_s=elapsed,
        msgs_per_s=counter.delivered / elapsed if elapsed > 0 else 0.0,
        speed=speed,
        first_event_ms=first_ms,
        last_event_ms=last_ms,
        per_symbol=dict(per_symbol),
        errors=errors,
    )
