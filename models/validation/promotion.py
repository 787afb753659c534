"""From backtest to paper to live: what each step of a strategy setup's promotion must show.

A *setup* is what decides the trades: the configured strategies and controller, with the
settings they read (`setup_doc`); its hash (`setup_hash`) names it, so changing any of them
makes a new setup that starts the road again. The road, in order, for one setup hash:

1. `backtest`: a finished backtest whose verdict passes (`backtest_verdict`: drawdown and round
   trips within `promotion` limits), and `validation`: the setup's strategies validated
   (`validation_verdict`: no look-ahead or fragility check fails, warnings allowed and listed;
   for a GPT controller the in-flow validation gate on, since GPT's strategies are written on
   the fly and each is judged by the gate before it runs). Both are needed, in either order;
2. `paper`: a paper run on the exchange emulator covering at least `paper_min_duration` of event
   time, whose fills match what the simulator would have done on the same bars
   (`divergence`: a score of 1 or less is within every scale, see `Divergence`);
3. `approval`: a person's approval (`stratflow approve`: who and when);
4. live (`run --exchange`) may start; a GPT setup also needs evidence after the model's
   knowledge cutoff (a paper run, or a passing backtest whose data begin after the cutoff day).

A `demotion` record (drawdown or divergence of a live setup past its limit, `demotion_reasons`)
sends the setup back to paper: it needs a new paper run and a new approval.

Records are judged in the order they were recorded (`StepRecord.recorded_ms`, then the order
given): a step recorded before the one it needs does not count, and the latest record of a
step wins (a failed backtest after a passing one withdraws it). Everything here is pure: the
records come from `connectors.store.promotions`, the figures from the commands that measured
them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import Any

from models.config.base import parse_duration_ms
from models.config.gates import PromotionConfig
from models.config.settings import Settings
from models.core.messages import Side
from models.execution.sizing import BPS, PRICE_QUANTUM
from models.validation.cutoff import cutoff_end_ms
from models.validation.verdicts import CheckResult, Figure, Outcome

__all__ = [
    "Divergence",
    "FillSeen",
    "OrderSeen",
    "Stage",
    "Step",
    "StepRecord",
    "backtest_verdict",
    "demotion_reasons",
    "divergence",
    "live_missing",
    "missing_for",
    "paper_verdict",
    "setup_doc",
    "setup_hash",
    "sim_price",
    "stage_of",
    "validation_verdict",
]

SETUP_SECTIONS = ("strategies", "strategy", "features", "triggers", "router", "bars", "risk")
"""The settings that define a setup: what trades (strategies, controller and its fractions),
on what it decides (features, triggers, router, bars) and within which limits (risk). Money,
venue, store and connection settings are left out: a backtest, a paper run and a live run of
one setup differ in them by nature."""


def setup_doc(settings: Settings) -> dict[str, Any]:
    """The canonical form of `settings`' setup: its `SETUP_SECTIONS` as JSON values, plus the
    GPT model when GPT writes strategies (another model is another setup)."""
    doc = settings.model_dump(mode="json")
    out = {key: doc[key] for key in SETUP_SECTIONS}
    if settings.strategy.controller == "gpt":
        out["gpt"] = {"model": settings.gpt.model}
    return out


def setup_hash(settings: Settings) -> str:
    """A short, stable fingerprint of `setup_doc` (key order does not matter)."""
    text = json.dumps(setup_doc(settings), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Step(StrEnum):
    BACKTEST = "backtest"
    VALIDATION = "validation"
    """The setup's strategies validated (`stratflow validate --config`: look-ahead and fragility
    checks; a setup without strategy files: recorded by its backtest, see `validation_verdict`)."""
    PAPER = "paper"
    APPROVAL = "approval"
    DEMOTION = "demotion"
    PAPER_START = "paper_start"
    """A paper run of the setup started (to be measured, then recorded as `paper`); it
    counts for nothing by itself."""
    LIVE_START = "live_start"
    """A run with real orders of the setup started (its divergence is measured afterwards);
    counts for nothing by itself."""


class Stage(IntEnum):
    """How far a setup has come; each stage needs the one before it."""

    NONE = 0
    BACKTESTED = 1
    """Backtested and validated: what a paper run needs."""
    PAPER_TRADED = 2
    APPROVED = 3


BACKTEST_LINE = "a passing backtest of this setup (stratflow backtest)"
VALIDATION_LINE = (
    "a passing validation of this setup (stratflow validate --config; GPT's strategies: the "
    "validation gate on, recorded by the backtest)"
)
GATE_OFF_LINE = (
    "the validation gate for GPT's strategies (validation.enabled is false: they would trade "
    "unvalidated)"
)
_NEXT_STEP = {
    Stage.NONE: BACKTEST_LINE,
    Stage.BACKTESTED: "a passing paper run of this setup (stratflow run --paper)",
    Stage.PAPER_TRADED: "a person's approval of this setup (stratflow approve)",
}


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One step's record: which setup, which step, the run it came from, pass or fail, when
    (epoch ms), who (an approval's person), and the figures it was judged on
    (`data_start_ms` / `data_end_ms`: the bars' time range)."""

    setup_hash: str
    step: Step
    run_id: str
    outcome: Outcome
    recorded_ms: int
    who: str = ""
    figures: Mapping[str, float | int | str | None] = field(default_factory=dict)
    note: str = ""


def _ordered(records: Iterable[StepRecord], setup: str) -> list[StepRecord]:
    mine = [r for r in records if r.setup_hash == setup]
    return [r for _, r in sorted(enumerate(mine), key=lambda p: (p[1].recorded_ms, p[0]))]


def _fold(records: Iterable[StepRecord], setup: str) -> tuple[Stage, bool, bool]:
    """How far `setup` has come, and whether its latest backtest and latest validation pass."""
    stage = Stage.NONE
    backtest = validation = False
    for r in _ordered(records, setup):
        passed = r.outcome is not Outcome.FAIL
        if r.step in (Step.BACKTEST, Step.VALIDATION):
            if r.step is Step.BACKTEST:
                backtest = passed
            else:
                validation = passed
            # A failed backtest or validation of the setup withdraws everything: the latest
            # evidence counts; both passing (in either order) is what a paper run needs.
            if not passed:
                stage = Stage.NONE
            elif backtest and validation:
                stage = max(stage, Stage.BACKTESTED)
        elif r.step is Step.PAPER:
            if passed and stage >= Stage.BACKTESTED:
                stage = max(stage, Stage.PAPER_TRADED)
            elif not passed:
                stage = min(stage, Stage.BACKTESTED)
        elif r.step is Step.APPROVAL:
            if stage >= Stage.PAPER_TRADED:
                stage = Stage.APPROVED
        elif r.step is Step.DEMOTION:
            stage = min(stage, Stage.BACKTESTED)
    return stage, backtest, validation


def stage_of(records: Iterable[StepRecord], setup: str) -> Stage:
    """How far `setup` has come, reading its records in the order they were recorded."""
    return _fold(records, setup)[0]


def _missing_below(records: Iterable[StepRecord], setup: str, need: Stage) -> list[str]:
    stage, backtest, validation = _fold(records, setup)
    missing: list[str] = []
    for s in Stage:
        if not stage <= s < need:
            continue
        if s is Stage.NONE:  # the two steps a paper run needs, each named when it is missing
            missing += [
                line
                for ok, line in ((backtest, BACKTEST_LINE), (validation, VALIDATION_LINE))
                if not ok
            ]
        else:
            missing.append(_NEXT_STEP[s])
    return missing


def missing_for(records: Iterable[StepRecord], setup: str, step: Step) -> list[str]:
    """What `setup` lacks before `step` may be recorded ([] when nothing)."""
    need = {
        Step.BACKTEST: Stage.NONE,
        Step.VALIDATION: Stage.NONE,
        Step.PAPER: Stage.BACKTESTED,
        Step.APPROVAL: Stage.PAPER_TRADED,
        Step.DEMOTION: Stage.NONE,
        Step.PAPER_START: Stage.BACKTESTED,
        Step.LIVE_START: Stage.APPROVED,
    }[step]
    return _missing_below(records, setup, need)


def live_missing(
    records: Iterable[StepRecord],
    setup: str,
    *,
    uses_gpt: bool,
    cutoff: date | None,
    gate_enabled: bool = True,
) -> list[str]:
    """What `setup` lacks before `run --exchange` may trade it ([] when nothing): for a GPT
    setup the validation gate on now (`gate_enabled`: `validation.enabled` of the settings to
    run, which the setup hash leaves out), every step in order, and for a GPT setup evidence
    after the model's knowledge cutoff (`cutoff` None: unknown, so only a paper run is such
    evidence)."""
    records = list(records)
    missing = []
    if uses_gpt and not gate_enabled:
        missing.append(GATE_OFF_LINE)
    missing += _missing_below(records, setup, Stage.APPROVED)
    if uses_gpt and not _after_cutoff(records, setup, cutoff):
        when = f"after {cutoff}" if cutoff else "(knowledge cutoff unknown)"
        missing.append(
            f"evidence after the GPT model's knowledge cutoff {when}: a paper run or a "
            "backtest on later data"
        )
    return missing


def _after_cutoff(records: list[StepRecord], setup: str, cutoff: date | None) -> bool:
    end = cutoff_end_ms(cutoff) if cutoff is not None else None
    for r in _ordered(records, setup):
        if r.outcome is Outcome.FAIL:
            continue
        if r.step is Step.PAPER:
            return True  # a paper run trades the present: no model has read about it
        start = r.figures.get("data_start_ms")
        if (
            r.step is Step.BACKTEST
            and end is not None
            and isinstance(start, int | float)
            and start > end
        ):
            return True
    return False


# -------------------------------------------------------------------------------- verdicts


def backtest_verdict(
    max_drawdown: float | None, round_trips: int, policy: PromotionConfig
) -> CheckResult:
    """A finished backtest passes when its largest drawdown (a fraction, positive) is within
    `backtest_max_drawdown` and it made at least `backtest_min_trades` round trips."""
    dd_limit = float(policy.backtest_max_drawdown)
    dd_ok = max_drawdown is not None and max_drawdown <= dd_limit
    trades_ok = round_trips >= policy.backtest_min_trades
    figures = (
        Figure("max_drawdown", max_drawdown, dd_limit, dd_ok, "largest drawdown of equity"),
        Figure("round_trips", round_trips, policy.backtest_min_trades, trades_ok, "closed trades"),
    )
    outcome = Outcome.PASS if dd_ok and trades_ok else Outcome.FAIL
    summary = "; ".join(f"{f.name} {f.value} vs limit {f.limit}" for f in figures if not f.passed)
    return CheckResult("backtest", outcome, figures, summary or "within the promotion limits")


def validation_verdict(
    results: Sequence[tuple[str, str, CheckResult]],
    *,
    strategy_files: int,
    uses_gpt: bool,
    gate_enabled: bool,
    unchecked: Sequence[str] = (),
) -> CheckResult:
    """The setup's validation step: `results` are (strategy, symbol, check) of its strategy
    files' look-ahead and fragility checks (`models.validation.fragility`). It passes when no
    check fails (warnings allowed: outcome `warn`, each listed in the summary) and, for a GPT
    controller, the validation gate is on (GPT's strategies are written on the fly, each
    judged in the flow before it runs: the gate on is their validation). A setup without
    strategy files has no check to run: a local one passes on the built-in engine, a GPT one
    on its gate. `unchecked`: the setup's strategies no check ran on (no bars of their
    universe in the data): a failure, a strategy never checked is not validated."""
    failed = [
        f"{s} {sym} {r.check}: {r.summary}" for s, sym, r in results if r.outcome is Outcome.FAIL
    ]
    warned = [
        f"{s} {sym} {r.check}: {r.summary}" for s, sym, r in results if r.outcome is Outcome.WARN
    ]
    figures = [
        Figure("strategy_files", strategy_files, None, True, "strategies of the setup's files"),
        Figure("checks", len(results), None, True, "checks run (strategy x symbol x check)"),
        Figure("failed", len(failed), 0, not failed, "checks that failed"),
        Figure("warned", len(warned), None, True, "checks with a warning (allowed)"),
        Figure("unchecked", len(unchecked), 0, not unchecked, "strategies without bars to check"),
    ]
    if uses_gpt:
        figures.append(
            Figure(
                "gate_enabled",
                int(gate_enabled),
                1,
                gate_enabled,
                "validation.enabled: every GPT strategy judged in the flow before it runs",
            )
        )
    parts = [
        *(f"not checked (no bars): {name}" for name in unchecked),
        *(f"failed: {x}" for x in failed),
        *(f"warning: {x}" for x in warned),
    ]
    if uses_gpt and not gate_enabled:
        parts.insert(0, "the validation gate is off (validation.enabled: false)")
    if any(not f.passed for f in figures):
        outcome = Outcome.FAIL
    else:
        outcome = Outcome.WARN if warned else Outcome.PASS
    if results:
        done = "no check failed"
    elif uses_gpt:
        done = "no strategy file to check: GPT's strategies are judged by the gate in the flow"
    else:
        done = "no strategy file to check: the built-in engine's rules"
    summary = "; ".join(parts) or done
    return CheckResult("validation", outcome, tuple(figures), summary)


@dataclass(frozen=True, slots=True)
class OrderSeen:
    """An order a run placed: the simulator would fill it at the open of the symbol's first bar
    starting at or after `placed_ms` (`models.execution.sim_venue`)."""

    client_order_id: str
    symbol: str
    side: Side
    placed_ms: int


@dataclass(frozen=True, slots=True)
class FillSeen:
    """A fill the venue reported for one order (an order may fill in several parts)."""

    client_order_id: str
    quantity: Decimal
    price: Decimal
    fee: Decimal


@dataclass(frozen=True, slots=True)
class Divergence:
    """How far a run's executions were from the simulator's on the same bars and orders.

    - `slippage_bps`: mean over orders filled by both of |venue VWAP - simulated price| in bps
      of the simulated price (the simulator fills at the next bar's open with
      `execution.slippage_bps` against the order);
    - `fill_mismatch`: orders filled by one and not the other, over the orders the simulator
      fills (at least 1);
    - `pnl_gap`: |P&L of the venue's fills - P&L of the same quantities at simulated prices and
      fees| over `equity` (what execution alone cost or gave, decisions held fixed);
    - `score`: the largest of the three over its scale (`promotion.slippage_scale_bps`,
      `fill_mismatch_scale`, `pnl_gap_scale`): 1 means one of them reached its scale.
    """

    slippage_bps: Decimal
    fill_mismatch: Decimal
    pnl_gap: Decimal
    matched: int
    expected: int
    reported: int
    score: Decimal

    def figures(self, limit: Decimal) -> tuple[Figure, ...]:
        return (
            Figure("slippage_bps", float(self.slippage_bps)),
            Figure("fill_mismatch", float(self.fill_mismatch)),
            Figure("pnl_gap", float(self.pnl_gap)),
            Figure(
                "divergence",
                float(self.score),
                float(limit),
                self.score <= limit,
                "largest of slippage, fill mismatch and P&L gap over its scale",
            ),
        )


def sim_price(open_: Decimal, side: Side, slippage_bps: Decimal) -> Decimal:
    """The simulator's fill price: the bar's open moved `slippage_bps` against the order."""
    slip = open_ * slippage_bps / BPS
    return (open_ + slip if side is Side.BUY else open_ - slip).quantize(PRICE_QUANTUM)


def divergence(
    orders: Sequence[OrderSeen],
    fills: Sequence[FillSeen],
    bar_opens: Mapping[str, Sequence[tuple[int, Decimal]]],
    *,
    slippage_bps: Decimal,
    fee_bps: Decimal,
    equity: Decimal,
    policy: PromotionConfig,
) -> Divergence:
    """Compare a run's fills with what the simulator would have done (`Divergence`).
    `bar_opens`: per symbol, (bar start ms, open) in time order."""
    by_order: dict[str, list[FillSeen]] = {}
    for f in fills:
        by_order.setdefault(f.client_order_id, []).append(f)
    slips: list[Decimal] = []
    gap = Decimal(0)
    expected = mismatched = matched = 0
    for order in orders:
        opens = bar_opens.get(order.symbol, ())
        sim_open = next((o for start, o in opens if start >= order.placed_ms), None)
        got = [f for f in by_order.get(order.client_order_id, ()) if f.quantity > 0]
        if sim_open is not None:
            expected += 1
        if (sim_open is None) != (not got):
            mismatched += 1
        if sim_open is None or not got or sim_open <= 0:
            continue
        matched += 1
        sim = sim_price(sim_open, order.side, slippage_bps)
        qty = sum((f.quantity for f in got), Decimal(0))
        vwap = sum((f.quantity * f.price for f in got), Decimal(0)) / qty
        slips.append(abs(vwap - sim) / sim * BPS)
        sign = 1 if order.side is Side.BUY else -1
        sim_fee = qty * sim * fee_bps / BPS
        paid = sum((f.fee for f in got), Decimal(0))
        gap += sign * qty * (vwap - sim) + (paid - sim_fee)
    mean_slip = sum(slips, Decimal(0)) / len(slips) if slips else Decimal(0)
    mismatch = Decimal(mismatched) / max(expected, 1)
    pnl_gap = abs(gap) / equity if equity > 0 else Decimal(0)
    score = max(
        mean_slip / policy.slippage_scale_bps,
        mismatch / policy.fill_mismatch_scale,
        pnl_gap / policy.pnl_gap_scale,
    )
    return Divergence(
        mean_slip, mismatch, pnl_gap, matched, expected, sum(1 for o in by_order), score
    )


def paper_verdict(duration_ms: int, measured: Divergence, policy: PromotionConfig) -> CheckResult:
    """A paper run passes when it covered `paper_min_duration` of event time and its
    divergence score is within `divergence_limit`."""
    need = parse_duration_ms(policy.paper_min_duration)
    long_enough = duration_ms >= need
    figures = (
        Figure("duration_ms", duration_ms, need, long_enough, "first bar to last, event time"),
        *measured.figures(policy.divergence_limit),
    )
    failed = [f for f in figures if not f.passed]
    outcome = Outcome.FAIL if failed else Outcome.PASS
    summary = "; ".join(f"{f.name} {f.value} vs limit {f.limit}" for f in failed)
    return CheckResult("paper", outcome, figures, summary or "within the promotion limits")


def demotion_reasons(
    drawdown: Decimal, divergence_score: Decimal | None, policy: PromotionConfig
) -> list[str]:
    """Why a live setup must go back to paper ([]: it may stay): its drawdown (a fraction,
    positive) past `demote_drawdown`, or its divergence score past `divergence_limit`."""
    reasons: list[str] = []
    if drawdown > policy.demote_drawdown:
        reasons.append(f"drawdown {drawdown:.4f} past the limit {policy.demote_drawdown}")
    if divergence_score is not None and divergence_score > policy.divergence_limit:
        reasons.append(
            f"divergence {divergence_score:.4f} past the limit {policy.divergence_limit}"
        )
    return reasons
