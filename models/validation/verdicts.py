"""What every validation step answers: a verdict with the numbers behind it.

The in-flow gate (a reviewer in the desk's review loop), the look-ahead and fragility checks of
`stratflow validate`, the overfitting measures and the promotion steps all say pass, warn or
fail, and always why, in figures: a person reading the report, and GPT reading the reasons it
is sent back with, need the number and the limit it broke, not only "failed". One shape for all
of them keeps the report, the decision log and the prompt in step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from models.core.messages import RiskCheck

__all__ = ["CheckResult", "Figure", "Outcome", "risk_checks", "worst"]


class Outcome(StrEnum):
    """pass: nothing found; warn: worth a look, not a reason to refuse; fail: refused."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


_RANK = {Outcome.PASS: 0, Outcome.WARN: 1, Outcome.FAIL: 2}


def worst(outcomes: Iterable[Outcome]) -> Outcome:
    """The most serious of `outcomes` (pass when there are none)."""
    return max(outcomes, key=_RANK.__getitem__, default=Outcome.PASS)


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured number and the limit it is held to (`limit` None: shown, not judged)."""

    name: str
    value: float | int | None
    limit: float | int | None = None
    passed: bool = True
    message: str = ""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's verdict: its name, the outcome, every figure it measured, one line."""

    check: str
    outcome: Outcome
    figures: tuple[Figure, ...]
    summary: str

    @property
    def failures(self) -> tuple[Figure, ...]:
        return tuple(f for f in self.figures if not f.passed)


def _decimal(value: float | int | None) -> Decimal | None:
    """A figure as the decision log's `RiskCheck` holds numbers: a finite value as the Decimal
    of its shortest repr (rounded to 6 significant places for floats), else None."""
    if value is None:
        return None
    if isinstance(value, int):
        return Decimal(value)
    if not math.isfinite(value):
        return None
    return Decimal(f"{value:.6g}")


def risk_checks(result: CheckResult) -> list[RiskCheck]:
    """`result`'s judged figures as review-loop checks named `<check>:<figure>`, so a refusal
    reaches the proposer (GPT's follow-up question) and the decision log with its numbers."""
    return [
        RiskCheck(
            name=f"{result.check}:{f.name}",
            passed=f.passed,
            limit=_decimal(f.limit),
            value=_decimal(f.value),
            message=f.message,
        )
        for f in result.figures
        if f.limit is not None
    ]
