"""The ClickHouse sink survives a row it cannot store: the row becomes a critical alert."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from connectors.store.clickhouse import Store
from connectors.store.sink import ClickHouseSink, NotifierSink
from models.config.settings import ClickHouseConfig
from models.core.blocks import BarColumns, PositionColumns
from models.core.messages import Bar
from tests.support import builders as build


def bar(start: int, close: str) -> Bar:
    return build.bar("ABC", start, close)


def test_unwritable_row_is_replaced_by_an_alert_and_the_rest_is_written(tmp_path: Path) -> None:
    cfg = ClickHouseConfig(path=str(tmp_path / "ch"))
    sink = ClickHouseSink(cfg)
    part = sink.build_part("clickhouse", sink.list_parts()[0], None)
    try:
        huge = "1" + "0" * 30  # 31 integer digits: beyond Decimal(38, 12)
        part.write_batch([[bar(0, "10"), bar(60_000, huge), bar(120_000, "11")]])
    finally:
        part.close()
    # The partition released the directory: another one can be opened in this process.
    with Store.open(ClickHouseConfig(path=str(tmp_path / "other"))):
        pass
    with Store.open(cfg) as store:
        starts = [r["start_ms"] for r in store.query("SELECT start_ms FROM bars FINAL ORDER BY 1")]
        alerts = store.query("SELECT severity, source, message FROM alerts FINAL")
    assert starts == [0, 120_000]
    assert len(alerts) == 1 and alerts[0]["severity"] == "critical"
    assert alerts[0]["source"] == "clickhouse_sink" and "Bar not written" in alerts[0]["message"]


def _positions(symbol: str, unrealized: str) -> PositionColumns:
    return PositionColumns(
        symbol,
        Decimal(1),
        Decimal(1),
        Decimal(0),
        Decimal(0),
        [60_000, 120_000],
        [Decimal(1), Decimal(2)],
        [Decimal(0), Decimal(unrealized)],
        [Decimal(1), Decimal(2)],
    )


def test_columns_go_columnar_and_an_unwritable_value_in_them_becomes_an_alert(
    tmp_path: Path,
) -> None:
    cfg = ClickHouseConfig(path=str(tmp_path / "ch"))
    sink = ClickHouseSink(cfg, run_id="sink")
    part = sink.build_part("clickhouse", sink.list_parts()[0], None)
    bars = BarColumns.of_bars([bar(0, "10"), bar(60_000, "11")])
    try:
        part.write_batch([[bars], [_positions("OK", "3")]])
        part.write_batch([[_positions("ABC", "1e26"), _positions("XYZ", "-2.5")]])
        written = dict(part.written)
    finally:
        part.close()
    with Store.open(cfg) as store:
        starts = [r["start_ms"] for r in store.query("SELECT start_ms FROM bars FINAL ORDER BY 1")]
        rows = store.query("SELECT symbol, ts_ms FROM positions FINAL ORDER BY symbol, ts_ms")
        alerts = store.query("SELECT source, message FROM alerts FINAL")
    assert starts == [0, 60_000]
    assert [(r["symbol"], r["ts_ms"]) for r in rows] == [
        ("ABC", 60_000),
        ("OK", 60_000),
        ("OK", 120_000),
        ("XYZ", 60_000),
        ("XYZ", 120_000),
    ]
    assert len(alerts) == 1 and "PositionSnapshot not written" in alerts[0]["message"]
    assert written == {"bars": 2, "positions": 5, "alerts": 1}


def test_a_process_without_the_store_never_opens_it(tmp_path: Path) -> None:
    """On a cluster every process builds the sink; only the one that lists the store's
    partition may open the (embedded, one-process) store."""
    cfg = ClickHouseConfig(path=str(tmp_path / "ch"))
    elsewhere = ClickHouseSink(cfg, parts=[], part_of=lambda _key: 0)
    assert elsewhere.list_parts() == []
    with pytest.raises(RuntimeError, match="without it"):
        elsewhere.build_part("clickhouse", "store-000", None)
    assert not (tmp_path / "ch").exists()
    notify = NotifierSink(None)
    assert notify.list_parts() == []
    with pytest.raises(RuntimeError, match="without it"):
        notify.build_part("notify", "notify", None)
