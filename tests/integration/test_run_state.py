"""Who a run is and what it may resume (dataflows/run.py `open_run_state`), and its rows.

Recovery state written under settings that change results must not be resumed (it printed the
old run's results as the new one's); settings that do not change results (paths, connections,
alerting) leave it valid. A resumed run keeps its run id; `fresh` discards the state and names
the run whose rows the caller deletes. Every row a store writes carries its run id, and a
summary of one run reads only that run's rows.
"""

from __future__ import annotations

import json
import re
import signal
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from api.exchange_run import order_kind
from api.report import summarize
from connectors.store.clickhouse import SCHEMA_PATH, TABLES, Store
from connectors.store.rows import table_for
from dataflows.lanes import count_row
from dataflows.progress import FlowCounters
from dataflows.run import (
    MANIFEST,
    STATE_FORMAT,
    ConfigChanged,
    RecoveryMismatch,
    new_run_id,
    open_run_state,
    stop_message,
)
from models.config.settings import ClickHouseConfig, Settings, build_settings
from models.core.messages import Bar, Fill, Order, OrderStatus, PositionSnapshot, Side

BASE: dict[str, Any] = {"symbols": {"GOOG": {}}, "features": {"sma_fast": 20, "sma_slow": 50}}


def settings_for(tmp: Path, **env: str) -> Settings:
    return build_settings(
        {**BASE, "recovery": {"dir": str(tmp / "recovery")}},
        {f"STRATFLOW__{k}": v for k, v in env.items()},
    )


# Result-changing overrides, one per section that decides what a run does.
RESULT_CHANGES = {
    "FEATURES__SMA_FAST": ("5", "features.sma_fast 20 -> 5"),
    "FEATURES__SMA_SLOW": ("60", "features.sma_slow 50 -> 60"),
    "BARS__INTERVAL": ("5m", "bars.interval 1m -> 5m"),
    "RISK__MAX_ORDER_NOTIONAL": ("1000", "risk.max_order_notional 25000 -> 1000"),
    "EXECUTION__FEE_BPS": ("3", "execution.fee_bps 10 -> 3"),
    "STRATEGY__CONTROLLER": ("local", "strategy.controller gpt -> local"),
    "GPT__MODEL": ("other-model", "gpt.model gpt-4o-mini -> other-model"),
    "SYMBOLS__GOOG__LOT_SIZE": ("10", "symbols.GOOG.lot_size 1 -> 10"),
    "SYMBOLS__EURUSD": ("{}", "symbols.EURUSD added"),
}
# Overrides that change where things go or how often state is saved, not what a run decides.
NEUTRAL_CHANGES = {
    "CLICKHOUSE__PATH": "elsewhere/clickhouse",
    "CLICKHOUSE__DATABASE": "other",
    "KAFKA__BOOTSTRAP": "127.0.0.1:1",
    "RECOVERY__SNAPSHOT_INTERVAL": "10s",
    "GPT__CACHE_DIR": "elsewhere/answers",
    "GPT__MAX_CONCURRENCY": "9",
    "STORAGE__TICKS": "true",
}


def test_a_new_state_gets_a_run_id_and_a_readable_manifest(tmp_path: Path) -> None:
    state = open_run_state(settings_for(tmp_path))
    assert not state.resumed and state.recovery is not None
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", state.run_id)
    manifest = json.loads((tmp_path / "recovery" / MANIFEST).read_text())
    assert manifest["run_id"] == state.run_id
    assert manifest["settings"]["features"]["sma_fast"] == 20
    assert "clickhouse" not in manifest["settings"] and "recovery" not in manifest["settings"]


def test_the_same_settings_resume_with_the_same_run_id(tmp_path: Path) -> None:
    first = open_run_state(settings_for(tmp_path))
    again = open_run_state(settings_for(tmp_path))
    assert again.resumed and again.run_id == first.run_id


@pytest.mark.parametrize("name", sorted(RESULT_CHANGES))
def test_a_result_changing_setting_refuses_to_resume_and_names_the_change(
    tmp_path: Path, name: str
) -> None:
    open_run_state(settings_for(tmp_path))
    value, change = RESULT_CHANGES[name]
    with pytest.raises(ConfigChanged) as info:
        open_run_state(settings_for(tmp_path, **{name: value}))
    message = str(info.value)
    assert "\n" not in message
    assert f"the configuration changed since {tmp_path / 'recovery'} was written" in message
    assert change in message
    assert "--fresh" in message


@pytest.mark.parametrize("name", sorted(NEUTRAL_CHANGES))
def test_a_setting_that_does_not_change_results_resumes(tmp_path: Path, name: str) -> None:
    first = open_run_state(settings_for(tmp_path))
    again = open_run_state(settings_for(tmp_path, **{name: NEUTRAL_CHANGES[name]}))
    assert again.resumed and again.run_id == first.run_id


def test_fresh_discards_the_state_and_names_the_old_run(tmp_path: Path) -> None:
    first = open_run_state(settings_for(tmp_path))
    changed = settings_for(tmp_path, FEATURES__SMA_FAST="5", FEATURES__SMA_SLOW="10")
    fresh = open_run_state(changed, fresh=True)
    assert not fresh.resumed and fresh.discarded_run_id == first.run_id
    assert fresh.run_id != first.run_id
    assert open_run_state(changed).run_id == fresh.run_id  # and the new state resumes


def test_a_manifest_from_before_settings_were_recorded_is_refused(tmp_path: Path) -> None:
    open_run_state(settings_for(tmp_path))
    (tmp_path / "recovery" / MANIFEST).write_text(json.dumps({"inputs": ["a", "b", "c"]}))
    with pytest.raises(RecoveryMismatch, match="--fresh"):
        open_run_state(settings_for(tmp_path))


@pytest.mark.parametrize("written", [None, 1, 99])
def test_state_of_another_release_is_refused_and_fresh_gets_past_it(
    tmp_path: Path, written: int | None
) -> None:
    """Snapshots pickle our classes: one written before the stage layout (no format in its
    manifest) or by a later release cannot be resumed, and the user is told so, not Bytewax."""
    first = open_run_state(settings_for(tmp_path))
    path = tmp_path / "recovery" / MANIFEST
    manifest = json.loads(path.read_text())
    assert manifest["state_format"] == STATE_FORMAT
    manifest.pop("state_format")
    if written is not None:
        manifest["state_format"] = written
    path.write_text(json.dumps(manifest))
    with pytest.raises(RecoveryMismatch, match=r"another stratflow release.*--fresh") as info:
        open_run_state(settings_for(tmp_path))
    assert "\n" not in str(info.value)
    fresh = open_run_state(settings_for(tmp_path), fresh=True)
    assert not fresh.resumed and fresh.discarded_run_id == first.run_id


@pytest.mark.parametrize("text", ["{not json", '{"inputs": 5}', "[]"])
def test_an_unreadable_manifest_is_refused_and_fresh_gets_past_it(
    tmp_path: Path, text: str
) -> None:
    open_run_state(settings_for(tmp_path))
    (tmp_path / "recovery" / MANIFEST).write_text(text)
    with pytest.raises(RecoveryMismatch, match=r"unreadable.*--fresh"):
        open_run_state(settings_for(tmp_path))
    fresh = open_run_state(settings_for(tmp_path), fresh=True)
    assert not fresh.resumed and fresh.discarded_run_id is None


def test_fresh_gets_past_other_input_topics(tmp_path: Path) -> None:
    first = open_run_state(settings_for(tmp_path))
    other = settings_for(tmp_path, KAFKA__TOPICS__MARKET="other.market")
    with pytest.raises(RecoveryMismatch, match="was written for topics"):
        open_run_state(other)
    assert open_run_state(other, fresh=True).discarded_run_id == first.run_id


def test_many_changes_are_cut_to_three(tmp_path: Path) -> None:
    open_run_state(settings_for(tmp_path))
    env = {"RISK__MIN_CASH": "1", "RISK__MAX_FEE_PER_ORDER": "2", "EXECUTION__FEE_BPS": "3"}
    with pytest.raises(ConfigChanged) as info:
        open_run_state(settings_for(tmp_path, **env, BARS__INTERVAL="2m"))
    assert "bars.interval 1m -> 2m, execution.fee_bps 10 -> 3, risk.max_fee_per_order" in str(
        info.value
    )
    assert "and 1 more" in str(info.value)


def test_run_ids_differ() -> None:
    assert len({new_run_id() for _ in range(50)}) == 50


# ------------------------------------------------------------------------------ rows of a run


def bar(start_ms: int, close: str) -> Bar:
    price = Decimal(close)
    return Bar(
        symbol="GOOG",
        start_ms=start_ms,
        end_ms=start_ms + 60_000,
        open=price,
        high=price,
        low=price,
        close=price,
        volume=Decimal(1),
        trades=1,
        vwap=price,
    )


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


# ------------------------------------------------------------------------------ trading runs


@pytest.mark.parametrize(
    ("paper", "sandbox", "kind"),
    [
        (True, False, "paper orders on the local emulator"),
        (False, True, "sandbox (test network) orders"),
        (False, False, "real orders"),
    ],
)
def test_only_a_real_exchange_run_says_real_orders(paper: bool, sandbox: bool, kind: str) -> None:
    assert order_kind(paper, sandbox) == kind
    assert ("real orders" in order_kind(paper, sandbox)) == (not paper and not sandbox)


def _order(n: int, status: OrderStatus, version: int = 1) -> Order:
    return Order(
        client_order_id=f"o{n}",
        decision_id=f"d{n}",
        symbol="BTC/USDT",
        side=Side.BUY,
        quantity=Decimal("0.1"),
        status=status,
        placed_ms=n,
        updated_ms=n,
        version=version,
    )


def _fill(n: int) -> Fill:
    return Fill(
        fill_id=f"f{n}",
        client_order_id=f"o{n}",
        decision_id=f"d{n}",
        symbol="BTC/USDT",
        side=Side.BUY,
        quantity=Decimal("0.1"),
        price=Decimal(100),
        fee=Decimal("0.01"),
        ts_ms=n,
    )


def _snapshot(symbol: str, realized: str, unrealized: str, ts: int = 0) -> PositionSnapshot:
    return PositionSnapshot(
        ts_ms=ts,
        symbol=symbol,
        quantity=Decimal(1),
        avg_cost=Decimal(1),
        mark_price=Decimal(1),
        realized_pnl=Decimal(realized),
        unrealized_pnl=Decimal(unrealized),
        cash=Decimal(0),
        equity=Decimal(0),
    )


def test_a_stopped_trading_run_says_its_orders_fills_and_pnl() -> None:
    counters = FlowCounters(trading="paper orders on the local emulator", currency="USDT")
    counters.run_id = "20260101T000000Z-abcdef"
    records: list[object] = [
        _order(1, OrderStatus.PENDING),
        _order(1, OrderStatus.FILLED, version=2),  # the same order again: counted once
        _order(2, OrderStatus.PENDING),
        _order(3, OrderStatus.REJECTED),  # never placed
        _fill(1),
        _fill(1),  # a replayed fill: counted once
        _fill(2),
        _snapshot("BTC/USDT", "1.50", "2.00"),
        _snapshot("BTC/USDT", "-3.00", "0.25", ts=1),  # the latest per symbol counts
        _snapshot("ETH/USDT", "10", "-0.5"),
    ]
    for item in records:
        count_row(counters, (table_for(item), item))
    message = stop_message(signal.SIGINT, counters, "next")
    first, second = message.splitlines()
    assert first.startswith("stratflow: SIGINT, stopped after ")
    assert second == (
        "stratflow: paper orders on the local emulator: 2 orders placed, 2 fills, "
        "P&L +6.75 USDT (run 20260101T000000Z-abcdef)"
    )


def test_a_run_that_does_not_trade_has_no_trading_line() -> None:
    counters = FlowCounters()
    order = _order(1, OrderStatus.PENDING)
    count_row(counters, (table_for(order), order))
    assert counters.trading_line() is None
    assert len(stop_message(signal.SIGTERM, counters, "next").splitlines()) == 1


def test_state_resumes_only_on_as_many_processes_as_wrote_it(tmp_path: Path) -> None:
    """A cluster's keyed steps are pinned to their processes (dataflows/placement.py), so
    state written on 2 processes has keys a run on 1 (or 3) would not find: refused, with the
    way out; a manifest from before the option counts as 1 process."""
    s = settings_for(tmp_path)
    first = open_run_state(s, processes=2)
    assert json.loads((tmp_path / "recovery" / MANIFEST).read_text())["processes"] == 2
    for other in (1, 3):
        with pytest.raises(RecoveryMismatch, match=r"on 2 processes: resume it with --processes 2"):
            open_run_state(s, processes=other)
    again = open_run_state(s, processes=2)
    assert again.resumed and again.run_id == first.run_id and again.processes == 2
    manifest = tmp_path / "recovery" / MANIFEST
    doc = json.loads(manifest.read_text())
    del doc["processes"]  # written before the option
    manifest.write_text(json.dumps(doc))
    assert open_run_state(s).resumed
    fresh = open_run_state(s, fresh=True, processes=2)
    assert not fresh.resumed and fresh.discarded_run_id == first.run_id
