"""The ClickHouse store: one schema, one SQL dialect, two backends.

Without `clickhouse.url` the store runs ClickHouse in-process with chdb on a persistent
directory, so a laptop run needs no server; with a URL it talks to a ClickHouse server through
clickhouse-connect. Both run the same DDL (`deploy/clickhouse/schema.sql`), take the same SQL
with the same `{name:Type}` parameters, and return the same Python types:

* `Decimal` columns come back as `decimal.Decimal`, exact, at the column's scale
  (`Decimal('101.500000000000')` for a `Decimal(38, 12)`); never as float or string.
* integers as `int`, floats as `float`, `Bool` as `bool`, arrays as lists, `DateTime`/
  `DateTime64` as timezone-aware `datetime` (UTC unless the column names another zone),
  `Date` as `date`, anything else (String, JSON text, ...) as ClickHouse renders it in JSON.

Rows are written idempotently: every table is a ReplacingMergeTree keyed by the row's natural
id, so a replay after a crash writes duplicates that `FINAL` (or a merge) collapses.

Unqualified table names in queries resolve to the configured database (`clickhouse.database`)
once it exists, i.e. after `apply_schema()` or when it already existed at `open()`;
`store.table("bars")` gives the quoted, qualified name for SQL that must not depend on that.
Do not send `USE` yourself: the chdb session is shared by every store of the process and the
store switches its database before each statement.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Protocol, Self, cast
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from pydantic_core import to_json

from models.config import ClickHouseConfig
from models.messages import (
    Alert,
    Bar,
    DeadLetter,
    DecisionRecord,
    Fill,
    GptCall,
    NewsItem,
    Order,
    PositionSnapshot,
    Signal,
    SocialPost,
    StoredTick,
    StrategyRecord,
    ms_to_datetime,
    to_ms,
)

SCHEMA_PATH: Final = Path(__file__).resolve().parent.parent / "deploy" / "clickhouse" / "schema.sql"
"""The one DDL file; `apply_schema()` reads it from the source tree."""

SCHEMA_DATABASE: Final = "stratflow"
"""The database name written in the DDL file, replaced by the configured one when applied."""

DECIMAL_SCALE: Final = 12
"""Fractional digits of every money/price/quantity column (`Decimal(38, 12)`)."""

_DECIMAL_MAX_INT_DIGITS: Final = 38 - DECIMAL_SCALE
_DECIMAL_QUANTUM: Final = Decimal(1).scaleb(-DECIMAL_SCALE)
# Wide enough that quantizing a 38-digit value never trips the 28-digit default precision.
_DECIMAL_CTX: Final = Context(prec=100, rounding=ROUND_HALF_EVEN)
_IDENTIFIER: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Row = dict[str, Any]


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


# clickhouse-connect logs a traceback of its own before raising; our errors already say it all.
logging.getLogger("clickhouse_connect").addHandler(logging.NullHandler())
logging.getLogger("clickhouse_connect").propagate = False


class ClickHouseError(RuntimeError):
    """Base of the store's errors; the message is one line meant for a user, not a traceback."""


class ClickHouseUnavailable(ClickHouseError):
    """The store cannot be opened or reached: a locked or unusable chdb directory, no server."""


class ClickHouseQueryError(ClickHouseError):
    """ClickHouse rejected a statement (bad SQL, unknown table, a value out of range, ...)."""


def _one_line(text: object, limit: int = 300) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    line = lines[0] if lines else type(text).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


# --------------------------------------------------------------------------------------------
# Models -> rows (pure; the one place that knows how each message type is laid out in a table)
# --------------------------------------------------------------------------------------------


def _dec(value: Decimal) -> str:
    """Exact text of a Decimal at the column scale, so neither JSON nor ClickHouse sees a float.

    ClickHouse would silently truncate extra digits; rounding half-even here makes the stored
    value deterministic and the same on both backends. Values too large for `Decimal(38, 12)`
    are refused rather than wrapped.
    """
    if not value.is_finite():
        raise ValueError(f"cannot store non-finite decimal {value}")
    try:
        q = value.quantize(_DECIMAL_QUANTUM, context=_DECIMAL_CTX)
    except InvalidOperation:
        q = None
    if q is None or q.adjusted() >= _DECIMAL_MAX_INT_DIGITS:
        raise ValueError(f"decimal {value} does not fit Decimal(38, {DECIMAL_SCALE})")
    return format(q, "f")


def _float(value: float) -> float | str:
    """Non-finite floats as the strings ClickHouse parses, because JSON has no literal for them."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _json_text(value: Any) -> str:
    """Compact JSON text of a nested part; Decimals become strings (exact), NaN/inf become null."""
    return to_json(value, fallback=str, inf_nan_mode="null").decode("utf-8")


def _tick_row(m: StoredTick) -> Row:
    return {
        "symbol": m.symbol,
        "ts_ms": m.ts_ms,
        "price": _dec(m.price),
        "size": _dec(m.size),
        "tick_id": m.tick_id,
    }


def _bar_row(m: Bar) -> Row:
    return {
        "symbol": m.symbol,
        "start_ms": m.start_ms,
        "end_ms": m.end_ms,
        "open": _dec(m.open),
        "high": _dec(m.high),
        "low": _dec(m.low),
        "close": _dec(m.close),
        "volume": _dec(m.volume),
        "trades": m.trades,
        "vwap": _dec(m.vwap),
    }


def _signal_row(m: Signal) -> Row:
    return {
        "symbol": m.symbol,
        "ts_ms": m.ts_ms,
        "trigger": m.trigger,
        "kind": m.kind,
        "direction": m.direction.value,
        "strength": _float(m.strength),
        "strategic": m.strategic,
        "detail": _json_text(m.detail),
    }


def _decision_row(m: DecisionRecord) -> Row:
    return {
        "decision_id": m.decision_id,
        "ts_ms": m.ts_ms,
        "symbol": m.symbol,
        "branch": m.branch.value,
        "status": m.status.value,
        "trigger_names": [s.trigger for s in m.triggers],
        "n_rounds": len(m.rounds),
        "n_orders": len(m.orders),
        "n_fills": len(m.fills),
        "note": m.note,
        "version": m.version,
        "triggers": _json_text(m.triggers),
        "features": _json_text(m.features),
        "rounds": _json_text(m.rounds),
        "orders": _json_text(m.orders),
        "fills": _json_text(m.fills),
        "portfolio_before": _json_text(m.portfolio_before),
    }


def _order_row(m: Order) -> Row:
    return {
        "client_order_id": m.client_order_id,
        "decision_id": m.decision_id,
        "symbol": m.symbol,
        "side": m.side.value,
        "quantity": _dec(m.quantity),
        "order_type": m.order_type,
        "status": m.status.value,
        "placed_ms": m.placed_ms,
        "updated_ms": m.updated_ms,
        "reason": m.reason,
        "version": m.version,
    }


def _fill_row(m: Fill) -> Row:
    return {
        "fill_id": m.fill_id,
        "client_order_id": m.client_order_id,
        "decision_id": m.decision_id,
        "symbol": m.symbol,
        "side": m.side.value,
        "quantity": _dec(m.quantity),
        "price": _dec(m.price),
        "fee": _dec(m.fee),
        "ts_ms": m.ts_ms,
    }


def _position_row(m: PositionSnapshot) -> Row:
    return {
        "ts_ms": m.ts_ms,
        "symbol": m.symbol,
        "quantity": _dec(m.quantity),
        "avg_cost": _dec(m.avg_cost),
        "mark_price": _dec(m.mark_price),
        "realized_pnl": _dec(m.realized_pnl),
        "unrealized_pnl": _dec(m.unrealized_pnl),
        "cash": _dec(m.cash),
        "equity": _dec(m.equity),
    }


def _alert_row(m: Alert) -> Row:
    return {
        "alert_id": m.alert_id,
        "ts_ms": m.ts_ms,
        "severity": m.severity.value,
        "source": m.source,
        "message": m.message,
        "context": _json_text(m.context),
    }


def _dead_letter_row(m: DeadLetter) -> Row:
    return {
        "dead_letter_id": m.dead_letter_id,
        "topic": m.topic,
        "partition": m.partition,
        "offset": m.offset,
        "record_ms": m.record_ms,
        "reason": m.reason,
        "payload": m.payload,
    }


def _news_row(m: NewsItem) -> Row:
    return {
        "kind": "news",
        "id": m.id,
        "ts_ms": to_ms(m.ts),
        "symbols": list(m.symbols),
        "headline": m.headline,
        "text": m.body,
        "source": m.source,
    }


def _social_row(m: SocialPost) -> Row:
    return {
        "kind": "social",
        "id": m.id,
        "ts_ms": to_ms(m.ts),
        "symbols": list(m.symbols),
        "headline": "",
        "text": m.text,
        "source": m.author,
    }


def _gpt_call_row(m: GptCall) -> Row:
    return {
        "call_id": m.call_id,
        "ts_ms": m.ts_ms,
        "decision_id": m.decision_id,
        "round": m.round,
        "symbol": m.symbol,
        "model": m.model,
        "prompt_hash": m.prompt_hash,
        "prompt_tokens": m.prompt_tokens,
        "completion_tokens": m.completion_tokens,
        "latency_ms": m.latency_ms,
        "cost": _dec(m.cost),
        "price_known": m.price_known,
        "outcome": m.outcome.value,
        "answer": m.answer,
        "detail": m.detail,
    }


def _strategy_row(m: StrategyRecord) -> Row:
    return {
        "activation_id": m.activation_id,
        "strategy_id": m.strategy_id,
        "version": m.version,
        "decision_id": m.decision_id,
        "symbol": m.symbol,
        "universe": list(m.universe),
        "status": m.status.value,
        "started_ms": m.started_ms,
        "ended_ms": m.ended_ms,
        "bars_active": m.bars_active,
        "trades": m.trades,
        "realized_pnl": _dec(m.realized_pnl),
        "confidence": _float(m.confidence),
        "rationale": m.rationale,
        "spec": m.spec,
    }


ROW_CONVERTERS: Final[Mapping[type[BaseModel], tuple[str, Callable[[Any], Row]]]] = {
    StoredTick: ("ticks", _tick_row),
    Bar: ("bars", _bar_row),
    Signal: ("signals", _signal_row),
    DecisionRecord: ("decisions", _decision_row),
    Order: ("orders", _order_row),
    Fill: ("fills", _fill_row),
    PositionSnapshot: ("positions", _position_row),
    Alert: ("alerts", _alert_row),
    DeadLetter: ("dead_letters", _dead_letter_row),
    NewsItem: ("news", _news_row),
    SocialPost: ("news", _social_row),
    GptCall: ("gpt_calls", _gpt_call_row),
    StrategyRecord: ("strategies", _strategy_row),
}
"""Model type -> (table, converter). News items and social posts share the `news` table."""

TABLES: Final[tuple[str, ...]] = tuple(dict.fromkeys(t for t, _ in ROW_CONVERTERS.values()))
"""Every table of the schema, in DDL order."""


def table_for(model: BaseModel) -> str:
    """The table a message type is stored in."""
    entry = ROW_CONVERTERS.get(type(model))
    if entry is None:
        raise TypeError(f"{type(model).__name__} has no ClickHouse table")
    return entry[0]


def model_to_row(model: BaseModel) -> tuple[str, Row]:
    """(table, row) for one message; the row is JSON-ready with Decimals as exact strings."""
    entry = ROW_CONVERTERS.get(type(model))
    if entry is None:
        raise TypeError(f"{type(model).__name__} has no ClickHouse table")
    table, convert = entry
    return table, convert(model)


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def row_to_model(table: str, row: Mapping[str, Any]) -> BaseModel:
    """Rebuild the message from a `SELECT *` row of its table (the inverse of `model_to_row`).

    Lets readers (replay, the API, tests) get validated models back instead of re-parsing the
    JSON text columns by hand. Millisecond precision is what the tables keep, so a news `ts`
    with microseconds comes back rounded down to the millisecond.
    """
    r = dict(row)
    r.pop("ts", None)
    r.pop("run_id", None)  # the run that wrote the row, not part of the message
    if table == "decisions":
        for key in ("triggers", "features", "rounds", "orders", "fills", "portfolio_before"):
            r[key] = _loads(r[key])
        for key in ("trigger_names", "n_rounds", "n_orders", "n_fills"):
            r.pop(key, None)
        return DecisionRecord.model_validate(r)
    if table == "gpt_calls":
        # `detail` is plain text here, not the JSON mapping it is in signals.
        return GptCall.model_validate(r)
    if table == "strategies":
        # `spec` stays the JSON text it was written as (the model keeps it as a string).
        return StrategyRecord.model_validate(r)
    if table == "news":
        common = {"id": r["id"], "ts": ms_to_datetime(int(r["ts_ms"])), "symbols": r["symbols"]}
        if r["kind"] == "social":
            return SocialPost.model_validate({**common, "text": r["text"], "author": r["source"]})
        return NewsItem.model_validate(
            {**common, "headline": r["headline"], "body": r["text"], "source": r["source"]}
        )
    simple: dict[str, type[BaseModel]] = {
        "ticks": StoredTick,
        "bars": Bar,
        "signals": Signal,
        "orders": Order,
        "fills": Fill,
        "positions": PositionSnapshot,
        "alerts": Alert,
        "dead_letters": DeadLetter,
    }
    model = simple.get(table)
    if model is None:
        raise ValueError(f"unknown table {table!r}")
    for key in ("detail", "context"):
        if key in r:
            r[key] = _loads(r[key])
    return model.model_validate(r)


# --------------------------------------------------------------------------------------------
# Schema text
# --------------------------------------------------------------------------------------------


def split_sql(text: str) -> list[str]:
    """Statements of a SQL script, comments removed.

    A ClickHouse server takes one statement per HTTP request, so the script is split here; the
    scan respects quotes so a `;` or `--` inside a literal or quoted identifier is left alone.
    """
    statements: list[str] = []
    buf: list[str] = []
    quote: str | None = None
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if quote:
            buf.append(ch)
            if ch == "\\" and i + 1 < n:
                buf.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = None
        elif ch in ("'", '"', "`"):
            quote = ch
            buf.append(ch)
        elif text.startswith("--", i):
            while i < n and text[i] != "\n":
                i += 1
            continue
        elif ch == ";":
            statements.append("".join(buf).strip())
            buf = []
        else:
            buf.append(ch)
        i += 1
    statements.append("".join(buf).strip())
    return [s for s in statements if s]


def schema_statements(database: str, text: str | None = None) -> list[str]:
    """The DDL statements with the configured database name in place of `stratflow`."""
    if not _IDENTIFIER.match(database):
        raise ValueError(f"database name {database!r} must match {_IDENTIFIER.pattern}")
    sql = SCHEMA_PATH.read_text(encoding="utf-8") if text is None else text
    pattern = re.compile(rf"(\bIF\s+NOT\s+EXISTS\s+){SCHEMA_DATABASE}\b", re.IGNORECASE)
    return [pattern.sub(lambda m: m.group(1) + database, s) for s in split_sql(sql)]


# --------------------------------------------------------------------------------------------
# chdb result decoding: JSONCompact text -> the Python types clickhouse-connect would return
# --------------------------------------------------------------------------------------------


def _split_type(type_name: str) -> tuple[str, str]:
    p = type_name.find("(")
    if p < 0 or not type_name.endswith(")"):
        return type_name.strip(), ""
    return type_name[:p].strip(), type_name[p + 1 : -1].strip()


def _type_zone(args: str) -> tzinfo:
    m = re.search(r"'([^']+)'", args)
    if not m or m.group(1) == "UTC":
        # A zone-less column renders in the session zone, which the chdb store pins to UTC.
        return UTC
    return ZoneInfo(m.group(1))


def _identity(v: Any) -> Any:
    return v


def _to_bool(v: Any) -> bool:
    return v if isinstance(v, bool) else str(v).lower() in ("1", "true")


@lru_cache(maxsize=512)
def _decoder(type_name: str) -> Callable[[Any], Any]:
    """How to turn one JSON value of a ClickHouse type into the Python value a caller expects."""
    name, args = _split_type(type_name)
    if name == "Nullable":
        inner = _decoder(args)
        return lambda v: None if v is None else inner(v)
    if name == "LowCardinality":
        return _decoder(args)
    if name == "Array":
        element = _decoder(args)
        return lambda v: [element(x) for x in v]
    if name.startswith("Decimal"):
        quantum = Decimal(1).scaleb(-int(args.split(",")[-1]))
        return lambda v: Decimal(str(v)).quantize(quantum, context=_DECIMAL_CTX)
    if re.fullmatch(r"U?Int\d+", name):
        return int
    if name in ("Float32", "Float64", "BFloat16"):
        return float
    if name == "Bool":
        return _to_bool
    if name in ("DateTime", "DateTime64"):
        zone = _type_zone(args)
        return lambda v: datetime.fromisoformat(v).replace(tzinfo=zone)
    if name in ("Date", "Date32"):
        return date.fromisoformat
    return _identity


def decode_json_compact(raw: bytes) -> list[dict[str, Any]]:
    """Rows of a `FORMAT JSONCompact` answer, typed by its `meta` header."""
    if not raw.strip():
        return []
    doc = json.loads(raw)
    names = [c["name"] for c in doc["meta"]]
    # Only columns whose JSON form differs from the Python value are touched (strings are not).
    typed = [(c["name"], d) for c in doc["meta"] if (d := _decoder(c["type"])) is not _identity]
    rows: list[dict[str, Any]] = []
    for values in doc["data"]:
        row = dict(zip(names, values, strict=True))
        for name, decode in typed:
            v = row[name]
            if v is not None:
                row[name] = decode(v)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------


class _ChdbResult(Protocol):
    def bytes(self) -> bytes: ...


class _ChdbSession(Protocol):
    def query(
        self, sql: str, fmt: str = ..., udf_path: str = ..., params: dict[str, str] | None = ...
    ) -> _ChdbResult: ...

    def close(self) -> None: ...


class _Backend(Protocol):
    kind: Literal["chdb", "clickhouse-connect"]
    where: str

    def execute(self, sql: str, params: Mapping[str, Any] | None) -> None: ...

    def query(self, sql: str, params: Mapping[str, Any] | None) -> list[dict[str, Any]]: ...

    def insert_json_each_row(self, table: str, body: str) -> None: ...

    def use_database(self, database: str) -> bool: ...

    def close(self) -> None: ...


# Settings every chdb session gets, so the JSON we parse is exact and the same on every host:
# Decimals quoted (else they are JSON numbers and lose digits), NaN/inf quoted (else null), and
# zone-less DateTime rendered in UTC (else in the host's zone).
_CHDB_SESSION_SETTINGS: Final = (
    "SET output_format_json_quote_decimals = 1",
    "SET output_format_json_quote_denormals = 1",
    "SET session_timezone = 'UTC'",
)

# Refuse JSON keys the table lacks: a converter typo must fail loudly, not drop a field.
_INSERT_SETTINGS: Final = {"input_format_skip_unknown_fields": 0}


@dataclass
class _SharedChdb:
    path: str
    session: _ChdbSession
    refs: int
    # The session's current database (USE): stores of one directory may want different ones, so
    # each query switches under `lock` when needed.
    current_db: str | None = None
    lock: threading.RLock = field(default_factory=threading.RLock)


# chdb hosts one engine per process, bound to one directory, and locks that directory against
# other processes. Every Store of the process on that directory shares this one session.
_chdb_lock = threading.Lock()
_chdb_shared: _SharedChdb | None = None


def _lock_holder(path: str) -> str | None:
    """Who holds the chdb directory's lock, if another process does ("pid 123"), else None.

    chdb only prints the reason to stderr and raises a bare "Error initializing EmbeddedServer",
    so the lock on `status` (an flock taken by the engine) is probed first to say what is wrong.
    """
    status = os.path.join(path, "status")
    try:
        fd = os.open(status, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                return None
            m = re.search(rb"PID:\s*(\d+)", os.pread(fd, 4096, 0))
            pid = int(m.group(1)) if m else None
            if pid == os.getpid():
                return None
            return f"pid {pid}" if pid else "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _refuse_if_locked(path: str) -> None:
    holder = _lock_holder(path)
    if holder:
        raise ClickHouseUnavailable(
            f"chdb directory {path} is in use by {holder}: stop it or set another clickhouse.path"
        )


def _new_chdb_session(path: str) -> _ChdbSession:
    from chdb import session as chdb_session

    factory = cast(Callable[[str], _ChdbSession], chdb_session.Session)
    return factory(path)


def _acquire_chdb(path: str) -> _SharedChdb:
    global _chdb_shared
    real = os.path.realpath(path)
    with _chdb_lock:
        shared = _chdb_shared
        if shared is not None:
            if shared.path == real:
                shared.refs += 1
                return shared
            raise ClickHouseUnavailable(
                f"chdb in this process already has {shared.path} open "
                f"(one directory per process): close its stores before opening {real}"
            )
        if "?" in real:
            raise ClickHouseUnavailable(f"chdb directory {real} must not contain '?'")
        try:
            os.makedirs(real, exist_ok=True)
        except OSError as err:
            raise ClickHouseUnavailable(
                f"chdb directory {real} is not usable: {err.strerror or err}"
            ) from None
        if not os.access(real, os.R_OK | os.W_OK | os.X_OK):
            raise ClickHouseUnavailable(f"chdb directory {real} is not readable and writable")
        _refuse_if_locked(real)
        try:
            session = _new_chdb_session(real)
        except Exception as err:
            _refuse_if_locked(real)  # lost a race with another process
            raise ClickHouseUnavailable(f"chdb could not open {real}: {_one_line(err)}") from None
        try:
            for stmt in _CHDB_SESSION_SETTINGS:
                session.query(stmt)
        except Exception as err:
            session.close()
            raise ClickHouseUnavailable(f"chdb could not open {real}: {_one_line(err)}") from None
        _chdb_shared = _SharedChdb(real, session, 1)
        return _chdb_shared


def _release_chdb(shared: _SharedChdb) -> None:
    global _chdb_shared
    with _chdb_lock:
        shared.refs -= 1
        if shared.refs > 0:
            return
        if _chdb_shared is shared:
            _chdb_shared = None
        # Closing the last session stops the engine, which releases the directory lock.
        shared.session.close()


def _chdb_params(params: Mapping[str, Any] | None) -> dict[str, str] | None:
    """Parameters as the escaped text a server's HTTP interface expects; chdb parses the same.

    clickhouse-connect's own formatter is used so both backends bind a value identically.
    """
    if not params:
        return None
    from clickhouse_connect.driver.binding import format_bind_value

    return {k: str(format_bind_value(v, UTC)) for k, v in params.items()}


class _ChdbBackend:
    kind: Literal["chdb", "clickhouse-connect"] = "chdb"

    def __init__(self, path: str) -> None:
        self._shared: _SharedChdb | None = _acquire_chdb(path)
        self.where = f"chdb:{self._shared.path}"
        self._database: str | None = None

    def _live(self) -> _SharedChdb:
        if self._shared is None:
            raise ClickHouseError("the store is closed")
        return self._shared

    def use_database(self, database: str) -> bool:
        shared = self._live()
        with shared.lock:
            try:
                shared.session.query(f"USE {_quote_identifier(database)}")
            except RuntimeError:
                return False  # not created yet: apply_schema() will call again
            shared.current_db = self._database = database
            return True

    def _run(self, sql: str, fmt: str, params: Mapping[str, Any] | None) -> bytes:
        shared = self._live()
        with shared.lock:
            try:
                if self._database is not None and shared.current_db != self._database:
                    shared.session.query(f"USE {_quote_identifier(self._database)}")
                    shared.current_db = self._database
                return shared.session.query(sql, fmt, params=_chdb_params(params)).bytes()
            except RuntimeError as err:
                raise ClickHouseQueryError(_one_line(err)) from None

    def execute(self, sql: str, params: Mapping[str, Any] | None) -> None:
        self._run(sql, "CSV", params)

    def query(self, sql: str, params: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        return decode_json_compact(self._run(sql, "JSONCompact", params))

    def insert_json_each_row(self, table: str, body: str) -> None:
        settings = ", ".join(f"{k} = {v}" for k, v in _INSERT_SETTINGS.items())
        self._run(
            f"INSERT INTO {table} SETTINGS {settings} FORMAT JSONEachRow\n{body}", "CSV", None
        )

    def close(self) -> None:
        shared, self._shared = self._shared, None
        if shared is not None:
            _release_chdb(shared)


def redact_url(url: str) -> str:
    """The URL without user and password, for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _short_reason(err: BaseException) -> str:
    text = str(err)
    m = re.search(r"\[Errno -?\d+\] ([^\"')]+)", text)
    return m.group(1).strip() if m else _one_line(text, 200)


def _server_target(url: str, database: str) -> tuple[str, str]:
    """(DSN to connect with, database to use).

    A database in an http(s) URL's path wins over `clickhouse.database` (the URL is the
    deployment's word); it is then removed from the DSN because clickhouse-connect would make it
    the session default and fail before `apply_schema()` has created it. `chdb:` DSNs are
    passed as they are (their path is a directory, not a database).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return url, database
    path_db = parts.path.strip("/").split("/")[0]
    dsn = urlunsplit((parts.scheme, parts.netloc, "", parts.query, ""))
    return dsn, path_db or database


class _ServerBackend:
    kind: Literal["chdb", "clickhouse-connect"] = "clickhouse-connect"

    def __init__(self, dsn: str) -> None:
        import clickhouse_connect
        from clickhouse_connect.driver.exceptions import Error as ConnectError

        self.where = redact_url(dsn)
        self._errors = ConnectError
        try:
            self._client: Any = clickhouse_connect.get_client(dsn=dsn, tz_mode="aware")
        except ConnectError as err:
            raise ClickHouseUnavailable(
                f"ClickHouse at {self.where} is unreachable: {_short_reason(err)}"
            ) from None
        except Exception as err:  # bad DSN, missing optional dependency, ...
            raise ClickHouseUnavailable(
                f"ClickHouse at {self.where} cannot be used: {_one_line(err)}"
            ) from None

    def _fail(self, err: Exception) -> ClickHouseError:
        from clickhouse_connect.driver.exceptions import OperationalError

        if isinstance(err, OperationalError) and "Code:" not in str(err):
            return ClickHouseUnavailable(
                f"ClickHouse at {self.where} is unreachable: {_short_reason(err)}"
            )
        return ClickHouseQueryError(_one_line(err))

    def execute(self, sql: str, params: Mapping[str, Any] | None) -> None:
        try:
            self._client.command(sql, parameters=dict(params) if params else None)
        except self._errors as err:
            raise self._fail(err) from None

    def query(self, sql: str, params: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        try:
            result = self._client.query(sql, parameters=dict(params) if params else None)
            return [dict(r) for r in result.named_results()]
        except self._errors as err:
            raise self._fail(err) from None

    def insert_json_each_row(self, table: str, body: str) -> None:
        try:
            self._client.raw_insert(
                table,
                insert_block=body.encode("utf-8"),
                fmt="JSONEachRow",
                settings=dict(_INSERT_SETTINGS),
            )
        except self._errors as err:
            raise self._fail(err) from None

    def use_database(self, database: str) -> bool:
        rows = self.query(
            "SELECT count() AS n FROM system.databases WHERE name = {db:String}", {"db": database}
        )
        if not rows or not rows[0]["n"]:
            return False  # not created yet: apply_schema() will call again
        self._client.database = database
        return True

    def close(self) -> None:
        self._client.close()


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


def _quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


class Store:
    """Writes pipeline records to ClickHouse and answers SQL, on chdb or a server alike.

    Safe to open several times in one process on the same chdb directory (they share one
    session); a directory held by another process, or an unreachable server, raises
    `ClickHouseUnavailable` with a one-line reason. Not meant to be shared across `fork()`.
    """

    def __init__(self, backend: _Backend, database: str, run_id: str = "") -> None:
        self._backend: _Backend | None = backend
        self._database = database
        self.run_id = run_id
        """Stamped on every row this store writes (see `connectors.clickhouse_runs`)."""
        self._kind = backend.kind
        self._where = backend.where

    @classmethod
    def open(cls, cfg: ClickHouseConfig, *, run_id: str = "") -> Store:
        """chdb on `cfg.path` when `cfg.url` is empty, else the server (or `chdb:` DSN) at `url`;
        rows it writes carry `run_id`."""
        dsn, database = _server_target(cfg.url, cfg.database) if cfg.url else ("", cfg.database)
        if not _IDENTIFIER.match(database):
            raise ValueError(f"database name {database!r} must match {_IDENTIFIER.pattern}")
        backend: _Backend = _ServerBackend(dsn) if dsn else _ChdbBackend(cfg.path)
        try:
            backend.use_database(database)
        except BaseException:
            backend.close()
            raise
        return cls(backend, database, run_id)

    # -- properties ---------------------------------------------------------------------------

    @property
    def database(self) -> str:
        return self._database

    @property
    def backend(self) -> Literal["chdb", "clickhouse-connect"]:
        """The client in use: chdb's session API, or clickhouse-connect (server or chdb: DSN)."""
        return self._kind

    @property
    def where(self) -> str:
        """Where the data lives, without credentials (for logs and the CLI)."""
        return self._where

    @property
    def closed(self) -> bool:
        return self._backend is None

    def table(self, name: str) -> str:
        """The quoted, database-qualified name of a table, for building queries."""
        return f"{_quote_identifier(self._database)}.{_quote_identifier(name)}"

    # -- operations ---------------------------------------------------------------------------

    def _live(self) -> _Backend:
        if self._backend is None:
            raise ClickHouseError("the store is closed")
        return self._backend

    def apply_schema(self, schema_sql: str | None = None) -> None:
        """Create the database and tables if missing (and give a store from before run ids its
        `run_id` column); safe to run on every start."""
        from connectors.clickhouse_runs import add_run_column

        backend = self._live()
        for stmt in schema_statements(self._database, schema_sql):
            backend.execute(stmt, None)
        backend.use_database(self._database)
        add_run_column(self, TABLES)

    def delete_run(self, run_id: str) -> None:
        """Delete every row `run_id` wrote, in every table."""
        from connectors.clickhouse_runs import delete_run

        delete_run(self, run_id, TABLES)

    def insert(self, table: str, rows: Sequence[BaseModel]) -> int:
        """Write `rows` to `table` in one INSERT; returns how many were sent.

        Every row is converted before anything is sent, so a bad value (a decimal too large, a
        model of another table) fails the whole batch and writes nothing.
        """
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
        if not rows:
            return 0
        lines: list[str] = []
        for row in rows:
            row_table, data = model_to_row(row)
            if row_table != table:
                raise TypeError(f"{type(row).__name__} belongs in {row_table!r}, not {table!r}")
            data["run_id"] = self.run_id
            lines.append(
                json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            )
        self._live().insert_json_each_row(self.table(table), "\n".join(lines) + "\n")
        return len(lines)

    def insert_models(self, rows: Iterable[BaseModel]) -> dict[str, int]:
        """Write mixed models, one INSERT per table; returns rows written per table."""
        by_table: dict[str, list[BaseModel]] = {}
        for row in rows:
            by_table.setdefault(table_for(row), []).append(row)
        return {t: self.insert(t, batch) for t, batch in by_table.items()}

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Rows of a SELECT as dicts; bind values with `{name:Type}` placeholders and `params`.

        Decimal columns come back as `Decimal` at the column's scale on both backends.
        """
        return self._live().query(sql, params)

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Run a statement that returns no rows (DDL, OPTIMIZE, a hand-written INSERT)."""
        self._live().execute(sql, params)

    def close(self) -> None:
        """Release the connection; the last store on a chdb directory unlocks it. Idempotent."""
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"Store({self._kind}, {self._where}, database={self._database}, {state})"


__all__ = [
    "DECIMAL_SCALE",
    "ROW_CONVERTERS",
    "SCHEMA_PATH",
    "TABLES",
    "ClickHouseError",
    "ClickHouseQueryError",
    "ClickHouseUnavailable",
    "Store",
    "decode_json_compact",
    "model_to_row",
    "redact_url",
    "row_to_model",
    "schema_statements",
    "split_sql",
    "table_for",
]
