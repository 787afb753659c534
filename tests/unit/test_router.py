"""The router sends a bar's signals down the strategic or routine path, or nowhere."""

from __future__ import annotations

import pytest

from models.config.settings import RouterConfig
from models.core.messages import Branch, Direction, Signal
from models.signals.router import route


def sig(name: str, strategic: bool = False) -> Signal:
    return Signal(
        symbol="ABC",
        ts_ms=1,
        trigger=name,
        kind="threshold",
        direction=Direction.LONG,
        strength=1.0,
        strategic=strategic,
    )


def test_no_signal_no_branch() -> None:
    assert route([], RouterConfig()) is None


def test_single_routine_signal() -> None:
    assert route([sig("a")], RouterConfig()) is Branch.ROUTINE


def test_any_strategic_signal_is_strategic() -> None:
    cfg = RouterConfig(min_signals_for_strategic=5)
    assert route([sig("a", strategic=True)], cfg) is Branch.STRATEGIC
    assert route([sig("a"), sig("b", strategic=True)], cfg) is Branch.STRATEGIC


@pytest.mark.parametrize(
    ("count", "minimum", "branch"),
    [
        (2, 2, Branch.STRATEGIC),
        (2, 3, Branch.ROUTINE),
        (3, 3, Branch.STRATEGIC),
        (1, 1, Branch.STRATEGIC),
    ],
)
def test_many_routine_signals_become_strategic(count: int, minimum: int, branch: Branch) -> None:
    signals = [sig(str(i)) for i in range(count)]
    assert route(signals, RouterConfig(min_signals_for_strategic=minimum)) is branch
