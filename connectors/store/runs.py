"""Runs in the decision log: every row carries the id of the run that wrote it.

A run (`stratflow run`, a demo, a paper session) stamps its `run_id` on every row it writes, and
the id is the last part of every table's sorting key, so two runs that reach the same decision
keep a row each instead of replacing one another, while a resumed run (same id, from the
recovery manifest) still lands on its own rows. Reports read one run's rows; `--fresh` deletes
the rows of the run it discards.

Stores made before run ids existed get the column (empty for their old rows) and the longer
sorting key on their next `apply_schema()`: ClickHouse allows appending a newly added column
to the sorting key in the same ALTER.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from connectors.store.clickhouse import Store

RUN_COLUMN: Final = "run_id"


def add_run_column(store: Store, tables: tuple[str, ...]) -> list[str]:
    """Give `tables` that lack it the run column, appended to their sorting key; returns the
    tables changed (none on a store created from the current DDL)."""
    keys = {
        str(r["name"]): str(r["sorting_key"]).strip()
        for r in store.query(
            "SELECT name, sorting_key FROM system.tables WHERE database = {db:String}",
            {"db": store.database},
        )
    }
    stamped = {
        str(r["table"])
        for r in store.query(
            "SELECT table FROM system.columns WHERE database = {db:String} AND name = {col:String}",
            {"db": store.database, "col": RUN_COLUMN},
        )
    }
    changed: list[str] = []
    for table in tables:
        if table not in keys or table in stamped:
            continue
        key = keys[table]
        store.execute(
            f"ALTER TABLE {store.table(table)} ADD COLUMN {RUN_COLUMN} String, "
            f"MODIFY ORDER BY ({key + ', ' if key else ''}{RUN_COLUMN})"
        )
        changed.append(table)
    return changed


ADDED_COLUMNS: Final = (("orders", "size_fraction", "Nullable(Decimal(38, 12))", "version"),)
"""Columns added to a table after stores were made with it: (table, column, type, after)."""


def add_new_columns(store: Store) -> None:
    """Give a store made before a column of `ADDED_COLUMNS` existed that column, where the
    current DDL has it (its old rows read NULL, which decodes to the message's default)."""
    for table, column, kind, after in ADDED_COLUMNS:
        store.execute(
            f"ALTER TABLE {store.table(table)} ADD COLUMN IF NOT EXISTS "
            f"{column} {kind} AFTER {after}"
        )


def delete_run(store: Store, run_id: str, tables: tuple[str, ...]) -> None:
    """Remove every row `run_id` wrote (a run discarded by `run --fresh`)."""
    for table in tables:
        store.execute(
            f"DELETE FROM {store.table(table)} WHERE {RUN_COLUMN} = {{run:String}}",
            {"run": run_id},
        )
