"""The desk's acting bars build their records unvalidated (`models.core.trusted`): the rows must
be exactly those the validating constructors built.

The reference is the same desk with `trusted` and `replaced` swapped, in every module that uses
them on the acting path, for the validating constructor (given only the fields a validating
call is given, `given`) and `model_copy`: a wrong `given`, a value validation would have
converted (an int for a float, a float for a Decimal), a list shared where validation copies
it, all show as a different row. Generated bars go through standing strategy files, the local
engine and GPT strategies answered inline, with fees, slippage, tight risk limits (refusals,
adjusted and sliced orders) and a `min_notional`; rows are compared by type, repr, JSON and
the fields set of every nested model, and the desk states after by content.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import models.desk.decision_book
import models.desk.desk
import models.execution.sim_venue
import models.monitoring.alerts
import models.portfolio.book
import models.review.loop
import models.review.risk
import models.strategy.engine
import models.strategy.intents
from dataflows.driver import DeskDriver
from models.config.settings import Settings
from models.core.messages import (
    Branch,
    DecisionRecord,
    DecisionStatus,
    Order,
    OrderStatus,
    Proposal,
    Side,
    TradeIntent,
)
from models.desk.desk import ORDER_GIVEN, RECORD_GIVEN, DeskRow, strategy_proposal
from models.execution.reports import ExecStatus, ExecutionReport
from models.execution.sim_venue import FILLED_GIVEN
from models.strategy.intents import intent
from tests.support.builders import bar, bar_event
from tests.unit.test_desk_blocks import (
    FILES,
    content,
    desk_for,
    gpt_cross,
    stream,
)

PATCHED = (
    models.desk.decision_book,
    models.desk.desk,
    models.execution.sim_venue,
    models.monitoring.alerts,
    models.portfolio.book,
    models.review.loop,
    models.review.risk,
    models.strategy.engine,
    models.strategy.intents,
)


def validating_trusted(
    cls: type[BaseModel], fields: dict[str, Any], given: Any = None
) -> BaseModel:
    names = fields if given is None else [k for k in fields if k in given]
    return cls(**{k: fields[k] for k in names})


def copying_replaced(model: BaseModel, update: dict[str, Any]) -> BaseModel:
    return model.model_copy(update=update)


@contextmanager
def validating() -> Iterator[None]:
    """The acting path as it was: every record validated, every next version `model_copy`."""
    saved: list[tuple[Any, str, object]] = []
    for module in PATCHED:
        for name, swap in (("trusted", validating_trusted), ("replaced", copying_replaced)):
            if hasattr(module, name):
                saved.append((module, name, getattr(module, name)))
                setattr(module, name, swap)
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def fingerprint(row: object) -> object:
    """A row by type, repr (values with their types and Decimal exponents), JSON and the
    fields set of every model in it."""
    if isinstance(row, BaseModel):
        return (type(row).__name__, repr(row), row.model_dump_json(), _fields_sets(row))
    return (type(row).__name__, repr(row))


def _fields_sets(value: object) -> object:
    if isinstance(value, BaseModel):
        return (
            sorted(value.model_fields_set),
            [_fields_sets(getattr(value, name)) for name in type(value).model_fields],
        )
    if isinstance(value, list | tuple):
        return [_fields_sets(v) for v in value]
    if isinstance(value, dict):
        return [_fields_sets(v) for v in value.values()]
    return None


def make_settings(
    files: dict[str, str], controller: str, risk: dict[str, str], fee: str
) -> Settings:
    strategies = [
        {"name": f"{name}-{sym}", "universe": [sym], **FILES[name]} for sym, name in files.items()
    ]
    return Settings.model_validate(
        {
            "symbols": {
                "ABC": {"shortable": True, "min_notional": "50"},
                "XYZ": {"lot_size": "0.5"},
            },
            "features": {"sma_fast": 3, "sma_slow": 5, "breakout": 8},
            "triggers": [
                {"kind": "crossover", "name": "x", "fast": "sma_fast", "slow": "sma_slow"},
                {"kind": "breakout", "name": "b", "strategic": True},
            ],
            "strategies": strategies,
            "execution": {"initial_cash": "100000", "fee_bps": fee, "slippage_bps": "5"},
            "strategy": {
                "controller": controller,
                "target_fraction": "0.1",
                "strategic_fraction": "0.2",
            },
            "risk": risk,
            "gpt": {
                "model": "stratflow-local",
                "cache_dir": "/nonexistent/answers",
                "cooldown": "3m",
                "max_wait": "10m",
                "daily_budget_usd": "1000",
            },
        }
    )


def run(cfg: Settings, gpt: bool, seed: int, n: int, horizon: int) -> tuple[list[object], object]:
    driver: DeskDriver = desk_for(cfg, gpt_cross(horizon) if gpt else None)
    out: list[DeskRow] = []
    driver.run(stream(cfg, seed, n), out)
    return [fingerprint(r) for r in out], content(driver.desk.state())


RISKS = st.fixed_dictionaries(
    {
        "max_order_notional": st.sampled_from(["3000", "25000"]),
        "max_position_notional": st.sampled_from(["8000", "100000"]),
        "max_fee_per_order": st.sampled_from(["2", "50"]),
        "daily_loss_limit": st.sampled_from(["300", "100000"]),
        "min_cash": st.sampled_from(["0", "20000"]),
        "max_adjust_rounds": st.sampled_from([0, 1, 3]),
    }
)
FILE_CHOICES = st.fixed_dictionaries(
    {},
    optional={
        "ABC": st.sampled_from(sorted(FILES)),
        "XYZ": st.sampled_from(["cross", "threshold-stops", "groups"]),
    },
)


def assert_as_validated(
    files: dict[str, str], gpt: bool, risk: dict[str, str], fee: str, seed: int, n: int
) -> None:
    cfg = make_settings(files, "gpt" if gpt else "local", risk, fee)
    fast = run(cfg, gpt, seed, n, 40)
    with validating():
        reference = run(cfg, gpt, seed, n, 40)
    assert fast[0] == reference[0]
    assert fast[1] == reference[1]


@pytest.mark.slow
@settings(
    max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    files=FILE_CHOICES,
    gpt=st.booleans(),
    risk=RISKS,
    fee=st.sampled_from(["0", "10", "40"]),
    seed=st.integers(0, 10_000),
    n=st.integers(20, 200),
)
def test_acting_rows_are_those_of_the_validating_constructors(
    files: dict[str, str], gpt: bool, risk: dict[str, str], fee: str, seed: int, n: int
) -> None:
    assert_as_validated(files, gpt, risk, fee, seed, n)


@settings(max_examples=2, deadline=None, derandomize=True)
@given(
    files=FILE_CHOICES,
    gpt=st.booleans(),
    risk=RISKS,
    seed=st.integers(0, 10_000),
)
def test_acting_rows_are_those_of_the_validating_constructors_quick(
    files: dict[str, str], gpt: bool, risk: dict[str, str], seed: int
) -> None:
    assert_as_validated(files, gpt, risk, "10", seed, 50)


def test_the_reference_is_not_the_fast_path() -> None:
    """The swap reaches the modules (else the comparison above proves nothing)."""
    with validating():
        assert getattr(models.review.risk, "trusted") is validating_trusted  # noqa: B009
        assert getattr(models.desk.decision_book, "replaced") is copying_replaced  # noqa: B009
    assert getattr(models.review.risk, "trusted") is not validating_trusted  # noqa: B009


# ---------------------------------------------------------------- the guarded builders
TEXT = st.text(alphabet="ab -", max_size=3) | st.just("x" * 500) | st.just("x" * 501)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(
    symbol=st.sampled_from(["ABC", "abc", "A B", "ABC\n", "X" * 33]),
    side=st.sampled_from(list(Side)),
    quantity=st.sampled_from([Decimal("1.50"), Decimal(0), Decimal(-1), Decimal("Infinity"), 2]),
    reason=TEXT,
    fraction=st.sampled_from(
        [None, Decimal("0.5"), Decimal(1), Decimal(0), Decimal("1.01"), Decimal("NaN"), 0.5]
    ),
)
def test_intent_is_the_validated_intent_or_the_same_error(
    symbol: str, side: Side, quantity: Any, reason: str, fraction: Any
) -> None:
    kwargs: dict[str, Any] = {
        "symbol": symbol,
        "side": side,
        "quantity": quantity,
        "reason": reason,
    }
    if fraction is not None:
        kwargs["size_fraction"] = fraction
    try:
        expected = TradeIntent(**kwargs)
    except ValueError as err:
        with pytest.raises(ValueError) as raised:
            intent(symbol, side, quantity, reason, fraction)
        assert str(raised.value) == str(err)
        return
    got = intent(symbol, side, quantity, reason, fraction)
    assert fingerprint(got) == fingerprint(expected)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    rationale=st.sampled_from(["", "why", "y" * 2000, "y" * 2001]),
    confidence=st.sampled_from([0.0, 0.6, 1.0, 1, 0, 1.5, -0.1, float("nan")]),
)
def test_strategy_proposal_is_the_validated_proposal_or_the_same_error(
    rationale: str, confidence: Any
) -> None:
    intents = [TradeIntent(symbol="ABC", side=Side.BUY, quantity=Decimal(2))]

    kwargs = {"strategy": "s", "intents": intents, "rationale": rationale, "confidence": confidence}
    try:
        expected = Proposal(controller="strategy", **kwargs)
    except ValueError as err:
        with pytest.raises(ValueError) as raised:
            strategy_proposal("s", intents, rationale, confidence)
        assert str(raised.value) == str(err)
        return
    got = strategy_proposal("s", intents, rationale, confidence)
    assert fingerprint(got) == fingerprint(expected)
    assert got.intents is not intents  # copied, as validation copies a list


def test_the_fields_given_are_those_of_the_validating_calls() -> None:
    """The reference above is given `given` too: these are checked against the calls the
    acting path made before it built records unvalidated."""

    order = Order(
        client_order_id="c",
        decision_id="d",
        symbol="ABC",
        side=Side.BUY,
        quantity=Decimal(1),
        status=OrderStatus.PENDING,
        placed_ms=1,
        updated_ms=1,
        reason="",
        size_fraction=None,
    )
    assert order.model_fields_set == ORDER_GIVEN
    event = bar_event(bar("ABC", 0, 100))
    record = DecisionRecord(
        decision_id="d",
        ts_ms=1,
        symbol="ABC",
        branch=Branch.ROUTINE,
        triggers=[],
        features=event.features,
        rounds=[],
        status=DecisionStatus.NO_ACTION,
        orders=[],
        portfolio_before={},
        note="",
        version=1,
    )
    assert record.model_fields_set == RECORD_GIVEN
    report = ExecutionReport(
        client_order_id="c",
        decision_id="d",
        symbol="ABC",
        side=Side.BUY,
        quantity=Decimal(1),
        status=ExecStatus.FILLED,
        filled=Decimal(1),
        average_price=Decimal(1),
        fills=[],
        ts_ms=1,
    )
    assert report.model_fields_set == FILLED_GIVEN
