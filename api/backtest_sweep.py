"""`stratflow backtest --sweep GRID`: rank a parameter grid with the vectorised evaluator, then
confirm the best few through the full flow (each a backtest of its own, with its report).

The bars the grid is evaluated on are the bars the flow builds: the data goes through the same
`BarBuilder` (the configured interval, calendar included; late and duplicate input refused the
same way), so a 1-minute trade file swept at 1h bars ranks on the hourly bars the flow will
trade. The confirmation shows, per winner, the evaluator's figure beside the flow's and the
trade counts of both: the evaluator leaves out the review loop's limits, so a gap between the
two says the limits shaped the winner.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.backtest_output import BacktestOutcome, emit, finish
from api.sweep import SweepResult, SweepRow, run_sweep
from api.sweep_report import write_sweep_report
from api.sweep_validation import SweepValidation, WalkForwardOptions, validate_sweep
from connectors.files.market_file import MergedStreams
from models.config.settings import Settings
from models.core.messages import Bar, BarIn, Tick
from models.market.bars import BarBuilder, Rejected
from models.vectorized.bars import BarArrays
from models.vectorized.sweep import Grid, GridError


@dataclass
class Confirmed:
    row: SweepRow
    outcome: BacktestOutcome

    def flow_value(self, key: str) -> Any:
        return next((s.value for s in self.outcome.performance.statistics if s.key == key), None)


def flow_bars(settings: Settings, symbol: str, messages: Iterable[Tick | BarIn]) -> BarArrays:
    """The closed bars the flow would build for `symbol` from these messages."""
    builder = BarBuilder(
        symbol=symbol,
        interval=settings.bar_interval(symbol),
        dedupe_window=settings.bars.dedupe_window,
    )
    bars: list[Bar] = []
    for msg in messages:
        if msg.symbol != symbol:
            continue
        closed = builder.add(msg)
        if not isinstance(closed, Rejected):
            bars.extend(closed)
    bars.extend(builder.flush())
    return BarArrays.from_bars(bars)


def grid_symbol(grid: Grid) -> str:
    universe = grid.strategy.get("universe")
    if not isinstance(universe, list) or len(universe) != 1 or not isinstance(universe[0], str):
        raise GridError("a sweep's strategy trades one symbol: universe: [SYMBOL]")
    return universe[0]


@contextlib.contextmanager
def _walk_progress(
    walk: WalkForwardOptions | None, n_bars: int, n_points: int, show: bool
) -> Iterator[Callable[[int], None]]:
    """A progress bar over the walk-forward's evaluations (each window: every point in-sample,
    the chosen one out of sample); nothing to show without a walk-forward or with --json."""
    if walk is None or not show:
        yield lambda _n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from models.validation.walkforward import plan_windows

    windows = plan_windows(
        n_bars, is_bars=walk.is_bars, oos_bars=walk.oos_bars, step=walk.step, mode=walk.mode
    )
    bar = Progress(
        TextColumn("walk-forward"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    )
    with bar:
        task = bar.add_task("walk-forward", total=len(windows) * (n_points + 1))
        yield lambda n: bar.advance(task, n)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)


def sweep_and_confirm(
    settings: Settings,
    grid: Grid,
    data: MergedStreams,
    run_dirs: Callable[[], Path],
    *,
    rank_by: str,
    top: int,
    confirm: int,
    as_json: bool,
    say: Callable[[str], None],
    walk: WalkForwardOptions | None = None,
    blocks: int | None = None,
) -> tuple[SweepResult, list[Confirmed], SweepValidation]:
    symbol = grid_symbol(grid)
    bars = flow_bars(settings, symbol, data.messages())
    result = run_sweep(grid, bars, settings, rank_by=rank_by, top=top, progress=not as_json)
    say(result.summary())
    for i, row in enumerate(result.top, 1):
        params = ", ".join(f"{k}={v}" for k, v in row.params.items())
        say(f"{i}. {params}: {rank_by} {_cell(row.score(rank_by))}, {row.trades} trades")
    with _walk_progress(walk, len(bars), len(result.expansion.points), not as_json) as advance:
        validation = validate_sweep(
            settings,
            grid,
            result.expansion.points,
            result,
            bars,
            walk=walk,
            blocks=blocks,
            on_window=advance,
        )
    for line in validation.lines():
        say(line)
    report = write_sweep_report(result, validation, symbol, run_dirs() / "sweep.html")
    say(f"sweep report {report}")
    confirmed: list[Confirmed] = []
    for row in result.top[:confirm]:
        doc = settings.model_dump(mode="json")
        doc["strategies"] = [row.spec.model_dump(mode="json")]
        confirm_settings = Settings.model_validate(doc)
        run_dir = run_dirs()
        say(f"confirming {row.spec.name} {dict(row.params)} through the flow: {run_dir.name}")
        outcome = finish(confirm_settings, data, run_dir, as_json=True, say=say, quiet=True)
        confirmed.append(Confirmed(row, outcome))
        flow = Confirmed(row, outcome).flow_value(rank_by)
        say(
            f"  evaluator {rank_by} {_cell(row.score(rank_by))} / {row.trades} trades;"
            f" flow {_cell(flow)} / {len(outcome.trades)} trades; report {outcome.report}"
        )
    if as_json:
        emit(
            json.dumps(
                {
                    "sweep": {
                        "summary": result.summary(),
                        "rank_by": rank_by,
                        "top": [
                            {
                                "params": dict(r.params),
                                "trades": r.trades,
                                "statistics": dict(r.statistics),
                            }
                            for r in result.top
                        ],
                    },
                    "overfitting": validation.to_json(),
                    "report": str(report.resolve()),
                    "confirmed": [
                        {
                            "params": dict(c.row.params),
                            "run_id": c.outcome.run.run_id,
                            "report": str(c.outcome.report.resolve()),
                            "trades": len(c.outcome.trades),
                            rank_by: c.flow_value(rank_by),
                        }
                        for c in confirmed
                    ],
                },
                default=str,
            )
        )
    return result, confirmed, validation
