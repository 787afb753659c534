"""The demo / backtest job: local broker + embedded ClickHouse + shipped data, end to end.

It is the same code path as a live run: messages go through a real Kafka-protocol broker and the
same Bytewax flow; only `tail=False` makes the flow stop at the end of the replayed topics.
"""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from api.report import RunSummary, summarize, write_report
from connectors.broker import LocalBroker, ensure_topics
from connectors.clickhouse_store import Store
from connectors.datasets import dataset_path
from connectors.replay import load_market_file, replay
from connectors.scenario import generate_scenario
from dataflows.pipeline import FlowSpec
from dataflows.run import run_pipeline
from models.config import Settings
from models.messages import BarIn, Tick


@dataclass
class DemoResult:
    run_dir: Path
    report: Path
    summary: RunSummary
    published: int
    flow_seconds: float


def with_run_dir(settings: Settings, run_dir: Path) -> Settings:
    """Point the store and the recovery state into this run's directory (unless a server is set)."""
    clickhouse = settings.clickhouse.model_copy(update={"path": str(run_dir / "clickhouse")})
    recovery = settings.recovery.model_copy(update={"dir": str(run_dir / "recovery")})
    storage = settings.storage.model_copy(update={"ticks": True})  # the demo keeps everything
    return settings.model_copy(
        update={"clickhouse": clickhouse, "recovery": recovery, "storage": storage}
    )


def demo_messages(
    settings: Settings, datasets: list[str], scenario_minutes: int, seed: int
) -> list[Tick | BarIn]:
    messages: list[Tick | BarIn] = []
    for name in datasets:
        loaded = load_market_file(dataset_path(name), symbol=name, interval=None)
        messages.extend(loaded.messages)
    sim = [s for s in settings.symbols if s.startswith("SIM")]
    if scenario_minutes > 0 and sim:
        start = int(datetime(2026, 1, 5, 14, 30, tzinfo=UTC).timestamp() * 1000)
        messages.extend(
            generate_scenario(
                sim,
                start_ms=start,
                duration_s=scenario_minutes * 60,
                ticks_per_second_per_symbol=2.0,
                seed=seed,
            )
        )
    return messages


def new_run_dir(run_root: Path) -> Path:
    """A directory of its own per run, even for two runs started in the same second."""
    run_root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for n in range(1, 1000):
        candidate = run_root / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise RuntimeError(f"could not create a run directory under {run_root}")


def run_demo(
    settings: Settings,
    *,
    run_root: Path,
    datasets: list[str],
    scenario_minutes: int,
    seed: int,
    console: Console,
) -> DemoResult:
    run_dir = new_run_dir(run_root)
    settings = with_run_dir(settings, run_dir)
    with ExitStack() as stack:
        bootstrap = settings.kafka.bootstrap
        if bootstrap is None:
            broker = stack.enter_context(LocalBroker(log_dir=run_dir))
            bootstrap = broker.bootstrap
            console.print(f"[dim]local Kafka broker (Tansu) at {bootstrap}[/dim]")
        topics = settings.kafka.topics
        # A fresh set of topics per run, so a shared broker never mixes two runs.
        suffix = "" if settings.kafka.bootstrap is None else f".{run_dir.name.lower()}"
        if suffix:
            topics = topics.model_copy(
                update={k: v + suffix for k, v in topics.model_dump().items()}
            )
            settings = settings.model_copy(
                update={"kafka": settings.kafka.model_copy(update={"topics": topics})}
            )
        ensure_topics(bootstrap, topics.all(), settings.kafka.partitions)
        messages = demo_messages(settings, datasets, scenario_minutes, seed)
        stats = replay(bootstrap, topics.market, messages, speed=None, progress=True)
        console.print(
            f"published {stats.published:,} market messages to [bold]{topics.market}[/bold]"
        )
        console.print(
            "running the dataflow (controller: local strategy engine — no GPT key configured)"
        )
        t0 = time.perf_counter()
        run_pipeline(settings, FlowSpec(bootstrap=bootstrap, tail=False))
        flow_seconds = time.perf_counter() - t0
    with Store.open(settings.clickhouse) as store:
        summary = summarize(store)
    report = write_report(summary, run_dir, f"stratflow demo {run_dir.name}")
    return DemoResult(run_dir, report, summary, stats.published, flow_seconds)


def default_run_root() -> Path:
    return Path(os.environ.get("STRATFLOW_RUNS", "var/runs"))
