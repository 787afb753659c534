"""A sweep across processes ranks exactly as the same sweep in one process."""

from __future__ import annotations

from api.sweep import run_sweep
from models.config.settings import build_settings
from models.vectorized.sweep import parse_grid
from tests.unit.test_vectorized_sweep import bars_of, grid_doc


def test_processes_give_the_in_process_ranking() -> None:
    cfg = build_settings({"symbols": {"AAA": {}}, "execution": {"initial_cash": 10_000}}, {})
    grid = parse_grid(grid_doc(fast=[3, 5, 8], slow=[13, 21], stop=[None, 0.02, 0.05]))
    bars = bars_of(600)
    chunks: list[int] = []
    local = run_sweep(grid, bars, cfg, rank_by="sharpe_ratio", top=5, workers=0, progress=False)
    pooled = run_sweep(
        grid,
        bars,
        cfg,
        rank_by="sharpe_ratio",
        top=5,
        workers=2,
        chunk_size=4,
        progress=False,
        on_chunk=chunks.append,
    )
    assert pooled.evaluated == local.evaluated == 18
    assert sorted(chunks) == [2, 4, 4, 4, 4]
    assert [(r.index, r.trades, r.statistics) for r in pooled.top] == [
        (r.index, r.trades, r.statistics) for r in local.top
    ]
