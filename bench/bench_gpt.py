"""Decisions per second and trigger->order latency: GPT answers from the record cache vs the
local engine, on the same bars.

    python bench/bench_gpt.py [--minutes 600] [--symbols 4] [--seed 5]

Generated ticks go through the flow's own ingest (bars, features, triggers, router) once; the
resulting bar events then drive the flow's desk adapter (`DeskLogic`, the same object the
Bytewax flow runs) three times:
  local      strategy.controller = local: the local engine decides every trigger;
  gpt-replay GPT decides strategic triggers, answers replayed from the record store (what a
             backtest re-run does): the real gateway, SDK-shaped results, compiler, prompt
             building with the news digest, but no request;
  gpt-live   the same answers through the live path: worker threads, answers applied when
             they arrive (the store answers, so this measures the asynchronous plumbing).
The recording is made first, against the project's local OpenAI-compatible server (not timed).
Latency is from handing a strategic bar to the desk until its orders are out (for gpt-live,
until the answer has been applied). Ratios are against `local` measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.gpt.cache import AnswerStore, CacheMode  # noqa: E402
from connectors.gpt.client import GptClient  # noqa: E402
from connectors.gpt.gateway import GptGateway  # noqa: E402
from connectors.sim.openai_server import LocalOpenAIServer, Scenario  # noqa: E402
from connectors.sim.scenario import generate_scenario, past_start_ms  # noqa: E402
from dataflows.adapters import DeskLogic  # noqa: E402
from models.config.settings import Settings  # noqa: E402
from models.core.events import BarEvent  # noqa: E402
from models.core.messages import Branch, DecisionRecord, DecisionStatus  # noqa: E402
from models.market.ingest import PartitionIngest, RawBatch, Record  # noqa: E402

MODEL = "bench-model"
ANSWER: dict[str, Any] = {
    "action": "create",
    "strategy": {
        "name": "bench-trend",
        "version": 1,
        "universe": [],  # filled with the symbols
        "entry": {"left": "sma_fast", "op": ">", "right": "sma_slow"},
        "exit": {"left": "sma_fast", "op": "crosses_below", "right": "sma_slow"},
        "position_fraction": 0.1,
        "stop_loss_pct": 0.03,
        "take_profit_pct": None,
        "target_weights": [],
        "horizon_bars": 120,
        "rationale": "trend",
        "confidence": 0.5,
    },
    "rationale": "bench",
    "confidence": 0.5,
}


def settings_for(symbols: list[str], work: Path, controller: str, mode: str) -> Settings:
    return Settings.model_validate(
        {
            "symbols": {s: {} for s in symbols},
            "strategy": {"controller": controller},
            "risk": {"daily_loss_limit": "1000000"},
            "gpt": {
                "model": MODEL,
                "cache_dir": str(work / "answers"),
                "cache_mode": mode,
                "daily_budget_usd": "1000000",
                "cooldown": "0s",  # every strategic trigger is a question: the GPT path's cost
            },
        }
    )


def bar_events(settings: Settings, symbols: list[str], minutes: int, seed: int) -> list[BarEvent]:
    """The flow's ingest over generated ticks: what the desk would see."""
    start = past_start_ms(minutes * 60)
    ticks = generate_scenario(symbols, start, minutes * 60, 1.0, seed=seed)
    ingest = PartitionIngest(settings)
    out: list[Any] = []
    topic = settings.kafka.topics.market
    chunk = 5000
    for i in range(0, len(ticks), chunk):
        records: list[Record] = [
            (i + j, 0, t.model_dump_json().encode(), None)
            for j, t in enumerate(ticks[i : i + chunk])
        ]
        ingest.process_batch(RawBatch(topic, 0, records), out)
    out.extend(ingest.flush())
    return [e for e in out if isinstance(e, BarEvent)]


def run_desk(
    settings: Settings, events: list[BarEvent], gateway: GptGateway | None, inline: bool
) -> dict[str, Any]:
    logic = DeskLogic(settings, frozenset({"market#0"}), None, gateway, inline)
    latencies: list[float] = []
    decisions = 0
    gpt_ids: set[str] = set()
    waiting: dict[str, float] = {}  # live: decision id -> when its bar was handed over
    t0 = time.perf_counter()

    def account(items: list[Any], now: float) -> None:
        nonlocal decisions
        for item in items:
            if isinstance(item, DecisionRecord):
                if item.version == 1:
                    decisions += 1
                if item.status is not DecisionStatus.PENDING and item.decision_id in waiting:
                    latencies.append(now - waiting.pop(item.decision_id))
                if item.status is not DecisionStatus.PENDING and any(
                    r.proposal.controller == "gpt" for r in item.rounds
                ):
                    gpt_ids.add(item.decision_id)

    for event in events:
        strategic = event.branch is Branch.STRATEGIC
        start = time.perf_counter()
        if strategic:
            waiting[f"{event.bar.symbol}@{event.bar.end_ms}"] = start
        out, _ = logic.on_batch([event])
        account(list(out), time.perf_counter())
        # Live: wait for the answer before the next bar, so every run asks the same questions
        # (and the store has them all); what is timed is the worker round trip.
        while not inline and gateway is not None and (gateway.in_flight or logic.desk.gpt.pending):
            time.sleep(0.0002)
            more, _ = logic.on_notify()
            account(list(more), time.perf_counter())
    while not inline and gateway is not None and (gateway.in_flight or logic.desk.gpt.pending):
        time.sleep(0.0005)
        more, _ = logic.on_notify()
        account(list(more), time.perf_counter())
    out, _ = logic.on_eof()
    account(list(out), time.perf_counter())
    elapsed = time.perf_counter() - t0
    lat_ms = sorted(x * 1000 for x in latencies)
    p99 = lat_ms[min(len(lat_ms) - 1, int(len(lat_ms) * 0.99))] if lat_ms else float("nan")
    return {
        "decisions": decisions,
        "gpt_decided": len(gpt_ids),
        "elapsed_s": elapsed,
        "per_s": decisions / elapsed,
        "p50_ms": statistics.median(lat_ms) if lat_ms else float("nan"),
        "p99_ms": p99,
        "strategic": len(latencies),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=int, default=600, help="minutes of generated market")
    parser.add_argument("--symbols", type=int, default=4)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    symbols = [f"SIM{chr(65 + i)}" for i in range(args.symbols)]
    answer = {**ANSWER, "strategy": {**ANSWER["strategy"], "universe": symbols}}
    with tempfile.TemporaryDirectory(prefix="stratflow-bench-gpt-") as tmp:
        work = Path(tmp)
        local_settings = settings_for(symbols, work, "local", "auto")
        events = bar_events(local_settings, symbols, args.minutes, args.seed)
        n_strategic = sum(e.branch is Branch.STRATEGIC for e in events)
        print(f"{len(events):,} bars, {n_strategic:,} strategic triggers, {len(symbols)} symbols")

        # Record every answer once (not timed): the local server answers each question.
        record = settings_for(symbols, work, "gpt", "auto")
        with LocalOpenAIServer(api_key="sk-bench", default=Scenario.answer(answer)) as server:
            client = GptClient(server.base_url, "sk-bench", MODEL, timeout_s=10, max_retries=0)
            gateway = GptGateway(record, client, AnswerStore(work / "answers"), mode="auto")
            recorded = run_desk(record, events, gateway, inline=True)
            gateway.close()
            asked = len(server.chat_requests)
        print(f"recorded {asked:,} answers ({recorded['gpt_decided']:,} GPT decisions)")

        results: dict[str, dict[str, Any]] = {}
        results["local"] = run_desk(local_settings, events, None, inline=True)
        replay = settings_for(symbols, work, "gpt", "replay")
        for name, inline, mode in (
            ("gpt-replay", True, CacheMode.REPLAY),
            ("gpt-live", False, CacheMode.AUTO),
        ):
            # No server behind this address: a request would fail the run's counts below.
            offline = GptClient("http://127.0.0.1:9/v1", "sk-x", MODEL, timeout_s=1, max_retries=0)
            gateway = GptGateway(replay, offline, AnswerStore(work / "answers"), mode=mode)
            results[name] = run_desk(replay, events, gateway, inline=inline)
            gateway.close()
            if results[name]["gpt_decided"] != recorded["gpt_decided"]:
                print(
                    f"error: {name} decided {results[name]['gpt_decided']} by GPT, expected "
                    f"{recorded['gpt_decided']} (a cache miss?)"
                )
                return 1

    base = results["local"]
    print()
    print(
        f"{'mode':<11} {'decisions':>9} {'GPT':>6} {'dec/s':>10} {'ratio':>6} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'p99 ratio':>9}"
    )
    for name, r in results.items():
        print(
            f"{name:<11} {r['decisions']:>9,} {r['gpt_decided']:>6,} {r['per_s']:>10,.0f} "
            f"{r['per_s'] / base['per_s']:>6.2f} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} "
            f"{r['p99_ms'] / base['p99_ms']:>9.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
