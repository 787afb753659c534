"""The road from backtest to paper to live (issue 12, part 5): models/validation/promotion.py.

Each missing step is refused by name; live is allowed only after a passing backtest and a
passing validation (either order), then a passing paper run, then an approval, recorded in
that order for the same setup hash (checked
against an independent reading of the records over generated histories); a changed setup
starts again; the divergence score against a computation written out here.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.config.gates import PromotionConfig
from models.config.settings import Settings
from models.core.messages import Side
from models.validation.cutoff import cutoff_end_ms
from models.validation.promotion import (
    FillSeen,
    OrderSeen,
    Stage,
    Step,
    StepRecord,
    backtest_verdict,
    demotion_reasons,
    divergence,
    live_missing,
    missing_for,
    paper_verdict,
    setup_hash,
    stage_of,
    validation_verdict,
)
from models.validation.verdicts import CheckResult, Outcome

A, B = "setup-a", "setup-b"
POLICY = PromotionConfig()
PASS, FAIL = Outcome.PASS, Outcome.FAIL


def rec(
    step: Step, outcome: Outcome = PASS, t: int = 0, setup: str = A, **figures: float | int
) -> StepRecord:
    return StepRecord(setup, step, f"run-{t}", outcome, t, figures=figures)


def live(records: list[StepRecord], setup: str = A) -> list[str]:
    return live_missing(records, setup, uses_gpt=False, cutoff=None)


# ------------------------------------------------------------------------- each step refused


ROAD = (Step.BACKTEST, Step.VALIDATION, Step.PAPER, Step.APPROVAL)


def road(*steps: Step, start: int = 1) -> list[StepRecord]:
    return [rec(s, t=start + i) for i, s in enumerate(steps)]


def test_nothing_recorded_misses_every_step_in_order() -> None:
    missing = live([])
    assert len(missing) == 4
    for line, word in zip(missing, ("backtest", "validation", "paper", "approval"), strict=True):
        assert f"a passing {word}" in line or f"a person's {word}" in line
    assert "stratflow validate --config" in missing[1]
    assert missing_for([], A, Step.PAPER) == missing[:2]
    assert missing_for([], A, Step.APPROVAL) == missing[:3]
    assert missing_for([], A, Step.BACKTEST) == missing_for([], A, Step.VALIDATION) == []


def test_each_step_in_turn_removes_one_missing_line() -> None:
    steps = road(*ROAD)
    full = live([])
    for n in range(5):
        assert live(steps[:n]) == full[n:]
    assert stage_of(steps, A) is Stage.APPROVED


def test_validation_alone_misses_the_backtest_by_name() -> None:
    (missing,) = missing_for(road(Step.VALIDATION), A, Step.PAPER)
    assert missing.startswith("a passing backtest")
    assert stage_of(road(Step.VALIDATION, Step.BACKTEST), A) is Stage.BACKTESTED


BT, VA, PA, AP = ROAD


@pytest.mark.parametrize(
    ("records", "first_missing"),
    [
        ([rec(BT, FAIL, 1), rec(VA, t=2)], "backtest"),
        ([rec(BT, t=1), rec(VA, FAIL, 2)], "validation"),
        (road(BT, PA, AP), "validation"),
        (road(PA, BT, VA, AP), "paper"),
        (road(BT, PA, VA, AP), "paper"),  # validated after the paper run: it does not count
        (road(BT, VA, AP, PA), "approval"),
        ([*road(BT, VA), rec(PA, FAIL, 3), rec(AP, t=4)], "paper"),
        (road(BT, VA, Step.PAPER_START, AP), "paper"),
        ([*road(*ROAD), rec(Step.DEMOTION, FAIL, 9)], "paper"),
        ([*road(*ROAD), rec(BT, FAIL, 9)], "backtest"),
        ([*road(*ROAD), rec(VA, FAIL, 9)], "validation"),
        ([*road(*ROAD), rec(VA, FAIL, 9), rec(VA, t=10)], "paper"),  # the latest wins
    ],
    ids=[
        "failed-backtest",
        "failed-validation",
        "no-validation",
        "paper-before-backtest",
        "paper-before-validation",
        "approval-before-paper",
        "failed-paper",
        "paper-started-not-measured",
        "demoted",
        "failed-backtest-withdraws-all",
        "failed-validation-withdraws-all",
        "validated-again-needs-paper-again",
    ],
)
def test_a_step_out_of_order_or_failed_does_not_count(
    records: list[StepRecord], first_missing: str
) -> None:
    missing = live(records)
    assert missing and f"{first_missing} " in missing[0], missing


def test_the_order_is_the_recorded_time_not_the_order_given() -> None:
    steps = road(*ROAD)[::-1]
    assert live(steps) == []


def test_a_changed_setup_starts_again() -> None:
    done = road(*ROAD)
    assert live(done, A) == [] and live(done, B) == live([])


# -------------------------------------------- generated histories, an independent reading

# Mostly passing records of setup A, so complete roads (and what spoils them) are common.
RECORD = st.tuples(
    st.sampled_from(list(Step)),
    st.sampled_from([PASS, PASS, PASS, FAIL]),
    st.sampled_from([A, A, B]),
)


def allowed_by_reading(history: list[tuple[Step, Outcome, str]], setup: str) -> bool:
    """Live is allowed iff some passing paper run j of the setup has, before it, a latest
    backtest and a latest validation that pass, nothing after it that withdraws it (a failed
    backtest, validation or paper run, a demotion) and an approval after it."""
    mine = [(s, o) for s, o, h in history if h == setup]

    def latest_before(j: int, step: Step) -> Outcome | None:
        return next((o for s, o in reversed(mine[:j]) if s is step), None)

    spoilers = {(BT, FAIL), (VA, FAIL), (PA, FAIL), (Step.DEMOTION, PASS), (Step.DEMOTION, FAIL)}
    for j, (s, o) in enumerate(mine):
        if (s, o) != (PA, PASS):
            continue
        if latest_before(j, BT) is not PASS or latest_before(j, VA) is not PASS:
            continue
        if any(r in spoilers for r in mine[j + 1 :]):
            continue
        if any(s2 is AP for s2, _ in mine[j + 1 :]):
            return True
    return False


@settings(max_examples=300)
@given(st.lists(RECORD, min_size=3, max_size=14))
def test_live_is_allowed_exactly_after_every_step_in_order_for_the_same_setup(
    history: list[tuple[Step, Outcome, str]],
) -> None:
    records = [StepRecord(h, s, f"r{t}", o, t) for t, (s, o, h) in enumerate(history)]
    for setup in (A, B):
        assert (live(records, setup) == []) == allowed_by_reading(history, setup)


@given(st.lists(RECORD, max_size=10), st.permutations(range(4)))
def test_the_four_steps_in_any_other_order_never_allow_live(
    noise: list[tuple[Step, Outcome, str]], order: list[int]
) -> None:
    ordered = [ROAD[i] for i in order]
    # Setup B's records never help setup A.
    other = [StepRecord(B, s, "x", o, t) for t, (s, o, _) in enumerate(noise)]
    mine = [StepRecord(A, s, "y", PASS, 100 + t) for t, s in enumerate(ordered)]
    # Backtest and validation in either order, then paper, then approval.
    assert (live(other + mine) == []) == (set(ordered[:2]) == {BT, VA} and ordered[2:] == [PA, AP])


# ----------------------------------------------------------------------------- the GPT cutoff


def test_a_gpt_setup_needs_evidence_after_the_models_cutoff() -> None:
    cutoff = date(2023, 10, 1)
    end = cutoff_end_ms(cutoff)
    old = rec(Step.BACKTEST, t=1, data_start_ms=end - 1)
    later = rec(Step.BACKTEST, t=1, data_start_ms=end + 1)
    approved = [rec(Step.APPROVAL, t=9)]
    in_sample_only = [old, rec(Step.VALIDATION, t=1), rec(Step.APPROVAL, t=2)]
    (missing,) = [m for m in live_missing(in_sample_only, A, uses_gpt=True, cutoff=cutoff)][-1:]
    assert "after 2023-10-01" in missing
    assert live_missing([later], A, uses_gpt=True, cutoff=cutoff)[-1].startswith("a person")
    # A paper run is evidence after any cutoff, a known one or not.
    done = [old, rec(Step.VALIDATION, t=1), rec(Step.PAPER, t=2), *approved]
    assert live_missing(done, A, uses_gpt=True, cutoff=cutoff) == []
    assert live_missing(done, A, uses_gpt=True, cutoff=None) == []
    # An unknown cutoff: a backtest, however late, is no such evidence.
    late_only = [rec(Step.BACKTEST, t=1, data_start_ms=4_000_000_000_000), *approved]
    # A GPT setup whose gate is off now is refused first, whatever its records.
    gate_off = live_missing(done, A, uses_gpt=True, cutoff=cutoff, gate_enabled=False)
    assert len(gate_off) == 1 and "validation.enabled is false" in gate_off[0]
    assert live_missing(road(*ROAD), A, uses_gpt=False, cutoff=None, gate_enabled=False) == []
    assert "knowledge cutoff unknown" in live_missing(late_only, A, uses_gpt=True, cutoff=None)[-1]


# -------------------------------------------------------------------------------- setup hash


def test_the_setup_hash_follows_the_strategies_and_controller_not_the_venue() -> None:
    base = Settings.model_validate({"symbols": {"GOOG": {}}})
    same = Settings.model_validate(
        {"symbols": {"GOOG": {}}, "execution": {"initial_cash": "5000"}, "kafka": {}}
    )
    assert setup_hash(base) == setup_hash(same)
    local = Settings.model_validate({"symbols": {"GOOG": {}}, "strategy": {"controller": "local"}})
    assert setup_hash(local) != setup_hash(base)
    other_model = Settings.model_validate({"symbols": {"GOOG": {}}, "gpt": {"model": "gpt-5"}})
    assert setup_hash(other_model) != setup_hash(base)
    local_other_model = Settings.model_validate(
        {"symbols": {"GOOG": {}}, "strategy": {"controller": "local"}, "gpt": {"model": "gpt-5"}}
    )
    assert setup_hash(local_other_model) == setup_hash(local)  # the model decides nothing
    features = Settings.model_validate({"symbols": {"GOOG": {}}, "features": {"sma_fast": 7}})
    assert setup_hash(features) != setup_hash(base)
    risk = Settings.model_validate({"symbols": {"GOOG": {}}, "risk": {"min_cash": "10"}})
    assert setup_hash(risk) != setup_hash(base)


# ------------------------------------------------------------------------------ the verdicts


def test_the_backtest_verdict_names_the_figure_that_fails() -> None:
    ok = backtest_verdict(0.1, 3, POLICY)
    assert ok.outcome is PASS and not ok.failures
    deep = backtest_verdict(0.5, 3, POLICY)
    assert deep.outcome is FAIL and [f.name for f in deep.failures] == ["max_drawdown"]
    idle = backtest_verdict(0.0, 0, POLICY)
    assert [f.name for f in idle.failures] == ["round_trips"]
    assert backtest_verdict(None, 3, POLICY).outcome is FAIL  # no equity, no verdict


def _orders_and_fills(
    n: int, bps: Decimal, fee_bps: Decimal
) -> tuple[list[OrderSeen], list[FillSeen], dict[str, list[tuple[int, Decimal]]]]:
    opens = {"X": [(1000 * (i + 1), Decimal(100 + i)) for i in range(n)]}
    orders, fills = [], []
    for i in range(n):
        side = Side.BUY if i % 2 == 0 else Side.SELL
        orders.append(OrderSeen(f"o{i}", "X", side, 1000 * (i + 1) - 1))
        sim = Decimal(100 + i)  # the simulator at 0 bps slippage: the next bar's open
        worse = sim * (1 + bps / 10_000) if side is Side.BUY else sim * (1 - bps / 10_000)
        fills.append(FillSeen(f"o{i}", Decimal(2), worse, Decimal(2) * worse * fee_bps / 10_000))
    return orders, fills, opens


@given(
    n=st.integers(min_value=1, max_value=12),
    bps=st.integers(min_value=0, max_value=200).map(Decimal),
)
def test_divergence_measures_slippage_and_the_pnl_it_cost(n: int, bps: Decimal) -> None:
    orders, fills, opens = _orders_and_fills(n, bps, Decimal(0))
    d = divergence(
        orders,
        fills,
        opens,
        slippage_bps=Decimal(0),
        fee_bps=Decimal(0),
        equity=Decimal(10_000),
        policy=POLICY,
    )
    assert d.matched == d.expected == n and d.fill_mismatch == 0
    assert abs(d.slippage_bps - bps) < Decimal("1e-9")
    # Written out: every fill of 2 units paid bps of its open, against us.
    cost = sum((Decimal(2) * Decimal(100 + i) * bps / 10_000 for i in range(n)), Decimal(0))
    assert abs(d.pnl_gap - cost / 10_000) < Decimal("1e-12")
    expected_score = max(bps / POLICY.slippage_scale_bps, (cost / 10_000) / POLICY.pnl_gap_scale)
    assert abs(d.score - expected_score) < Decimal("1e-9")


def test_a_missing_or_extra_fill_is_a_fill_mismatch() -> None:
    orders, fills, opens = _orders_and_fills(4, Decimal(0), Decimal(0))
    late = OrderSeen("late", "X", Side.BUY, 10**9)  # no bar after it: the simulator has no fill
    kw = {"slippage_bps": Decimal(0), "fee_bps": Decimal(0), "equity": Decimal(10_000)}
    same = divergence(orders, fills, opens, policy=POLICY, **kw)
    assert same.score == 0 and same.fill_mismatch == 0
    missing = divergence(orders, fills[1:], opens, policy=POLICY, **kw)
    assert missing.fill_mismatch == Decimal(1) / 4 and missing.score == Decimal("2.5")
    extra = divergence(
        [*orders, late],
        [*fills, FillSeen("late", Decimal(1), Decimal(1), Decimal(0))],
        opens,
        policy=POLICY,
        **kw,
    )
    assert extra.fill_mismatch == Decimal(1) / 4 and extra.expected == 4


def test_the_simulators_slippage_and_fees_are_what_paper_is_compared_with() -> None:
    orders, fills, opens = _orders_and_fills(2, Decimal(5), Decimal(10))
    d = divergence(
        orders,
        fills,
        opens,
        slippage_bps=Decimal(5),
        fee_bps=Decimal(10),
        equity=Decimal(10_000),
        policy=POLICY,
    )
    assert d.slippage_bps < Decimal("0.001") and d.pnl_gap < Decimal("1e-9")


def test_the_paper_verdict_needs_the_duration_and_a_small_divergence() -> None:
    orders, fills, opens = _orders_and_fills(3, Decimal(0), Decimal(0))
    kw = {"slippage_bps": Decimal(0), "fee_bps": Decimal(0), "equity": Decimal(10_000)}
    close = divergence(orders, fills, opens, policy=POLICY, **kw)
    far = divergence(orders, fills[:1], opens, policy=POLICY, **kw)
    day = 86_400_000
    assert paper_verdict(day, close, POLICY).outcome is PASS
    short = paper_verdict(day - 1, close, POLICY)
    assert short.outcome is FAIL and [f.name for f in short.failures] == ["duration_ms"]
    apart = paper_verdict(day, far, POLICY)
    assert [f.name for f in apart.failures] == ["divergence"]


def test_demotion_past_the_drawdown_or_divergence_limit() -> None:
    assert demotion_reasons(Decimal("0.10"), Decimal("0.5"), POLICY) == []
    (dd,) = demotion_reasons(Decimal("0.20"), None, POLICY)
    assert dd.startswith("drawdown 0.2000 past the limit 0.15")
    (div,) = demotion_reasons(Decimal("0"), Decimal("1.5"), POLICY)
    assert div.startswith("divergence 1.5000")
    assert len(demotion_reasons(Decimal("0.9"), Decimal("9"), POLICY)) == 2


# ------------------------------------------------------------------------ the validation step

OUTCOMES = st.sampled_from([Outcome.PASS, Outcome.WARN, Outcome.FAIL])


@given(
    st.lists(st.tuples(st.sampled_from(["s1", "s2"]), OUTCOMES), max_size=12),
    st.booleans(),
    st.booleans(),
)
def test_the_validation_passes_when_no_check_fails_and_lists_the_warnings(
    checks: list[tuple[str, Outcome]], uses_gpt: bool, gate: bool
) -> None:
    results = [
        (name, "GOOG", CheckResult(f"check{i}", o, (), f"why{i}"))
        for i, (name, o) in enumerate(checks)
    ]
    verdict = validation_verdict(results, strategy_files=2, uses_gpt=uses_gpt, gate_enabled=gate)
    failing = any(o is Outcome.FAIL for _, o in checks) or (uses_gpt and not gate)
    warned = [i for i, (_, o) in enumerate(checks) if o is Outcome.WARN]
    assert (verdict.outcome is Outcome.FAIL) == failing
    if not failing:
        assert verdict.outcome is (Outcome.WARN if warned else Outcome.PASS)
    for i in warned:  # every warning is named with its strategy, symbol and reason
        assert f"warning: {checks[i][0]} GOOG check{i}: why{i}" in verdict.summary
    figures = {f.name: f.value for f in verdict.figures}
    assert figures["failed"] == sum(o is Outcome.FAIL for _, o in checks)
    assert figures["warned"] == len(warned) and figures["checks"] == len(checks)
    assert ("gate_enabled" in figures) == uses_gpt


def test_a_setup_strategy_without_bars_or_a_gpt_gate_off_fails_the_validation() -> None:
    ok = CheckResult("lookahead", Outcome.PASS, (), "")
    unchecked = validation_verdict(
        [("s1", "GOOG", ok)], strategy_files=2, uses_gpt=False, gate_enabled=True, unchecked=["s2"]
    )
    assert unchecked.outcome is Outcome.FAIL and "not checked (no bars): s2" in unchecked.summary
    gpt_off = validation_verdict([], strategy_files=0, uses_gpt=True, gate_enabled=False)
    assert gpt_off.outcome is Outcome.FAIL and [f.name for f in gpt_off.failures] == [
        "gate_enabled"
    ]
    gpt_on = validation_verdict([], strategy_files=0, uses_gpt=True, gate_enabled=True)
    assert gpt_on.outcome is Outcome.PASS and "judged by the gate" in gpt_on.summary
