"""The store's errors: one line each, meant for a user (the CLI prints them as they are)."""

from __future__ import annotations


class ClickHouseError(RuntimeError):
    """Base of the store's errors; the message is one line meant for a user, not a traceback."""


class ClickHouseUnavailable(ClickHouseError):
    """The store cannot be opened or reached: a locked or unusable chdb directory, no server."""


class ClickHouseQueryError(ClickHouseError):
    """ClickHouse rejected a statement (bad SQL, unknown table, a value out of range, ...)."""


def one_line(text: object, limit: int = 300) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    line = lines[0] if lines else type(text).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."
