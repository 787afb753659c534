"""The store's server backend: a ClickHouse server (or a `chdb:` DSN) through clickhouse-connect.

Same statements, parameters and Python types as the embedded chdb backend
(`connectors.store.clickhouse`); rows go as JSONEachRow text, column sets as Arrow tables
(`insert_arrow`), column reads come back as Arrow (`query_arrow`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, Final, Literal
from urllib.parse import urlsplit, urlunsplit

from connectors.store.errors import (
    ClickHouseError,
    ClickHouseQueryError,
    ClickHouseUnavailable,
    one_line,
)

# clickhouse-connect logs a traceback of its own before raising; our errors already say it all.
logging.getLogger("clickhouse_connect").addHandler(logging.NullHandler())
logging.getLogger("clickhouse_connect").propagate = False


# Refuse JSON keys the table lacks: a converter typo must fail loudly, not drop a field.
INSERT_SETTINGS: Final = {"input_format_skip_unknown_fields": 0}

# A JSON object or array given for a String column is stored as its text, byte for byte (the
# direct lines of `connectors.store.rows` send a decision's nested parts so): the defaults of
# recent releases, set here so an older server's default cannot change what is stored.
JSON_INSERT_SETTINGS: Final = {
    **INSERT_SETTINGS,
    "input_format_json_read_objects_as_strings": 1,
    "input_format_json_read_arrays_as_strings": 1,
}


def redact_url(url: str) -> str:
    """The URL without user and password, for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _short_reason(err: BaseException) -> str:
    text = str(err)
    m = re.search(r"\[Errno -?\d+\] ([^\"')]+)", text)
    return m.group(1).strip() if m else one_line(text, 200)


def server_target(url: str, database: str) -> tuple[str, str]:
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


class ServerBackend:
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
                f"ClickHouse at {self.where} cannot be used: {one_line(err)}"
            ) from None

    def _fail(self, err: Exception) -> ClickHouseError:
        from clickhouse_connect.driver.exceptions import OperationalError

        if isinstance(err, OperationalError) and "Code:" not in str(err):
            return ClickHouseUnavailable(
                f"ClickHouse at {self.where} is unreachable: {_short_reason(err)}"
            )
        return ClickHouseQueryError(one_line(err))

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

    def query_arrow(self, sql: str, params: Mapping[str, Any] | None) -> Any:
        try:
            return self._client.query_arrow(
                sql, parameters=dict(params) if params else None, use_strings=True
            )
        except self._errors as err:
            raise self._fail(err) from None

    def insert_json_each_row(self, table: str, body: str) -> None:
        try:
            self._client.raw_insert(
                table,
                insert_block=body.encode("utf-8"),
                fmt="JSONEachRow",
                settings=dict(JSON_INSERT_SETTINGS),
            )
        except self._errors as err:
            raise self._fail(err) from None

    def insert_arrow(self, table: str, data: Any) -> None:
        """An Arrow table as one INSERT (clickhouse-connect sends it in Arrow format)."""
        try:
            self._client.insert_arrow(table, data, settings=dict(INSERT_SETTINGS))
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
