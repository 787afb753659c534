"""The ClickHouse store against a real chdb engine in a temporary directory.

Each behaviour is checked through both clients the store can use: chdb's session API (the
default, `clickhouse.url` empty) and clickhouse-connect, pointed at the same embedded engine with
a `chdb://` DSN, so the code path a ClickHouse server takes runs here too. A real server is only
exercised when CLICKHOUSE_URL is set.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from pydantic import BaseModel

from connectors.store.clickhouse import (
    TABLES,
    ClickHouseError,
    ClickHouseQueryError,
    ClickHouseUnavailable,
    Store,
    model_to_row,
    row_to_model,
    schema_statements,
    split_sql,
)
from models.config.settings import ClickHouseConfig
from models.control.plane import ControlAck
from models.control.states import TradingState
from models.core.messages import (
    AdjustRound,
    Alert,
    Bar,
    Branch,
    DeadLetter,
    DecisionRecord,
    DecisionStatus,
    FeatureVector,
    Fill,
    GptCall,
    GptOutcome,
    NewsItem,
    Order,
    OrderStatus,
    PositionSnapshot,
    Proposal,
    RiskCheck,
    RiskVerdict,
    Severity,
    Side,
    Signal,
    SocialPost,
    StoredTick,
    StrategyRecord,
    StrategyStatus,
    TradeIntent,
)
from tests.support import builders as build

REPO = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000_000

# Natural key of each table, to read rows back in a known order.
ORDER_BY = {
    "ticks": "symbol, ts_ms, tick_id",
    "bars": "symbol, start_ms",
    "signals": "symbol, ts_ms, trigger",
    "decisions": "decision_id",
    "orders": "client_order_id",
    "fills": "fill_id",
    "positions": "symbol, ts_ms",
    "alerts": "alert_id",
    "dead_letters": "dead_letter_id",
    "news": "kind, id",
    "gpt_calls": "call_id",
    "strategies": "activation_id",
    "control_log": "command_id",
}

# Values at the edges of Decimal(38, 12): 26 integer digits, 12 decimals, tiny, negative.
BIG = Decimal("99999999999999999999999999.999999999999")
TINY = Decimal("0.000000000001")
NEG_BIG = Decimal("-99999999999999999999999999.999999999999")  # not -BIG: 28-digit context


# --------------------------------------------------------------------------------------------
# Sample records, built with the real message models
# --------------------------------------------------------------------------------------------


def _signal(symbol: str, ts_ms: int, trigger: str) -> Signal:
    return build.signal(
        symbol,
        ts_ms,
        trigger,
        strength=0.75,
        strategic=trigger == "channel_breakout",
        detail={"fast": 101.25, "slow": 100.5, "note": 'it\'s "quoted"\nand multi-line', "x": None},
    )


def _order(decision_id: str, status: OrderStatus, updated_ms: int) -> Order:
    return build.order(
        f"{decision_id}-o1",
        decision_id,
        "AAPL",
        quantity="10.5",
        status=status,
        placed_ms=T0,
        updated_ms=updated_ms,
        reason="enter long",
        version=1 if status is OrderStatus.PENDING else 2,
    )


def _fill(decision_id: str) -> Fill:
    return build.fill(
        f"{decision_id}-f1",
        f"{decision_id}-o1",
        decision_id,
        "AAPL",
        quantity="10.5",
        price="189.123456789012",
        fee="1.985796296285",
        ts_ms=T0 + 60_000,
    )


def _decision(decision_id: str, version: int) -> DecisionRecord:
    filled = version > 1
    proposal = Proposal(
        controller="local",
        strategy="sma_cross",
        intents=[TradeIntent(symbol="AAPL", side=Side.BUY, quantity=Decimal("10.5"))],
        rationale="fast above slow",
        confidence=0.6,
    )
    verdict = RiskVerdict(
        approved=True,
        checks=[
            RiskCheck(
                name="max_order_notional",
                passed=True,
                limit=Decimal("25000"),
                value=Decimal("1985.796296285"),
            ),
        ],
        fee_estimate=Decimal("1.985796296285"),
    )
    return DecisionRecord(
        decision_id=decision_id,
        ts_ms=T0,
        symbol="AAPL",
        branch=Branch.ROUTINE,
        triggers=[_signal("AAPL", T0, "sma_cross"), _signal("AAPL", T0, "channel_breakout")],
        features=FeatureVector(
            symbol="AAPL", ts_ms=T0, close=189.9, values={"sma_fast": 189.1, "rsi": None}
        ),
        rounds=[AdjustRound(round=0, proposal=proposal, verdict=verdict)],
        status=DecisionStatus.EXECUTED,
        orders=[
            _order(
                decision_id,
                OrderStatus.FILLED if filled else OrderStatus.PENDING,
                T0 + (60_000 if filled else 0),
            )
        ],
        fills=[_fill(decision_id)] if filled else [],
        portfolio_before={"cash": "100000", "equity": "100000"},
        note="first" if not filled else "filled",
        version=version,
    )


def _strategy(activation_id: str, version: int) -> StrategyRecord:
    """An activation as written when it starts (version 1) and when it ends (version 2)."""
    ended = version > 1
    return StrategyRecord(
        activation_id=activation_id,
        strategy_id="momo-aapl",
        version=version,
        decision_id=activation_id,
        symbol="AAPL",
        universe=["AAPL", "MSFT"],
        status=StrategyStatus.REPLACED if ended else StrategyStatus.ACTIVE,
        started_ms=T0,
        ended_ms=T0 + 30 * 60_000 if ended else None,
        bars_active=30 if ended else 0,
        trades=3 if ended else 0,
        realized_pnl=Decimal("-12.345678901234") if ended else Decimal(0),
        confidence=0.72,
        rationale='momentum; it\'s "strong" -- for now 🚀',
        spec='{"id": "momo-aapl", "entry": {"all": [{"feature": "rsi", "op": ">", "value": 55}]}}',
    )


def samples() -> dict[str, list[BaseModel]]:
    """At least one record per table, with awkward decimals and strings."""
    return {
        "ticks": [
            StoredTick(symbol="AAPL", ts_ms=T0 + 5, price=BIG, size=TINY, tick_id="t-1"),
            StoredTick(
                symbol="AAPL",
                ts_ms=T0 + 5,
                price=Decimal("189.123456789012"),
                size=Decimal("3"),
                tick_id="market.ticks:0:17",
            ),
        ],
        "bars": [
            Bar(
                symbol="AAPL",
                start_ms=T0,
                end_ms=T0 + 60_000,
                open=Decimal("189.123456789012"),
                high=BIG,
                low=TINY,
                close=Decimal("189.9"),
                volume=Decimal("12345.5"),
                trades=42,
                vwap=Decimal("189.5"),
            ),
            Bar(
                symbol="BTC-USD",
                start_ms=T0,
                end_ms=T0 + 60_000,
                open=Decimal("37000"),
                high=Decimal("37100.01"),
                low=Decimal("36999.99"),
                close=Decimal("37050"),
                volume=Decimal("0.123456789012"),
                trades=7,
                vwap=Decimal("37049.5"),
            ),
        ],
        "signals": [_signal("AAPL", T0, "sma_cross"), _signal("AAPL", T0, "channel_breakout")],
        "decisions": [_decision("d-1", 1)],
        "orders": [_order("d-1", OrderStatus.PENDING, T0)],
        "fills": [_fill("d-1")],
        "positions": [
            PositionSnapshot(
                ts_ms=T0,
                symbol="AAPL",
                quantity=Decimal("-10.5"),
                avg_cost=Decimal("189.123456789012"),
                mark_price=Decimal("190"),
                realized_pnl=NEG_BIG,
                unrealized_pnl=Decimal("-9.2"),
                cash=BIG,
                equity=TINY,
            ),
        ],
        "alerts": [
            Alert(
                alert_id="a-1",
                ts_ms=T0,
                severity=Severity.WARNING,
                source="risk",
                message="daily loss near limit",
                context={"loss": "4900.5", "n": 3},
            ),
        ],
        "dead_letters": [
            DeadLetter(
                dead_letter_id="market.ticks:0:17",
                topic="market.ticks",
                partition=0,
                offset=17,
                record_ms=T0,
                reason="invalid JSON",
                payload='{"broken": \n\t"\\u0000 üñí ✓',
            ),
        ],
        "news": [
            NewsItem(
                id="n-1",
                ts=datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC),
                symbols=["AAPL"],
                headline="Apple beats",
                body="Body; with -- dashes",
                source="wire",
            ),
            SocialPost(
                id="n-1",
                ts=datetime(2023, 11, 14, 22, 13, 21, tzinfo=UTC),
                symbols=["AAPL", "MSFT"],
                text="to the moon 🚀",
                author="@someone",
            ),
        ],
        "gpt_calls": [
            GptCall(
                call_id="AAPL@1700000060000/gpt0",
                ts_ms=T0 + 60_000,
                decision_id="AAPL@1700000060000",
                symbol="AAPL",
                model="gpt-4o-mini-2024-07-18",
                prompt_hash="ab" * 32,
                prompt_tokens=1234,
                completion_tokens=321,
                latency_ms=850,
                cost=Decimal("0.0003777"),
                outcome=GptOutcome.OK,
                answer='{"action": "rebalance", "note": "it\'s \\ -- fine; 🚀"}',
            ),
            GptCall(
                call_id="AAPL@1700000060000/gpt1",
                ts_ms=T0 + 60_000,
                decision_id="AAPL@1700000060000",
                round=1,
                symbol="AAPL",
                model="my-local-llama",
                prompt_hash="cd" * 32,
                latency_ms=20_000,
                price_known=False,
                outcome=GptOutcome.TIMEOUT,
                detail="no answer within 20 s (3 attempt(s))",
            ),
        ],
        "strategies": [
            _strategy("AAPL@1700000060000", 1),
            _strategy("AAPL@1700000120000", 2).model_copy(
                update={"universe": [], "realized_pnl": NEG_BIG, "status": StrategyStatus.EXPIRED}
            ),
        ],
        "control_log": [
            ControlAck(
                command_id="cli-1",
                action="set_trading_state:paused",
                issued_by="ops 'quoted'",
                issued_ms=T0,
                applied_ms=T0 + 60_000,
                outcome="applied",
                state_before=TradingState.ACTIVE,
                state_after=TradingState.PAUSED,
            ),
            ControlAck(
                command_id="cli-2",
                action="set_trading_state:active",
                issued_by="ops",
                issued_ms=T0,
                applied_ms=T0 + 120_000,
                outcome="refused",
                state_before=TradingState.HALTED,
                state_after=TradingState.HALTED,
                reason="halted -> active is not allowed",
            ),
        ],
    }


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------


def _config(kind: str, directory: Path) -> ClickHouseConfig:
    if kind == "chdb":
        return ClickHouseConfig(path=str(directory))
    return ClickHouseConfig(url=f"chdb://{directory}")


@pytest.fixture(params=["chdb", "clickhouse-connect"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = Store.open(_config(request.param, tmp_path / "ch"))
    try:
        s.apply_schema()
        yield s
    finally:
        s.close()


def _select(store: Store, table: str, final: bool = True) -> list[dict[str, object]]:
    return store.query(
        f"SELECT * FROM {store.table(table)} {'FINAL' if final else ''} ORDER BY {ORDER_BY[table]}"
    )


def _in_key_order(table: str, rows: list[BaseModel]) -> list[BaseModel]:
    keys = [k.strip() for k in ORDER_BY[table].split(",")]
    return sorted(rows, key=lambda m: [model_to_row(m)[1][k] for k in keys])


def _count(store: Store, table: str) -> int:
    rows = store.query(f"SELECT count() AS n FROM {store.table(table)} FINAL")
    return int(rows[0]["n"])


def _run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------


def test_schema_applies_twice(store: Store) -> None:
    store.apply_schema()  # the fixture already applied it once
    rows = store.query(
        "SELECT name FROM system.tables WHERE database = {db:String} ORDER BY name",
        {"db": store.database},
    )
    # The run-scoped tables and the ledgers (not a run's rows: store.trials, store.promotions,
    # the control API's settings_changes).
    ledgers = ["promotions", "settings_changes", "trials"]
    assert sorted(r["name"] for r in rows) == sorted([*TABLES, *ledgers])


def test_schema_statements_use_the_configured_database() -> None:
    stmts = schema_statements("other_db")
    assert stmts[0] == "CREATE DATABASE IF NOT EXISTS other_db"
    assert len(stmts) == 1 + len(TABLES) + 3  # the database, the run tables, the three ledgers
    assert all("stratflow" not in s for s in stmts)
    assert all("--" not in s for s in stmts)
    with pytest.raises(ValueError, match="database name"):
        schema_statements("bad-name; DROP")


def test_split_sql_respects_quotes_and_comments() -> None:
    sql = "SELECT 'a;b -- c' AS `x;y`; -- gone; really\nSELECT 2;;"
    assert split_sql(sql) == ["SELECT 'a;b -- c' AS `x;y`", "SELECT 2"]


def test_custom_database_name(tmp_path: Path) -> None:
    with Store.open(ClickHouseConfig(path=str(tmp_path / "ch"), database="sf_test")) as s:
        s.apply_schema()
        s.insert("fills", [_fill("d-9")])
        assert s.table("fills") == "`sf_test`.`fills`"
        assert _count(s, "fills") == 1


def test_unqualified_names_use_the_configured_database(store: Store) -> None:
    store.insert("fills", [_fill("d-1")])
    assert store.query("SELECT fill_id FROM fills FINAL") == [{"fill_id": "d-1-f1"}]


def test_stores_of_one_directory_keep_their_own_database(tmp_path: Path) -> None:
    path = str(tmp_path / "ch")
    with (
        Store.open(ClickHouseConfig(path=path, database="one")) as one,
        Store.open(ClickHouseConfig(path=path, database="two")) as two,
    ):
        one.apply_schema()
        two.apply_schema()
        one.insert("fills", [_fill("d-1")])
        two.insert("fills", [_fill("d-2"), _fill("d-3")])
        for _ in range(2):  # interleaved: each statement runs in its store's database
            assert one.query("SELECT count() AS n FROM fills") == [{"n": 1}]
            assert two.query("SELECT count() AS n FROM fills") == [{"n": 2}]
    # Reopened, the database exists already: no apply_schema() needed for unqualified names.
    with Store.open(ClickHouseConfig(path=path, database="two")) as again:
        assert again.query("SELECT count() AS n FROM fills") == [{"n": 2}]


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("table", TABLES)
def test_roundtrip_every_table(store: Store, table: str) -> None:
    rows = samples()[table]
    assert store.insert(table, rows) == len(rows)
    got = [row_to_model(table, r) for r in _select(store, table)]
    assert got == _in_key_order(table, rows)


def test_decimals_come_back_exact_as_decimal(store: Store) -> None:
    store.insert("positions", samples()["positions"])
    store.insert("bars", samples()["bars"])
    (pos,) = _select(store, "positions")
    for key in ("quantity", "avg_cost", "mark_price", "realized_pnl", "cash", "equity"):
        assert isinstance(pos[key], Decimal), key
    # Exact digits, at the column's scale of 12.
    assert format(pos["cash"], "f") == "99999999999999999999999999.999999999999"
    assert format(pos["realized_pnl"], "f") == "-99999999999999999999999999.999999999999"
    assert format(pos["equity"], "f") == "0.000000000001"
    assert format(pos["quantity"], "f") == "-10.500000000000"
    assert format(pos["avg_cost"], "f") == "189.123456789012"
    # Arithmetic in SQL stays in Decimal, too.
    (agg,) = store.query(
        f"SELECT sum(volume) AS v, max(high) AS h FROM {store.table('bars')} FINAL"
    )
    assert agg["v"] == Decimal("12345.623456789012")
    assert agg["h"] == BIG


def test_more_than_twelve_decimals_round_half_even(store: Store) -> None:
    bar = samples()["bars"][0].model_copy(
        update={
            "open": Decimal("1.0000000000005"),
            "close": Decimal("1.0000000000015"),
            "vwap": Decimal("-2.1234567890125000001"),
        }
    )
    store.insert("bars", [bar])
    (row,) = store.query(f"SELECT open, close, vwap FROM {store.table('bars')}")
    assert row == {
        "open": Decimal("1.000000000000"),
        "close": Decimal("1.000000000002"),
        "vwap": Decimal("-2.123456789013"),
    }


def test_too_large_decimal_fails_the_whole_batch(store: Store) -> None:
    good, too_big = (
        samples()["bars"][1],
        samples()["bars"][0].model_copy(update={"high": Decimal("1e26")}),
    )
    with pytest.raises(ValueError, match="does not fit"):
        store.insert("bars", [good, too_big])
    assert _count(store, "bars") == 0


def test_non_finite_floats_survive(store: Store) -> None:
    sig = _signal("AAPL", T0, "volume_spike").model_copy(
        update={"strength": float("inf"), "detail": {"z": float("nan"), "w": 1.5}}
    )
    store.insert("signals", [sig])
    (row,) = _select(store, "signals")
    assert row["strength"] == float("inf")
    assert json.loads(str(row["detail"]))["z"] is None  # JSON text has no NaN: stored as null


def test_query_types_and_parameters(store: Store) -> None:
    store.insert("news", samples()["news"])
    tricky = "it's a \\ back\tslash\nline"
    (row,) = store.query(
        "SELECT {s:String} AS s, {i:Int64} AS i, {d:Decimal(38, 12)} AS d, {a:Array(String)} AS a,"
        " {n:Nullable(String)} AS n, {b:Bool} AS b, toFloat64(0.5) AS f,"
        " fromUnixTimestamp64Milli({ms:Int64}, 'UTC') AS dt",
        {
            "s": tricky,
            "i": -(2**62),
            "d": Decimal("-0.000000000001"),
            "a": ["x", "y'z"],
            "n": None,
            "b": True,
            "ms": T0 + 123,
        },
    )
    assert row["s"] == tricky
    assert row["i"] == -(2**62)
    assert row["d"] == Decimal("-0.000000000001") and isinstance(row["d"], Decimal)
    assert row["a"] == ["x", "y'z"]
    assert row["n"] is None
    assert row["b"] is True
    assert row["f"] == 0.5
    assert row["dt"] == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert row["dt"].tzinfo is not None
    # The ALIAS `ts` column is a UTC DateTime64 of the ms column, and filters on it work.
    rows = store.query(
        f"SELECT id, kind, ts FROM {store.table('news')} FINAL"
        " WHERE ts >= fromUnixTimestamp64Milli({since:Int64}, 'UTC') ORDER BY kind",
        {"since": T0},
    )
    assert [(r["kind"], r["ts"]) for r in rows] == [
        ("news", datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)),
        ("social", datetime(2023, 11, 14, 22, 13, 21, tzinfo=UTC)),
    ]


def test_query_errors_are_one_line(store: Store) -> None:
    with pytest.raises(ClickHouseQueryError) as info:
        store.query(f"SELECT no_such_column FROM {store.table('bars')}")
    assert "\n" not in str(info.value)
    with pytest.raises(ClickHouseQueryError):
        store.query("SELECT * FROM stratflow.no_such_table")


def test_insert_rejects_wrong_models_and_tables(store: Store) -> None:
    with pytest.raises(TypeError, match="belongs in 'fills'"):
        store.insert("orders", [_fill("d-1")])
    with pytest.raises(ValueError, match="unknown table"):
        store.insert("nope", [_fill("d-1")])
    assert store.insert("fills", []) == 0
    assert store.insert_models([_fill("d-1"), *samples()["news"]]) == {"fills": 1, "news": 2}


# --------------------------------------------------------------------------------------------
# Idempotency and versions
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("table", TABLES)
def test_reinserting_the_same_rows_is_idempotent(store: Store, table: str) -> None:
    rows = samples()[table]
    store.insert(table, rows)
    store.insert(table, rows)  # a replay after a crash
    assert _count(store, table) == len(rows)
    raw = store.query(f"SELECT count() AS n FROM {store.table(table)}")
    assert raw[0]["n"] == 2 * len(rows)  # both copies exist until a merge; FINAL hides one


def test_decision_newest_version_wins(store: Store) -> None:
    # Written out of order: the version decides, not the insert order.
    store.insert("decisions", [_decision("d-1", 2)])
    store.insert("decisions", [_decision("d-1", 1), _decision("d-2", 1)])
    rows = _select(store, "decisions")
    assert [(r["decision_id"], r["version"]) for r in rows] == [("d-1", 2), ("d-2", 1)]
    d1 = rows[0]
    assert d1["n_fills"] == 1 and d1["n_orders"] == 1 and d1["n_rounds"] == 1
    assert d1["trigger_names"] == ["sma_cross", "channel_breakout"]
    assert d1["note"] == "filled"
    assert row_to_model("decisions", d1) == _decision("d-1", 2)
    # After a merge the old version is gone for good.
    store.execute(f"OPTIMIZE TABLE {store.table('decisions')} FINAL")
    raw = store.query(f"SELECT version FROM {store.table('decisions')} WHERE decision_id = 'd-1'")
    assert raw == [{"version": 2}]


def test_strategy_newest_version_wins(store: Store) -> None:
    # Started (version 1) and ended (version 2) rows of one activation, written out of order,
    # next to another activation that is still active: FINAL keeps the ended row.
    store.insert_models([_strategy("a-1", 2)])
    assert store.insert_models([_strategy("a-1", 1), _strategy("a-2", 1)]) == {"strategies": 2}
    rows = _select(store, "strategies")
    assert [(r["activation_id"], r["version"], r["status"]) for r in rows] == [
        ("a-1", 2, "replaced"),
        ("a-2", 1, "active"),
    ]
    a1, a2 = rows
    assert a1["ended_ms"] == T0 + 30 * 60_000 and a2["ended_ms"] is None
    assert a1["realized_pnl"] == Decimal("-12.345678901234")
    assert isinstance(a1["realized_pnl"], Decimal)
    assert a1["universe"] == ["AAPL", "MSFT"]
    assert row_to_model("strategies", a1) == _strategy("a-1", 2)
    assert row_to_model("strategies", a2) == _strategy("a-2", 1)
    store.execute(f"OPTIMIZE TABLE {store.table('strategies')} FINAL")
    raw = store.query(
        f"SELECT version FROM {store.table('strategies')} WHERE activation_id = 'a-1'"
    )
    assert raw == [{"version": 2}]


def test_order_latest_update_wins(store: Store) -> None:
    # Same timestamps on purpose: contiguous bars make "placed" and "filled" coincide in time,
    # so the row version, not the clock, must decide.
    store.insert("orders", [_order("d-1", OrderStatus.FILLED, T0 + 60_000)])
    store.insert("orders", [_order("d-1", OrderStatus.PENDING, T0 + 60_000)])
    (row,) = _select(store, "orders")
    assert row["status"] == "filled" and row["updated_ms"] == T0 + 60_000


# --------------------------------------------------------------------------------------------
# Persistence and sharing of the chdb directory
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["chdb", "clickhouse-connect"])
def test_data_persists_after_close_and_reopen(tmp_path: Path, kind: str) -> None:
    cfg = _config(kind, tmp_path / "ch")
    with Store.open(cfg) as s:
        s.apply_schema()
        s.insert("decisions", [_decision("d-1", 1)])
    with Store.open(cfg) as s:
        (row,) = _select(s, "decisions")
        assert row_to_model("decisions", row) == _decision("d-1", 1)


def test_data_persists_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "ch"
    write = _run_python(f"""
        from decimal import Decimal
        from connectors.store.clickhouse import Store
        from models.config.settings import ClickHouseConfig
        from models.core.messages import Fill, Side
        with Store.open(ClickHouseConfig(path={str(path)!r})) as s:
            s.apply_schema()
            s.insert("fills", [Fill(fill_id="f-1", client_order_id="o-1", decision_id="d-1",
                symbol="AAPL", side=Side.SELL, quantity=Decimal("3"),
                price=Decimal("123.456789012345"), fee=Decimal("0.01"), ts_ms=1)])
        print("written")
    """)
    assert write.returncode == 0, write.stderr
    read = _run_python(f"""
        import json
        from connectors.store.clickhouse import Store
        from models.config.settings import ClickHouseConfig
        with Store.open(ClickHouseConfig(path={str(path)!r})) as s:
            rows = s.query("SELECT fill_id, price FROM stratflow.fills FINAL")
        print(json.dumps([{{"id": r["fill_id"], "price": str(r["price"])}} for r in rows]))
    """)
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout.strip().splitlines()[-1]) == [
        {"id": "f-1", "price": "123.456789012345"}
    ]
    with Store.open(ClickHouseConfig(path=str(path))) as s:
        assert _count(s, "fills") == 1


def test_open_twice_in_one_process_shares_the_session(tmp_path: Path) -> None:
    cfg = ClickHouseConfig(path=str(tmp_path / "ch"))
    first = Store.open(cfg)
    # Another spelling of the same directory is the same directory.
    second = Store.open(ClickHouseConfig(path=str(tmp_path / "ch" / ".." / "ch") + "/"))
    try:
        first.apply_schema()
        second.insert("fills", [_fill("d-1")])
        assert _count(first, "fills") == 1
        first.close()
        first.close()  # idempotent
        assert first.closed
        with pytest.raises(ClickHouseError, match="closed"):
            first.query("SELECT 1")
        assert _count(second, "fills") == 1  # the shared session outlives the first store
        with pytest.raises(ClickHouseUnavailable, match="one directory per process"):
            Store.open(ClickHouseConfig(path=str(tmp_path / "elsewhere")))
    finally:
        first.close()
        second.close()
    # All closed: the engine is free for another directory.
    with Store.open(ClickHouseConfig(path=str(tmp_path / "elsewhere"))) as other:
        assert other.query("SELECT 1 AS one") == [{"one": 1}]


def test_directory_locked_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "ch"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys
            from connectors.store.clickhouse import Store
            from models.config.settings import ClickHouseConfig
            s = Store.open(ClickHouseConfig(path={str(path)!r}))
            print("ready", flush=True)
            sys.stdin.read()
            s.close()
        """),
        ],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(ClickHouseUnavailable) as info:
            Store.open(ClickHouseConfig(path=str(path)))
        message = str(info.value)
        assert f"in use by pid {holder.pid}" in message
        assert "\n" not in message
    finally:
        holder.communicate(input="", timeout=60)
    # Once the other process is gone the directory opens normally.
    with Store.open(ClickHouseConfig(path=str(path))) as s:
        assert s.query("SELECT 1 AS one") == [{"one": 1}]


def test_unusable_directory_is_a_clear_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    for path in (not_a_dir, not_a_dir / "sub"):
        with pytest.raises(ClickHouseUnavailable, match="not usable") as info:
            Store.open(ClickHouseConfig(path=str(path)))
        assert "\n" not in str(info.value)
    # A failed open leaves nothing half-open behind.
    with Store.open(ClickHouseConfig(path=str(tmp_path / "ok"))) as s:
        assert s.query("SELECT 1 AS one") == [{"one": 1}]


def test_unreachable_server_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ClickHouseUnavailable, match="unreachable") as info:
        Store.open(ClickHouseConfig(url=f"http://trader:s3cret@127.0.0.1:{port}/stratflow"))
    message = str(info.value)
    assert "\n" not in message and "s3cret" not in message and "trader" not in message
    assert f"127.0.0.1:{port}" in message


# --------------------------------------------------------------------------------------------
# A real ClickHouse server
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(not os.environ.get("CLICKHOUSE_URL"), reason="CLICKHOUSE_URL is not set")
def test_server_roundtrip() -> None:
    url = os.environ["CLICKHOUSE_URL"]
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):  # drop a database in the path: the test uses its own
        url = urlunsplit((parts.scheme, parts.netloc, "", parts.query, ""))
    database = f"stratflow_test_{uuid.uuid4().hex[:12]}"
    with Store.open(ClickHouseConfig(url=url, database=database)) as s:
        assert s.backend == "clickhouse-connect"
        try:
            s.apply_schema()
            s.apply_schema()
            for table, rows in samples().items():
                s.insert(table, rows)
                s.insert(table, rows)
                assert _count(s, table) == len(rows)
                got = [row_to_model(table, r) for r in _select(s, table)]
                assert got == _in_key_order(table, rows)
            s.insert("decisions", [_decision("d-1", 2)])
            (row,) = s.query(
                f"SELECT version, fills FROM {s.table('decisions')} FINAL"
                " WHERE decision_id = {id:String}",
                {"id": "d-1"},
            )
            assert row["version"] == 2
            (pos,) = _select(s, "positions")
            assert pos["cash"] == BIG and isinstance(pos["cash"], Decimal)
        finally:
            s.execute(f"DROP DATABASE IF EXISTS {database}")


def test_a_store_from_before_sizing_at_the_fill_gets_the_column(store: Store) -> None:
    """An `orders` table made before `size_fraction` existed gets it on the next start; its
    old rows read back as explicitly sized orders, new ones keep their fraction."""
    store.execute(f"ALTER TABLE {store.table('orders')} DROP COLUMN size_fraction")
    store.execute(
        f"INSERT INTO {store.table('orders')} (client_order_id, decision_id, symbol, side, "
        "quantity, order_type, status, placed_ms, updated_ms, reason, version, run_id) VALUES "
        "('old', 'ABC@1', 'ABC', 'buy', 2, 'market', 'filled', 1, 2, '', 2, '')"
    )
    store.apply_schema()
    new = build.order("new", "ABC@2", "ABC", quantity=3, size_fraction=Decimal("0.25"))
    store.insert("orders", [new])
    rows = {r["client_order_id"]: r for r in _select(store, "orders")}
    assert rows["old"]["size_fraction"] is None
    old = row_to_model("orders", rows["old"])
    assert isinstance(old, Order) and old.size_fraction is None
    assert row_to_model("orders", rows["new"]) == new
