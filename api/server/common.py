"""What the read routes share: which run they read, rows made JSON-safe, page cursors, and the
422 body FastAPI itself gives (so a client reads one error shape, whoever refused).

Every row of the decision log carries its run's id. The API reads one run: the one it is
served from (`stratflow run --api`), else the `run` a request names, else the newest run in
the log (run ids start with their UTC start time, so the greatest is the newest).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Final

from fastapi import HTTPException, Query

from api.server.context import ApiContext

if TYPE_CHECKING:
    from connectors.store.clickhouse import Store

__all__ = [
    "RunQuery",
    "decode_cursor",
    "encode_cursor",
    "invalid",
    "json_field",
    "plain",
    "resolve_run",
]

RUN_PATTERN: Final = r"^[A-Za-z0-9._:-]{1,64}$"

RunQuery = Annotated[
    str | None,
    Query(
        pattern=RUN_PATTERN,
        description="Run id (default: the run serving the API, else the newest in the log)",
    ),
]


def invalid(where: Sequence[str], message: str, status: int = 422) -> HTTPException:
    """A 422 shaped like FastAPI's own: `{"detail": [{"loc", "msg", "type"}]}`."""
    return HTTPException(
        status_code=status,
        detail=[{"loc": list(where), "msg": message, "type": "value_error"}],
    )


def plain(value: Any) -> Any:
    """A value from the store as JSON: Decimal as its exact text, times as ISO-8601."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def json_field(text: Any) -> Any:
    """A JSON-text column (a decision's rounds, features, ...) parsed; kept as text if not."""
    if not isinstance(text, str):
        return plain(text)
    try:
        return json.loads(text)
    except ValueError:
        return text


def resolve_run(store: Store, ctx: ApiContext, run: str | None) -> str:
    """The run a read is about (see the module's docstring); "" when the log has none."""
    if run:
        return run
    if ctx.run is not None:
        return ctx.run.run_id
    rows = store.query("SELECT max(run_id) AS run FROM bars")
    return str(rows[0]["run"]) if rows and rows[0]["run"] else ""


def encode_cursor(ts_ms: int, key: str) -> str:
    """The opaque cursor of the next page: after the row at (`ts_ms`, `key`)."""
    raw = json.dumps([ts_ms, key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """(`ts_ms`, `key`) of a cursor from `encode_cursor`; a 422 for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts_ms, key = json.loads(raw)
    except (ValueError, TypeError, binascii.Error):
        raise invalid(("query", "cursor"), "not a cursor of this API") from None
    if type(ts_ms) is not int or not isinstance(key, str) or not -(2**62) < ts_ms < 2**62:
        raise invalid(("query", "cursor"), "not a cursor of this API")
    return ts_ms, key
