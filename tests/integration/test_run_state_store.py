"""The rows of a run in the decision log (chdb): every row a store writes carries its run id,
the run column ends every table's sorting key, a store from before run ids gets the column, and
a summary of one run reads only that run's rows."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

from api.report import summarize
from connectors.store.clickhouse import SCHEMA_PATH, TABLES, Store
from models.config.settings import ClickHouseConfig
from models.core.messages import Bar
from tests.support import builders as build


def bar(start_ms: int, close: str) -> Bar:
    return build.bar("GOOG", start_ms, close)


def test_every_row_carries_its_run_and_a_summary_reads_one_run(tmp_path: Path) -> None:
    cfg = ClickHouseConfig(path=str(tmp_path / "ch"))
    with Store.open(cfg, run_id="run-a") as a:
        a.apply_schema()
        a.insert("bars", [bar(0, "10"), bar(60_000, "11")])
        with Store.open(cfg, run_id="run-b") as b:
            b.insert("bars", [bar(0, "20")])  # the same bar id: a row of its own
        rows = a.query("SELECT run_id, close FROM bars FINAL ORDER BY run_id, start_ms")
        assert [(r["run_id"], r["close"]) for r in rows] == [
            ("run-a", Decimal(10)),
            ("run-a", Decimal(11)),
            ("run-b", Decimal(20)),
        ]
        assert summarize(a, "run-a").counts["bars"] == 2
        assert summarize(a, "run-b").counts["bars"] == 1
        assert summarize(a).counts["bars"] == 3
        a.delete_run("run-a")
        assert summarize(a).counts["bars"] == 1


def test_every_table_has_the_run_column_last_in_its_sorting_key(tmp_path: Path) -> None:
    with Store.open(ClickHouseConfig(path=str(tmp_path / "ch"))) as store:
        store.apply_schema()
        keys = store.query(
            "SELECT name, sorting_key FROM system.tables WHERE database = {db:String}",
            {"db": store.database},
        )
    assert {r["name"] for r in keys} >= set(TABLES)
    for r in keys:
        assert str(r["sorting_key"]).endswith("run_id"), r


def test_a_store_from_before_run_ids_gets_the_column(tmp_path: Path) -> None:
    old_ddl = re.sub(r"\n\s+run_id String,", "", SCHEMA_PATH.read_text())
    old_ddl = old_ddl.replace(", run_id)", ")")
    cfg = ClickHouseConfig(path=str(tmp_path / "ch"))
    with Store.open(cfg) as store:
        store.apply_schema(old_ddl.replace("run_id", "run_x"))  # as it was (no run column)
        store.execute(
            f"INSERT INTO {store.table('bars')} (symbol, start_ms, end_ms, open, high, low, "
            "close, volume, trades, vwap) VALUES ('GOOG', 0, 60000, 1, 1, 1, 1, 1, 1, 1)"
        )
        store.apply_schema()  # the current DDL: adds the column and extends the keys
        (row,) = store.query("SELECT run_id, close FROM bars FINAL")
        assert row == {"run_id": "", "close": Decimal(1)}
        (key,) = store.query(
            "SELECT sorting_key FROM system.tables WHERE database = {db:String} AND name = 'bars'",
            {"db": store.database},
        )
        assert key["sorting_key"] == "symbol, start_ms, run_id"
