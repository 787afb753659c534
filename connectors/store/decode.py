"""chdb result decoding: JSONCompact text -> the Python types clickhouse-connect would return.

`decode_json_compact(raw)` turns chdb's JSONCompact output into row dicts typed by each column's
ClickHouse type: `Decimal` columns as exact `decimal.Decimal`, integers as `int`, floats as
`float` (quoted NaN/inf included), `Bool` as `bool`, arrays as lists, `DateTime`/`DateTime64`
as aware `datetime` (UTC unless the column names another zone), `Date` as `date`, `Nullable`
as None, anything else as ClickHouse renders it in JSON. So both backends of the store return
the same Python values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, tzinfo
from decimal import ROUND_HALF_EVEN, Context, Decimal
from functools import lru_cache
from typing import Any, Final
from zoneinfo import ZoneInfo

# Wide enough that quantizing a 38-digit value never trips the 28-digit default precision.
_DECIMAL_CTX: Final = Context(prec=100, rounding=ROUND_HALF_EVEN)

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
