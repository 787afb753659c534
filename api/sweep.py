"""`stratflow backtest --sweep GRID`: every point of a parameter grid through the vectorised
evaluator, across processes, ranked by one statistic; the best few then go through the full
flow (the command does that: this module ranks).

Why processes: a point is CPU-bound Python and numpy (the statistics are pure Python), so
threads would share one core. The bars and settings go to each worker once (the pool's
initializer); points go in chunks, so the pickling and the round trip per task are paid per
chunk, and each worker keeps one feature cache for the bars, so `sma_10` is computed once per
worker, not once per point. `workers=0` evaluates in this process (tests, tiny grids).
A rich progress bar counts the points as chunks finish.

The evaluator does not model the review loop's limits (`models.vectorized.evaluate`): a point
whose orders a limit would shrink ranks as if they were not shrunk. The full flow's confirmation
of the winners is where that shows.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from models.config.settings import Settings
from models.performance.returns import calendar_of
from models.strategy.spec import StrategySpec
from models.validation.overfitting import period_returns_of
from models.vectorized.bars import BarArrays, FloatArray
from models.vectorized.evaluate import Costs, StatValue, evaluate
from models.vectorized.sweep import Expansion, Grid, GridError, GridPoint, expand
from models.vectorized.sweep import statistic_keys as _statistic_keys

__all__ = ["SweepResult", "SweepRow", "run_sweep", "statistic_keys"]

MAX_WORKERS: Final = 32


def statistic_keys() -> tuple[str, ...]:
    """The keys `--rank-by` accepts (those of `models.performance.stats.compute_statistics`)."""
    return _statistic_keys()


@dataclass(frozen=True, slots=True)
class SweepRow:
    """One evaluated point: its parameters, strategy, trade count and every statistic."""

    index: int
    params: Mapping[str, Any]
    spec: StrategySpec
    trades: int
    statistics: Mapping[str, StatValue]
    returns: FloatArray = field(default_factory=lambda: np.zeros(0))
    """Per-period returns (`period_returns_of`: daily for intraday or daily bars), the series
    the trials ledger keeps and the PBO's matrix is made of."""

    def score(self, key: str) -> float | None:
        value = self.statistics.get(key)
        if value is None or isinstance(value, str):
            return None
        number = float(value)
        return number if math.isfinite(number) else None


@dataclass(frozen=True, slots=True)
class SweepResult:
    """The top rows by `rank_by` (best first) and what the sweep did."""

    rank_by: str
    lowest_first: bool
    top: tuple[SweepRow, ...]
    evaluated: int
    expansion: Expansion
    seconds: float
    workers: int
    rows: tuple[SweepRow, ...] = ()
    """Every evaluated row, in grid order."""
    period: str = "day"
    """The calendar period of every row's `returns`."""

    def summary(self) -> str:
        rate = self.evaluated / self.seconds if self.seconds > 0 else float("inf")
        return (
            f"{self.expansion.summary()}; evaluated {self.evaluated} in {self.seconds:.1f} s "
            f"({rate:.1f} points/s, {self.workers or 1} process(es)); ranked by {self.rank_by}"
            f"{' (lowest first)' if self.lowest_first else ''}"
        )


# ----------------------------------------------------------------------- the worker's side

_STATE: dict[str, Any] = {}


def _init_worker(bars: BarArrays, costs: Costs, settings: Settings) -> None:
    _STATE["bars"] = bars
    _STATE["costs"] = costs
    _STATE["settings"] = settings
    _STATE["cache"] = {}


Evaluated = tuple[int, int, dict[str, StatValue], FloatArray]
"""(point index, trades, statistics, per-period returns) as a worker sends it back."""


def _evaluate_chunk(points: Sequence[GridPoint]) -> list[Evaluated]:
    bars: BarArrays = _STATE["bars"]
    settings: Settings = _STATE["settings"]
    cache: dict[Any, FloatArray] = _STATE["cache"]
    out: list[Evaluated] = []
    for point in points:
        result = evaluate(point.spec, bars, _STATE["costs"], settings.features, cache)
        _, returns = period_returns_of(bars.start_ms, result.equity)
        out.append((point.index, result.trade_count, result.statistics(), returns))
    return out


# ----------------------------------------------------------------------- the parent's side


def _rank(rows: list[SweepRow], rank_by: str, lowest_first: bool, top: int) -> tuple[SweepRow, ...]:
    def key(row: SweepRow) -> tuple[int, float, int]:
        score = row.score(rank_by)
        if score is None:
            return (1, 0.0, row.index)  # undefined (no trades, no variance): last
        return (0, score if lowest_first else -score, row.index)

    return tuple(sorted(rows, key=key)[:top])


def run_sweep(
    grid: Grid,
    bars: BarArrays,
    settings: Settings,
    *,
    rank_by: str = "sharpe_ratio",
    top: int = 5,
    lowest_first: bool = False,
    workers: int | None = None,
    chunk_size: int | None = None,
    console: Console | None = None,
    progress: bool = True,
    on_chunk: Callable[[int], None] | None = None,
) -> SweepResult:
    """Evaluate every point of `grid` on `bars` (one symbol) and return the best `top` by
    `rank_by` (highest first unless `lowest_first`; undefined values last, ties by grid order).

    `workers`: processes (None: the CPU count, capped; 0: in this process). Raises `GridError`
    (one line each) for an unknown `rank_by`, a `top` < 1, a grid with no point to evaluate,
    or bars of a symbol outside the grid strategy's universe."""
    keys = _statistic_keys()
    if rank_by not in keys:
        raise GridError(f"--rank-by: unknown statistic {rank_by!r}; one of {', '.join(keys)}")
    if top < 1:
        raise GridError(f"--top: must be at least 1, got {top}")
    if len(bars) == 0:
        raise GridError("no bars to sweep over")
    expansion = expand(grid, settings.execution)
    universe = expansion.points[0].spec.universe
    if bars.symbol not in universe:
        raise GridError(f"the grid's strategy trades {', '.join(universe)}, not {bars.symbol}")
    costs = Costs.from_settings(settings, bars.symbol)
    points = list(expansion.points)
    n_workers = min(os.cpu_count() or 1, MAX_WORKERS, len(points)) if workers is None else workers
    size = chunk_size or max(1, math.ceil(len(points) / max(1, n_workers * 4)))
    chunks = [points[i : i + size] for i in range(0, len(points), size)]
    by_index = {p.index: p for p in points}
    rows: list[SweepRow] = []
    started = time.perf_counter()

    def collect(part: list[Evaluated]) -> None:
        for index, trades, stats, returns in part:
            point = by_index[index]
            rows.append(SweepRow(index, point.params, point.spec, trades, stats, returns))
        if on_chunk is not None:
            on_chunk(len(part))

    bar = Progress(
        TextColumn("sweep"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not progress,
        transient=False,
    )
    with bar:
        task = bar.add_task("sweep", total=len(points))
        if n_workers <= 0:
            _init_worker(bars, costs, settings)
            for chunk in chunks:
                collect(_evaluate_chunk(chunk))
                bar.advance(task, len(chunk))
        else:
            ctx = multiprocessing.get_context(
                "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            )
            with ProcessPoolExecutor(
                max_workers=n_workers,
                mp_context=ctx,
                initializer=_init_worker,
                initargs=(bars, costs, settings),
            ) as pool:
                pending: set[Future[list[Evaluated]]] = {
                    pool.submit(_evaluate_chunk, chunk) for chunk in chunks
                }
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        part = future.result()
                        collect(part)
                        bar.advance(task, len(part))
    return SweepResult(
        rank_by=rank_by,
        lowest_first=lowest_first,
        top=_rank(rows, rank_by, lowest_first, top),
        evaluated=len(rows),
        expansion=expansion,
        seconds=time.perf_counter() - started,
        workers=n_workers,
        rows=tuple(sorted(rows, key=lambda r: r.index)),
        period=calendar_of(bars.start_ms[-100:].tolist()).period,
    )
