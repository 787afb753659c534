"""The control API in-process (issue 13) on a real chdb store, with a stand-in for the flow
(`tests.support.api.FlowDouble`: the desk's control plane, acks into `control_log`): the token
guards every route and a refusal reveals nothing, mistakes are 422 naming the field, large
bodies 413, a halt needs the nonce of a first call, a command replayed after a restart is
applied once, a command the flow does not answer is 202, settings changes are validated,
sent and recorded, and a secret never leaves the server."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from api.server.context import ApiContext, RunInfo
from connectors.store.clickhouse import Store
from models.config.settings import Settings
from tests.support.api import AUTH, TOKEN, Clock, FlowDouble, api_client

SECRET = "pw-7c1d9e0b"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Store]]:
    tmp: Path = tmp_path_factory.mktemp("api")
    settings = Settings.model_validate(
        {
            "symbols": {"ABC": {}},
            "clickhouse": {"path": str(tmp / "clickhouse")},
            "notify": {"urls": [f"jsons://ops:{SECRET}@hooks.example/alerts"]},
        }
    )
    with Store.open(settings.clickhouse) as store:
        store.apply_schema()
        yield settings, store


@dataclass
class Api:
    client: TestClient
    ctx: ApiContext
    flow: FlowDouble
    clock: Clock
    run_id: str
    settings: Settings
    store: Store

    def log_rows(self, command_id: str) -> list[dict[str, Any]]:
        return self.store.query(
            "SELECT * FROM control_log WHERE command_id = {id:String} AND run_id = {run:String}",
            {"id": command_id, "run": self.run_id},
        )


def _api(base: tuple[Settings, Store], deaf: bool = False, bus: bool = True) -> Iterator[Api]:
    settings, store = base
    run_id = f"run-{uuid.uuid4().hex[:8]}"  # every test reads rows of a run of its own
    clock = Clock()
    with Store.open(settings.clickhouse, run_id=run_id) as flow_store:
        flow = FlowDouble(flow_store, clock, deaf=deaf)
        run = RunInfo(run_id, "simulated")
        with api_client(settings, store, flow if bus else None, clock, run) as (client, ctx):
            yield Api(client, ctx, flow, clock, run_id, settings, store)


@pytest.fixture
def api(base: tuple[Settings, Store]) -> Iterator[Api]:
    yield from _api(base)


@pytest.fixture
def deaf_api(base: tuple[Settings, Store]) -> Iterator[Api]:
    yield from _api(base, deaf=True)


def _guarded_requests(api: Api) -> list[tuple[str, str]]:
    """Every operation of the OpenAPI document but the health check, its path filled in."""
    spec = api.client.get("/api/openapi.json").json()
    out = []
    for path, operations in spec["paths"].items():
        if path != "/api/health":
            filled = path.replace("{decision_id}", "ABC@1").replace("{command_id}", "c1")
            out.extend((method.upper(), filled) for method in sorted(operations))
    return out


def test_every_route_but_health_needs_the_token_and_a_refusal_reveals_nothing(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    requests = _guarded_requests(api)
    assert len(requests) >= 10
    body = {"state": "paused"}
    for method, path in [*requests, ("GET", "/api/no-such-path"), ("POST", "/api/x")]:
        missing = api.client.request(method, path, json=body)
        assert (missing.status_code, missing.json()) == (401, {"detail": "not authenticated"})
        assert missing.headers["www-authenticate"] == "Bearer"
        for header in ("Bearer wrong-token-0000000000", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}"):
            wrong = api.client.request(method, path, json=body, headers={"Authorization": header})
            assert (wrong.status_code, wrong.json()) == (403, {"detail": "forbidden"}), path
        basic = api.client.request(method, path, headers={"Authorization": f"Basic {TOKEN}"})
        assert basic.status_code == 401
    # Not even a malformed body gets past the gate to be judged.
    raw = api.client.post("/api/control/state", content=b"{not json")
    assert raw.status_code == 401
    assert api.flow.sent == []
    assert api.client.get("/api/health").json() == {"status": "ok"}
    assert TOKEN not in caplog.text


def test_the_token_lets_a_request_in(api: Api) -> None:
    assert api.client.get("/api/status", headers=AUTH).status_code == 200
    assert api.client.get("/api/status", headers={"authorization": f"bearer {TOKEN}"}).is_success


@pytest.mark.parametrize(
    ("method", "path", "params", "body", "loc"),
    [
        ("GET", "/api/decisions", {"symbol": "abc"}, None, ["query", "symbol"]),
        ("GET", "/api/decisions", {"status": "maybe"}, None, ["query", "status"]),
        ("GET", "/api/decisions", {"limit": 0}, None, ["query", "limit"]),
        ("GET", "/api/orders", {"limit": 501}, None, ["query", "limit"]),
        ("GET", "/api/fills", {"start_ms": -1}, None, ["query", "start_ms"]),
        ("GET", "/api/fills", {"side": "long"}, None, ["query", "side"]),
        ("GET", "/api/orders", {"cursor": "not-a-cursor"}, None, ["query", "cursor"]),
        ("GET", "/api/status", {"run": "a b"}, None, ["query", "run"]),
        ("POST", "/api/control/state", None, {"state": "halted"}, ["body", "state"]),
        ("POST", "/api/control/state", None, {"state": "paused", "x": 1}, ["body", "x"]),
        ("POST", "/api/control/state", None, {"state": "paused", "wait_s": 99}, ["body", "wait_s"]),
        ("POST", "/api/control/state", None, {"state": "paused", "by": "a\nb"}, ["body", "by"]),
        (
            "POST",
            "/api/control/state",
            None,
            {"state": "paused", "command_id": "a b"},
            ["body", "command_id"],
        ),
        ("POST", "/api/control/mode", None, {"mode": "yolo"}, ["body", "mode"]),
        ("PATCH", "/api/settings", None, {"set": {}}, ["body", "set"]),
        (
            "PATCH",
            "/api/settings",
            None,
            {"set": {"risk.max_order_notional": "abc"}},
            ["body", "set", "risk.max_order_notional"],
        ),
        (
            "PATCH",
            "/api/settings",
            None,
            {"set": {"kafka.bootstrap": "h:1"}},
            ["body", "set", "kafka.bootstrap"],
        ),
        (
            "PATCH",
            "/api/settings",
            None,
            {"set": {"notify.urls": []}},
            ["body", "set", "notify.urls"],
        ),
    ],
)
def test_a_mistake_is_a_422_naming_the_field_and_nothing_is_sent(
    api: Api, method: str, path: str, params: Any, body: Any, loc: list[str]
) -> None:
    r = api.client.request(method, path, params=params, json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    (problem, *_) = r.json()["detail"]
    assert problem["loc"][: len(loc)] == loc and problem["msg"]
    assert api.flow.sent == []


def test_a_malformed_body_is_a_422(api: Api) -> None:
    r = api.client.post(
        "/api/control/state",
        content=b'{"state": ',
        headers={**AUTH, "content-type": "application/json"},
    )
    assert r.status_code == 422


def test_bodies_over_the_limit_are_413_whether_declared_or_streamed(api: Api) -> None:
    big = json.dumps({"state": "paused", "by": "x" * 20_000}).encode()
    declared = api.client.post("/api/control/state", content=big, headers=AUTH)
    assert declared.status_code == 413 and "larger than" in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b" " * 1000

    streamed = api.client.post(
        "/api/control/state",
        content=chunks(),
        headers={**AUTH, "content-type": "application/json"},
    )
    assert streamed.status_code == 413
    assert api.flow.sent == []
    assert declared.headers["cache-control"] == "no-store"


def test_no_cors_header_unless_origins_are_named(api: Api, base: tuple[Settings, Store]) -> None:
    r = api.client.get("/api/status", headers={**AUTH, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    settings, store = base
    with api_client(settings, store, cors_origins=("https://ops.example",)) as (client, _):
        ok = client.get("/api/health", headers={"Origin": "https://ops.example"})
        assert ok.headers["access-control-allow-origin"] == "https://ops.example"
        other = client.get("/api/health", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_a_halt_needs_the_nonce_of_a_first_call(api: Api) -> None:
    first = api.client.post("/api/control/halt", json={}, headers=AUTH)
    assert first.status_code == 428 and api.flow.sent == []
    nonce = first.json()["confirm"]
    assert first.json()["expires_ms"] == api.clock.ms + 60_000
    wrong = api.client.post("/api/control/halt", json={"confirm": "guess"}, headers=AUTH)
    assert wrong.status_code == 409 and api.flow.sent == []
    done = api.client.post("/api/control/halt", json={"confirm": nonce}, headers=AUTH)
    assert done.status_code == 200, done.text
    ack = done.json()["ack"]
    assert (ack["state_before"], ack["state_after"], ack["outcome"]) == (
        "active",
        "halted",
        "applied",
    )
    again = api.client.post("/api/control/halt", json={"confirm": nonce}, headers=AUTH)
    assert again.status_code == 409  # a nonce confirms once
    late = api.client.post("/api/control/halt", json={}, headers=AUTH).json()["confirm"]
    api.clock.ms += 60_001
    expired = api.client.post("/api/control/halt", json={"confirm": late}, headers=AUTH)
    assert expired.status_code == 409
    assert len(api.flow.sent) == 1
    # Halted -> active is refused by the flow: 409 with the ack saying why.
    refused = api.client.post("/api/control/state", json={"state": "active"}, headers=AUTH)
    assert refused.status_code == 409 and "not allowed" in refused.json()["ack"]["reason"]
    paused = api.client.post("/api/control/state", json={"state": "paused"}, headers=AUTH)
    assert paused.status_code == 200
    status = api.client.get("/api/status", headers=AUTH).json()
    assert status["trading_state"] == "paused" and status["served_from_run"]


def test_a_command_replayed_after_a_restart_is_applied_once(
    api: Api, base: tuple[Settings, Store]
) -> None:
    body = {"state": "paused", "command_id": "op-7", "by": "alice"}
    first = api.client.post("/api/control/state", json=body, headers=AUTH)
    assert first.status_code == 200 and not first.json()["replayed"]
    # The flow and the API restart: the plane comes back from its snapshot, the API anew.
    flow = api.flow.restarted()
    settings, store = base
    with api_client(settings, store, flow, api.clock, api.ctx.run) as (client, _):
        again = client.post("/api/control/state", json=body, headers=AUTH)
        assert again.status_code == 200 and again.json()["replayed"]
        assert again.json()["ack"] == first.json()["ack"]
        assert flow.sent == []  # known: not sent again
        # The flow reads the topic again from its snapshot's offsets: the id is applied once.
        assert flow.deliver(api.flow.sent[0]) is None
    assert len(api.log_rows("op-7")) == 1


def test_a_command_the_flow_does_not_answer_is_202_and_found_once_it_does(
    deaf_api: Api,
) -> None:
    r = deaf_api.client.post(
        "/api/control/state", json={"state": "reducing", "wait_s": 0}, headers=AUTH
    )
    assert r.status_code == 202 and r.json()["acknowledged"] is False
    command_id = r.json()["command_id"]
    lookup = f"/api/control/commands/{command_id}"
    assert deaf_api.client.get(lookup, headers=AUTH).status_code == 404
    deaf_api.flow.deliver(deaf_api.flow.sent[0])
    found = deaf_api.client.get(lookup, headers=AUTH)
    assert found.status_code == 200 and found.json()["ack"]["state_after"] == "reducing"


def test_without_a_broker_commands_are_503_and_reads_work(base: tuple[Settings, Store]) -> None:
    api = next(_api(base, bus=False))
    r = api.client.post("/api/control/state", json={"state": "paused"}, headers=AUTH)
    assert r.status_code == 503 and "no broker" in r.json()["detail"]
    assert api.client.get("/api/decisions", headers=AUTH).status_code == 200


def test_live_needs_the_promotion_record_and_paper_does_not(api: Api) -> None:
    live = api.client.post("/api/control/mode", json={"mode": "live"}, headers=AUTH)
    assert live.status_code == 409 and "not promoted to live trading" in live.json()["detail"]
    assert api.flow.sent == []
    paper = api.client.post("/api/control/mode", json={"mode": "paper"}, headers=AUTH)
    assert paper.status_code == 200 and paper.json()["ack"]["action"] == "set_mode:paper"
    assert api.flow.plane.mode is not None and api.flow.plane.mode.value == "paper"


def test_a_settings_change_is_validated_sent_recorded_and_then_in_force(api: Api) -> None:
    change = {"set": {"risk.max_order_notional": 30000, "gpt.model": "gpt-x"}, "by": "alice"}
    r = api.client.patch("/api/settings", json=change, headers=AUTH)
    assert r.status_code == 200, r.text
    ack = r.json()["ack"]
    assert ack["action"] == "change_settings:risk.max_order_notional,gpt.model"
    assert api.flow.plane.settings == {"risk.max_order_notional": "30000", "gpt.model": "gpt-x"}
    (row,) = api.store.query(
        "SELECT * FROM settings_changes WHERE run_id = {run:String}", {"run": api.run_id}
    )
    assert row["change_id"] == ack["command_id"] and row["who"] == "alice"
    assert row["changed_ms"] == api.clock.ms
    assert json.loads(row["diff"])[0] == {
        "key": "risk.max_order_notional",
        "before": "25000",
        "after": "30000",
    }
    shown = api.client.get("/api/settings", headers=AUTH)
    doc = shown.json()
    assert doc["settings"]["risk"]["max_order_notional"] == "30000"
    assert doc["settings"]["gpt"]["model"] == "gpt-x"
    assert doc["changes"][-1]["applied"] and doc["changes"][-1]["who"] == "alice"
    i = shown.text.find(SECRET)
    assert i < 0, shown.text[i - 300 : i + 50]
    assert "jsons://hooks.example" in shown.text
    # The next change is judged against what is in force now.
    same = api.client.patch("/api/settings", json=change, headers=AUTH)
    assert same.status_code == 422 and "changes nothing" in same.text


def test_a_change_the_flow_has_not_applied_is_listed_but_not_in_force(deaf_api: Api) -> None:
    change = {"set": {"risk.min_cash": 100}, "wait_s": 0}
    r = deaf_api.client.patch("/api/settings", json=change, headers=AUTH)
    assert r.status_code == 202
    doc = deaf_api.client.get("/api/settings", headers=AUTH).json()
    assert doc["settings"]["risk"]["min_cash"] == "0"
    assert doc["changes"][-1]["applied"] is False


def test_an_invalid_setting_never_reaches_the_flow_nor_the_ledger(api: Api) -> None:
    for change in (
        {"risk.max_order_notional": -5},
        {"risk.max_order_notional": 1, "bars.interval": "5m"},
        {"symbols.abc": {}},
        {"clickhouse.url": "http://x:y@h/"},
    ):
        r = api.client.patch("/api/settings", json={"set": change}, headers=AUTH)
        assert r.status_code == 422
        assert "x:y" not in r.text
    assert api.flow.sent == []
    rows = api.store.query(
        "SELECT count() AS n FROM settings_changes WHERE run_id = {run:String}",
        {"run": api.run_id},
    )
    assert rows[0]["n"] == 0


def test_a_promoted_setup_goes_live_after_the_nonce(base: tuple[Settings, Store]) -> None:
    from connectors.store.promotions import record_step
    from models.validation.promotion import Step, StepRecord, setup_hash
    from models.validation.verdicts import Outcome

    settings, store = base
    strategy = settings.strategy.model_copy(update={"controller": "local"})
    local = settings.model_copy(update={"strategy": strategy})  # a setup of its own
    h = setup_hash(local)
    for t, step in enumerate((Step.BACKTEST, Step.VALIDATION, Step.PAPER, Step.APPROVAL), 1):
        record_step(store, StepRecord(h, step, f"r{t}", Outcome.PASS, t))
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    clock = Clock()
    with (
        Store.open(settings.clickhouse, run_id=run_id) as flow_store,
        api_client(
            local, store, FlowDouble(flow_store, clock), clock, RunInfo(run_id, "paper")
        ) as (client, ctx),
    ):
        first = client.post("/api/control/mode", json={"mode": "live"}, headers=AUTH)
        assert first.status_code == 428
        halt_nonce = client.post("/api/control/halt", json={}, headers=AUTH).json()["confirm"]
        other = client.post(
            "/api/control/mode", json={"mode": "live", "confirm": halt_nonce}, headers=AUTH
        )
        assert other.status_code == 409  # a halt's nonce does not confirm live
        done = client.post(
            "/api/control/mode",
            json={"mode": "live", "confirm": first.json()["confirm"], "by": "alice"},
            headers=AUTH,
        )
        assert done.status_code == 200 and done.json()["ack"]["action"] == "set_mode:live"
        flow = ctx.bus
        assert isinstance(flow, FlowDouble)
        (sent,) = flow.sent
        assert sent.action.setup == h and sent.issued_by == "alice"  # type: ignore[union-attr]
