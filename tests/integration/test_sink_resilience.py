"""The ClickHouse sink survives a row it cannot store: the row becomes a critical alert."""

from __future__ import annotations

from pathlib import Path

from connectors.store.clickhouse import Store
from connectors.store.sink import ClickHouseSink
from models.config.settings import ClickHouseConfig
from models.core.messages import Bar
from tests.support import builders as build


def bar(start: int, close: str) -> Bar:
    return build.bar("ABC", start, close)


def test_unwritable_row_is_replaced_by_an_alert_and_the_rest_is_written(tmp_path: Path) -> None:
    cfg = ClickHouseConfig(path=str(tmp_path / "ch"))
    part = ClickHouseSink(cfg).build("clickhouse", 0, 1)
    try:
        huge = "1" + "0" * 30  # 31 integer digits: beyond Decimal(38, 12)
        part.write_batch([("bars", [bar(0, "10"), bar(60_000, huge), bar(120_000, "11")])])
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
