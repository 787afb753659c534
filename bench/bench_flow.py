"""Throughput of the whole flow vs a plain Python loop over the same topic and the same models.

    python bench/bench_flow.py [--ticks 300000] [--symbols 8]

Both sides run in their own process pinned to one core, read the same Kafka topic from a local
Tansu broker with the same client (confluent-kafka, partitions assigned, no group join), call the
same `models/` objects and write the same rows to a fresh chdb directory. The ratio flow/loop is
the engine's overhead; the absolute figure is market events per second on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.files.replay import replay  # noqa: E402
from connectors.kafka.broker import LocalBroker, ensure_topics  # noqa: E402
from connectors.sim.scenario import generate_scenario, past_start_ms  # noqa: E402
from models.config.settings import Settings  # noqa: E402


def bench_settings(work: Path, symbols: list[str], market_topic: str, recovery: bool) -> Settings:
    return Settings.model_validate(
        {
            "symbols": {s: {} for s in symbols},
            "kafka": {"topics": {"market": market_topic}},
            "clickhouse": {"path": str(work / "clickhouse")},
            "recovery": {
                "enabled": recovery,
                "dir": str(work / "recovery"),
                "snapshot_interval": "2s",
            },
        }
    )


# ------------------------------------------------------------------------------------ children
def child_loop(settings: Settings, bootstrap: str) -> dict[str, Any]:
    """The plain loop: consume -> PartitionIngest -> TradingDesk -> Store, nothing else."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    from connectors.kafka.source import CONSUMER_TUNING
    from connectors.store.clickhouse import ROW_CONVERTERS, Store
    from models.core.events import BarEvent
    from models.core.messages import DecisionRecord
    from models.desk.desk import TradingDesk
    from models.market.ingest import PartitionIngest, RawBatch, Record

    store = Store.open(settings.clickhouse)
    store.apply_schema()
    topic = settings.kafka.topics.market
    t0 = time.perf_counter()
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "BENCH_IGNORED",
            "enable.auto.commit": "false",
            "enable.partition.eof": "true",
            **CONSUMER_TUNING,
        }
    )
    meta = consumer.list_topics(topic, timeout=10)
    parts = list(meta.topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, -2) for p in parts])
    ingest = PartitionIngest(settings)
    desk = TradingDesk.create(settings)
    eof: set[int] = set()
    events = 0
    decision_ids: set[str] = set()
    rows: list[Any] = []
    last_write = time.perf_counter()
    while len(eof) < len(parts):
        batch = consumer.consume(5000, 0.05)
        out: list[Any] = []
        records: list[Record] = []
        for m in batch:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    eof.add(m.partition())
                continue
            events += 1
            _, ts = m.timestamp()
            records.append((m.offset() or 0, ts, m.value(), None))
        if records:  # one partition in the benchmark topic
            ingest.process_batch(RawBatch(topic, parts[0], records), out)
        if len(eof) == len(parts):
            out.extend(ingest.flush())
        for item in out:
            if isinstance(item, BarEvent):
                for rec in desk.on_bar_event(item):
                    rows.append(rec)
            elif type(item) in ROW_CONVERTERS:
                rows.append(item)
        # the same write batching as the flow: every 0.5 s, and at the end
        if rows and (len(eof) == len(parts) or time.perf_counter() - last_write >= 0.5):
            decision_ids.update(r.decision_id for r in rows if isinstance(r, DecisionRecord))
            store.insert_models(rows)
            rows = []
            last_write = time.perf_counter()
    elapsed = time.perf_counter() - t0
    consumer.close()
    store.close()
    return {"events": events, "elapsed_s": elapsed, "decisions": len(decision_ids)}


def child_flow(settings: Settings, bootstrap: str) -> dict[str, Any]:
    from dataflows.pipeline import FlowSpec
    from dataflows.run import run_pipeline

    t0 = time.perf_counter()
    run_pipeline(settings, FlowSpec(bootstrap=bootstrap, tail=False, kafka_out=False))
    elapsed = time.perf_counter() - t0
    from connectors.store.clickhouse import Store

    with Store.open(settings.clickhouse) as store:
        n = store.query("SELECT count() AS n FROM decisions FINAL")[0]["n"]
    return {"elapsed_s": elapsed, "decisions": int(n)}


def run_child(kind: str, settings: Settings, bootstrap: str) -> dict[str, Any]:
    cfg = Path(settings.clickhouse.path).parent / "settings.json"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(settings.model_dump_json())
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            kind,
            "--settings",
            str(cfg),
            "--bootstrap",
            bootstrap,
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if out.returncode != 0:
        raise SystemExit(f"{kind} child failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ticks", type=int, default=600_000)
    ap.add_argument("--symbols", type=int, default=8)
    ap.add_argument("--child")
    ap.add_argument("--settings")
    ap.add_argument("--bootstrap")
    args = ap.parse_args()
    if args.child:
        os.sched_setaffinity(0, {0})  # one core, as the target says
        settings = Settings.model_validate_json(Path(args.settings).read_text())
        fn = child_loop if args.child == "loop" else child_flow
        print(json.dumps(fn(settings, args.bootstrap)))
        return 0

    symbols = [f"SIM{chr(65 + i)}" for i in range(args.symbols)]
    rate = 4.0
    duration = max(60, int(args.ticks / (rate * len(symbols))))
    with tempfile.TemporaryDirectory(prefix="stratflow-bench-") as tmp, LocalBroker(tmp) as broker:
        work = Path(tmp)
        topic = "bench.market"
        ensure_topics(
            broker.bootstrap, bench_settings(work, symbols, topic, False).kafka.topics.all(), 1
        )
        ticks = generate_scenario(symbols, past_start_ms(duration), duration, rate, seed=3)
        stats = replay(broker.bootstrap, topic, ticks)
        n = stats.published
        print(f"published {n:,} ticks ({len(symbols)} symbols, 1-minute bars) to a local Tansu")
        loop = run_child(
            "loop", bench_settings(work / "loop", symbols, topic, False), broker.bootstrap
        )
        flow_plain = run_child(
            "flow", bench_settings(work / "flow", symbols, topic, False), broker.bootstrap
        )
        flow_rec = run_child(
            "flow", bench_settings(work / "flowrec", symbols, topic, True), broker.bootstrap
        )
    rows = [
        ("plain loop (same client, same models, same store)", loop["elapsed_s"]),
        ("bytewax flow, recovery off", flow_plain["elapsed_s"]),
        ("bytewax flow, recovery on (2 s snapshots)", flow_rec["elapsed_s"]),
    ]
    print(f"{'':52} {'seconds':>8} {'events/s':>10} {'vs loop':>8}")
    for name, secs in rows:
        print(f"{name:52} {secs:8.2f} {n / secs:10,.0f} {loop['elapsed_s'] / secs:8.2f}x")
    print(
        f"decisions (must agree): loop {loop['decisions']}, "
        f"flow {flow_plain['decisions']}, flow with recovery {flow_rec['decisions']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
