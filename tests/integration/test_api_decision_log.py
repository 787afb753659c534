"""The control API on a real run's decision log (issue 13): a GPT backtest through the real
broker, the Bytewax flow (in its own process), the openai SDK and the local OpenAI-compatible
server into chdb; then the API, in-process on that directory, searches its decisions, orders
and fills (filters, pages that neither repeat nor skip a row), tells one GPT decision's whole
story as the tables hold it, sums its status, and schemathesis, generating requests from the
API's OpenAPI document, gets no 5xx from any operation."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from html import escape as html_escape
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from starlette.testclient import TestClient

from api.server.app import create_app
from api.server.auth import ApiToken
from api.server.context import ApiContext, StoreAccess
from connectors.files.replay import replay
from connectors.sim.openai_server import LocalOpenAIServer, Scenario
from connectors.sim.scenario import generate_scenario
from connectors.store.clickhouse import Store
from models.config.settings import Settings
from tests.support.api import AUTH, TOKEN, Clock, FlowDouble
from tests.support.flowkit import create_topics, make_settings, run_flow_subprocess

pytestmark = pytest.mark.kafka

START = int(datetime(2025, 3, 3, 14, 0, tzinfo=UTC).timestamp() * 1000)
MODEL = "stratflow-local"
STRATEGY = {
    "action": "create",
    "strategy": {
        "name": "trend-follow",
        "version": 1,
        "universe": ["SIMA", "SIMB"],
        "entry": {"left": "sma_fast", "op": ">", "right": "sma_slow"},
        "exit": {"left": "sma_fast", "op": "crosses_below", "right": "sma_slow"},
        "position_fraction": 0.15,
        "stop_loss_pct": 0.03,
        "take_profit_pct": None,
        "target_weights": [],
        "horizon_bars": 60,
        "rationale": "ride the trend while the fast average leads",
        "confidence": 0.6,
    },
    "rationale": "breakout with momentum",
    "confidence": 0.6,
}


@pytest.fixture(scope="module")
def logged(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, Store, str]]:
    tmp: Path = tmp_path_factory.mktemp("api-log")
    settings = make_settings(
        tmp,
        {"SIMA": {}, "SIMB": {}},
        features={"sma_fast": 5, "sma_slow": 15, "rsi": 14, "volume_z": 10, "breakout": 10},
        gpt={"model": MODEL, "cache_dir": str(tmp / "answers")},
    )
    create_topics(kafka_bootstrap, settings)
    ticks = generate_scenario(["SIMA", "SIMB"], START, 120 * 60, 2.0, seed=7)
    replay(kafka_bootstrap, settings.kafka.topics.market, ticks)
    with LocalOpenAIServer(api_key="sk-api", default=Scenario.answer(STRATEGY)) as server:
        env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-api"}
        run_flow_subprocess(settings, kafka_bootstrap, tmp, env=env)
    # The flow's process has ended: its chdb directory is this process's to open.
    with Store.open(settings.clickhouse) as store:
        (row,) = store.query("SELECT DISTINCT run_id FROM decisions")
        yield settings, store, str(row["run_id"])


@pytest.fixture(scope="module")
def app_ctx(logged: tuple[Settings, Store, str]) -> Iterator[tuple[Any, ApiContext]]:
    settings, store, _ = logged
    # Served on its own (`stratflow serve`): no run of its own, the newest run by default;
    # commands go to a stand-in flow writing acks for another run id (not this run's rows).
    with Store.open(settings.clickhouse, run_id=f"cmds-{uuid.uuid4().hex[:6]}") as flow_store:
        ctx = ApiContext(
            settings=settings,
            store=StoreAccess(store),
            bus=FlowDouble(flow_store, Clock()),
            token=ApiToken(TOKEN),
            clock=Clock(),
        )
        yield create_app(ctx), ctx


@pytest.fixture(scope="module")
def client(app_ctx: tuple[Any, ApiContext]) -> Iterator[TestClient]:
    with TestClient(app_ctx[0], raise_server_exceptions=False) as c:
        yield c


def _sql(store: Store, sql: str, run_id: str) -> list[dict[str, Any]]:
    return store.query(sql, {"run": run_id})


def _all_pages(client: TestClient, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        more = {"cursor": cursor} if cursor is not None else {}
        page = client.get(path, params={**params, **more}, headers=AUTH)
        assert page.status_code == 200, page.text
        doc = page.json()
        items.extend(doc["items"])
        cursor = doc["next_cursor"]
        if cursor is None:
            return items


def test_pages_of_decisions_neither_repeat_nor_skip_a_row(
    client: TestClient, logged: tuple[Settings, Store, str]
) -> None:
    _, store, run_id = logged
    expected = [
        r["decision_id"]
        for r in _sql(
            store,
            "SELECT decision_id FROM decisions FINAL WHERE run_id = {run:String} "
            "ORDER BY ts_ms DESC, decision_id DESC",
            run_id,
        )
    ]
    assert len(expected) > 20
    paged = _all_pages(client, "/api/decisions", limit=7)
    assert [d["decision_id"] for d in paged] == expected
    assert client.get("/api/decisions", headers=AUTH).json()["run_id"] == run_id


def test_search_filters_by_symbol_time_status_and_side(
    client: TestClient, logged: tuple[Settings, Store, str]
) -> None:
    _, store, run_id = logged
    sima = _all_pages(client, "/api/decisions", symbol="SIMA", limit=500)
    assert sima and {d["symbol"] for d in sima} == {"SIMA"}
    (n,) = _sql(
        store,
        "SELECT count() AS n FROM decisions FINAL WHERE run_id = {run:String} AND symbol = 'SIMA'",
        run_id,
    )
    assert len(sima) == n["n"]
    start, end = START + 30 * 60_000, START + 60 * 60_000
    window = _all_pages(client, "/api/decisions", start_ms=start, end_ms=end, limit=500)
    assert window and all(start <= d["ts_ms"] < end for d in window)
    executed = _all_pages(client, "/api/decisions", status="executed", limit=500)
    assert executed and {d["status"] for d in executed} == {"executed"}
    filled = _all_pages(client, "/api/orders", status="filled", limit=500)
    assert filled and {o["status"] for o in filled} == {"filled"}
    sells = _all_pages(client, "/api/fills", side="sell", limit=500)
    fills = _all_pages(client, "/api/fills", limit=500)
    assert sells and {f["side"] for f in sells} == {"sell"} and len(sells) < len(fills)
    assert all(isinstance(f["price"], str) for f in fills)  # exact decimals, never floats


def test_a_gpt_decision_tells_its_whole_story(
    client: TestClient, logged: tuple[Settings, Store, str]
) -> None:
    _, store, run_id = logged
    (call,) = _sql(
        store,
        "SELECT decision_id FROM gpt_calls FINAL WHERE run_id = {run:String} AND outcome = 'ok' "
        "AND decision_id IN (SELECT decision_id FROM orders FINAL WHERE run_id = {run:String}) "
        "ORDER BY ts_ms LIMIT 1",
        run_id,
    )
    decision_id = call["decision_id"]
    story = client.get(f"/api/decisions/{decision_id}", headers=AUTH)
    assert story.status_code == 200, story.text
    s = story.json()
    assert s["decision_id"] == decision_id and s["run_id"] == run_id
    assert s["triggers"] and all(t["symbol"] == s["symbol"] for t in s["triggers"])
    assert "close" in s["features"]
    assert s["rounds"] and s["rounds"][0]["proposal"]["controller"] == "gpt"
    assert all("verdict" in r for r in s["rounds"])
    (gpt,) = [c for c in s["gpt_calls"] if c["outcome"] == "ok"]
    assert gpt["prompt_hash"] and "trend-follow" in gpt["answer"] and gpt["model"] == MODEL
    orders = _sql(
        store,
        "SELECT client_order_id FROM orders FINAL WHERE run_id = {run:String} "
        f"AND decision_id = '{decision_id}' ORDER BY placed_ms, client_order_id",
        run_id,
    )
    assert [o["client_order_id"] for o in s["orders"]] == [o["client_order_id"] for o in orders]
    fills = _sql(
        store,
        "SELECT fill_id FROM fills FINAL WHERE run_id = {run:String} "
        f"AND decision_id = '{decision_id}' ORDER BY ts_ms, fill_id",
        run_id,
    )
    assert [f["fill_id"] for f in s["fills"]] == [f["fill_id"] for f in fills] and fills
    assert s["trading_state"]["state_after"] == "active"
    # The decision that started GPT's strategy names it in its story.
    (activation,) = _sql(
        store,
        "SELECT activation_id FROM strategies FINAL WHERE run_id = {run:String} LIMIT 1",
        run_id,
    )
    started = client.get(f"/api/decisions/{activation['activation_id']}", headers=AUTH).json()
    assert started["strategy"]["strategy_id"].startswith("trend-follow")
    assert started["strategy"]["activation_id"] == started["decision_id"]
    missing = client.get("/api/decisions/SIMA@1", headers=AUTH)
    assert missing.status_code == 404


def test_a_decision_id_with_a_slash_is_found(
    client: TestClient, logged: tuple[Settings, Store, str]
) -> None:
    _, store, run_id = logged
    rows = _sql(
        store,
        "SELECT decision_id FROM decisions FINAL WHERE run_id = {run:String} "
        "AND position(decision_id, '/') > 0 LIMIT 1",
        run_id,
    )
    if not rows:
        pytest.skip("this run has no decision of a running strategy")
    r = client.get(f"/api/decisions/{rows[0]['decision_id']}", headers=AUTH)
    assert r.status_code == 200 and r.json()["decision_id"] == rows[0]["decision_id"]


def test_the_status_sums_the_run(client: TestClient, logged: tuple[Settings, Store, str]) -> None:
    _, store, run_id = logged
    doc = client.get("/api/status", headers=AUTH).json()
    assert doc["run_id"] == run_id and doc["trading_state"] == "active"
    (last,) = _sql(
        store,
        "SELECT equity, cash FROM positions FINAL WHERE run_id = {run:String} "
        "ORDER BY ts_ms DESC, symbol DESC LIMIT 1",
        run_id,
    )
    assert doc["equity"] == str(last["equity"]) and doc["cash"] == str(last["cash"])
    (gpt,) = _sql(
        store,
        "SELECT count() AS n, sum(cost) AS cost FROM gpt_calls FINAL WHERE run_id = {run:String}",
        run_id,
    )
    assert doc["gpt"]["calls"] == gpt["n"] > 0 and doc["gpt"]["cost_usd"] == str(gpt["cost"])
    assert len(doc["last_decisions"]) == 10
    assert doc["consumer_lag"]["messages"] is None and "run --api" in doc["consumer_lag"]["note"]
    assert json.dumps(doc)  # plain JSON all through


@pytest.mark.slow
def test_no_request_the_spec_allows_gets_a_5xx(app_ctx: tuple[Any, ApiContext]) -> None:
    """schemathesis's cases of every operation of the OpenAPI document, sent with the token:
    what the document allows (positive) and what it does not (negative: wrong types, missing
    fields, values out of bounds), each answered below 500. Driven by hand rather than
    by its pytest plugin, which pytest 9 no longer loads lazily."""
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app_ctx[0])
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 11
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    for operation, mode in itertools.product(operations, modes):

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def no_5xx(case: Any) -> None:
            case.call_and_validate(headers=AUTH, checks=[not_a_server_error])

        try:
            no_5xx()
        except Unsatisfiable:  # nothing to get wrong (an operation without parameters)
            assert mode is GenerationMode.NEGATIVE


def test_the_audit_export_holds_every_decision_of_the_range_with_its_story(
    logged: tuple[Settings, Store, str], tmp_path: Path
) -> None:
    """`stratflow audit` on the GPT run: every decision in the range, each round's verdict,
    the GPT calls, orders and fills; the tables (CSV and Parquet) hold the same rows."""
    import pyarrow.parquet as pq

    from api.audit_report import read_audit
    from tests.support.cli import run_cli
    from tests.support.flowkit import write_config

    settings, store, run_id = logged
    start, end = START + 30 * 60_000, START + 90 * 60_000
    expected = _sql(
        store,
        "SELECT decision_id FROM decisions FINAL WHERE run_id = {run:String} "
        f"AND ts_ms >= {start} AND ts_ms < {end} ORDER BY ts_ms, decision_id",
        run_id,
    )
    found = read_audit(store, run_id, start, end)
    assert [d["decision_id"] for d in found.decisions] == [r["decision_id"] for r in expected]
    assert found.decisions and found.gpt_calls and found.orders and found.fills
    assert {o["decision_id"] for o in found.orders} <= {d["decision_id"] for d in found.decisions}
    cfg = write_config(settings, tmp_path / "cfg.yaml")
    frm = datetime.fromtimestamp(start / 1000, UTC).isoformat()
    to = datetime.fromtimestamp(end / 1000, UTC).isoformat()
    done = run_cli("audit", "--from", frm, "--to", to, "-c", str(cfg), "--out", "a", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (folder,) = (tmp_path / "a").iterdir()
    page = (folder / "audit.html").read_text()
    assert all(html_escape(d["decision_id"]) in page for d in found.decisions)
    assert page.count("<div class=round>") == sum(
        len(json.loads(d["rounds"])) for d in found.decisions
    )
    table = pq.read_table(folder / "decisions.parquet")
    assert table.column("decision_id").to_pylist() == [d["decision_id"] for d in found.decisions]
    bad = run_cli("audit", "--from", "yesterday", "--to", to, "-c", str(cfg), cwd=tmp_path)
    assert bad.returncode == 2 and "--from: a date or date-time" in bad.stderr
