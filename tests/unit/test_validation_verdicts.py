"""The one verdict shape: worst outcome, failures, and the review loop's checks with numbers."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from models.validation.verdicts import CheckResult, Figure, Outcome, risk_checks, worst


@given(st.lists(st.sampled_from(list(Outcome))))
def test_worst_is_the_most_serious(outcomes: list[Outcome]) -> None:
    expected = (
        Outcome.FAIL
        if Outcome.FAIL in outcomes
        else Outcome.WARN
        if Outcome.WARN in outcomes
        else Outcome.PASS
    )
    assert worst(outcomes) is expected


def test_risk_checks_carry_judged_figures_only() -> None:
    result = CheckResult(
        "stress",
        Outcome.FAIL,
        (
            Figure("flash_crash_loss_pct", 41.25, 25, False, "lost 41.25% in the flash crash"),
            Figure("trades", 7),  # shown, not judged: no limit
            Figure("max_drawdown_pct", float("nan"), 30, True),
        ),
        "failed",
    )
    checks = risk_checks(result)
    assert [c.name for c in checks] == ["stress:flash_crash_loss_pct", "stress:max_drawdown_pct"]
    first = checks[0]
    assert (first.passed, first.value, first.limit) == (False, Decimal("41.25"), Decimal(25))
    assert first.message == "lost 41.25% in the flash crash"
    assert checks[1].value is None  # a non-finite figure is not a number in the log
    assert result.failures == (result.figures[0],)
