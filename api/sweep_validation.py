"""What a sweep's winner is worth: the trials ledger, the deflated Sharpe ratio over every trial
of the family, the probability of backtest overfitting over this sweep's points, and the
walk-forward run (`stratflow backtest --sweep GRID [--walk-forward rolling|anchored ...]`).

Order, and why: the sweep's points (and a walk-forward's in-sample evaluations) are written to
the ledger first, then the family's trial Sharpe ratios are read back, so the DSR counts this
sweep with every earlier one. The ledger is the configured store (`clickhouse`: chdb at
`clickhouse.path`, or the server of `CLICKHOUSE_URL`), opened and closed before the winners are
confirmed through the flow (chdb holds one directory per process, and each confirmation run
opens its own). A store that cannot be opened is said in one line and the DSR then counts this
sweep's trials only.

The figures explain themselves in one sentence each (`DeflatedSharpe.explain`, `Pbo.explain`)
for the terminal and the report; `--json` carries the numbers.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from api.sweep import SweepResult
from connectors.store.trials import Trial, count_trials, family_sharpes, record_trials
from models.config.settings import Settings
from models.validation.overfitting import (
    DeflatedSharpe,
    OverfittingError,
    Pbo,
    deflated_sharpe,
    probability_of_overfitting,
    suggested_blocks,
)
from models.validation.walkforward import Mode, WalkForward, Window, walk_forward
from models.vectorized.bars import BarArrays, FloatArray
from models.vectorized.evaluate import Costs, StatValue
from models.vectorized.sweep import Grid, GridPoint

__all__ = [
    "SweepValidation",
    "WalkForwardOptions",
    "family_of",
    "new_sweep_id",
    "sweep_trials",
    "validate_sweep",
]


def family_of(grid: Grid) -> str:
    """The grid's strategy name without parameters: what its points are trials of."""
    name = grid.strategy.get("name")
    return str(name) if isinstance(name, str) and name else "strategy"


def new_sweep_id(now_ms: int) -> str:
    """`sweep-<ms>-<hex>`: the run id a sweep's ledger rows carry."""
    return f"sweep-{now_ms}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class WalkForwardOptions:
    mode: Mode
    is_bars: int
    oos_bars: int
    step: int | None = None


@dataclass
class SweepValidation:
    """The overfitting figures of one sweep and where they come from."""

    sweep_id: str
    family: str
    dsr: DeflatedSharpe | None = None
    dsr_note: str = ""
    pbo: Pbo | None = None
    pbo_note: str = ""
    walk: WalkForward | None = None
    ledger_trials: int = 0
    ledger_note: str = ""
    window_times: list[tuple[int, int, int]] = field(default_factory=list)
    """Per walk-forward window: (in-sample first bar, out-of-sample first bar, out-of-sample
    end), epoch ms."""

    def lines(self) -> list[str]:
        """What the terminal shows."""
        out = [self.ledger_note] if self.ledger_note else []
        out.append(self.dsr.explain() if self.dsr is not None else f"DSR n/a: {self.dsr_note}")
        out.append(self.pbo.explain() if self.pbo is not None else f"PBO n/a: {self.pbo_note}")
        if self.walk is not None:
            out.append(self.walk.summary())
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "sweep_id": self.sweep_id,
            "family": self.family,
            "ledger_trials": self.ledger_trials,
            "dsr": _dsr_json(self.dsr, self.dsr_note),
            "pbo": _pbo_json(self.pbo, self.pbo_note),
            "walk_forward": None if self.walk is None else _walk_json(self.walk, self.window_times),
        }


def _dsr_json(dsr: DeflatedSharpe | None, note: str) -> dict[str, Any]:
    if dsr is None:
        return {"value": None, "note": note}
    return {
        "value": dsr.dsr,
        "sharpe_per_period": dsr.sharpe,
        "benchmark_per_period": dsr.benchmark,
        "trials": dsr.n_trials,
        "trials_sharpe_variance": dsr.trials_variance,
        "periods": dsr.n_obs,
        "skew": dsr.skew,
        "kurtosis": dsr.kurtosis,
        "explanation": dsr.explain(),
    }


def _pbo_json(pbo: Pbo | None, note: str) -> dict[str, Any]:
    if pbo is None:
        return {"value": None, "note": note}
    return {
        "value": pbo.pbo,
        "blocks": pbo.blocks,
        "splits": pbo.splits,
        "periods_used": pbo.rows_used,
        "degradation_slope": pbo.degradation_slope,
        "degradation_intercept": pbo.degradation_intercept,
        "probability_of_loss": pbo.probability_of_loss,
        "explanation": pbo.explain(),
    }


def _walk_json(walk: WalkForward, times: Sequence[tuple[int, int, int]]) -> dict[str, Any]:
    return {
        "mode": walk.mode,
        "is_bars": walk.is_bars,
        "oos_bars": walk.oos_bars,
        "step": walk.step,
        "warmup_bars": walk.warmup_bars,
        "efficiency": walk.efficiency,
        "statistics": walk.statistics(),
        "windows": [
            {
                "index": w.window.index,
                "is_start_ms": times[w.window.index][0],
                "oos_start_ms": times[w.window.index][1],
                "oos_end_ms": times[w.window.index][2],
                "params": dict(w.choice.params),
                "score": w.score,
                "is_sharpe": w.is_sharpe,
                "oos_sharpe": w.oos_sharpe,
                "oos_return": w.oos_return,
                "oos_trades": w.oos_trades,
                "efficiency": w.efficiency,
            }
            for w in walk.windows
        ],
        "summary": walk.summary(),
    }


def sweep_trials(
    result: SweepResult, bars: BarArrays, family: str, sweep_id: str, now_ms: int
) -> list[Trial]:
    """One ledger row per evaluated point of the sweep."""
    start, end = int(bars.start_ms[0]), int(bars.end_ms[-1])
    return [
        Trial(
            trial_id=f"{sweep_id}:{row.index}",
            family=family,
            source="sweep",
            tried_ms=now_ms,
            symbol=bars.symbol,
            strategy=row.spec.name,
            params=row.params,
            data_start_ms=start,
            data_end_ms=end,
            period=result.period,
            statistics=row.statistics,
            returns=row.returns,
            run_id=sweep_id,
        )
        for row in result.rows
    ]


def _pbo(result: SweepResult, blocks: int | None) -> tuple[Pbo | None, str]:
    columns = [row.returns for row in result.rows]
    if len(columns) < 2:
        return None, "one configuration: nothing to overfit among"
    periods = len(columns[0])
    s = blocks if blocks is not None else suggested_blocks(periods)
    if s is None:
        return None, f"{periods} {result.period} return(s); CSCV needs at least 4"
    try:
        return probability_of_overfitting(np.column_stack(columns), s), ""
    except OverfittingError as err:
        return None, str(err)


def _dsr(winner: FloatArray, sharpes: Sequence[float | None]) -> tuple[DeflatedSharpe | None, str]:
    defined = [s for s in sharpes if s is not None]
    if not defined:
        return None, "no trial of the family has a Sharpe ratio (no variance)"
    try:
        return deflated_sharpe(winner, defined), ""
    except OverfittingError as err:
        return None, f"the winner's {err}"


def validate_sweep(
    settings: Settings,
    grid: Grid,
    points: Sequence[GridPoint],
    result: SweepResult,
    bars: BarArrays,
    *,
    walk: WalkForwardOptions | None = None,
    blocks: int | None = None,
    now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    on_window: Callable[[int], None] | None = None,
) -> SweepValidation:
    """The ledger rows, DSR, PBO and walk-forward of a finished sweep (see the module doc)."""
    from connectors.store.clickhouse import Store
    from connectors.store.errors import ClickHouseError

    tried = now_ms()
    sweep_id = new_sweep_id(tried)
    family = family_of(grid)
    out = SweepValidation(sweep_id, family)
    trials = sweep_trials(result, bars, family, sweep_id, tried)
    if walk is not None:
        out.walk = _walk(
            settings, points, bars, result, walk, family, sweep_id, tried, trials, on_window
        )
        out.window_times = [
            (
                int(bars.start_ms[w.window.is_start]),
                int(bars.start_ms[w.window.oos_start]),
                int(bars.end_ms[w.window.oos_end - 1]),
            )
            for w in out.walk.windows
        ]
    own = [t.sharpe for t in trials if t.source == "sweep"]
    sharpes: list[float | None] = own
    try:
        with Store.open(settings.clickhouse, run_id=sweep_id) as store:
            store.apply_schema()
            record_trials(store, trials)
            sharpes = family_sharpes(store, family)
            counts = count_trials(store, family)
        out.ledger_trials = len(sharpes)
        windows = counts.get("walk_forward", 0)
        out.ledger_note = (
            f"trials ledger ({store.where}): {len(sharpes)} distinct trial(s) of {family!r},"
            f" {len(own)} evaluated by this sweep ({sweep_id})"
            + (f"; {windows} walk-forward window evaluation(s) kept apart" if windows else "")
        )
    except ClickHouseError as err:
        out.ledger_note = (
            f"trials ledger unavailable ({str(err).splitlines()[0]}): the DSR counts this"
            f" sweep's {len(own)} trial(s) only"
        )
    if result.top:
        out.dsr, out.dsr_note = _dsr(result.top[0].returns, sharpes)
    else:
        out.dsr_note = "no point was ranked"
    out.pbo, out.pbo_note = _pbo(result, blocks)
    return out


def _walk(
    settings: Settings,
    points: Sequence[GridPoint],
    bars: BarArrays,
    result: SweepResult,
    options: WalkForwardOptions,
    family: str,
    sweep_id: str,
    tried: int,
    trials: list[Trial],
    on_window: Callable[[int], None] | None,
) -> WalkForward:
    def record(
        window: Window, point: GridPoint, stats: dict[str, StatValue], returns: FloatArray
    ) -> None:
        trials.append(
            Trial(
                trial_id=f"{sweep_id}:w{window.index}:{point.index}",
                family=family,
                source="walk_forward",
                tried_ms=tried,
                symbol=bars.symbol,
                strategy=point.spec.name,
                params=point.params,
                data_start_ms=int(bars.start_ms[window.is_start]),
                data_end_ms=int(bars.end_ms[window.is_end - 1]),
                period=result.period,
                statistics=stats,
                returns=returns,
                run_id=sweep_id,
            )
        )

    return walk_forward(
        points,
        bars,
        Costs.from_settings(settings, bars.symbol),
        settings.features,
        is_bars=options.is_bars,
        oos_bars=options.oos_bars,
        step=options.step,
        mode=options.mode,
        rank_by=result.rank_by,
        lowest_first=result.lowest_first,
        on_window=on_window,
        on_trial=record,
    )
