"""The commands' side of the road from backtest to live: record each step, refuse a live run.

The rules are `models.validation.promotion` (pure); the ledger is `connectors.store.promotions`
in the configured store (`clickhouse.path` or `clickhouse.url`: where `stratflow run` writes,
not a backtest's own directory), so every command of one configuration reads the same ledger.

- `stratflow backtest` records its `backtest` step when it has finished (`record_backtest`),
  and for a setup without strategy files its `validation` step too (nothing to check but, for
  a GPT controller, the validation gate being on: `validation_verdict`);
- `stratflow validate --config CFG` (no strategy file or run id) checks every strategy file of
  the configured setup and records its `validation` step (`record_validation`);
- `stratflow run --paper` records that a paper run of the setup started (`paper_start`), and
  `stratflow approve` measures every such run from its rows (`measure_paper_runs`: duration
  and divergence from the simulator on the same bars) before it checks the approval's needs;
  a paper run ends with Ctrl-C (the process leaves at once), so it is measured afterwards;
- `stratflow run --exchange NAME` (real orders) asks `live_refusal` first: one line naming
  what is missing, or None; its desk watches the run's drawdown and its fills against the
  simulator as they arrive (`promotion.watch`), and a demotion it raises (a critical alert) is
  recorded by `sync_demotions` on the next `approve` or `run --exchange`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from models.config.base import parse_duration_ms
from models.config.settings import Settings
from models.gpt.cost import knowledge_cutoff
from models.validation.promotion import (
    Divergence,
    Step,
    StepRecord,
    backtest_verdict,
    demotion_reasons,
    divergence,
    live_missing,
    paper_verdict,
    setup_doc,
    setup_hash,
    validation_verdict,
)
from models.validation.verdicts import CheckResult, Outcome

if TYPE_CHECKING:
    from api.backtest_output import BacktestOutcome
    from connectors.store.clickhouse import Store
    from connectors.store.promotions import PaperRows

Clock = Callable[[], int]

__all__ = [
    "live_refusal",
    "measure_paper_runs",
    "open_ledger",
    "paper_start",
    "record_backtest",
    "record_validation",
    "sync_demotions",
    "wall_ms",
]


def wall_ms() -> int:
    return int(time.time() * 1000)


@contextlib.contextmanager
def open_ledger(settings: Settings) -> Iterator[Store]:
    """The configured store, schema applied (the ledger table included)."""
    from connectors.store.clickhouse import Store

    with Store.open(settings.clickhouse) as store:
        store.apply_schema()
        yield store


def _figures(result: CheckResult) -> dict[str, float | int | str | None]:
    return {f.name: f.value for f in result.figures}


def record_backtest(
    settings: Settings,
    outcome: BacktestOutcome,
    say: Callable[[str], None],
    clock: Clock = wall_ms,
) -> StepRecord | None:
    """Judge a finished backtest (`backtest_verdict`) and record it in the ledger; a ledger
    that cannot be opened (a chdb directory another process holds) is said, not fatal: the
    backtest itself is finished."""
    from connectors.store.errors import ClickHouseError
    from connectors.store.promotions import record_step

    perf = outcome.performance
    stats = {s.key: s.value for s in perf.statistics}
    raw_dd = stats.get("max_drawdown")
    drawdown = -float(raw_dd) if isinstance(raw_dd, int | float) else None
    verdict = backtest_verdict(drawdown, len(outcome.trades), settings.promotion)
    bars = outcome.run.rows.bars
    starts = [b[0][0] for b in bars.values() if b]
    ends = [b[-1][1] for b in bars.values() if b]
    figures: dict[str, Any] = {
        **_figures(verdict),
        "data_start_ms": min(starts) if starts else None,
        "data_end_ms": max(ends) if ends else None,
        "anonymised": settings.gpt.anonymize,
    }
    h = setup_hash(settings)
    now = clock()
    record = StepRecord(
        h, Step.BACKTEST, outcome.run.run_id, verdict.outcome, now, "", figures, verdict.summary
    )
    records = [record]
    if not settings.strategies:  # nothing to check: the gate (GPT) or the built-in engine
        checked = _validation_record(settings, [], outcome.run.run_id, now, figures)
        records.append(checked)
    try:
        with open_ledger(settings) as store:
            for r in records:
                record_step(store, r, setup_doc(settings))
    except (ClickHouseError, OSError) as err:
        say(f"promotion: backtest not recorded ({err})")
        return None
    for r in records:
        say(
            f"promotion: setup {h} {r.step.value} {r.outcome.value}"
            + (f" ({r.note})" if r.outcome is Outcome.FAIL else "")
        )
    return record


def _validation_record(
    settings: Settings,
    results: Sequence[tuple[str, str, CheckResult]],
    run_id: str,
    now: int,
    data: Mapping[str, Any],
) -> StepRecord:
    uses_gpt = settings.strategy.controller == "gpt"
    seen = {name for name, _, _ in results}
    verdict = validation_verdict(
        results,
        strategy_files=len(settings.strategies),
        uses_gpt=uses_gpt,
        gate_enabled=settings.validation.enabled,
        unchecked=[s.name for s in settings.strategies if s.name not in seen],
    )
    figures: dict[str, Any] = {
        **_figures(verdict),
        "data_start_ms": data.get("data_start_ms"),
        "data_end_ms": data.get("data_end_ms"),
    }
    return StepRecord(
        setup_hash(settings),
        Step.VALIDATION,
        run_id,
        verdict.outcome,
        now,
        "",
        figures,
        verdict.summary,
    )


def record_validation(
    store: Store,
    settings: Settings,
    results: Sequence[tuple[str, str, CheckResult]],
    data_start_ms: int | None,
    data_end_ms: int | None,
    clock: Clock = wall_ms,
) -> StepRecord:
    """Record the configured setup's `validation` step from its strategy files' checks
    (`validation_verdict`: none fails; a GPT controller also needs the gate on)."""
    from connectors.store.promotions import record_step

    data = {"data_start_ms": data_start_ms, "data_end_ms": data_end_ms}
    record = _validation_record(settings, results, "", clock(), data)
    record_step(store, record, setup_doc(settings))
    return record


def paper_start(
    store: Store,
    settings: Settings,
    run_id: str,
    clock: Clock = wall_ms,
    step: Step = Step.PAPER_START,
) -> str:
    """Record that paper run `run_id` of the configured setup started (`step`: `LIVE_START`
    for a run with real orders); returns the setup hash."""
    from connectors.store.promotions import record_step

    h = setup_hash(settings)
    record = StepRecord(h, step, run_id, Outcome.PASS, clock())
    record_step(store, record, setup_doc(settings))
    return h


def _measure(store: Store, settings: Settings, run_id: str) -> tuple[Divergence, PaperRows]:
    from connectors.store.promotions import paper_rows

    rows = paper_rows(store, run_id)
    ex = settings.execution
    measured = divergence(
        rows.orders,
        rows.fills,
        rows.bar_opens,
        slippage_bps=ex.slippage_bps,
        fee_bps=ex.fee_bps,
        equity=ex.initial_cash,
        policy=settings.promotion,
    )
    return measured, rows


def measure_paper_runs(
    store: Store, settings: Settings, clock: Clock = wall_ms
) -> list[StepRecord]:
    """Measure each started paper run of the setup not measured yet, and record its verdict
    (`paper_verdict`: duration and divergence from the simulator on the same bars)."""
    from connectors.store.promotions import read_steps, record_step

    h = setup_hash(settings)
    records = read_steps(store, h)
    measured_to: dict[str, int] = {}  # run id -> last bar of its latest measurement
    for r in records:
        end = r.figures.get("data_end_ms")
        if r.step is Step.PAPER:
            measured_to[r.run_id] = int(end) if isinstance(end, int | float) else 0
    started = [r.run_id for r in records if r.step is Step.PAPER_START]
    out: list[StepRecord] = []
    for run_id in dict.fromkeys(started):
        measure, rows = _measure(store, settings, run_id)
        if run_id in measured_to and (rows.last_ms or 0) <= measured_to[run_id]:
            continue  # measured, and no bar since
        span = (rows.last_ms or 0) - (rows.first_ms or 0)
        verdict = paper_verdict(span, measure, settings.promotion)
        figures: dict[str, Any] = {
            **_figures(verdict),
            "orders": len(rows.orders),
            "fills": len(rows.fills),
            "data_start_ms": rows.first_ms,
            "data_end_ms": rows.last_ms,
        }
        record = StepRecord(
            h, Step.PAPER, run_id, verdict.outcome, clock(), "", figures, verdict.summary
        )
        record_step(store, record, setup_doc(settings))
        out.append(record)
    return out


def sync_demotions(store: Store, settings: Settings, clock: Clock = wall_ms) -> list[StepRecord]:
    """Record the setup's demotions the ledger does not hold yet; the new records. Two
    sources: the demotions the flow raised, drawdown or divergence measured as fills arrived
    (critical alerts of source `promotion`, `models.validation.demotion`), and runs with real
    orders of the setup whose fills diverge from the simulator on the same bars past
    `promotion.divergence_limit` (measured here from their rows, over every order and fill:
    what the flow's window or a restart may have left out)."""
    from connectors.store.promotions import read_steps, record_step
    from models.validation.demotion import DEMOTION_SOURCE

    h = setup_hash(settings)
    records = read_steps(store, h)
    known = {r.note for r in records if r.step is Step.DEMOTION}
    out: list[StepRecord] = []
    for run_id in dict.fromkeys(r.run_id for r in records if r.step is Step.LIVE_START):
        note = f"divergence:{run_id}"
        if note in known:
            continue
        measured, _ = _measure(store, settings, run_id)
        why = demotion_reasons(Decimal(0), measured.score, settings.promotion)
        if why:
            figures: dict[str, Any] = {
                **{f.name: f.value for f in measured.figures(settings.promotion.divergence_limit)},
                "reasons": "; ".join(why),
            }
            record = StepRecord(
                h, Step.DEMOTION, run_id, Outcome.FAIL, clock(), figures=figures, note=note
            )
            record_step(store, record, setup_doc(settings))
            out.append(record)
    for row in store.query(
        "SELECT alert_id, ts_ms, run_id, context FROM alerts FINAL "
        "WHERE source = {src:String} ORDER BY ts_ms, alert_id",
        {"src": DEMOTION_SOURCE},
    ):
        context = json.loads(str(row["context"]) or "{}")
        if context.get("setup") != h or str(row["alert_id"]) in known:
            continue
        reasons = "; ".join(str(r) for r in context.get("reasons", []))
        record = StepRecord(
            h,
            Step.DEMOTION,
            str(row["run_id"]),
            Outcome.FAIL,
            int(row["ts_ms"]),
            figures={"reasons": reasons},
            note=str(row["alert_id"]),
        )
        record_step(store, record, setup_doc(settings))
        out.append(record)
    return out


def live_refusal(store: Store, settings: Settings) -> str | None:
    """The one line refusing `run --exchange` for the configured setup, or None when every
    step is recorded in order (and, for GPT, evidence after the model's cutoff). Demotions the
    flow raised are recorded first (`sync_demotions`)."""
    from connectors.store.promotions import read_steps

    sync_demotions(store, settings)
    h = setup_hash(settings)
    uses_gpt = settings.strategy.controller == "gpt"
    missing = live_missing(
        read_steps(store, h),
        h,
        uses_gpt=uses_gpt,
        cutoff=knowledge_cutoff(settings.gpt.model) if uses_gpt else None,
        gate_enabled=settings.validation.enabled,
    )
    if not missing:
        return None
    more = f" (then {len(missing) - 1} more step(s))" if len(missing) > 1 else ""
    return (
        f"setup {h} is not promoted to live trading: missing {missing[0]}{more}; "
        "see `stratflow approve --check`"
    )


def min_paper_text(settings: Settings) -> str:
    ms = parse_duration_ms(settings.promotion.paper_min_duration)
    return f"{ms / 3_600_000:g}h"
