"""Integration-test helpers: settings on fresh topics, running the flow, reading results."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from connectors.kafka.broker import ensure_topics
from connectors.store.clickhouse import Store
from models.config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def make_settings(
    tmp: Path, symbols: dict[str, Any], market_topic: str | None = None, **sections: Any
) -> Settings:
    """Settings whose topics are unique to this test (except `market_topic`, to read another
    run's input) and whose state lives under `tmp`."""
    tag = uuid.uuid4().hex[:10]
    topics = {
        name: f"it.{name}.{tag}"
        for name in (
            "market",
            "news",
            "social",
            "decisions",
            "orders",
            "fills",
            "alerts",
            "dead_letters",
            "control",
            "control_acks",
        )
    }
    if market_topic is not None:
        topics["market"] = market_topic
    doc: dict[str, Any] = {
        "symbols": symbols,
        "kafka": {"topics": topics},
        "clickhouse": {"path": str(tmp / "clickhouse")},
        "recovery": {"dir": str(tmp / "recovery"), "snapshot_interval": "200ms"},
    }
    kafka = sections.pop("kafka", {})
    doc.update(sections)
    doc["kafka"] = {**doc["kafka"], **kafka}
    return Settings.model_validate(doc)


def create_topics(bootstrap: str, settings: Settings) -> None:
    ensure_topics(bootstrap, settings.kafka.topics.all(), settings.kafka.partitions)


def elsewhere(settings: Settings, tmp: Path) -> Settings:
    """The same input topics, a store and recovery state of their own (a replay of the run)."""
    doc = settings.model_dump(mode="json")
    doc["clickhouse"]["path"] = str(tmp / "clickhouse")
    doc["recovery"]["dir"] = str(tmp / "recovery")
    return Settings.model_validate(doc)


def write_config(settings: Settings, path: Path) -> Path:
    path.write_text(yaml.safe_dump(settings.model_dump(mode="json")), encoding="utf-8")
    return path


def flow_command(config: Path, bootstrap: str) -> list[str]:
    return [sys.executable, "-m", "dataflows.run", str(config), bootstrap]


def run_flow_subprocess(
    settings: Settings,
    bootstrap: str,
    workdir: Path,
    timeout: float = 300,
    env: dict[str, str] | None = None,
    processes: int = 1,
    args: tuple[str, ...] = (),
) -> str:
    """The flow in its own process (chdb allows one data directory per process); returns its
    stderr. `env` is added to the environment (e.g. OPENAI_BASE_URL of a local server);
    `processes` > 1 runs it as a cluster of that many processes; `args` are added to the
    command (`python -m dataflows.run`'s options)."""
    cfg = write_config(settings, workdir / f"cfg-{uuid.uuid4().hex[:6]}.yaml")
    more = [*(["--processes", str(processes)] if processes > 1 else []), *args]
    proc = subprocess.run(
        [*flow_command(cfg, bootstrap), *more],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


def query(settings: Settings, sql: str) -> list[dict[str, Any]]:
    with Store.open(settings.clickhouse) as store:
        return store.query(sql)


def final_book(settings: Settings) -> dict[str, Decimal]:
    """Cash and quantity per symbol from the last position snapshot of each symbol."""
    rows = query(
        settings,
        "SELECT symbol, argMax(quantity, ts_ms) AS q FROM positions FINAL GROUP BY symbol",
    )
    last = query(
        settings, "SELECT cash FROM positions FINAL ORDER BY ts_ms DESC, symbol DESC LIMIT 1"
    )
    book = {r["symbol"]: Decimal(r["q"]) for r in rows}
    book["cash"] = Decimal(last[0]["cash"]) if last else Decimal(0)
    return book


def paper_config(tmp: Path, **sections: Any) -> Path:
    """A config file for paper trading on the exchange emulator: BTC/USDT and ETH/USDT, 2 s
    bars and short feature windows, so a run of seconds trades; topics and state as
    `make_settings` makes them."""
    settings = make_settings(
        tmp,
        {"BTC/USDT": {"lot_size": "0.0001"}, "ETH/USDT": {"lot_size": "0.001"}},
        execution={"initial_cash": "100000", "currency": "USDT", "fee_bps": "10"},
        bars={"interval": "2s", "allowed_lateness": "1s"},
        features={
            "sma_fast": 2,
            "sma_slow": 4,
            "rsi": 3,
            "volume_z": 3,
            "breakout": 3,
            "ema": 3,
            "volatility": 3,
            "vwap": 3,
        },
        **sections,
    )
    path = tmp / "paper.yaml"
    path.write_text(yaml.safe_dump(settings.model_dump(mode="json")), encoding="utf-8")
    return path
