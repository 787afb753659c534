"""The ClickHouse store: one schema, one SQL dialect, two backends.

Without `clickhouse.url` the store runs ClickHouse in-process with chdb on a persistent
directory, so a laptop run needs no server; with a URL it talks to a ClickHouse server through
clickhouse-connect. Both run the same DDL (`schema.sql` beside this module, package data), take
the same SQL with the same `{name:Type}` parameters, and return the same Python types:

* `Decimal` columns come back as `decimal.Decimal`, exact, at the column's scale
  (`Decimal('101.500000000000')` for a `Decimal(38, 12)`); never as float or string.
* integers as `int`, floats as `float`, `Bool` as `bool`, arrays as lists, `DateTime`/
  `DateTime64` as timezone-aware `datetime` (UTC unless the column names another zone),
  `Date` as `date`, anything else (String, JSON text, ...) as ClickHouse renders it in JSON.

Rows are written idempotently: every table is a ReplacingMergeTree keyed by the row's natural
id and the run's id (`run_id`, stamped by the store: `connectors.store.runs`), so a replay
after a crash writes duplicates that `FINAL` (or a merge) collapses, and two runs keep a row
each. Rows are laid out by `connectors.store.rows`; chdb's JSON is decoded by
`connectors.store.decode`.

Unqualified table names in queries resolve to the configured database (`clickhouse.database`)
once it exists, i.e. after `apply_schema()` or when it already existed at `open()`;
`store.table("bars")` gives the quoted, qualified name for SQL that must not depend on that.
Do not send `USE` yourself: the chdb session is shared by every store of the process and the
store switches its database before each statement.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from importlib.resources import files
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Protocol, Self, cast

from pydantic import BaseModel
from pydantic_core import to_json

from connectors.store.columns import (
    TABLE_BUILDERS,
    arrow_stream,
    python_columns,
    read_arrow,
)
from connectors.store.decode import decode_json_compact
from connectors.store.errors import (
    ClickHouseError,
    ClickHouseQueryError,
    ClickHouseUnavailable,
    one_line,
)
from connectors.store.model_columns import MODEL_TABLES
from connectors.store.rows import (
    DECIMAL_SCALE,
    ROW_CONVERTERS,
    TABLES,
    direct_lines,
    model_to_row,
    row_to_model,
    table_for,
)
from connectors.store.server import (
    JSON_INSERT_SETTINGS,
    ServerBackend,
    redact_url,
    server_target,
)
from models.config.settings import ClickHouseConfig
from models.core.blocks import COLUMN_TABLES, Columns
from models.core.messages import DecisionRecord

SCHEMA_PATH: Final = Path(str(files("connectors.store").joinpath("schema.sql")))
"""The one DDL file, package data of `connectors.store`: an installed wheel reads its own copy,
never a source tree's (deploy/docker-compose.yml mounts this same file into a server)."""

SCHEMA_DATABASE: Final = "stratflow"
"""The database name written in the DDL file, replaced by the configured one when applied."""

_IDENTIFIER: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
# Backends
# --------------------------------------------------------------------------------------------


class _ChdbResult(Protocol):
    def bytes(self) -> bytes: ...


class _ChdbInserter(Protocol):
    def append(self, data: bytes) -> None: ...

    def finish(self) -> object: ...

    def cancel(self) -> None: ...


class _ChdbSession(Protocol):
    def query(
        self, sql: str, fmt: str = ..., udf_path: str = ..., params: dict[str, str] | None = ...
    ) -> _ChdbResult: ...

    def send_insert(self, query: str, fmt: str = ...) -> _ChdbInserter: ...

    def close(self) -> None: ...


class _Backend(Protocol):
    kind: Literal["chdb", "clickhouse-connect"]
    where: str

    def execute(self, sql: str, params: Mapping[str, Any] | None) -> None: ...

    def query(self, sql: str, params: Mapping[str, Any] | None) -> list[dict[str, Any]]: ...

    def insert_json_each_row(self, table: str, body: str) -> None: ...

    def insert_arrow(self, table: str, data: Any) -> None: ...

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None) -> Any: ...

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


_CHDB_INSERT_SETTINGS: Final = ", ".join(
    f"{k} = {v}" for k, v in {**JSON_INSERT_SETTINGS, "input_format_parallel_parsing": 0}.items()
)
"""The embedded engine parses an insert in the flow's own process, beside the flow: its
parallel parsing (threads over chunks) costs more than it saves there (a 2,300-row insert of
decisions: ~59 -> ~34 µs a row on two cores). What is stored is the same."""


_ARROW_INSERT_SETTINGS: Final = "optimize_on_insert = 1"
"""An Arrow insert's block is merged as the table's engine merges (the default, pinned): a
`ReplacingMergeTree` keeps one row of a key, which `Store.insert` relies on to send only a
decision's newest version of a batch (`model_columns.merged_rows`)."""

_MERGED_MOST: Final = 65_536
"""The most decisions an insert leaves to `merged_rows`: far below the engine's block size
(`max_insert_block_size`, ~1M rows), so the batch is one block, merged as a whole."""


def _row_json(data: Mapping[str, Any]) -> bytes:
    """One JSONEachRow line, compact UTF-8. pydantic-core's encoder is ~5x faster than
    `json.dumps` here (a row is flat: strings, ints, Decimal text, lists of strings). A NaN or
    inf in a row is a converter's bug (they write such floats as strings): refused with
    `ValueError`, as `json.dumps(allow_nan=False)` refused it, never written as a literal."""
    for value in data.values():
        if type(value) is float and not math.isfinite(value):
            raise ValueError(f"non-finite float {value} in a row")
    return to_json(data)


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
            raise ClickHouseUnavailable(f"chdb could not open {real}: {one_line(err)}") from None
        try:
            for stmt in _CHDB_SESSION_SETTINGS:
                session.query(stmt)
        except Exception as err:
            session.close()
            raise ClickHouseUnavailable(f"chdb could not open {real}: {one_line(err)}") from None
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
                raise ClickHouseQueryError(one_line(err)) from None

    def execute(self, sql: str, params: Mapping[str, Any] | None) -> None:
        self._run(sql, "CSV", params)

    def query(self, sql: str, params: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        return decode_json_compact(self._run(sql, "JSONCompact", params))

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None) -> Any:
        return read_arrow(self._run(sql, "Arrow", params))

    def insert_json_each_row(self, table: str, body: str) -> None:
        self._run(
            f"INSERT INTO {table} SETTINGS {_CHDB_INSERT_SETTINGS} FORMAT JSONEachRow\n{body}",
            "CSV",
            None,
        )

    def insert_arrow(self, table: str, data: Any) -> None:
        """An Arrow table as one INSERT, streamed to the engine as `ArrowStream` bytes (no
        temporary file, no text); columns by name."""
        body = arrow_stream(data)
        columns = ", ".join(_quote_identifier(c) for c in data.column_names)
        shared = self._live()
        if not hasattr(shared.session, "send_insert"):  # a chdb without streaming inserts
            self._insert_from_file(f"INSERT INTO {table} ({columns})", body)
            return
        with shared.lock:
            inserter = None
            try:
                inserter = shared.session.send_insert(
                    f"INSERT INTO {table} ({columns}) SETTINGS {_ARROW_INSERT_SETTINGS}",
                    "ArrowStream",
                )
                inserter.append(body)
                inserter.finish()
            except RuntimeError as err:
                if inserter is not None:
                    with contextlib.suppress(RuntimeError):
                        inserter.cancel()
                raise ClickHouseQueryError(one_line(err)) from None

    def _insert_from_file(self, insert: str, body: bytes) -> None:
        """The same INSERT through a temporary file (`FROM INFILE`), for older chdb releases."""
        with tempfile.NamedTemporaryFile(prefix="stratflow-", suffix=".arrows") as f:
            f.write(body)
            f.flush()
            path = f.name.replace("\\", "\\\\").replace("'", "\\'")
            self._run(
                f"{insert} FROM INFILE '{path}' SETTINGS {_ARROW_INSERT_SETTINGS}"
                " FORMAT ArrowStream",
                "CSV",
                None,
            )

    def close(self) -> None:
        shared, self._shared = self._shared, None
        if shared is not None:
            _release_chdb(shared)


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


def _quote_identifier(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


@dataclass(frozen=True)
class PreparedInsert:
    """One table's rows as the engine is sent them: an Arrow table or JSONEachRow text (or
    nothing, for no rows). Made where the rows are (`prepare_insert`), so a process without
    the store can convert its rows and hand them to the one with it (`dataflows.placement`)."""

    table: str
    rows: int
    arrow: Any = None
    text: str | None = None


def prepare_insert(
    table: str, rows: Sequence[BaseModel | Columns], run_id: str, *, merged: bool = False
) -> PreparedInsert:
    """`rows` of `table` converted for one INSERT, every row stamped with `run_id`.
    `merged`: for embedded chdb, whose merge on insert (pinned by `_ChdbBackend.insert_arrow`)
    keeps a decision's newest version of the batch: the others are not sent.

    Rows holding a column set (`BarColumns`, `PositionColumns`) become Arrow columns
    (`connectors.store.columns`), the same values the rows they stand for would store; so do
    large enough batches of decisions, orders, fills, alerts and signals (`MODEL_TABLES`),
    else direct lines (`direct_lines`), else rows. Raises `ValueError` for a value no column
    holds, `TypeError` for a row of another table."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
    if not rows:
        return PreparedInsert(table, 0)
    kinds = set(map(type, rows))  # the rows' few types, gathered in C
    if not COLUMN_TABLES.keys().isdisjoint(kinds):  # a column set (`has_columns`)
        build = TABLE_BUILDERS.get(table)
        if build is None:
            raise TypeError(f"column sets belong in {', '.join(TABLE_BUILDERS)}, not {table!r}")
        data = build(rows, run_id)
        return PreparedInsert(table, int(data.num_rows), arrow=data)
    models = cast(Sequence[BaseModel], rows)
    kind = type(models[0])
    build_models, fewest = MODEL_TABLES.get(kind, (None, 0))
    if (
        build_models is not None
        and len(models) >= fewest
        and ROW_CONVERTERS[kind][0] == table
        and len(kinds) == 1
    ):
        if merged and kind is DecisionRecord and len(models) <= _MERGED_MOST:
            data = build_models(models, run_id, as_merged=True)
        else:
            data = build_models(models, run_id)
        if data is not None:  # else lines, which refuse what the rows refuse
            return PreparedInsert(table, len(models), arrow=data)
    if (text := direct_lines(table, models, run_id)) is not None:
        return PreparedInsert(table, len(models), text=text)
    lines: list[bytes] = []
    for row in models:
        row_table, data = model_to_row(row)
        if row_table != table:
            raise TypeError(f"{type(row).__name__} belongs in {row_table!r}, not {table!r}")
        data["run_id"] = run_id
        lines.append(_row_json(data))
    return PreparedInsert(table, len(lines), text=b"\n".join(lines).decode() + "\n")


def prepare_inserts(
    rows: Iterable[BaseModel | Columns], run_id: str, *, merged: bool = False
) -> list[PreparedInsert]:
    """`Store.insert_models`'s INSERTs, one per table, prepared (`prepare_insert`)."""
    return [prepare_insert(t, batch, run_id, merged=merged) for t, batch in _by_table(rows).items()]


def _by_table(rows: Iterable[BaseModel | Columns]) -> dict[str, list[BaseModel | Columns]]:
    by_table: dict[str, list[BaseModel | Columns]] = {}
    for row in rows:
        table = COLUMN_TABLES.get(type(row)) or table_for(cast(BaseModel, row))
        by_table.setdefault(table, []).append(row)
    return by_table


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
        """Stamped on every row this store writes (see `connectors.store.runs`)."""
        self._kind = backend.kind
        self._where = backend.where

    @classmethod
    def open(cls, cfg: ClickHouseConfig, *, run_id: str = "") -> Store:
        """chdb on `cfg.path` when `cfg.url` is empty, else the server (or `chdb:` DSN) at `url`;
        rows it writes carry `run_id`."""
        dsn, database = server_target(cfg.url, cfg.database) if cfg.url else ("", cfg.database)
        if not _IDENTIFIER.match(database):
            raise ValueError(f"database name {database!r} must match {_IDENTIFIER.pattern}")
        backend: _Backend = ServerBackend(dsn) if dsn else _ChdbBackend(cfg.path)
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
        `run_id` column, one from before a later column that column); safe to run on every
        start."""
        from connectors.store.runs import add_new_columns, add_run_column

        backend = self._live()
        for stmt in schema_statements(self._database, schema_sql):
            backend.execute(stmt, None)
        backend.use_database(self._database)
        add_run_column(self, TABLES)
        if schema_sql is None:  # the shipped schema: its later columns
            add_new_columns(self)

    def delete_run(self, run_id: str) -> None:
        """Delete every row `run_id` wrote, in every table."""
        from connectors.store.runs import delete_run

        delete_run(self, run_id, TABLES)

    def insert(self, table: str, rows: Sequence[BaseModel | Columns]) -> int:
        """Write `rows` to `table` in one INSERT; returns how many rows were sent.

        Every row is converted before anything is sent (`prepare_insert`), so a bad value (a
        decimal too large, a model of another table) fails the whole batch and writes nothing.
        """
        merged = self._kind == "chdb"  # the engine's merge on insert, pinned there
        return self.insert_prepared(prepare_insert(table, rows, self.run_id, merged=merged))

    def insert_prepared(self, prepared: PreparedInsert) -> int:
        """Send one INSERT made by `prepare_insert` (perhaps in another process); returns its
        rows."""
        if prepared.arrow is not None:
            if prepared.rows:
                self._live().insert_arrow(self.table(prepared.table), prepared.arrow)
        elif prepared.text is not None:
            self._live().insert_json_each_row(self.table(prepared.table), prepared.text)
        return prepared.rows

    def insert_rows(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """Write plain JSON-ready rows to a table outside the message tables (a ledger such as
        `trials`: connectors.store.trials) in one INSERT; the caller stamps `run_id`."""
        if not rows:
            return 0
        body = b"\n".join(_row_json(row) for row in rows).decode() + "\n"
        self._live().insert_json_each_row(self.table(table), body)
        return len(rows)

    def insert_models(self, rows: Iterable[BaseModel | Columns]) -> dict[str, int]:
        """Write mixed models and column sets, one INSERT per table; returns rows written per
        table (a column set counts its rows)."""
        return {t: self.insert(t, batch) for t, batch in _by_table(rows).items()}

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Rows of a SELECT as dicts; bind values with `{name:Type}` placeholders and `params`.

        Decimal columns come back as `Decimal` at the column's scale on both backends.
        """
        return self._live().query(sql, params)

    def query_columns(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> dict[str, list[Any]]:
        """A SELECT's answer as columns: name -> the column's values, of the types `query`
        gives (`Decimal` at the column's scale, int, str, ...), read as Arrow: no dict per row,
        for reading many rows back (a run's bars). A column of a type Arrow cannot carry is an
        error; use `query` for those."""
        return python_columns(self._live().query_arrow(sql, params))

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
    "PreparedInsert",
    "Store",
    "decode_json_compact",
    "model_to_row",
    "prepare_insert",
    "prepare_inserts",
    "redact_url",
    "row_to_model",
    "schema_statements",
    "split_sql",
    "table_for",
]
