"""A backtest through the whole flow (replay -> Kafka -> Bytewax -> desk -> ClickHouse) stores
exactly the same rows whether ingest emits runs of bars as blocks (`PartitionIngest.blocks`,
what `IngestLogic` turns on) or one bar at a time: two symbols of minute bars interleaved on
one partition (runs of one bar), one symbol alone for a while (long runs), a gap that the
jump guard holds until confirmed, and an SMA crossover strategy trading on them."""

from __future__ import annotations

import io
import math
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

import dataflows.adapters
from api.backtest import run_backtest
from connectors.files.market_file import MergedStreams, open_market_file
from connectors.store.clickhouse import Store
from models.config.settings import Settings, build_settings
from models.core.blocks import BarBlock
from models.market.ingest import IngestOutput, PartitionIngest, RawBatch
from tests.support.golden import RESULT_TABLES, canonical

pytestmark = pytest.mark.kafka

TABLES = (*RESULT_TABLES, "dead_letters")

START_MS = int(datetime(2021, 3, 1, tzinfo=UTC).timestamp() * 1000)
STRATEGY = {
    "name": "cross",
    "universe": ["SIMA", "SIMB"],
    "entry": {"left": "sma_10", "op": "crosses_above", "right": "sma_20"},
    "exit": {"left": "sma_10", "op": "crosses_below", "right": "sma_20"},
    "position_fraction": 0.4,
}


def _write(path: Path, seed: int, minutes: list[int]) -> None:
    rnd = random.Random(seed)
    price = 100.0
    with path.open("w", encoding="ascii") as f:
        f.write("time,open,high,low,close,volume\n")
        for m in minutes:
            o = price
            price = max(1.0, price * math.exp(rnd.gauss(0, 0.002)))
            h = max(o, price) * (1 + abs(rnd.gauss(0, 0.0005)))
            lo = min(o, price) * (1 - abs(rnd.gauss(0, 0.0005)))
            ts = datetime.fromtimestamp((START_MS + 60_000 * m) / 1000, UTC)
            f.write(
                f"{ts.strftime('%Y-%m-%dT%H:%M:%SZ')},{o:.4f},{h:.4f},{lo:.4f},{price:.4f},"
                f"{rnd.randint(0, 900)}\n"
            )


def _run(settings: Settings, files: list[Path], run_dir: Path) -> dict[str, list[str]]:
    streams = [open_market_file(p, symbol=p.stem, interval="1m") for p in files]
    run = run_backtest(
        settings, MergedStreams(streams), run_dir, say=lambda line: print(line, file=io.StringIO())
    )
    cfg = settings.clickhouse.model_copy(update={"path": str(run_dir / "clickhouse")})
    with Store.open(cfg) as store:
        tables = {t: store.query(f"SELECT * FROM {t} FINAL") for t in TABLES}
    assert run.rows.fills, "the strategy should trade"
    return {t: canonical(rows) for t, rows in tables.items()}


def test_a_backtest_stores_the_same_rows_with_and_without_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = tmp_path / "SIMA.csv", tmp_path / "SIMB.csv"
    _write(a, 1, list(range(0, 600)) + list(range(900, 1200)))  # a 5-hour gap
    _write(b, 2, list(range(300, 700)))
    settings = build_settings(
        {
            "symbols": {"SIMA": {}, "SIMB": {}},
            "bars": {"max_jump": "2h"},
            "execution": {"fee_bps": 0, "slippage_bps": 0},
            "strategies": [STRATEGY],
        },
        {},
    )
    blocks: list[int] = []

    class Counted(PartitionIngest):
        def process_batch(self, batch: RawBatch, out: list[IngestOutput]) -> None:
            before = len(out)
            super().process_batch(batch, out)
            blocks.extend(len(x) for x in out[before:] if isinstance(x, BarBlock))

    class PerBar(PartitionIngest):
        def __post_init__(self) -> None:
            super().__post_init__()
            self.blocks = False

    monkeypatch.setattr(dataflows.adapters, "PartitionIngest", Counted)
    with_blocks = _run(settings, [a, b], tmp_path / "blocks")
    monkeypatch.setattr(dataflows.adapters, "PartitionIngest", PerBar)
    per_bar = _run(settings, [a, b], tmp_path / "per-bar")
    assert len(with_blocks["bars"]) == 1300
    for table in TABLES:
        assert with_blocks[table] == per_bar[table], table
    # The stretches of one symbol alone travel in blocks; interleaved, each bar is a run of
    # one, which leaves bar by bar (`MIN_BLOCK`).
    assert max(blocks) > 50 and sum(blocks) > 600, blocks
