"""Pre-trade compliance rules (models/compliance): each rule with a passing and a failing
case, and the reviewer in the review loop: a blocked order never passes, whoever proposes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.compliance.config import ComplianceConfig
from models.compliance.reviewer import ComplianceReviewer
from models.compliance.rules import RULES, Level, RuleInput
from models.config.settings import Settings
from models.core.messages import (
    AdjustRound,
    DecisionStatus,
    Order,
    OrderStatus,
    Proposal,
    RiskVerdict,
    Side,
    TradeIntent,
)
from models.portfolio.book import Portfolio, Position
from models.review.loop import ReviewContext, RiskReviewer, run_review_loop

D = Decimal
MONDAY_NOON = int(datetime(2025, 3, 3, 12, 0, tzinfo=UTC).timestamp() * 1000)
SUNDAY_NOON = int(datetime(2025, 3, 2, 12, 0, tzinfo=UTC).timestamp() * 1000)


def _input(
    cfg: dict[str, Any],
    side: Side = Side.BUY,
    qty: int = 10,
    *,
    ref: str | None = "100",
    est: str | None = "100",
    position: int = 0,
    equity: int = 100_000,
    pending: list[Order] | None = None,
    recent: list[tuple[int, str, Side]] | None = None,
    now: int = MONDAY_NOON,
    venue: str = "binance",
) -> RuleInput:
    return RuleInput(
        intent=TradeIntent(symbol="ABC", side=side, quantity=D(qty)),
        config=ComplianceConfig.model_validate(cfg),
        venue=venue,
        now_ms=now,
        reference_price=None if ref is None else D(ref),
        price_estimate=None if est is None else D(est),
        position=D(position),
        equity=D(equity),
        pending=pending or [],
        recent_orders=recent or [],
    )


def _order(side: Side) -> Order:
    return Order(
        client_order_id="sf-1",
        decision_id="ABC@1",
        symbol="ABC",
        side=side,
        quantity=D(5),
        status=OrderStatus.PENDING,
        placed_ms=MONDAY_NOON - 60_000,
        updated_ms=MONDAY_NOON - 60_000,
    )


RECENT = [(MONDAY_NOON - k * 10_000, "ABC", Side.BUY) for k in range(1, 4)]

# rule -> (config, passing input kwargs, failing input kwargs, expected failing level)
CASES: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any], Level]] = {
    "instrument_lists": (
        {"blocked": ["ABC"]},
        {"side": Side.SELL, "qty": 5, "position": 10},
        {},
        Level.BLOCK,
    ),
    "venue": ({"allowed_venues": ["binance"]}, {}, {"venue": "kraken"}, Level.BLOCK),
    "jurisdiction": (
        {"allowed_jurisdictions": ["US"], "instrument_jurisdictions": {"ABC": "US"}},
        {},
        {},
        Level.BLOCK,
    ),
    "price_collar": ({"price_collar": "0.05"}, {"est": "104"}, {"est": "106"}, Level.BLOCK),
    "order_value": ({"max_order_value": "1000"}, {"qty": 10}, {"qty": 11}, Level.BLOCK),
    "order_quantity": ({"max_order_quantity": "10"}, {"qty": 10}, {"qty": 11}, Level.BLOCK),
    "position_value": (
        {"max_position_value": "2000"},
        {"position": 10},
        {"position": 11},
        Level.BLOCK,
    ),
    "concentration": (
        {"max_concentration": "0.2"},
        {"position": 190},
        {"position": 191},
        Level.BLOCK,
    ),
    "order_rate": (
        {"order_rate": {"count": 4, "window_s": 60}},
        {"recent": RECENT},
        {"recent": [*RECENT, (MONDAY_NOON - 1, "XYZ", Side.SELL)]},
        Level.BLOCK,
    ),
    "repeat_throttle": (
        {"repeat_throttle": {"count": 3, "window_s": 60}},
        {"recent": RECENT[:2]},
        {"recent": RECENT},
        Level.BLOCK,
    ),
    "self_trade": (
        {},
        {"pending": [_order(Side.BUY)]},
        {"pending": [_order(Side.SELL)]},
        Level.BLOCK,
    ),
    "trading_hours": (
        {"hours": {"binance": {"open_minute": 540, "close_minute": 960}}},
        {},
        {"now": SUNDAY_NOON},
        Level.BLOCK,
    ),
    "market_limits": (
        {"markets": {"ABC": {"min_quantity": "5", "quantity_step": "5"}}},
        {"qty": 10},
        {"qty": 12},
        Level.BLOCK,
    ),
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_rule_passes_and_blocks(rule: str) -> None:
    cfg, good, bad, level = CASES[rule]
    check = RULES[rule]
    passed = check(_input(cfg, **good))
    assert passed is None or passed.level is Level.PASS, passed
    failed = (
        check(_input(cfg, **bad))
        if rule != "jurisdiction"
        else check(_input({**cfg, "instrument_jurisdictions": {"ABC": "KY"}}, **bad))
    )
    assert failed is not None and failed.level is level and failed.reason
    assert check(_input({}, **bad)) is None or rule == "self_trade"  # off unless configured


def test_every_rule_has_its_cases() -> None:
    assert set(CASES) == set(RULES)


def test_restricted_warns_and_an_unknown_jurisdiction_fails_closed() -> None:
    warn = RULES["instrument_lists"](_input({"restricted": ["ABC"]}))
    assert warn is not None and warn.level is Level.WARN
    unknown = RULES["jurisdiction"](_input({"allowed_jurisdictions": ["US"]}))
    assert unknown is not None and unknown.level is Level.BLOCK and "unknown" in unknown.reason


@pytest.mark.parametrize("missing", [{"ref": None}, {"est": None}, {"ref": "0"}])
def test_no_reference_price_fails_closed(missing: dict[str, Any]) -> None:
    result = RULES["price_collar"](_input({"price_collar": "0.05"}, **missing))
    assert result is not None and result.level is Level.BLOCK and "fail closed" in result.reason


@given(st.integers(-50, 50), st.sampled_from([Side.BUY, Side.SELL]), st.integers(1, 60))
def test_reducing_a_position_is_never_held_by_position_limits(
    position: int, side: Side, qty: int
) -> None:
    x = _input(
        {"max_position_value": "1", "max_concentration": "0.0001"}, side, qty, position=position
    )
    after = position + (qty if side is Side.BUY else -qty)
    reduces = abs(after) <= abs(position)
    for rule in ("position_value", "concentration"):
        result = RULES[rule](x)
        assert result is not None
        assert (result.level is Level.PASS) == reduces


# ------------------------------------------------------------------ in the review loop

SETTINGS = Settings.model_validate(
    {
        "symbols": {"ABC": {}},
        "execution": {"fee_bps": "0", "slippage_bps": "0", "initial_cash": "100000"},
    }
)


def _ctx(pending: list[Order] | None = None) -> ReviewContext:
    portfolio = Portfolio(cash=D(100_000))
    portfolio.positions["ABC"] = Position(quantity=D(10), avg_cost=D(100))
    return ReviewContext(SETTINGS, portfolio, {"ABC": D(100)}, pending or [])


def _buy(qty: int = 10) -> Proposal:
    intent = TradeIntent(symbol="ABC", side=Side.BUY, quantity=D(qty))
    return Proposal(controller="gpt", strategy="s", intents=[intent], rationale="buy", confidence=1)


@pytest.mark.parametrize(
    ("cfg", "pending", "blocked"),
    [
        ({"blocked": ["ABC"]}, None, "compliance:blocked_instrument:ABC"),
        ({}, [_order(Side.SELL)], "compliance:self_trade:ABC"),
    ],
)
def test_a_proposal_that_buys_a_blocked_instrument_or_crosses_our_order_never_passes(
    cfg: dict[str, Any], pending: list[Order] | None, blocked: str
) -> None:
    """A proposer that insists (GPT answering the same again) is refused every round; the
    decision ends rejected with the reason in every round."""
    reviewer = ComplianceReviewer(ComplianceConfig.model_validate(cfg), "binance", MONDAY_NOON)
    rounds: list[AdjustRound] = []

    def insist(p: Proposal, _v: RiskVerdict) -> Proposal:
        return p

    result = run_review_loop(
        _buy(), insist, lambda: _ctx(pending), rounds, 3, (RiskReviewer(), reviewer)
    )
    assert result.status is DecisionStatus.REJECTED
    assert rounds and all(
        r.verdict is not None and blocked in {c.name for c in r.verdict.failures} for r in rounds
    )


def test_a_warning_is_on_record_and_lets_the_order_through() -> None:
    reviewer = ComplianceReviewer(
        ComplianceConfig(restricted=frozenset({"ABC"})), "binance", MONDAY_NOON
    )
    verdict = reviewer.review(_buy(), _ctx())
    assert verdict.approved
    (warn,) = [c for c in verdict.checks if c.name == "compliance:restricted_instrument:ABC"]
    assert warn.passed and warn.message == "warn: ABC is on the restricted list"
