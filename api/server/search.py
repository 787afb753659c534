"""Searching the decision log: decisions, orders and fills of one run, newest first, filtered by
symbol, time range (epoch ms, start inclusive, end exclusive), status (or side) and paged by an
opaque cursor (`api.server.common.encode_cursor`: the last row's time and id), so a page
never repeats or skips a row while the run goes on writing newer ones.

Every table is read `FINAL` (the newest version of each row: an order's status after its
fill). Column names come from `SEARCHES` only; every value a request gives is a bound
parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from api.server.common import decode_cursor, encode_cursor, plain

if TYPE_CHECKING:
    from connectors.store.clickhouse import Store

__all__ = ["SEARCHES", "Filters", "Searchable", "search"]

MAX_LIMIT: Final = 500


@dataclass(frozen=True)
class Searchable:
    """One searchable table: its id and time columns, what a result row shows, and the column
    `status` filters (empty: none)."""

    table: str
    key: str
    time: str
    columns: tuple[str, ...]
    status: str = ""


SEARCHES: Final[dict[str, Searchable]] = {
    "decisions": Searchable(
        "decisions",
        "decision_id",
        "ts_ms",
        (
            "decision_id",
            "ts_ms",
            "symbol",
            "branch",
            "status",
            "trigger_names",
            "n_rounds",
            "n_orders",
            "n_fills",
            "note",
            "version",
        ),
        status="status",
    ),
    "orders": Searchable(
        "orders",
        "client_order_id",
        "placed_ms",
        (
            "client_order_id",
            "decision_id",
            "symbol",
            "side",
            "quantity",
            "order_type",
            "status",
            "placed_ms",
            "updated_ms",
            "reason",
            "version",
            "size_fraction",
        ),
        status="status",
    ),
    "fills": Searchable(
        "fills",
        "fill_id",
        "ts_ms",
        (
            "fill_id",
            "client_order_id",
            "decision_id",
            "symbol",
            "side",
            "quantity",
            "price",
            "fee",
            "ts_ms",
        ),
    ),
}


@dataclass(frozen=True)
class Filters:
    run_id: str
    symbol: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    status: str | None = None
    side: str | None = None
    limit: int = 50
    cursor: str | None = None


def search(store: Store, what: Searchable, f: Filters) -> tuple[list[dict[str, Any]], str | None]:
    """One page of rows (newest first) and the cursor of the next page (None: the last)."""
    where = ["run_id = {run:String}"]
    params: dict[str, Any] = {"run": f.run_id, "lim": min(max(f.limit, 1), MAX_LIMIT) + 1}
    if f.symbol is not None:
        where.append("symbol = {symbol:String}")
        params["symbol"] = f.symbol
    if f.start_ms is not None:
        where.append(f"{what.time} >= {{start:Int64}}")
        params["start"] = f.start_ms
    if f.end_ms is not None:
        where.append(f"{what.time} < {{end:Int64}}")
        params["end"] = f.end_ms
    if f.status is not None and what.status:
        where.append(f"{what.status} = {{status:String}}")
        params["status"] = f.status
    if f.side is not None and "side" in what.columns:
        where.append("side = {side:String}")
        params["side"] = f.side
    if f.cursor is not None:
        ts_ms, key = decode_cursor(f.cursor)
        where.append(f"({what.time}, {what.key}) < ({{cts:Int64}}, {{ckey:String}})")
        params["cts"], params["ckey"] = ts_ms, key
    sql = (
        f"SELECT {', '.join(what.columns)} FROM {what.table} FINAL WHERE {' AND '.join(where)} "
        f"ORDER BY {what.time} DESC, {what.key} DESC LIMIT {{lim:UInt32}}"
    )
    rows = store.query(sql, params)
    page = rows[: params["lim"] - 1]
    more = len(rows) > len(page)
    cursor = encode_cursor(int(page[-1][what.time]), str(page[-1][what.key])) if more else None
    return [plain(r) for r in page], cursor
