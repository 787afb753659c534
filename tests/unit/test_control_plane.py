"""The control plane's pure core (issue 13): trading states and their switches, control
commands (strict, a malformed one is a reason, never a crash), the plane applying each command
id once, and the trading-state reviewer (models/control/)."""

from __future__ import annotations

import json
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from models.config.settings import Settings
from models.control.commands import ControlCommand, SetTradingState, parse_command
from models.control.plane import ControlPlane
from models.control.reviewer import TradingStateReviewer
from models.control.states import TradingState
from models.core.messages import Proposal, Side, TradeIntent
from models.portfolio.book import Portfolio
from models.review.loop import ReviewContext

STATES = list(TradingState)


def command(cid: str, state: TradingState, by: str = "ops", ms: int = 1) -> ControlCommand:
    return ControlCommand(
        command_id=cid, action=SetTradingState(state=state), issued_by=by, issued_ms=ms
    )


@given(
    st.lists(st.tuples(st.integers(min_value=0, max_value=8), st.sampled_from(STATES)), max_size=30)
)
def test_the_state_after_a_sequence_follows_the_rules_and_a_repeated_id_changes_nothing(
    steps: list[tuple[int, TradingState]],
) -> None:
    plane = ControlPlane()
    # An independent reading of the rules: every switch but halted -> active; an id once.
    state, seen = "active", set()
    for i, (n, target) in enumerate(steps):
        cid = f"c{n}"
        ack = plane.apply(command(cid, target), 1000 + i)
        if cid in seen:
            assert ack is None
            continue
        seen.add(cid)
        assert ack is not None and ack.applied_ms == 1000 + i and ack.state_before == state
        if not (state == "halted" and target.value == "active"):
            state = target.value
            assert ack.outcome == "applied" and not ack.reason
        else:
            assert ack.outcome == "refused" and "not allowed" in ack.reason
        assert ack.state_after == state
    assert plane.state.value == state


def test_a_halted_desk_resumes_through_paused() -> None:
    plane = ControlPlane(TradingState.HALTED)
    refused = plane.apply(command("a", TradingState.ACTIVE), 5)
    assert refused is not None and refused.outcome == "refused"
    assert plane.state is TradingState.HALTED
    plane.apply(command("b", TradingState.PAUSED), 6)
    ack = plane.apply(command("c", TradingState.ACTIVE), 7)
    assert ack is not None and ack.outcome == "applied" and plane.state.value == "active"


def _raw(**over: object) -> bytes:
    body: dict[str, object] = {
        "command_id": "cmd-1",
        "action": {"kind": "set_trading_state", "state": "paused"},
        "issued_by": "ops",
        "issued_ms": 1,
    }
    body.update(over)
    return json.dumps(body).encode()


def test_a_well_formed_command_parses() -> None:
    parsed = parse_command(_raw())
    assert isinstance(parsed, ControlCommand)
    assert parsed.action.state is TradingState.PAUSED
    assert parse_command(parsed.model_dump_json().encode()) == parsed


def test_malformed_commands_are_reasons_never_exceptions() -> None:
    bad = [
        None,
        b"",
        b"not json",
        b"[]",
        _raw(action={"kind": "set_trading_state", "state": "sleeping"}),
        _raw(action={"kind": "set_settings", "risk": {}}),
        _raw(extra=1),
        _raw(issued_ms="1"),  # strict: no coercion
        _raw(issued_ms=-1),
        _raw(command_id=""),
        _raw(command_id="x" * 65),
        _raw(command_id="has space"),
        _raw(issued_by="x" * 101),
        b" " * 5000,
    ]
    for value in bad:
        reason = parse_command(value)
        assert isinstance(reason, str) and reason, value


@given(st.binary(max_size=300))
def test_any_bytes_give_a_command_or_a_reason(value: bytes) -> None:
    assert isinstance(parse_command(value), ControlCommand | str)


def _ctx(held: Decimal) -> ReviewContext:
    portfolio = Portfolio(cash=Decimal(10_000))
    if held:
        portfolio.position("X").quantity = held
    settings = Settings.model_validate({"symbols": {"X": {"shortable": True}}})
    return ReviewContext(settings, portfolio, {"X": Decimal(10)}, [])


def _proposal(side: Side, qty: Decimal) -> Proposal:
    return Proposal(
        controller="local",
        strategy="s",
        intents=[TradeIntent(symbol="X", side=side, quantity=qty)],
        rationale="",
        confidence=0.5,
    )


@given(
    state=st.sampled_from(STATES),
    held=st.integers(min_value=-20, max_value=20).map(Decimal),
    side=st.sampled_from([Side.BUY, Side.SELL]),
    qty=st.integers(min_value=1, max_value=40).map(Decimal),
)
def test_the_reviewer_passes_what_the_state_allows_and_says_why_it_refuses(
    state: TradingState, held: Decimal, side: Side, qty: Decimal
) -> None:
    verdict = TradingStateReviewer(state).review(_proposal(side, qty), _ctx(held))
    after = held + (qty if side is Side.BUY else -qty)
    reduces = held != 0 and (after == 0 or (after * held > 0 and abs(after) < abs(held)))
    allowed = {
        TradingState.ACTIVE: True,
        TradingState.REDUCING: reduces,
        TradingState.PAUSED: False,
        TradingState.HALTED: False,
    }[state]
    assert verdict.approved == allowed
    if not allowed:
        message = verdict.failures[0].message
        assert state.value in message and verdict.failures[0].name == "trading_state"


def test_a_proposal_without_orders_passes_every_state() -> None:
    empty = Proposal(controller="gpt", strategy="s", intents=[], rationale="", confidence=0.5)
    for state in STATES:
        assert TradingStateReviewer(state).review(empty, _ctx(Decimal(0))).approved
