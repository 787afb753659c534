"""Starting and stopping runs over the API (api/server/runs.py, run_routes.py): `stratflow
serve`'s child runs with a stand-in for `stratflow run` (a script that behaves as the run does
on its signals: stops on SIGTERM with 143, ends by itself with --no-follow), the two-call stop,
the embedded decision log handed to the run and taken back, and `run --api`'s own run."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from api.server.runs import ChildRuns, NoRun, RunConflict, RunOptions, RunView, ThisRun
from connectors.store.clickhouse import Store
from models.config.settings import Settings
from tests.support.api import AUTH, Clock, FlowDouble, api_client

RUN_SCRIPT = """\
import signal, sys, time
print("args:", " ".join(sys.argv[1:]), flush=True)
def stop(signum, frame):
    print("stratflow: SIGTERM, stopped", flush=True)
    sys.exit(143)
signal.signal(signal.SIGTERM, stop)
print("running", flush=True)
if "--no-follow" in sys.argv:
    print("done", flush=True)
    sys.exit(0)
while True:
    time.sleep(0.05)
"""


def _eventually(check: Callable[[], bool], what: str, limit_s: float = 60.0) -> None:
    """Wait for a child process to get somewhere (a bound against hanging, not a speed test)."""
    end = time.monotonic() + limit_s
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "fake_run.py"
    path.write_text(RUN_SCRIPT)
    return path


def _runs(script: Path, tmp: Path, events: list[str] | None = None) -> ChildRuns:
    hooks: dict[str, Any] = {}
    if events is not None:
        hooks = {
            "release": lambda: events.append("release"),
            "reclaim": lambda: events.append("reclaim"),
        }
    return ChildRuns(
        [sys.executable, str(script)],
        Path("stratflow.yaml"),
        dict(os.environ),
        tmp / "api-runs",
        Clock(),
        **hooks,
    )


def test_a_started_run_gets_the_options_runs_alone_and_stops_resumable(
    script: Path, tmp_path: Path
) -> None:
    events: list[str] = []
    runs = _runs(script, tmp_path, events)
    assert runs.view().running is False and runs.view().can_start
    view = runs.start(RunOptions(processes=2, fresh=True), "alice")
    assert view.running and view.pid and view.started_by == "alice"
    _eventually(lambda: "running" in runs.view().log_tail, "the run's first lines")
    assert runs.view().log_tail[0] == "args: run --config stratflow.yaml --fresh --processes 2"
    assert events == ["release"]  # the embedded log is the run's while it runs
    with pytest.raises(RunConflict, match="started by alice is running"):
        runs.start(RunOptions(), "bob")
    stopped = runs.stop("bob")
    assert not stopped.running and stopped.exit_code == 143 and stopped.stopped_by == "bob"
    assert stopped.log_tail[-1] == "stratflow: SIGTERM, stopped"
    assert events == ["release", "reclaim"]
    with pytest.raises(NoRun):
        runs.stop("bob")
    again = runs.start(RunOptions(follow=False), "carol")  # one at a time, and then another
    assert again.started_by == "carol"
    _eventually(lambda: runs.view().exit_code is not None, "the bounded run's end")
    ended = runs.view()
    assert ended.exit_code == 0 and ended.stopped_by == "" and "done" in ended.log_tail
    assert events == ["release", "reclaim", "release", "reclaim"]


def test_a_run_that_cannot_start_gives_the_log_back(tmp_path: Path) -> None:
    events: list[str] = []
    runs = _runs(tmp_path / "missing", tmp_path, events)
    runs.command = [str(tmp_path / "no-such-program")]
    with pytest.raises(RunConflict, match="could not start"):
        runs.start(RunOptions(), "alice")
    assert events == ["release", "reclaim"] and not runs.view().running


def test_closing_the_server_stops_its_run(script: Path, tmp_path: Path) -> None:
    runs = _runs(script, tmp_path)
    runs.start(RunOptions(), "alice")
    _eventually(lambda: "running" in runs.view().log_tail, "the run's first lines")
    runs.close()
    view = runs.view()
    assert view.exit_code == 143 and view.stopped_by == "the API server stopping"


# ---------------------------------------------------------------------------- over HTTP


@pytest.fixture
def base(tmp_path: Path) -> Iterator[tuple[Settings, Store]]:
    settings = Settings.model_validate(
        {"symbols": {"ABC": {}}, "clickhouse": {"path": str(tmp_path / "clickhouse")}}
    )
    with Store.open(settings.clickhouse) as store:
        store.apply_schema()
        yield settings, store


def test_start_and_the_two_call_stop_over_http(
    base: tuple[Settings, Store], script: Path, tmp_path: Path
) -> None:
    settings, store = base
    clock = Clock()
    runs = _runs(script, tmp_path)
    with api_client(settings, store, FlowDouble(store, clock), clock, runs=runs) as (client, _):
        assert client.get("/api/run", headers=AUTH).json()["running"] is False
        assert client.post("/api/run/stop", json={}, headers=AUTH).status_code == 409
        r = client.post("/api/run/start", json={"follow": True, "by": "alice"}, headers=AUTH)
        assert r.status_code == 201 and r.json()["running"] and r.json()["started_by"] == "alice"
        assert client.post("/api/run/start", json={}, headers=AUTH).status_code == 409
        bad = client.post("/api/run/start", json={"processes": 0}, headers=AUTH)
        assert bad.status_code == 422
        first = client.post("/api/run/stop", json={"by": "bob"}, headers=AUTH)
        assert first.status_code == 428 and runs.view().running  # nothing stopped yet
        nonce = first.json()["confirm"]
        wrong = client.post("/api/run/stop", json={"confirm": "x" * 20}, headers=AUTH)
        assert wrong.status_code == 409 and runs.view().running
        done = client.post("/api/run/stop", json={"confirm": nonce, "by": "bob"}, headers=AUTH)
        assert done.status_code == 200
        assert done.json()["exit_code"] == 143 and done.json()["stopped_by"] == "bob"
        assert client.get("/api/run").status_code == 401  # the token, as everywhere


def test_without_a_broker_a_start_is_503_and_without_a_supervisor_409(
    base: tuple[Settings, Store], script: Path, tmp_path: Path
) -> None:
    settings, store = base
    runs = _runs(script, tmp_path)
    with api_client(settings, store, None, runs=runs) as (client, _):
        r = client.post("/api/run/start", json={}, headers=AUTH)
        assert r.status_code == 503 and "broker" in r.json()["detail"]
        assert not runs.view().running
    with api_client(settings, store, None) as (client, _):  # a server that controls no run
        assert client.get("/api/run", headers=AUTH).json() == {
            **RunView(can_start=False, running=False).model_dump(mode="json")
        }
        assert client.post("/api/run/start", json={}, headers=AUTH).status_code == 409


def test_reads_answer_503_while_the_run_holds_the_log(base: tuple[Settings, Store]) -> None:
    settings, store = base
    with api_client(settings, store) as (client, ctx):
        assert client.get("/api/decisions", headers=AUTH).status_code == 200
        handed = ctx.store.hand_over("the run holds the embedded decision log")
        assert handed is store
        r = client.get("/api/decisions", headers=AUTH)
        assert (
            r.status_code == 503 and r.json()["detail"] == "the run holds the embedded decision log"
        )
        ctx.store.take_back(store)
        assert client.get("/api/decisions", headers=AUTH).status_code == 200


def test_the_run_serving_the_api_stops_itself_after_answering(
    base: tuple[Settings, Store],
) -> None:
    settings, store = base
    killed: list[tuple[int, int]] = []
    done = threading.Event()

    def kill(pid: int, signum: int) -> None:
        killed.append((pid, signum))
        done.set()

    clock = Clock()
    this = ThisRun("run-1", clock(), clock, kill=kill, delay_s=0.0)
    with api_client(settings, store, FlowDouble(store, clock), clock, runs=this) as (client, _):
        view = client.get("/api/run", headers=AUTH).json()
        assert view["run_id"] == "run-1" and view["running"] and not view["can_start"]
        assert client.post("/api/run/start", json={}, headers=AUTH).status_code == 409
        nonce = client.post("/api/run/stop", json={}, headers=AUTH).json()["confirm"]
        r = client.post("/api/run/stop", json={"confirm": nonce, "by": "ops"}, headers=AUTH)
        assert r.status_code == 200 and r.json()["stopped_by"] == "ops"
        assert done.wait(30)
        assert killed == [(os.getpid(), signal.SIGTERM)]


def test_the_mode_is_where_the_started_run_sends_its_orders(
    base: tuple[Settings, Store], script: Path, tmp_path: Path
) -> None:
    settings, store = base
    clock = Clock()
    runs = _runs(script, tmp_path)
    with api_client(settings, store, FlowDouble(store, clock), clock, runs=runs) as (client, _):
        bounded = client.post(
            "/api/run/start", json={"mode": "paper", "follow": False}, headers=AUTH
        )
        assert bounded.status_code == 422 and not runs.view().running
        live = client.post(
            "/api/run/start", json={"mode": "live", "exchange": "kraken"}, headers=AUTH
        )
        assert live.status_code == 409 and "not promoted to live" in live.json()["detail"]
        assert not runs.view().running  # no promotion record: nothing started, no nonce given
        paper = client.post("/api/run/start", json={"mode": "paper"}, headers=AUTH)
        assert paper.status_code == 201
        _eventually(lambda: "running" in runs.view().log_tail, "the run's first lines")
        assert (
            runs.view().log_head[0]
            == "args: run --config stratflow.yaml --exchange binance --paper"
        )
        runs.stop("test")


def test_a_promoted_setup_starts_live_after_the_nonce(
    base: tuple[Settings, Store], script: Path, tmp_path: Path
) -> None:
    from connectors.store.promotions import record_step
    from models.validation.promotion import Step, StepRecord, setup_hash
    from models.validation.verdicts import Outcome

    settings, store = base
    strategy = settings.strategy.model_copy(update={"controller": "local"})
    local = settings.model_copy(update={"strategy": strategy})  # a setup of its own
    h = setup_hash(local)
    for t, step in enumerate((Step.BACKTEST, Step.VALIDATION, Step.PAPER, Step.APPROVAL), 1):
        record_step(store, StepRecord(h, step, f"r{t}", Outcome.PASS, t))
    clock = Clock()
    runs = _runs(script, tmp_path)
    with api_client(local, store, FlowDouble(store, clock), clock, runs=runs) as (client, _):
        body = {"mode": "live", "exchange": "kraken", "by": "alice"}
        first = client.post("/api/run/start", json=body, headers=AUTH)
        assert first.status_code == 428 and not runs.view().running
        done = client.post(
            "/api/run/start", json={**body, "confirm": first.json()["confirm"]}, headers=AUTH
        )
        assert done.status_code == 201 and done.json()["started_by"] == "alice"
        _eventually(lambda: "running" in runs.view().log_tail, "the run's first lines")
        assert runs.view().log_head[0] == "args: run --config stratflow.yaml --exchange kraken"
        runs.stop("test")
