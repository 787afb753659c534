"""The trials ledger: every configuration ever tried for a strategy family.

A sweep's winner is the best of every configuration anyone tried for that family (the grid's
strategy name without parameters), not only of this sweep's points: the deflated Sharpe ratio
(`models.validation.overfitting.deflated_sharpe`) needs their count and the spread of their
Sharpe ratios. So each sweep (`api.backtest_sweep`) and each walk-forward's in-sample
evaluation writes a row per configuration to the `trials` table (schema.sql): its parameters,
statistics, per-period Sharpe ratio and per-period returns (daily for intraday or daily bars,
ZSTD-compressed in the table: ~8 bytes a period before compression), so the figures can be
recomputed later on any subset.

Rows are keyed by (family, trial_id, run_id) in a ReplacingMergeTree: writing a sweep's trials
again (a retry) is harmless. Nothing deletes them: `run --fresh` forgets a run, never a trial.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from models.validation.overfitting import OverfittingError, sharpe_ratio

if TYPE_CHECKING:
    from connectors.store.clickhouse import Store

__all__ = [
    "BATCH_ROWS",
    "TRIALS_TABLE",
    "Trial",
    "count_trials",
    "family_sharpes",
    "read_family",
    "record_trials",
]

TRIALS_TABLE: Final = "trials"
BATCH_ROWS: Final = 2_000
"""Rows per INSERT: a sweep of 100,000 points goes in 50 statements, none holding it all."""

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, eq=False)
class Trial:
    """One configuration tried: what it was, on what, and how it did per period."""

    trial_id: str
    family: str
    source: str  # "sweep" or "walk_forward"
    tried_ms: int
    symbol: str
    strategy: str  # the point's strategy name, parameters included
    params: Mapping[str, Any]
    data_start_ms: int
    data_end_ms: int
    period: str
    statistics: Mapping[str, Any]
    returns: FloatArray
    run_id: str = ""

    @property
    def sharpe(self) -> float | None:
        """Per-period Sharpe ratio of `returns`; None where undefined (fewer than two returns,
        no variance: a configuration that never traded)."""
        try:
            return sharpe_ratio(self.returns)
        except OverfittingError:
            return None

    def row(self) -> dict[str, Any]:
        returns = [float(x) for x in self.returns]
        finite = all(math.isfinite(x) for x in returns)
        return {
            "trial_id": self.trial_id,
            "family": self.family,
            "source": self.source,
            "tried_ms": self.tried_ms,
            "symbol": self.symbol,
            "strategy": self.strategy,
            "params": json.dumps(dict(self.params), sort_keys=True, default=str),
            "data_start_ms": self.data_start_ms,
            "data_end_ms": self.data_end_ms,
            "period": self.period,
            "sharpe": self.sharpe if finite else None,
            "statistics": json.dumps(dict(self.statistics), sort_keys=True, default=str),
            "returns": returns if finite else [],
            "run_id": self.run_id,
        }


def record_trials(store: Store, trials: Sequence[Trial]) -> int:
    """Append `trials` (in batches of `BATCH_ROWS`); returns how many rows were written."""
    written = 0
    for i in range(0, len(trials), BATCH_ROWS):
        written += store.insert_rows(TRIALS_TABLE, [t.row() for t in trials[i : i + BATCH_ROWS]])
    return written


def count_trials(store: Store, family: str) -> dict[str, int]:
    """Trials of `family` per source (`sweep`, `walk_forward`)."""
    rows = store.query(
        f"SELECT source, count() AS n FROM {store.table(TRIALS_TABLE)} FINAL "
        "WHERE family = {f:String} GROUP BY source ORDER BY source",
        {"f": family},
    )
    return {str(r["source"]): int(r["n"]) for r in rows}


def family_sharpes(store: Store, family: str, source: str | None = "sweep") -> list[float | None]:
    """The per-period Sharpe ratio of every distinct trial of `family` from `source` (None:
    every source), None where undefined, read from its column: what the deflated Sharpe ratio
    needs, without the return series.

    Distinct: one configuration (parameters) on one symbol's same stretch of data at the same
    period is one trial however often it was run; re-running a sweep adds no choice, while the
    same parameters on other data are another trial. The default source counts whole-history
    sweep points only: a walk-forward's rows are the sweep's configurations again on parts of
    the history, and counting them would count each configuration once per window."""
    where = "family = {f:String}" + ("" if source is None else " AND source = {s:String}")
    rows = store.query(
        "SELECT argMin(sharpe, (tried_ms, trial_id)) AS sharpe "
        f"FROM (SELECT * FROM {store.table(TRIALS_TABLE)} FINAL WHERE {where}) "
        "GROUP BY symbol, params, data_start_ms, data_end_ms, period "
        "ORDER BY min(tried_ms), min(trial_id)",
        {"f": family, "s": source or ""},
    )
    return [None if r["sharpe"] is None else float(r["sharpe"]) for r in rows]


def read_family(store: Store, family: str) -> list[Trial]:
    """Every trial of `family`, oldest first, with its return series."""
    rows = store.query(
        "SELECT trial_id, family, source, tried_ms, symbol, strategy, params, data_start_ms, "
        "data_end_ms, period, statistics, returns, run_id "
        f"FROM {store.table(TRIALS_TABLE)} FINAL WHERE family = {{f:String}} "
        "ORDER BY tried_ms, trial_id, run_id",
        {"f": family},
    )
    return [
        Trial(
            trial_id=str(r["trial_id"]),
            family=str(r["family"]),
            source=str(r["source"]),
            tried_ms=int(r["tried_ms"]),
            symbol=str(r["symbol"]),
            strategy=str(r["strategy"]),
            params=json.loads(str(r["params"]) or "{}"),
            data_start_ms=int(r["data_start_ms"]),
            data_end_ms=int(r["data_end_ms"]),
            period=str(r["period"]),
            statistics=json.loads(str(r["statistics"]) or "{}"),
            returns=np.asarray(r["returns"], dtype=np.float64),
            run_id=str(r["run_id"]),
        )
        for r in rows
    ]
