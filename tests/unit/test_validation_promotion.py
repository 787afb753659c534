"""The road from backtest to paper to live (issue 12, part 5): models/validation/promotion.py.

Each missing step is refused by name; live is allowed only after a passing backtest, then a
passing paper run, then an approval, recorded in that order for the same setup hash (checked
against an independent reading of the records over generated histories); a changed setup
starts again; the divergence score against a computation written out here.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.config.settings import PromotionConfig, Settings
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
)
from models.validation.verdicts import Outcome

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


def test_nothing_recorded_misses_every_step_in_order() -> None:
    missing = live([])
    assert len(missing) == 3
    assert "backtest" in missing[0] and "paper" in missing[1] and "approval" in missing[2]
    assert missing_for([], A, Step.PAPER) == [missing[0]]
    assert missing_for([], A, Step.APPROVAL) == missing[:2]
    assert missing_for([], A, Step.BACKTEST) == []


def test_each_step_in_turn_removes_one_missing_line() -> None:
    steps = [rec(Step.BACKTEST, t=1), rec(Step.PAPER, t=2), rec(Step.APPROVAL, t=3)]
    full = live([])
    for n in range(4):
        assert live(steps[:n]) == full[n:]
    assert stage_of(steps, A) is Stage.APPROVED


@pytest.mark.parametrize(
    ("records", "first_missing"),
    [
        ([rec(Step.BACKTEST, FAIL, 1)], "backtest"),
        ([rec(Step.PAPER, t=1), rec(Step.BACKTEST, t=2), rec(Step.APPROVAL, t=3)], "paper"),
        ([rec(Step.BACKTEST, t=1), rec(Step.APPROVAL, t=2), rec(Step.PAPER, t=3)], "approval"),
        ([rec(Step.BACKTEST, t=1), rec(Step.PAPER, FAIL, 2), rec(Step.APPROVAL, t=3)], "paper"),
        ([rec(Step.BACKTEST, t=1), rec(Step.PAPER_START, t=2), rec(Step.APPROVAL, t=3)], "paper"),
        (
            [
                rec(Step.BACKTEST, t=1),
                rec(Step.PAPER, t=2),
                rec(Step.APPROVAL, t=3),
                rec(Step.DEMOTION, FAIL, 4),
            ],
            "paper",
        ),
        (
            [
                rec(Step.BACKTEST, t=1),
                rec(Step.PAPER, t=2),
                rec(Step.APPROVAL, t=3),
                rec(Step.BACKTEST, FAIL, 4),
            ],
            "backtest",
        ),
    ],
    ids=[
        "failed-backtest",
        "paper-before-backtest",
        "approval-before-paper",
        "failed-paper",
        "paper-started-not-measured",
        "demoted",
        "failed-backtest-withdraws-all",
    ],
)
def test_a_step_out_of_order_or_failed_does_not_count(
    records: list[StepRecord], first_missing: str
) -> None:
    missing = live(records)
    assert missing and first_missing in missing[0]


def test_the_order_is_the_recorded_time_not_the_order_given() -> None:
    steps = [rec(Step.APPROVAL, t=3), rec(Step.PAPER, t=2), rec(Step.BACKTEST, t=1)]
    assert live(steps) == []


def test_a_changed_setup_starts_again() -> None:
    done = [rec(Step.BACKTEST, t=1), rec(Step.PAPER, t=2), rec(Step.APPROVAL, t=3)]
    assert live(done, A) == [] and live(done, B) == live([])


# -------------------------------------------- generated histories, an independent reading

# Mostly passing records of setup A, so complete roads (and what spoils them) are common.
RECORD = st.tuples(
    st.sampled_from(list(Step)),
    st.sampled_from([PASS, PASS, PASS, FAIL]),
    st.sampled_from([A, A, B]),
)


def allowed_by_reading(history: list[tuple[Step, Outcome, str]], setup: str) -> bool:
    """Live is allowed iff some passing backtest i, passing paper j > i and approval k > j of
    the setup exist with no failed backtest after i and no failed paper or demotion after j."""
    mine = [(s, o) for s, o, h in history if h == setup]

    def withdrawn(after: int, kinds: set[tuple[Step, Outcome]]) -> bool:
        return any(r in kinds for r in mine[after + 1 :])

    failed_bt = {(Step.BACKTEST, FAIL)}
    after_paper = failed_bt | {(Step.PAPER, FAIL), (Step.DEMOTION, PASS), (Step.DEMOTION, FAIL)}
    for i, (s, o) in enumerate(mine):
        if (s, o) != (Step.BACKTEST, PASS) or withdrawn(i, failed_bt):
            continue
        for j in range(i + 1, len(mine)):
            if mine[j] != (Step.PAPER, PASS) or withdrawn(j, after_paper):
                continue
            if any(s2 is Step.APPROVAL for s2, _ in mine[j + 1 :]):
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


@given(st.lists(RECORD, max_size=10), st.permutations(range(3)))
def test_the_three_steps_in_any_other_order_never_allow_live(
    noise: list[tuple[Step, Outcome, str]], order: list[int]
) -> None:
    steps = [Step.BACKTEST, Step.PAPER, Step.APPROVAL]
    ordered = [steps[i] for i in order]
    # Setup B's records never help setup A.
    other = [StepRecord(B, s, "x", o, t) for t, (s, o, _) in enumerate(noise)]
    mine = [StepRecord(A, s, "y", PASS, 100 + t) for t, s in enumerate(ordered)]
    assert (live(other + mine) == []) == (ordered == steps)


# ----------------------------------------------------------------------------- the GPT cutoff


def test_a_gpt_setup_needs_evidence_after_the_models_cutoff() -> None:
    cutoff = date(2023, 10, 1)
    end = cutoff_end_ms(cutoff)
    old = rec(Step.BACKTEST, t=1, data_start_ms=end - 1)
    later = rec(Step.BACKTEST, t=1, data_start_ms=end + 1)
    approved = [rec(Step.APPROVAL, t=9)]
    in_sample_only = [old, rec(Step.APPROVAL, t=2)]
    (missing,) = [m for m in live_missing(in_sample_only, A, uses_gpt=True, cutoff=cutoff)][-1:]
    assert "after 2023-10-01" in missing
    assert live_missing([later], A, uses_gpt=True, cutoff=cutoff)[-1].startswith("a person")
    # A paper run is evidence after any cutoff, a known one or not.
    done = [old, rec(Step.PAPER, t=2), *approved]
    assert live_missing(done, A, uses_gpt=True, cutoff=cutoff) == []
    assert live_missing(done, A, uses_gpt=True, cutoff=None) == []
    # An unknown cutoff: a backtest, however late, is no such evidence.
    late_only = [rec(Step.BACKTEST, t=1, data_start_ms=4_000_000_000_000), *approved]
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
