"""The Grafana provisioning under deploy/grafana, and every dashboard query run against the schema.

Each dashboard JSON is checked for structure (unique panel ids, a sane grid, the provisioned data
source on every panel, target and variable), then every panel target and template-variable query
has its Grafana macros expanded exactly as the ClickHouse plugin does (`expand_grafana_sql`) and is
run against a real chdb store with `connectors/store/schema.sql` applied. The rows are written
through `Store.insert_models` from the pipeline's own message models, every batch twice (as an
at-least-once replay would) with background merges stopped, so a query that forgets FINAL/argMax
double counts and fails. A query that names a missing table or column fails to run.

The expected columns of every target are listed in `EXPECTED_COLUMNS`: adding a panel means adding
it there, and changing a query's output means changing the test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pydantic import BaseModel

from connectors.store.clickhouse import TABLES, ClickHouseQueryError, Store
from connectors.store.promotions import record_step
from connectors.store.trials import Trial, record_trials
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
    Order,
    OrderStatus,
    PositionSnapshot,
    Proposal,
    RiskCheck,
    RiskVerdict,
    Severity,
    Side,
    Signal,
    StrategyRecord,
    StrategyStatus,
    TradeIntent,
)
from models.execution.sim_venue import with_status
from models.validation.promotion import Step, StepRecord
from models.validation.verdicts import Outcome
from tests.support import builders as build

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARDS_DIR = GRAFANA / "dashboards"
DATASOURCES_YAML = GRAFANA / "provisioning" / "datasources" / "clickhouse.yaml"
PROVIDERS_YAML = GRAFANA / "provisioning" / "dashboards" / "stratflow.yaml"
COMPOSE = REPO / "deploy" / "docker-compose.yml"
SCHEMA_SQL = REPO / "connectors" / "store" / "schema.sql"
SCHEMA_TABLES = tuple(
    re.findall(r"CREATE TABLE IF NOT EXISTS stratflow\.(\w+)", SCHEMA_SQL.read_text("utf-8"))
)
RUN_FREE_TABLES = frozenset({"trials", "promotions"})
"""Ledgers that outlive runs (schema.sql): their panels read every run, never one."""

PLUGIN_TYPE = "grafana-clickhouse-datasource"
DASHBOARD_FILES = sorted(DASHBOARDS_DIR.glob("*.json"))

# sqlds' FormatQueryOption, which the plugin's backend reads from a target's `format`.
FORMAT_TIME_SERIES = 0
FORMAT_TABLE = 1
QUERY_TYPE_FOR_FORMAT = {FORMAT_TIME_SERIES: "timeseries", FORMAT_TABLE: "table"}


# --------------------------------------------------------------------------------------------
# Grafana macro expansion (what the frontend and the ClickHouse plugin do before ClickHouse runs
# the SQL). Mirrors grafana/clickhouse-datasource pkg/macros/macros.go and Grafana's template
# variable formats, so the SQL run here is the SQL the server would get.
# --------------------------------------------------------------------------------------------


class MacroError(ValueError):
    """A macro the expander does not know, or one called with the wrong arguments."""


@dataclass(frozen=True)
class GrafanaContext:
    """The dashboard state a query is expanded for: time range, interval and variable values."""

    from_ms: int
    to_ms: int
    interval_ms: int = 60_000
    variables: Mapping[str, str | Sequence[str]] = field(default_factory=dict)


def _unix_s(ms: int) -> int:
    return ms // 1000  # Go's time.Unix(): whole seconds, rounded down


def _to_datetime(ms: int) -> str:
    return f"toDateTime({_unix_s(ms)})"


def _to_datetime64(ms: int) -> str:
    return f"fromUnixTimestamp64Milli({ms})"


def _to_date(ms: int) -> str:
    return f"toDate('{datetime.fromtimestamp(ms / 1000, tz=UTC):%Y-%m-%d}')"


def _split_args(text: str) -> list[str]:
    """Top-level comma-separated arguments (commas inside parentheses or quotes stay)."""
    args: list[str] = []
    depth, quote, start = 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"`":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(text[start:i].strip())
            start = i + 1
    args.append(text[start:].strip())
    return [] if args == [""] else args


def _call_args(sql: str, open_paren: int) -> tuple[list[str], int]:
    """Arguments of the call whose '(' is at `open_paren`, and the index after its ')'."""
    depth, quote = 0, ""
    for i in range(open_paren, len(sql)):
        ch = sql[i]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"`":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return _split_args(sql[open_paren + 1 : i]), i + 1
    raise MacroError(f"unbalanced parentheses after position {open_paren}")


def _expand_macro(name: str, args: list[str] | None, ctx: GrafanaContext) -> str:
    def want(n: int) -> list[str]:
        if args is None or len(args) != n:
            got = 0 if args is None else len(args)
            raise MacroError(f"$__{name} expects {n} argument(s), got {got}")
        return args

    interval_s = max(ctx.interval_ms // 1000, 1)
    interval_ms = max(ctx.interval_ms, 1)
    f, t = ctx.from_ms, ctx.to_ms
    no_args = {
        # The ClickHouse plugin's macros.
        "fromTime": _to_datetime(f),
        "toTime": _to_datetime(t),
        "fromTime_ms": _to_datetime64(f),
        "toTime_ms": _to_datetime64(t),
        "interval_s": str(interval_s),
        # Grafana's global variables, interpolated by the frontend.
        "from": str(f),
        "to": str(t),
        "interval_ms": str(interval_ms),
    }
    if name in no_args:
        if args is not None:
            raise MacroError(f"$__{name} takes no arguments")
        return no_args[name]
    if name == "timeFilter":
        (col,) = want(1)
        return f"{col} >= {_to_datetime(f)} AND {col} <= {_to_datetime(t)}"
    if name == "timeFilter_ms":
        (col,) = want(1)
        return f"{col} >= {_to_datetime64(f)} AND {col} <= {_to_datetime64(t)}"
    if name == "dateFilter":
        (col,) = want(1)
        return f"{col} >= {_to_date(f)} AND {col} <= {_to_date(t)}"
    if name in ("dateTimeFilter", "dt"):
        dcol, tcol = want(2)
        return (
            f"({dcol} >= {_to_date(f)} AND {dcol} <= {_to_date(t)}) AND "
            f"({tcol} >= {_to_datetime(f)} AND {tcol} <= {_to_datetime(t)})"
        )
    if name == "timeInterval":
        (col,) = want(1)
        return f"toStartOfInterval(toDateTime({col}), INTERVAL {interval_s} second)"
    if name == "timeInterval_ms":
        (col,) = want(1)
        return f"toStartOfInterval(toDateTime64({col}, 3), INTERVAL {interval_ms} millisecond)"
    raise MacroError(f"unknown macro $__{name}")


def _format_variable(name: str, fmt: str | None, ctx: GrafanaContext) -> str:
    if name not in ctx.variables:
        raise MacroError(f"template variable ${name} has no value in this context")
    value = ctx.variables[name]
    values = [value] if isinstance(value, str) else list(value)
    if fmt in (None, "raw", "csv"):
        return ",".join(values)
    if fmt == "singlequote":  # Grafana: each value in '...', with ' escaped as \'
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "sqlstring":  # Grafana: each value in '...', with ' doubled
        return ",".join("'" + v.replace("'", "''") + "'" for v in values)
    raise MacroError(f"unsupported variable format ${{{name}:{fmt}}}")


_VARIABLE = re.compile(r"\$\{(?!__)(\w+)(?::(\w+))?\}|\$(?!__)([A-Za-z_]\w*)")
_MACRO = re.compile(r"\$__(\w+)")


def expand_grafana_sql(sql: str, ctx: GrafanaContext) -> str:
    """Plain ClickHouse SQL from a panel's rawSql: template variables, then the plugin's macros.

    Raises `MacroError` for anything it does not know, so a typo cannot reach ClickHouse as a
    literal `$`.
    """
    sql = _VARIABLE.sub(lambda m: _format_variable(m.group(1) or m.group(3), m.group(2), ctx), sql)
    out: list[str] = []
    pos = 0
    while (m := _MACRO.search(sql, pos)) is not None:
        out.append(sql[pos : m.start()])
        end = m.end()
        args: list[str] | None = None
        if end < len(sql) and sql[end] == "(":
            args, end = _call_args(sql, end)
        out.append(_expand_macro(m.group(1), args, ctx))
        pos = end
    out.append(sql[pos:])
    expanded = "".join(out)
    if "$" in expanded:
        raise MacroError(f"unexpanded '$' left in: {expanded}")
    return expanded


# --------------------------------------------------------------------------------------------
# Loading the provisioning
# --------------------------------------------------------------------------------------------


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _datasource() -> dict[str, Any]:
    (ds,) = _load_yaml(DATASOURCES_YAML)["datasources"]
    return ds


def _dashboard(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _all_panels(dashboard: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Top-level panels and those nested in collapsed rows."""
    out: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def _variable_sql(variable: Mapping[str, Any]) -> str:
    query = variable["query"]
    return query if isinstance(query, str) else query["rawSql"]


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel_title: str
    ref_id: str  # "var:<name>" for a template variable's query
    raw_sql: str
    fmt: int


def _queries() -> list[Query]:
    out: list[Query] = []
    for path in DASHBOARD_FILES:
        dash = _dashboard(path)
        for panel in _all_panels(dash):
            for target in panel.get("targets", []):
                out.append(
                    Query(
                        path.name,
                        panel["title"],
                        target["refId"],
                        target["rawSql"],
                        target["format"],
                    )
                )
        for variable in dash.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                out.append(
                    Query(
                        path.name,
                        "templating",
                        f"var:{variable['name']}",
                        _variable_sql(variable),
                        FORMAT_TABLE,
                    )
                )
    return out


QUERIES = _queries()


def _query_id(q: Query) -> str:
    return f"{q.dashboard}:{q.panel_title}:{q.ref_id}"


# --------------------------------------------------------------------------------------------
# Provisioning and dashboard structure
# --------------------------------------------------------------------------------------------


def test_there_are_dashboards_and_queries() -> None:
    assert [p.name for p in DASHBOARD_FILES] == [
        "stratflow-control.json",
        "stratflow-overview.json",
        "stratflow-validation.json",
    ]
    assert len(QUERIES) >= 15
    # Every table of the schema has a panel, except raw ticks and news (no panel reads them).
    read = {t for q in QUERIES for t in SCHEMA_TABLES if re.search(rf"\b{t}\b", q.raw_sql)}
    assert set(SCHEMA_TABLES) - read == {"ticks", "news"}


def test_dashboard_uids_are_unique() -> None:
    uids = [_dashboard(p)["uid"] for p in DASHBOARD_FILES]
    assert len(uids) == len(set(uids))


def test_datasource_points_at_the_compose_clickhouse() -> None:
    ds = _datasource()
    compose = _load_yaml(COMPOSE)
    ch = compose["services"]["clickhouse"]
    env = ch["environment"]
    assert ds["type"] == PLUGIN_TYPE
    assert ds["uid"] == "stratflow-clickhouse"
    assert ds["jsonData"]["host"] == "clickhouse"
    assert ds["jsonData"]["protocol"] == "native"
    assert any(str(p).split(":")[-1] == str(ds["jsonData"]["port"]) for p in ch["ports"])
    assert ds["jsonData"]["defaultDatabase"] == env["CLICKHOUSE_DB"] == "stratflow"
    # The read-only user of deploy/clickhouse/users.d/grafana.xml, not the pipeline's writer
    # (tests/integration/test_deploy_compose.py checks that user and its password).
    assert ds["jsonData"]["username"] == "grafana" != env["CLICKHOUSE_USER"]
    assert ds["secureJsonData"]["password"] == "$GRAFANA_CLICKHOUSE_PASSWORD"
    grafana = compose["services"]["grafana"]
    assert PLUGIN_TYPE in grafana["environment"]["GF_INSTALL_PLUGINS"]


def test_compose_mounts_provisioning_and_dashboards() -> None:
    volumes = _load_yaml(COMPOSE)["services"]["grafana"]["volumes"]
    mounts = {}
    for v in volumes:
        host, container, *_ = v.split(":")
        mounts[host] = container
    assert mounts["./grafana/provisioning/datasources"] == "/etc/grafana/provisioning/datasources"
    assert mounts["./grafana/provisioning/dashboards"] == "/etc/grafana/provisioning/dashboards"
    (provider,) = _load_yaml(PROVIDERS_YAML)["providers"]
    assert provider["type"] == "file"
    # The provider reads exactly the folder the dashboards are mounted at.
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    for host in mounts:
        if host.startswith("./"):
            assert (COMPOSE.parent / host).is_dir(), host


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_structure(path: Path) -> None:
    dash = _dashboard(path)
    ds = _datasource()
    expected_ds = {"type": ds["type"], "uid": ds["uid"]}
    assert dash.get("id") is None, "provisioned dashboards must not carry a database id"
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dash["uid"])
    assert dash["title"]
    assert 36 <= dash["schemaVersion"] <= 41

    panels = _all_panels(dash)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
    assert all(isinstance(i, int) and i > 0 for i in ids)

    boxes: list[tuple[str, int, int, int, int]] = []
    for p in panels:
        g = p["gridPos"]
        assert set(g) >= {"h", "w", "x", "y"}, p["title"]
        assert all(isinstance(g[k], int) for k in ("h", "w", "x", "y")), p["title"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["y"] >= 0, p["title"]
        assert g["x"] + g["w"] <= 24, f"{p['title']} is wider than the 24-column grid"
        boxes.append((p["title"], g["x"], g["y"], g["w"], g["h"]))
    for i, (t1, x1, y1, w1, h1) in enumerate(boxes):
        for t2, x2, y2, w2, h2 in boxes[i + 1 :]:
            overlap = x1 < x2 + w2 and x2 < x1 + w1 and y1 < y2 + h2 and y2 < y1 + h1
            assert not overlap, f"panels {t1!r} and {t2!r} overlap"

    for p in panels:
        if p["type"] == "row":
            assert not p.get("targets"), f"row {p['title']!r} has targets"
            continue
        assert p["title"], f"panel {p['id']} has no title"
        assert p["datasource"] == expected_ds, p["title"]
        targets = p["targets"]
        assert targets, f"panel {p['title']!r} has no targets"
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), p["title"]
        for t in targets:
            where = f"{p['title']}/{t['refId']}"
            assert t["datasource"] == expected_ds, where
            assert t["editorType"] == "sql", where
            assert isinstance(t.get("rawSql"), str) and t["rawSql"].strip(), where
            assert t["format"] in QUERY_TYPE_FOR_FORMAT, where
            assert t["queryType"] == QUERY_TYPE_FOR_FORMAT[t["format"]], where
            # Without a v4 pluginVersion the plugin would migrate the target as a v3 query.
            major = int(str(t["pluginVersion"]).split(".")[0])
            assert major >= 4, where
            if p["type"] == "timeseries":
                assert t["format"] == FORMAT_TIME_SERIES, where

    for variable in dash["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == expected_ds, variable["name"]
            assert _variable_sql(variable).strip(), variable["name"]


def test_every_query_reads_replacing_tables_with_final() -> None:
    """Static half of the duplicate check: a schema table is read with FINAL (or only DISTINCT)."""
    tables = "|".join(SCHEMA_TABLES)
    from_table = re.compile(rf"\bFROM\s+`?({tables})`?(?:\s+AS\s+\w+)?(\s+FINAL\b)?", re.I)
    for q in QUERIES:
        found = from_table.findall(q.raw_sql)
        assert found, f"{_query_id(q)} reads no stratflow table"
        distinct_only = re.match(r"\s*SELECT\s+DISTINCT\b", q.raw_sql, re.I) is not None
        for table, final in found:
            assert final or distinct_only, f"{_query_id(q)} reads {table} without FINAL"


# --------------------------------------------------------------------------------------------
# The macro expander itself
# --------------------------------------------------------------------------------------------

CTX = GrafanaContext(
    from_ms=1_700_000_000_123,
    to_ms=1_700_003_600_999,
    interval_ms=30_500,
    variables={"symbol": "AAPL", "many": ["A", "B'C"]},
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "WHERE $__timeFilter(ts)",
            "WHERE ts >= toDateTime(1700000000) AND ts <= toDateTime(1700003600)",
        ),
        (
            "WHERE $__timeFilter_ms(ts)",
            "WHERE ts >= fromUnixTimestamp64Milli(1700000000123)"
            " AND ts <= fromUnixTimestamp64Milli(1700003600999)",
        ),
        ("$__fromTime, $__toTime", "toDateTime(1700000000), toDateTime(1700003600)"),
        (
            "$__fromTime_ms,$__toTime_ms",
            "fromUnixTimestamp64Milli(1700000000123),fromUnixTimestamp64Milli(1700003600999)",
        ),
        (
            "$__timeInterval(ts) AS time",
            "toStartOfInterval(toDateTime(ts), INTERVAL 30 second) AS time",
        ),
        (
            "$__timeInterval_ms(ts)",
            "toStartOfInterval(toDateTime64(ts, 3), INTERVAL 30500 millisecond)",
        ),
        ("INTERVAL $__interval_s second", "INTERVAL 30 second"),
        ("$__from - $__to / $__interval_ms", "1700000000123 - 1700003600999 / 30500"),
        ("$__dateFilter(d)", "d >= toDate('2023-11-14') AND d <= toDate('2023-11-14')"),
        (
            "$__dt(d, t)",
            "(d >= toDate('2023-11-14') AND d <= toDate('2023-11-14')) AND "
            "(t >= toDateTime(1700000000) AND t <= toDateTime(1700003600))",
        ),
        (
            "$__timeFilter(fromUnixTimestamp64Milli(ts_ms, 'UTC'))",
            "fromUnixTimestamp64Milli(ts_ms, 'UTC') >= toDateTime(1700000000)"
            " AND fromUnixTimestamp64Milli(ts_ms, 'UTC') <= toDateTime(1700003600)",
        ),
        ("symbol = '${symbol}' OR symbol = '$symbol'", "symbol = 'AAPL' OR symbol = 'AAPL'"),
        ("symbol = ${symbol:singlequote}", "symbol = 'AAPL'"),
        ("symbol IN (${many:singlequote})", "symbol IN ('A','B\\'C')"),
        ("symbol IN (${many:sqlstring})", "symbol IN ('A','B''C')"),
    ],
)
def test_expander(raw: str, expected: str) -> None:
    assert expand_grafana_sql(raw, CTX) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "$__timeFiltr(ts)",  # typo
        "$__timeFilter()",
        "$__timeFilter(a, b)",
        "$__timeFilter",
        "$__fromTime(ts)",
        "$__timeFilter(ts",
        "$nosuchvar",
        "${symbol:regex}",
        "$__adHocFilters('bars')",  # not used by these dashboards, so not expanded here
    ],
)
def test_expander_refuses_what_it_does_not_know(raw: str) -> None:
    with pytest.raises(MacroError):
        expand_grafana_sql(raw, CTX)


# --------------------------------------------------------------------------------------------
# Test data: a short, consistent trading session built with the pipeline's models
# --------------------------------------------------------------------------------------------

MIN = 60_000
HOUR = 60 * MIN
T0 = 1_700_000_040_000  # 2023-11-14 22:14:00 UTC, a whole minute
OLD = T0 - 3 * HOUR  # outside the tested time range
RUN = "20231114T221400Z-aaaaaa"  # the run the panels show
EARLIER_RUN = "20231113T080000Z-bbbbbb"  # the same session, written by an earlier run
RANGE = GrafanaContext(
    from_ms=T0 - HOUR,
    to_ms=T0 + HOUR,
    interval_ms=MIN,
    variables={"symbol": "AAPL", "run": RUN, "family": "sma_cross"},
)
EMPTY_RANGE = GrafanaContext(
    from_ms=T0 - 400 * 24 * HOUR,
    to_ms=T0 - 399 * 24 * HOUR,
    interval_ms=MIN,
    variables={"symbol": "AAPL", "run": RUN, "family": "sma_cross"},
)
D = Decimal


def _bar(symbol: str, start: int, o: str, c: str) -> Bar:
    lo, hi = sorted((D(o), D(c)))
    return Bar(
        symbol=symbol,
        start_ms=start,
        end_ms=start + MIN,
        open=D(o),
        high=hi + D("0.5"),
        low=lo - D("0.5"),
        close=D(c),
        volume=D("1500.25"),
        trades=12,
        vwap=(D(o) + D(c)) / 2,
    )


def _signal(symbol: str, ts: int, trigger: str) -> Signal:
    breakout = trigger == "channel_breakout"
    return build.signal(
        symbol,
        ts,
        trigger,
        kind="breakout" if breakout else "crossover",
        strength=0.8,
        strategic=breakout,
        detail={"fast": 101.2, "slow": 100.9},
    )


def _check(name: str, passed: bool) -> RiskCheck:
    return RiskCheck(
        name=name,
        passed=passed,
        limit=D("25000"),
        value=D("24000") if passed else D("31000"),
        message="" if passed else f"{name} over limit",
    )


def _round(n: int, symbol: str, side: Side, qty: str, failed: Sequence[str] = ()) -> AdjustRound:
    names = ("max_order_notional", "max_position", "min_cash")
    return AdjustRound(
        round=n,
        proposal=Proposal(
            controller="local",
            strategy="sma_cross",
            intents=[TradeIntent(symbol=symbol, side=side, quantity=D(qty))],
            rationale="fast above slow",
            confidence=0.6,
        ),
        verdict=RiskVerdict(
            approved=not failed,
            checks=[_check(name, name not in failed) for name in names],
            fee_estimate=D("0.5"),
        ),
    )


def _order(did: str, symbol: str, side: Side, qty: str, placed: int) -> Order:
    return build.order(
        f"sf-{did}-0", did, symbol, side=side, quantity=qty, placed_ms=placed, reason="signal"
    )


def _fill(order: Order, price: str, fee: str, ts: int) -> Fill:
    return build.fill(
        f"{order.client_order_id}-1",
        order.client_order_id,
        order.decision_id,
        order.symbol,
        side=order.side,
        quantity=order.quantity,
        price=price,
        fee=fee,
        ts_ms=ts,
    )


def _decision(
    symbol: str,
    ts: int,
    branch: Branch,
    status: DecisionStatus,
    rounds: list[AdjustRound],
    triggers: list[Signal],
    orders: Sequence[Order] = (),
) -> DecisionRecord:
    return DecisionRecord(
        decision_id=f"{symbol}@{ts}",
        ts_ms=ts,
        symbol=symbol,
        branch=branch,
        triggers=triggers,
        features=FeatureVector(symbol=symbol, ts_ms=ts, close=101.5, values={"sma_fast": 101.2}),
        rounds=rounds,
        status=status,
        orders=list(orders),
        portfolio_before={"cash": "10000", "equity": "10000"},
    )


def _filled(
    record: DecisionRecord, order: Order, fill: Fill | None, ts: int
) -> tuple[DecisionRecord, Order]:
    """The decision's second version and the order's final state once the exchange answered."""
    if fill is None:
        done = with_status(order, OrderStatus.REJECTED, ts, "insufficient cash at fill")
    else:
        done = with_status(order, OrderStatus.FILLED, ts)
    record = record.model_copy(
        update={"orders": [done], "fills": [fill] if fill else [], "version": record.version + 1}
    )
    return record, done


def _position(
    symbol: str, ts: int, qty: str, avg: str, mark: str, realized: str, cash: str, equity: str
) -> PositionSnapshot:
    return PositionSnapshot(
        ts_ms=ts,
        symbol=symbol,
        quantity=D(qty),
        avg_cost=D(avg),
        mark_price=D(mark),
        realized_pnl=D(realized),
        unrealized_pnl=(D(mark) - D(avg)) * D(qty),
        cash=D(cash),
        equity=D(equity),
    )


def _alert(aid: str, ts: int, severity: Severity, source: str, message: str) -> Alert:
    return Alert(
        alert_id=aid,
        ts_ms=ts,
        severity=severity,
        source=source,
        message=message,
        context={"decision_id": aid.split(":")[-1]},
    )


def _strategy(
    strategy_id: str, symbol: str, started: int, confidence: float, **update: Any
) -> StrategyRecord:
    """An activation as written when it starts; `update` gives the row written when it ends."""
    record = StrategyRecord(
        activation_id=f"{symbol}@{started}",
        strategy_id=strategy_id,
        decision_id=f"{symbol}@{started}",
        symbol=symbol,
        universe=[symbol],
        status=StrategyStatus.ACTIVE,
        started_ms=started,
        confidence=confidence,
        rationale="written by GPT",
        spec=json.dumps({"id": strategy_id}),
    )
    return record.model_copy(update={"version": 2, **update}) if update else record


def _dead_letter(offset: int, ts: int, reason: str, payload: str = "{}") -> DeadLetter:
    return DeadLetter(
        dead_letter_id=f"market.ticks:0:{offset}",
        topic="market.ticks",
        partition=0,
        offset=offset,
        record_ms=ts,
        reason=reason,
        payload=payload,
    )


LONG_PAYLOAD = "ü✓" * 300  # 600 characters, multi-byte
UNKNOWN_TYPE = "missing or unknown 'type' (expected 'tick' or 'bar')"


def session() -> tuple[list[BaseModel], list[BaseModel]]:
    """(rows as first written, rows written later as decisions and orders progress).

    Market orders fill at the open of the next bar plus 5 bps of slippage; fees are made up but
    fixed, so every panel's expected value can be worked out by hand (see the tests below).
    """
    t1, t2, t3, t4 = T0 + MIN, T0 + 2 * MIN, T0 + 3 * MIN, T0 + 4 * MIN
    bars = [
        _bar("AAPL", OLD, "90", "90.2"),
        _bar("AAPL", T0, "100", "100.5"),
        _bar("AAPL", t1, "101", "101.5"),
        _bar("AAPL", t2, "102", "101.8"),
        _bar("AAPL", t3, "101.9", "102.2"),
        _bar("MSFT", T0, "299", "300"),
        _bar("MSFT", t1, "300", "301"),
    ]
    sig_old = _signal("AAPL", OLD + MIN, "sma_cross")
    s1 = _signal("AAPL", t1, "sma_cross")
    s2 = _signal("MSFT", t1, "sma_cross")
    s3 = _signal("AAPL", t2, "channel_breakout")
    s4 = _signal("MSFT", t2, "sma_cross")
    s5 = _signal("AAPL", t3, "volume_spike")
    s6 = _signal("AAPL", t4, "volume_spike")
    signals = [sig_old, s1, s2, s3, s4, s5, s6]

    # d-old: long before the range, filled.
    o_old = _order("AAPL@old", "AAPL", Side.BUY, "1", OLD + MIN)
    d_old = _decision(
        "AAPL",
        OLD + MIN,
        Branch.ROUTINE,
        DecisionStatus.EXECUTED,
        [_round(0, "AAPL", Side.BUY, "1")],
        [sig_old],
        [o_old],
    )
    f_old = _fill(o_old, "90.045", "0.09", OLD + MIN)
    # d1: AAPL buy 10, filled at the next bar's open 101 (+5 bps).
    o1 = _order(f"AAPL@{t1}", "AAPL", Side.BUY, "10", t1)
    d1 = _decision(
        "AAPL",
        t1,
        Branch.ROUTINE,
        DecisionStatus.EXECUTED,
        [_round(0, "AAPL", Side.BUY, "10")],
        [s1],
        [o1],
    )
    f1 = _fill(o1, "101.0505", "0.51", t1)
    # d3: MSFT buy 2 at 300 (+5 bps).
    o3 = _order(f"MSFT@{t1}", "MSFT", Side.BUY, "2", t1)
    d3 = _decision(
        "MSFT",
        t1,
        Branch.ROUTINE,
        DecisionStatus.EXECUTED,
        [_round(0, "MSFT", Side.BUY, "2")],
        [s2],
        [o3],
    )
    f3 = _fill(o3, "300.15", "0.06", t1)
    # d2: strategic AAPL sell; the first proposal breaks max_position, the adjusted one passes.
    o2 = _order(f"AAPL@{t2}", "AAPL", Side.SELL, "4", t2)
    d2 = _decision(
        "AAPL",
        t2,
        Branch.STRATEGIC,
        DecisionStatus.EXECUTED,
        [_round(0, "AAPL", Side.SELL, "8", ["max_position"]), _round(1, "AAPL", Side.SELL, "4")],
        [s3],
        [o2],
    )
    f2 = _fill(o2, "101.949", "0.20", t2)
    # d5: MSFT, refused in all three rounds.
    d5 = _decision(
        "MSFT",
        t2,
        Branch.ROUTINE,
        DecisionStatus.REJECTED,
        [
            _round(0, "MSFT", Side.BUY, "90", ["max_order_notional"]),
            _round(1, "MSFT", Side.BUY, "85", ["max_order_notional"]),
            _round(2, "MSFT", Side.BUY, "85", ["max_order_notional", "max_position"]),
        ],
        [s4],
    )
    # d4: AAPL buy 500, approved, but refused at the fill for lack of cash.
    o4 = _order(f"AAPL@{t3}", "AAPL", Side.BUY, "500", t3)
    d4 = _decision(
        "AAPL",
        t3,
        Branch.ROUTINE,
        DecisionStatus.EXECUTED,
        [_round(0, "AAPL", Side.BUY, "500")],
        [s5],
        [o4],
    )
    # d6: nothing to do.
    d6 = _decision("AAPL", t4, Branch.ROUTINE, DecisionStatus.NO_ACTION, [], [s6])

    d_old2, o_old2 = _filled(d_old, o_old, f_old, OLD + MIN)
    d1b, o1b = _filled(d1, o1, f1, t1)
    d3b, o3b = _filled(d3, o3, f3, t1)
    d2b, o2b = _filled(d2, o2, f2, t2)
    d4b, o4b = _filled(d4, o4, None, t3)

    positions = [
        _position("AAPL", OLD + MIN, "1", "90.045", "90.2", "0", "9909.865", "10000.065"),
        _position("AAPL", t1, "0", "0", "100.5", "0", "10000", "10000"),
        _position("MSFT", t1, "0", "0", "300", "0", "10000", "10000"),
        _position("AAPL", t2, "10", "101.0505", "101.5", "0", "8988.985", "10003.985"),
        _position("MSFT", t2, "2", "300.15", "301", "0", "8388.625", "10005.625"),
        _position("AAPL", t3, "6", "101.0505", "101.8", "3.594", "8796.221", "10009.021"),
        _position("AAPL", t4, "6", "101.0505", "102.2", "3.594", "8796.221", "10011.421"),
    ]
    alerts = [
        _alert("old", OLD, Severity.CRITICAL, "risk_gate", "long ago"),
        _alert("desk:start", T0, Severity.INFO, "desk", "desk started"),
        _alert(
            f"risk:0:{d2.decision_id}",
            t2,
            Severity.WARNING,
            "risk_gate",
            "over limit (max_position); sent back to controller",
        ),
        _alert(
            f"risk:0:{d5.decision_id}",
            t2,
            Severity.WARNING,
            "risk_gate",
            "over limit (max_order_notional); sent back to controller",
        ),
        _alert(
            f"risk:1:{d5.decision_id}",
            t2,
            Severity.WARNING,
            "risk_gate",
            "over limit (max_order_notional); sent back to controller",
        ),
        _alert(
            f"risk:2:{d5.decision_id}",
            t2,
            Severity.CRITICAL,
            "risk_gate",
            "over limit (max_order_notional, max_position); rounds exhausted",
        ),
        _alert(
            f"fill-refused:{o4.client_order_id}",
            t3,
            Severity.WARNING,
            "executor",
            "order not filled: insufficient cash at fill",
        ),
    ]
    dead_letters = [
        _dead_letter(1, OLD, "empty message", ""),
        _dead_letter(10, T0, "empty message", ""),
        _dead_letter(11, T0 + 5_000, "not a JSON object", "[1, 2]"),
        _dead_letter(12, t1, "empty message", ""),
        _dead_letter(13, t1 + 5_000, UNKNOWN_TYPE, '{"type": "quote"}'),
        _dead_letter(14, t2, "not a JSON object", LONG_PAYLOAD),
        _dead_letter(15, t3, "empty message", ""),
    ]
    first: list[BaseModel] = [
        *bars,
        *signals,
        *positions,
        *alerts,
        *dead_letters,
        d_old,
        d1,
        d3,
        d2,
        d5,
        d4,
        d6,
        o_old,
        o1,
        o3,
        o2,
        o4,
        f_old,
        f1,
        f3,
        f2,
    ]
    later: list[BaseModel] = [d_old2, d1b, d3b, d2b, d4b, o_old2, o1b, o3b, o2b, o4b]
    first.extend(
        GptCall(
            call_id=f"AAPL@{t}/gpt0",
            ts_ms=t,
            decision_id=f"AAPL@{t}",
            symbol="AAPL",
            model="gpt-4o-mini",
            prompt_hash="h",
            prompt_tokens=1000,
            completion_tokens=200,
            latency_ms=latency,
            cost=Decimal(cost),
            outcome=GptOutcome(outcome),
        )
        for t, outcome, cost, latency in (
            (t1, "ok", "0.00027", 900),
            (t2, "ok", "0.00027", 1100),
            (t3, "timeout", "0", 20000),
        )
    )
    # GPT strategies: one ended long before the range, one running since before it, one replaced
    # within it by the next (d2 is the strategic decision that started it).
    old_run = _strategy("old-aapl", "AAPL", OLD, 0.5)
    msft_run = _strategy("mr-msft", "MSFT", OLD + MIN, 0.55)
    momo = _strategy("momo-aapl", "AAPL", t2, 0.7)
    breakout = _strategy("breakout-aapl", "AAPL", t4, 0.8)
    first.extend([old_run, msft_run, momo, breakout])
    later.extend(
        [
            _strategy(
                "old-aapl",
                "AAPL",
                OLD,
                0.5,
                status=StrategyStatus.EXPIRED,
                ended_ms=OLD + 30 * MIN,
                bars_active=30,
            ),
            _strategy(
                "momo-aapl",
                "AAPL",
                t2,
                0.7,
                status=StrategyStatus.REPLACED,
                ended_ms=t4,
                bars_active=2,
                trades=1,
                realized_pnl=D("3.594"),
            ),
        ]
    )
    return first, later


# --------------------------------------------------------------------------------------------
# The control plane and the ledgers: commands and their acks, settings changes, trials, promotions
# --------------------------------------------------------------------------------------------

REFUSED = "halted -> active is not allowed: go through reducing or paused"


def _ack(
    cid: str, at: int, action: str, before: str, after: str, by: str, reason: str = ""
) -> ControlAck:
    return ControlAck(
        command_id=cid,
        action=action,
        issued_by=by,
        issued_ms=at - 1_000,
        applied_ms=at,
        outcome="refused" if reason else "applied",
        state_before=TradingState(before),
        state_after=TradingState(after),
        reason=reason,
    )


def control_acks() -> list[ControlAck]:
    """A run reduced long before the range, then paused, changed, halted, refused, reducing."""
    t2, t3, t4 = T0 + 2 * MIN, T0 + 3 * MIN, T0 + 4 * MIN
    return [
        _ack("c-old", OLD + 2 * MIN, "set_trading_state:reducing", "active", "reducing", "alice"),
        _ack("c-1", T0 + 90_000, "set_trading_state:paused", "reducing", "paused", "alice"),
        _ack(
            "set-1",
            t2 + 30_000,
            "change_settings:risk.max_order_notional,gpt.model",
            "paused",
            "paused",
            "alice",
        ),
        _ack("c-2", t3, "set_trading_state:halted", "paused", "halted", "bob"),
        _ack("c-3", t3 + 30_000, "set_trading_state:active", "halted", "halted", "bob", REFUSED),
        _ack("c-4", t4, "set_trading_state:reducing", "halted", "reducing", "bob"),
    ]


def _change(cid: str, ms: int, who: str, diff: list[dict[str, Any]], run_id: str) -> dict[str, Any]:
    """A `settings_changes` row as `api.server.settings_routes` writes it."""
    text = json.dumps(diff, separators=(",", ":"))
    return {"change_id": cid, "changed_ms": ms, "who": who, "diff": text, "run_id": run_id}


def settings_changes() -> list[dict[str, Any]]:
    """set-1 acknowledged (c-log row `set-1`), set-2 still pending, one long ago, and one of
    the earlier run inside the range (which the panels must not show)."""
    return [
        _change(
            "set-old",
            OLD,
            "carol",
            [{"key": "risk.max_position", "before": 50, "after": 60}],
            RUN,
        ),
        _change(
            "set-1",
            T0 + 2 * MIN + 20_000,
            "alice",
            [
                {"key": "risk.max_order_notional", "before": 25000, "after": 30000},
                {"key": "gpt.model", "before": "gpt-4o-mini", "after": "gpt-4o"},
            ],
            RUN,
        ),
        _change(
            "set-2",
            T0 + 4 * MIN,
            "bob",
            [{"key": "risk.max_position", "before": 60, "after": 80}],
            RUN,
        ),
        _change(
            "set-earlier",
            T0 + 3 * MIN,
            "mallory",
            [{"key": "risk.max_position", "before": 60, "after": 1000}],
            EARLIER_RUN,
        ),
    ]


def _trial(
    tid: str, family: str, source: str, ms: int, strategy: str, returns: list[float], sweep: str
) -> Trial:
    return Trial(
        trial_id=f"{sweep}:{tid}",
        family=family,
        source=source,
        tried_ms=ms,
        symbol="AAPL",
        strategy=strategy,
        params={"strategy": strategy},
        data_start_ms=OLD,
        data_end_ms=T0,
        period="day",
        statistics={"trades": len(returns)},
        returns=np.array(returns, dtype=np.float64),
        run_id=sweep,
    )


def trials() -> list[Trial]:
    """Two sweeps of sma_cross (one configuration never traded: no Sharpe), a walk-forward
    window, a breakout trial, and one sweep long before the range."""
    t1, t2 = T0 + MIN, T0 + 2 * MIN
    return [
        _trial("0", "sma_cross", "sweep", OLD, "sma_cross(3,9)", [0.05, 0.04, 0.06], "sweep-0"),
        _trial("0", "sma_cross", "sweep", t1, "sma_cross(5,20)", [0.01, 0.02, -0.005], "sweep-1"),
        _trial("1", "sma_cross", "sweep", t1, "sma_cross(10,30)", [0.0, 0.0, 0.0], "sweep-1"),
        _trial("2", "sma_cross", "sweep", t1, "sma_cross(20,50)", [0.02, -0.01, 0.01], "sweep-1"),
        _trial("0", "sma_cross", "sweep", t2, "sma_cross(5,25)", [0.03, -0.01, 0.02], "sweep-2"),
        _trial(
            "w0:0", "sma_cross", "walk_forward", t2, "sma_cross(5,20)", [0.01, 0.0, 0.02], "wf-1"
        ),
        _trial("0", "breakout", "sweep", t2, "breakout(20)", [0.02, 0.01, -0.02], "sweep-3"),
    ]


SETUP_A = {"strategies": [{"name": "sma_cross"}, {"name": "breakout"}], "strategy": {}}
SETUP_B = {"strategies": [], "strategy": {"controller": "gpt"}}


def _step(
    setup: str, step: Step, outcome: Outcome, ms: int, who: str = "", run_id: str = RUN
) -> StepRecord:
    return StepRecord(
        setup_hash=setup,
        step=step,
        run_id=run_id,
        outcome=outcome,
        recorded_ms=ms,
        who=who,
        figures={"sharpe": 1.2} if step != Step.APPROVAL else {},
    )


def promotion_steps() -> list[tuple[StepRecord, dict[str, Any]]]:
    """Setup A goes backtest -> validation (warn) -> paper -> approval within the range;
    setup B passed a backtest long ago and fails one in the range."""
    t1, t2, t3, t4 = T0 + MIN, T0 + 2 * MIN, T0 + 3 * MIN, T0 + 4 * MIN
    return [
        (_step("a" * 16, Step.BACKTEST, Outcome.PASS, t1), SETUP_A),
        (_step("a" * 16, Step.VALIDATION, Outcome.WARN, t2), SETUP_A),
        (_step("a" * 16, Step.PAPER, Outcome.PASS, t3), SETUP_A),
        (_step("a" * 16, Step.APPROVAL, Outcome.PASS, t4, who="alice", run_id=""), SETUP_A),
        (_step("b" * 16, Step.BACKTEST, Outcome.PASS, OLD), SETUP_B),
        (_step("b" * 16, Step.BACKTEST, Outcome.FAIL, t2), SETUP_B),
    ]


def write_control_and_ledgers(store: Store) -> None:
    """Everything above once (the run's acks stamped with the store's run)."""
    store.insert_models(control_acks())
    store.insert_rows("settings_changes", settings_changes())
    record_trials(store, trials())
    for record, setup in promotion_steps():
        record_step(store, record, setup)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A chdb store with the schema and the session written twice, merges stopped; and the same
    session once more by an earlier run, which a panel that forgets the run filter counts."""
    cfg = ClickHouseConfig(path=str(tmp_path_factory.mktemp("grafana") / "ch"))
    s = Store.open(cfg, run_id=RUN)
    try:
        s.apply_schema()
        # Keep every duplicate part apart, so only FINAL/argMax can hide the duplicates.
        s.execute("SYSTEM STOP MERGES")
        first, later = session()
        for _ in range(2):  # an at-least-once replay writes the whole stream again, in order
            s.insert_models(first)
            s.insert_models(later)
            write_control_and_ledgers(s)
        with Store.open(cfg, run_id=EARLIER_RUN) as earlier:
            earlier.insert_models(first)
            earlier.insert_models(later)
            earlier.insert_models(control_acks())
        yield s
    finally:
        s.close()


def test_gpt_calls_counted_once_with_their_cost(store: Store) -> None:
    rows = run(store, "GPT calls by outcome")
    got = {r["outcome"]: (r["calls"], r["cost_usd"], r["avg_latency_ms"]) for r in rows}
    assert got == {"ok": (2, Decimal("0.00054"), 1000), "timeout": (1, Decimal(0), 20000)}


def test_gpt_strategies_running_in_the_range(store: Store) -> None:
    rows = run(store, "GPT strategies")
    got = [
        (
            r["strategy_id"],
            r["symbol"],
            r["status"],
            r["started"],
            r["ended"],
            r["bars_active"],
            r["trades"],
            r["realized_pnl"],
            r["confidence"],
        )
        for r in rows
    ]
    started_old = datetime.fromtimestamp((OLD + MIN) / 1000, tz=UTC)
    assert got == [
        ("breakout-aapl", "AAPL", "active", _minute(4), None, 0, 0, D(0), 0.8),
        ("momo-aapl", "AAPL", "replaced", _minute(2), _minute(4), 2, 1, D("3.594"), 0.7),
        ("mr-msft", "MSFT", "active", started_old, None, 0, 0, D(0), 0.55),
    ]  # old-aapl ended before the range


def test_duplicates_are_really_stored(store: Store) -> None:
    for table in TABLES:
        if table in ("news", "ticks"):  # no panel reads these (yet)
            continue
        where = f"WHERE run_id = '{RUN}'"
        (raw,) = store.query(f"SELECT count() AS n FROM {table} {where}")
        (final,) = store.query(f"SELECT count() AS n FROM {table} FINAL {where}")
        assert final["n"] > 0, table
        assert raw["n"] >= 2 * final["n"], f"{table}: the duplicates were merged away"


# --------------------------------------------------------------------------------------------
# Every query runs against the schema and returns the expected columns
# --------------------------------------------------------------------------------------------

EXPECTED_COLUMNS: dict[tuple[str, str], list[str]] = {
    ("GPT calls by outcome", "A"): ["model", "outcome", "calls", "cost_usd", "avg_latency_ms"],
    ("GPT strategies", "A"): [
        "strategy_id",
        "symbol",
        "status",
        "started",
        "ended",
        "bars_active",
        "trades",
        "realized_pnl",
        "confidence",
    ],
    ("templating", "var:run"): ["run_id"],
    ("templating", "var:symbol"): ["symbol"],
    ("Equity (latest)", "A"): ["Equity"],
    ("Activity", "A"): ["Signals", "Decisions", "Critical alerts", "Dead letters"],
    ("Orders and fills", "A"): ["Orders", "Rejected", "Fills", "Notional", "Fees"],
    ("Equity and cash", "A"): ["time", "Equity", "Cash"],
    ("Positions by symbol (last snapshot)", "A"): [
        "symbol",
        "position",
        "avg_price",
        "mark",
        "market_value",
        "unrealized",
        "realized",
        "as_of",
    ],
    ("Close price: $symbol", "A"): ["time", "Close", "VWAP"],
    ("Signals per trigger", "A"): ["time", "trigger", "signals"],
    ("Decisions per branch / status", "A"): ["time", "outcome", "decisions"],
    ("Risk gate: rejections and adjust rounds", "A"): [
        "time",
        "Rejected decisions",
        "Adjusted decisions",
        "Adjust rounds",
    ],
    ("Failed risk checks", "A"): ["risk_check", "failures"],
    ("Orders by status", "A"): ["time", "status", "orders"],
    ("Fill notional and fees", "A"): ["time", "Notional", "Fees"],
    ("Fill slippage vs bar open", "A"): [
        "symbol",
        "fills",
        "filled_qty",
        "slippage_cost",
        "slippage_bps",
    ],
    ("Alerts by severity", "A"): ["severity", "alerts"],
    ("Latest alerts", "A"): ["time", "severity", "source", "message", "context"],
    ("Dead letters by reason", "A"): ["reason", "dead_letters"],
    ("Latest dead letters", "A"): [
        "time",
        "topic",
        "partition",
        "offset",
        "reason",
        "payload_head",
    ],
    # stratflow-control.json
    ("Trading state (end of range)", "A"): ["state"],
    ("Commands", "A"): ["Applied", "Refused", "State changes", "Settings commands"],
    ("Trading state timeline", "A"): ["time", "state"],
    ("Commands and acknowledgements", "A"): [
        "time",
        "action",
        "outcome",
        "state_before",
        "state_after",
        "issued_by",
        "issued",
        "reason",
        "command_id",
    ],
    ("Commands by kind", "A"): ["kind", "applied", "refused"],
    ("Settings changes (who, when, diff)", "A"): [
        "time",
        "who",
        "key",
        "before",
        "after",
        "ack",
        "applied_at",
        "change_id",
    ],
    ("Settings changes by person", "A"): ["who", "changes", "keys_changed"],
    # stratflow-validation.json
    ("templating", "var:family"): ["family"],
    ("Trials per strategy family", "A"): [
        "family",
        "source",
        "trials",
        "sweeps",
        "best_sharpe",
        "mean_sharpe",
        "never_traded",
        "last_tried",
    ],
    ("Trials tried: $family", "A"): ["time", "source", "trials"],
    ("Best trials: $family", "A"): [
        "strategy",
        "symbol",
        "source",
        "sharpe",
        "period",
        "data_from",
        "data_to",
        "tried",
        "sweep",
    ],
    ("Promotion by setup", "A"): [
        "setup_hash",
        "strategies",
        "backtest",
        "validation",
        "paper",
        "approved_by",
        "demotions",
        "last_step",
        "last_recorded",
    ],
    ("Promotion steps", "A"): [
        "time",
        "setup_hash",
        "strategies",
        "step",
        "outcome",
        "who",
        "run_id",
        "note",
        "figures",
    ],
}

# Panels that aggregate everything into one row (stat panels).
SINGLE_ROW = {
    "Equity (latest)",
    "Activity",
    "Orders and fills",
    "Trading state (end of range)",
    "Commands",
}


def test_every_query_has_expected_columns_listed() -> None:
    listed = {(q.panel_title, q.ref_id) for q in QUERIES}
    assert listed == set(EXPECTED_COLUMNS)


def _describe(store: Store, sql: str) -> list[tuple[str, str]]:
    return [(r["name"], r["type"]) for r in store.query(f"DESCRIBE TABLE ({sql})")]


def run(store: Store, title: str, ref: str = "A", ctx: GrafanaContext = RANGE) -> list[dict]:
    """The rows of a panel's query (a template variable shared by dashboards: the same SQL)."""
    found = {q.raw_sql for q in QUERIES if q.panel_title == title and q.ref_id == ref}
    (sql,) = found
    return store.query(expand_grafana_sql(sql, ctx))


@pytest.mark.parametrize("q", QUERIES, ids=_query_id)
def test_query_runs_with_expected_columns(store: Store, q: Query) -> None:
    sql = expand_grafana_sql(q.raw_sql, RANGE)
    columns = _describe(store, sql)
    assert [name for name, _ in columns] == EXPECTED_COLUMNS[(q.panel_title, q.ref_id)]
    rows = store.query(sql)
    assert rows, f"{_query_id(q)} returned nothing for the test session"
    assert list(rows[0]) == [name for name, _ in columns]
    if q.panel_title in SINGLE_ROW:
        assert len(rows) == 1
    if q.fmt == FORMAT_TIME_SERIES:
        # The plugin needs a time column, ascending, to build (and pivot) the series.
        name, type_ = columns[0]
        assert name == "time" and type_.startswith("DateTime"), columns[0]
        times = [r["time"] for r in rows]
        assert times == sorted(times)
        assert all(RANGE.from_ms // 1000 <= t.timestamp() <= RANGE.to_ms / 1000 for t in times)


@pytest.mark.parametrize("q", QUERIES, ids=_query_id)
def test_query_runs_on_an_empty_range(store: Store, q: Query) -> None:
    rows = store.query(expand_grafana_sql(q.raw_sql, EMPTY_RANGE))
    if q.panel_title in SINGLE_ROW:
        assert len(rows) == 1
    elif q.ref_id == "var:run":
        assert [r["run_id"] for r in rows] == [RUN, EARLIER_RUN]  # not bound to the time range
    elif q.ref_id == "var:family":
        assert [r["family"] for r in rows] == ["breakout", "sma_cross"]  # the whole ledger
    elif q.panel_title == "templating":
        assert [r["symbol"] for r in rows] == ["AAPL", "MSFT"]  # not bound to the time range
    else:
        assert rows == [], _query_id(q)


def test_a_wrong_column_or_table_fails(store: Store) -> None:
    """The harness catches what a panel would show as an error in Grafana."""
    for sql in (
        "SELECT $__timeInterval(ts) AS time, count() AS n FROM fills FINAL"
        " WHERE $__timeFilter(ts) AND fees > 0 GROUP BY time",
        "SELECT count() AS n FROM fill FINAL WHERE $__timeFilter(ts)",
        "SELECT count() AS n FROM news FINAL WHERE $__timeFilter(ts_ms)"
        " AND symbol = ${symbol:singlequote}",
    ):
        expanded = expand_grafana_sql(sql, RANGE)
        with pytest.raises(ClickHouseQueryError):
            store.query(expanded)
        with pytest.raises(ClickHouseQueryError):
            _describe(store, expanded)


# --------------------------------------------------------------------------------------------
# Values: each id counts once although every row was written twice
# --------------------------------------------------------------------------------------------


def _minute(n: int) -> datetime:
    return datetime.fromtimestamp((T0 + n * MIN) / 1000, tz=UTC)


def test_run_variable_lists_the_newest_run_first(store: Store) -> None:
    assert run(store, "templating", "var:run") == [{"run_id": RUN}, {"run_id": EARLIER_RUN}]


def test_every_panel_reads_one_run() -> None:
    """Each run keeps its own rows (run_id ends every sorting key), so every read of a table
    must pick the run, or two runs of the same data would count twice. The ledgers that outlive
    runs (`RUN_FREE_TABLES`: trials, promotions) are read whole: no run is picked there."""
    tables = "|".join(SCHEMA_TABLES)
    reads = re.compile(rf"\bFROM\s+`?({tables})`?(?:\s+AS\s+\w+)?", re.I)
    for q in QUERIES:
        if q.ref_id == "var:run":
            continue
        found = reads.findall(q.raw_sql)
        assert found, _query_id(q)
        scoped = [t for t in found if t not in RUN_FREE_TABLES]
        assert q.raw_sql.count("run_id = ${run:singlequote}") == len(scoped), _query_id(q)
        if not scoped:
            assert "$run" not in q.raw_sql and "${run" not in q.raw_sql, _query_id(q)


def test_run_variables_are_the_same_everywhere() -> None:
    """A dashboard link keeps the chosen run only if every dashboard lists runs alike."""
    sqls = {q.raw_sql for q in QUERIES if q.ref_id == "var:run"}
    assert len(sqls) == 1


def test_symbol_variable(store: Store) -> None:
    assert run(store, "templating", "var:symbol") == [{"symbol": "AAPL"}, {"symbol": "MSFT"}]


def test_close_price_of_the_chosen_symbol(store: Store) -> None:
    rows = run(store, "Close price: $symbol")
    assert [(r["time"], r["Close"]) for r in rows] == [
        (_minute(0), D("100.5")),
        (_minute(1), D("101.5")),
        (_minute(2), D("101.8")),
        (_minute(3), D("102.2")),
    ]
    msft = GrafanaContext(
        RANGE.from_ms, RANGE.to_ms, RANGE.interval_ms, {"symbol": "MSFT", "run": RUN}
    )
    assert [r["Close"] for r in run(store, "Close price: $symbol", ctx=msft)] == [
        D("300"),
        D("301"),
    ]


def test_orders_and_fills_stat(store: Store) -> None:
    # Old order and fill are outside the range; fees 0.51 + 0.06 + 0.20, each fill once.
    assert run(store, "Orders and fills") == [
        {
            "Orders": 4,
            "Rejected": 1,
            "Fills": 3,
            "Notional": D("2018.601"),  # 10 x 101.0505 + 2 x 300.15 + 4 x 101.949
            "Fees": D("0.77"),
        }
    ]


def test_fill_notional_and_fees_over_time(store: Store) -> None:
    rows = run(store, "Fill notional and fees")
    assert [(r["time"], r["Notional"], r["Fees"]) for r in rows] == [
        (_minute(1), D("1610.805"), D("0.57")),
        (_minute(2), D("407.796"), D("0.20")),
    ]


def test_activity_stat(store: Store) -> None:
    assert run(store, "Activity") == [
        {"Signals": 6, "Decisions": 6, "Critical alerts": 1, "Dead letters": 6}
    ]


def test_orders_by_status_shows_final_states_only(store: Store) -> None:
    rows = run(store, "Orders by status")
    assert [(r["time"], r["status"], r["orders"]) for r in rows] == [
        (_minute(1), "filled", 2),
        (_minute(2), "filled", 1),
        (_minute(3), "rejected", 1),
    ]


def test_decisions_per_branch_and_status(store: Store) -> None:
    rows = run(store, "Decisions per branch / status")
    assert [(r["time"], r["outcome"], r["decisions"]) for r in rows] == [
        (_minute(1), "routine / executed", 2),
        (_minute(2), "routine / rejected", 1),
        (_minute(2), "strategic / executed", 1),
        (_minute(3), "routine / executed", 1),
        (_minute(4), "routine / no_action", 1),
    ]


def test_risk_gate_rejections_and_adjust_rounds(store: Store) -> None:
    rows = run(store, "Risk gate: rejections and adjust rounds")
    by_time = {
        r["time"]: (r["Rejected decisions"], r["Adjusted decisions"], r["Adjust rounds"])
        for r in rows
    }
    assert by_time == {
        _minute(1): (0, 0, 0),
        _minute(2): (1, 2, 3),  # d5 rejected after 3 rounds, d2 passed in its 2nd round
        _minute(3): (0, 0, 0),
        _minute(4): (0, 0, 0),
    }


def test_failed_risk_checks(store: Store) -> None:
    assert run(store, "Failed risk checks") == [
        {"risk_check": "max_order_notional", "failures": 3},
        {"risk_check": "max_position", "failures": 2},
    ]


def test_fill_slippage_vs_bar_open(store: Store) -> None:
    assert run(store, "Fill slippage vs bar open") == [
        {
            "symbol": "AAPL",
            "fills": 2,
            "filled_qty": D("14"),
            "slippage_cost": D("0.709"),  # 10 x 0.0505 (buy) + 4 x 0.051 (sell)
            "slippage_bps": 5.0,
        },
        {
            "symbol": "MSFT",
            "fills": 1,
            "filled_qty": D("2"),
            "slippage_cost": D("0.30"),
            "slippage_bps": 5.0,
        },
    ]


def test_positions_last_snapshot(store: Store) -> None:
    rows = run(store, "Positions by symbol (last snapshot)")
    got = {
        r["symbol"]: (
            r["position"],
            r["avg_price"],
            r["mark"],
            r["unrealized"],
            r["realized"],
            r["as_of"],
        )
        for r in rows
    }
    assert got == {
        "AAPL": (D("6"), D("101.0505"), D("102.2"), D("6.897"), D("3.594"), _minute(4)),
        "MSFT": (D("2"), D("300.15"), D("301"), D("1.70"), D("0"), _minute(2)),
    }
    assert {r["symbol"]: r["market_value"] for r in rows} == pytest.approx(
        {"AAPL": 613.2, "MSFT": 602.0}
    )


def test_equity_and_cash(store: Store) -> None:
    (latest,) = run(store, "Equity (latest)")
    assert latest == {"Equity": D("10011.421")}
    rows = run(store, "Equity and cash")
    assert [r["time"] for r in rows] == [_minute(1), _minute(2), _minute(3), _minute(4)]
    # At minute 2 both symbols have a snapshot with the same ts_ms; only the unique ones are pinned.
    assert (rows[0]["Equity"], rows[0]["Cash"]) == (D("10000"), D("10000"))
    assert (rows[2]["Equity"], rows[2]["Cash"]) == (D("10009.021"), D("8796.221"))
    assert (rows[3]["Equity"], rows[3]["Cash"]) == (D("10011.421"), D("8796.221"))


def test_signals_per_trigger(store: Store) -> None:
    totals: dict[str, int] = {}
    for r in run(store, "Signals per trigger"):
        totals[r["trigger"]] = totals.get(r["trigger"], 0) + r["signals"]
    assert totals == {"sma_cross": 3, "channel_breakout": 1, "volume_spike": 2}


def test_alerts_by_severity_and_latest(store: Store) -> None:
    assert run(store, "Alerts by severity") == [
        {"severity": "critical", "alerts": 1},
        {"severity": "warning", "alerts": 4},
        {"severity": "info", "alerts": 1},
    ]
    latest = run(store, "Latest alerts")
    assert len(latest) == 6
    assert (latest[0]["time"], latest[0]["source"]) == (_minute(3), "executor")
    assert latest[-1]["message"] == "desk started"
    assert json.loads(latest[0]["context"]) == {"decision_id": f"sf-AAPL@{T0 + 3 * MIN}-0"}


def test_dead_letters_by_reason_and_latest(store: Store) -> None:
    assert run(store, "Dead letters by reason") == [
        {"reason": "empty message", "dead_letters": 3},
        {"reason": "not a JSON object", "dead_letters": 2},
        {"reason": UNKNOWN_TYPE, "dead_letters": 1},
    ]
    latest = run(store, "Latest dead letters")
    assert [r["offset"] for r in latest] == [15, 14, 13, 12, 11, 10]
    assert latest[1]["payload_head"] == LONG_PAYLOAD[:200]
    assert {r["partition"] for r in latest} == {0}


# --------------------------------------------------------------------------------------------
# stratflow-control.json: trading states, commands, settings changes
# --------------------------------------------------------------------------------------------


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def test_trading_state_at_the_end_of_the_range(store: Store) -> None:
    assert run(store, "Trading state (end of range)") == [{"state": "reducing"}]
    # Before any command the desk trades: active. Between c-2 and c-4 it was halted (the refused
    # c-3 changed nothing).
    assert run(store, "Trading state (end of range)", ctx=EMPTY_RANGE) == [{"state": "active"}]
    halted = GrafanaContext(RANGE.from_ms, T0 + 3 * MIN + 45_000, MIN, RANGE.variables)
    assert run(store, "Trading state (end of range)", ctx=halted) == [{"state": "halted"}]


def test_trading_state_timeline_starts_with_the_state_in_force(store: Store) -> None:
    rows = run(store, "Trading state timeline")
    applied = [a for a in control_acks() if a.outcome == "applied" and a.applied_ms >= T0]
    assert [(r["time"], r["state"]) for r in rows] == [
        (_at(RANGE.from_ms // 1000 * 1000), "reducing"),  # set by c-old, before the range
        *[(_at(a.applied_ms), a.state_after.value) for a in applied],
    ]


def test_commands_stat_and_kinds(store: Store) -> None:
    assert run(store, "Commands") == [
        {"Applied": 4, "Refused": 1, "State changes": 3, "Settings commands": 1}
    ]
    assert run(store, "Commands by kind") == [
        {"kind": "change_settings", "applied": 1, "refused": 0},
        {"kind": "set_trading_state", "applied": 3, "refused": 1},
    ]


def test_commands_and_acknowledgements_newest_first(store: Store) -> None:
    rows = run(store, "Commands and acknowledgements")
    assert [r["command_id"] for r in rows] == ["c-4", "c-3", "c-2", "set-1", "c-1"]
    refused = rows[1]
    assert (refused["outcome"], refused["state_before"], refused["state_after"]) == (
        "refused",
        "halted",
        "halted",
    )
    assert refused["reason"] == REFUSED
    assert (refused["issued_by"], refused["issued"]) == ("bob", _at(T0 + 3 * MIN + 29_000))


def test_settings_changes_one_row_per_key_with_the_ack(store: Store) -> None:
    rows = run(store, "Settings changes (who, when, diff)")
    got = [
        (r["change_id"], r["who"], r["key"], r["before"], r["after"], r["ack"], r["applied_at"])
        for r in rows
    ]
    assert got == [
        ("set-2", "bob", "risk.max_position", "60", "80", "pending", None),
        ("set-1", "alice", "gpt.model", '"gpt-4o-mini"', '"gpt-4o"', "applied", _at(T0 + 150_000)),
        (
            "set-1",
            "alice",
            "risk.max_order_notional",
            "25000",
            "30000",
            "applied",
            _at(T0 + 150_000),
        ),
    ]  # set-old is before the range, set-earlier belongs to the earlier run
    assert [r["time"] for r in rows] == [_at(T0 + 4 * MIN), _at(T0 + 140_000), _at(T0 + 140_000)]
    assert run(store, "Settings changes by person") == [
        {"who": "alice", "changes": 1, "keys_changed": 2},
        {"who": "bob", "changes": 1, "keys_changed": 1},
    ]


# --------------------------------------------------------------------------------------------
# stratflow-validation.json: the trials ledger and promotions
# --------------------------------------------------------------------------------------------


def _in_range(ms: int) -> bool:
    return RANGE.from_ms // 1000 * 1000 <= ms <= RANGE.to_ms


def test_family_variable_lists_every_family_of_the_ledger(store: Store) -> None:
    assert run(store, "templating", "var:family") == [
        {"family": "breakout"},
        {"family": "sma_cross"},
    ]


def test_trials_per_family_count_every_sweep_once(store: Store) -> None:
    rows = run(store, "Trials per strategy family")
    expected: dict[tuple[str, str], list[Trial]] = {}
    for t in trials():
        if _in_range(t.tried_ms):
            expected.setdefault((t.family, t.source), []).append(t)
    assert [(r["family"], r["source"]) for r in rows] == sorted(expected)
    for r in rows:
        group = expected[(r["family"], r["source"])]
        sharpes = [t.sharpe for t in group if t.sharpe is not None]
        assert r["trials"] == len(group)
        assert r["sweeps"] == len({t.run_id for t in group})
        assert r["never_traded"] == len(group) - len(sharpes)
        assert r["best_sharpe"] == pytest.approx(max(sharpes))
        assert r["mean_sharpe"] == pytest.approx(sum(sharpes) / len(sharpes))
        assert r["last_tried"] == _at(max(t.tried_ms for t in group))
    sma = {r["source"]: r for r in rows if r["family"] == "sma_cross"}
    assert (sma["sweep"]["trials"], sma["sweep"]["sweeps"], sma["sweep"]["never_traded"]) == (
        4,
        2,
        1,
    )  # sweep-0 is before the range; sma_cross(10,30) never traded


def test_trials_over_time_and_best_trials_of_the_family(store: Store) -> None:
    rows = run(store, "Trials tried: $family")
    assert [(r["time"], r["source"], r["trials"]) for r in rows] == [
        (_minute(1), "sweep", 3),
        (_minute(2), "sweep", 1),
        (_minute(2), "walk_forward", 1),
    ]
    best = run(store, "Best trials: $family")
    ranked = sorted(
        (t for t in trials() if t.family == "sma_cross" and _in_range(t.tried_ms) and t.sharpe),
        key=lambda t: -(t.sharpe or 0.0),
    )
    assert [(r["strategy"], r["sweep"]) for r in best] == [(t.strategy, t.run_id) for t in ranked]
    assert [r["sharpe"] for r in best] == pytest.approx([t.sharpe for t in ranked])
    assert "sma_cross(10,30)" not in {r["strategy"] for r in best}  # no Sharpe: never traded
    breakout = GrafanaContext(RANGE.from_ms, RANGE.to_ms, MIN, {"family": "breakout"})
    assert [r["strategy"] for r in run(store, "Best trials: $family", ctx=breakout)] == [
        "breakout(20)"
    ]


def test_promotion_by_setup(store: Store) -> None:
    rows = run(store, "Promotion by setup")
    got = [
        (
            r["setup_hash"],
            r["strategies"],
            r["backtest"],
            r["validation"],
            r["paper"],
            r["approved_by"],
            r["demotions"],
            r["last_step"],
            r["last_recorded"],
        )
        for r in rows
    ]
    assert got == [
        (
            "a" * 16,
            "sma_cross, breakout",
            "pass",
            "warn",
            "pass",
            "alice",
            0,
            "approval",
            _minute(4),
        ),
        # The backtest that passed long ago is outside the range; the one inside failed.
        ("b" * 16, "gpt controller", "fail", "", "", "", 0, "backtest", _minute(2)),
    ]


def test_promotion_steps_newest_first(store: Store) -> None:
    rows = run(store, "Promotion steps")
    assert [(r["setup_hash"][0], r["step"], r["outcome"]) for r in rows] == [
        ("a", "approval", "pass"),
        ("a", "paper", "pass"),
        ("a", "validation", "warn"),
        ("b", "backtest", "fail"),
        ("a", "backtest", "pass"),
    ]
    assert (rows[0]["who"], rows[0]["run_id"]) == ("alice", "")
    assert json.loads(rows[1]["figures"]) == {"sharpe": 1.2}


def test_ledger_duplicates_are_really_stored(store: Store) -> None:
    """Every ledger row was written twice: only FINAL keeps the panels' counts right."""
    for table, where in (
        ("control_log", f"WHERE run_id = '{RUN}'"),  # the earlier run wrote its acks once
        ("settings_changes", ""),
        ("trials", ""),
        ("promotions", ""),
    ):
        (raw,) = store.query(f"SELECT count() AS n FROM {table} {where}")
        (final,) = store.query(f"SELECT count() AS n FROM {table} FINAL {where}")
        assert final["n"] > 0, table
        assert raw["n"] == 2 * final["n"], table
