"""`stratflow backtest`: one run of the live flow on historical data, with statistics and a report.

The same code path as live trading: the data is published to a real Kafka-protocol broker (the
bundled one unless `KAFKA_BOOTSTRAP` names another; then on topics of this run's own), the same
Bytewax flow with the simulated venue runs to the end of the topics, every row lands in
ClickHouse (a chdb directory of this run's own unless `CLICKHOUSE_URL` names a server) under a
new run id, and what the report shows is read back from the store. A run is finished only when
its row in `backtests` is written, last, after the statistics: a run that failed or was stopped
has none, and a server keeps none of its rows (they are deleted), so nothing half-written reads
as a result. Re-running with other settings makes another run (directory, id, report).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from connectors.files.market_file import MergedStreams
from connectors.files.replay import replay
from connectors.kafka.broker import LocalBroker, ensure_topics
from connectors.store.clickhouse import TABLES, Store
from connectors.store.runs import delete_run
from dataflows.cluster import Cluster, store_may_move
from dataflows.pipeline import FlowSpec
from dataflows.run import open_run_state, run_pipeline
from models.config.settings import Settings
from models.core.messages import Fill, Side


@dataclass
class RunRows:
    """What a backtest's statistics and report read back from the store for one run."""

    bars: dict[str, list[tuple[int, int, Decimal, Decimal, Decimal, Decimal]]]
    """Per symbol: (start ms, end ms, open, high, low, close) in time order."""
    fills: list[Fill]
    reasons: dict[str, str]
    """Client order id -> the order's reason (the strategy's exit reason is in it)."""
    proposers: dict[str, tuple[str, str]]
    """Decision id -> (controller, strategy) of the proposal that placed its orders."""
    file_strategies: set[str]
    """Strategy ids of the configuration's own strategies (strategy files)."""
    gpt_calls: list[dict[str, Any]] = field(default_factory=list)
    final_equity: Decimal | None = None
    gpt_answers: list[tuple[str, int]] = field(default_factory=list)
    """(model, event ms) of every answered GPT call: the decisions GPT took."""


@dataclass
class BacktestRun:
    run_id: str
    run_dir: Path
    published: int
    flow_seconds: float
    rows: RunRows


def _scoped(store: Store, run_id: str, sql: str) -> list[dict[str, Any]]:
    return store.query(sql, {"run": run_id})


def read_run(store: Store, run_id: str) -> RunRows:
    """One run's bars, fills and who placed them, from the store (FINAL: what it holds)."""
    # A run's bars are most of what is read (one a bar): read as columns, not a dict per row.
    cols = store.query_columns(
        "SELECT symbol, start_ms, end_ms, open, high, low, close FROM bars FINAL "
        "WHERE run_id = {run:String} ORDER BY symbol, start_ms",
        {"run": run_id},
    )
    rows = list(
        zip(
            cols["start_ms"],
            cols["end_ms"],
            cols["open"],
            cols["high"],
            cols["low"],
            cols["close"],
            strict=True,
        )
    )
    bars: dict[str, list[tuple[int, int, Decimal, Decimal, Decimal, Decimal]]] = {}
    lo = 0
    for symbol, group in itertools.groupby(cols["symbol"]):
        hi = lo + sum(1 for _ in group)
        bars[str(symbol)] = rows[lo:hi]
        lo = hi
    fills = [
        Fill(
            fill_id=str(r["fill_id"]),
            client_order_id=str(r["client_order_id"]),
            decision_id=str(r["decision_id"]),
            symbol=str(r["symbol"]),
            side=Side(str(r["side"])),
            quantity=Decimal(str(r["quantity"])),
            price=Decimal(str(r["price"])),
            fee=Decimal(str(r["fee"])),
            ts_ms=int(r["ts_ms"]),
        )
        for r in _scoped(
            store,
            run_id,
            "SELECT fill_id, client_order_id, decision_id, symbol, side, quantity, price, fee,"
            " ts_ms FROM fills FINAL WHERE run_id = {run:String} ORDER BY ts_ms, fill_id",
        )
    ]
    reasons = {
        str(r["client_order_id"]): str(r["reason"])
        for r in _scoped(
            store,
            run_id,
            "SELECT client_order_id, reason FROM orders FINAL WHERE run_id = {run:String}",
        )
    }
    proposers: dict[str, tuple[str, str]] = {}
    for r in _scoped(
        store,
        run_id,
        "SELECT decision_id, rounds FROM decisions FINAL "
        "WHERE run_id = {run:String} AND n_orders > 0",
    ):
        rounds = json.loads(str(r["rounds"]) or "[]")
        if rounds:
            proposal = rounds[-1].get("proposal", {})
            proposers[str(r["decision_id"])] = (
                str(proposal.get("controller", "")),
                str(proposal.get("strategy", "")),
            )
    file_strategies = {
        str(r["strategy_id"])
        for r in _scoped(
            store,
            run_id,
            "SELECT DISTINCT strategy_id FROM strategies FINAL "
            "WHERE run_id = {run:String} AND startsWith(activation_id, 'file:')",
        )
    }
    gpt_calls = _scoped(
        store,
        run_id,
        "SELECT outcome, count() AS calls, sum(cost) AS cost_usd, "
        "sum(prompt_tokens + completion_tokens) AS tokens, "
        "round(avg(latency_ms)) AS mean_ms, max(latency_ms) AS max_ms "
        "FROM gpt_calls FINAL WHERE run_id = {run:String} GROUP BY outcome "
        "ORDER BY calls DESC, outcome",
    )
    last = _scoped(
        store,
        run_id,
        "SELECT equity FROM positions FINAL WHERE run_id = {run:String} "
        "ORDER BY ts_ms DESC LIMIT 1",
    )
    final = Decimal(str(last[0]["equity"])) if last else None
    answers = [
        (str(r["model"]), int(r["ts_ms"]))
        for r in _scoped(
            store,
            run_id,
            "SELECT model, ts_ms FROM gpt_calls FINAL WHERE run_id = {run:String} "
            "AND outcome = 'ok' ORDER BY ts_ms, call_id",
        )
    ]
    return RunRows(bars, fills, reasons, proposers, file_strategies, gpt_calls, final, answers)


def with_backtest_dirs(settings: Settings, run_dir: Path) -> Settings:
    """The store and the recovery state inside the run's directory; ticks are not kept (a
    backtest reads bars, and a tick file of years would dwarf everything else)."""
    clickhouse = settings.clickhouse.model_copy(update={"path": str(run_dir / "clickhouse")})
    recovery = settings.recovery.model_copy(
        update={"dir": str(run_dir / "recovery"), "enabled": False}
    )
    storage = settings.storage.model_copy(update={"ticks": False})
    return settings.model_copy(
        update={"clickhouse": clickhouse, "recovery": recovery, "storage": storage}
    )


def _own_topics(settings: Settings, run_dir: Path) -> Settings:
    """A shared broker gets topics of this run's own, so two runs never mix."""
    if settings.kafka.bootstrap is None:
        return settings
    suffix = f".{run_dir.name.lower()}"
    topics = settings.kafka.topics
    topics = topics.model_copy(update={k: v + suffix for k, v in topics.model_dump().items()})
    return settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"topics": topics})}
    )


def run_backtest(
    settings: Settings,
    data: MergedStreams,
    run_dir: Path,
    *,
    say: Callable[[str], None],
    progress: bool = True,
    processes: int = 1,
    rows_apart: bool = True,
) -> BacktestRun:
    """Publish `data`, run the flow to its end and read the run back; a failure (or Ctrl-C)
    deletes the run's rows from a ClickHouse server before it propagates. `processes`: the
    flow as a cluster of that many processes (`dataflows.cluster`); `rows_apart` (on a cluster):
    its store in process 1, not the desk's (`dataflows.placement`; this process opens the store
    only once the flow has ended). Measured on 1M bars: the desk's process does 17% less CPU
    work (30.1 -> 24.5 s), the cluster 4% more (bench/NEXT.md)."""
    settings = _own_topics(with_backtest_dirs(settings, run_dir), run_dir)
    run_state = open_run_state(settings)
    run_id = run_state.run_id
    finished = False
    try:
        with ExitStack() as stack:
            cluster = None
            apart = rows_apart and store_may_move(settings)  # decided before the fork
            if processes > 1:  # the other processes import while the data is published
                cluster = Cluster(processes).spawn()
                stack.callback(cluster.kill)
            bootstrap = settings.kafka.bootstrap
            if bootstrap is None:
                broker = stack.enter_context(LocalBroker(log_dir=run_dir))
                bootstrap = broker.bootstrap
            topics = settings.kafka.topics
            ensure_topics(bootstrap, topics.all(), settings.kafka.partitions)
            stats = replay(bootstrap, topics.market, data, speed=None, progress=progress)
            if stats.failed:
                raise RuntimeError(
                    f"{stats.failed} of {stats.sent} messages not delivered: "
                    + "; ".join(stats.errors[:3])
                )
            t0 = time.perf_counter()
            run_pipeline(
                settings,
                FlowSpec(bootstrap=bootstrap, tail=False),
                progress=progress,
                say=say,
                run_state=run_state,
                stop_note=f"stopped: run {run_id} is not finished and has no report",
                processes=processes,
                cluster=cluster,
                rows_apart=apart,
            )
            flow_seconds = time.perf_counter() - t0
        with Store.open(settings.clickhouse) as store:
            rows = read_run(store, run_id)
        finished = True
        return BacktestRun(run_id, run_dir, stats.published, flow_seconds, rows)
    finally:
        if not finished and settings.clickhouse.url:
            try:
                with Store.open(settings.clickhouse) as store:
                    delete_run(store, run_id, TABLES)
            except Exception as err:  # the original failure matters more
                say(f"could not delete the rows of unfinished run {run_id}: {err}")
