"""The desk under control commands (issue 13): a command takes effect at its place in the
stream; paused places no order after it while the strategy runs on, resume brings orders
back; halted cancels what is open; each command id is applied once, across a snapshot too
(models/desk/control.py)."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from models.config.settings import Settings, build_settings
from models.control.commands import ControlCommand, ControlEvent, SetTradingState
from models.control.plane import ControlAck
from models.control.states import TradingState
from models.core.commands import CancelOpen
from models.core.events import BarEvent
from models.core.messages import (
    Branch,
    DecisionRecord,
    Direction,
    Fill,
    Order,
    OrderStatus,
    RiskCheck,
)
from models.desk.desk import TradingDesk
from models.signals.features import FeatureState
from tests.support.builders import MIN, bar, bar_event, of, signal

CROSS: dict[str, Any] = {
    "name": "turn",
    "universe": ["AAA"],
    "entry": {"left": "sma_2", "op": "crosses_above", "right": "sma_4"},
    "exit": {"left": "sma_2", "op": "crosses_below", "right": "sma_4"},
    "position_fraction": 0.5,
    "direction": "long",
}
LIMITS = {"max_order_notional": 1e9, "max_position_notional": 1e9, "daily_loss_limit": 1e9}
WAVE = [100, 98, 96, 94, 92, 95, 99, 103, 107, 104, 100, 96, 92, 88, 91, 95, 99, 103, 100, 97]
WAVES = WAVE * 3


def _settings(strategies: list[dict[str, Any]]) -> Settings:
    return build_settings(
        {
            "symbols": {"AAA": {}},
            "strategies": strategies,
            "execution": {"fee_bps": 0, "slippage_bps": 0, "initial_cash": 10_000},
            "risk": LIMITS,
        },
        {},
    )


def _control(cid: str, state: TradingState, at_ms: int) -> ControlEvent:
    command = ControlCommand(
        command_id=cid, action=SetTradingState(state=state), issued_by="test", issued_ms=at_ms
    )
    return ControlEvent(command, at_ms)


def _run(desk: TradingDesk, commands: dict[int, list[ControlEvent]]) -> list[object]:
    """WAVES through the desk; `commands[i]` arrive just before bar i (after bar i-1 ended)."""
    features = FeatureState(desk.settings.features, desk.settings.extra_features("AAA"))
    out: list[object] = []
    prev = WAVES[0]
    for i, close in enumerate(WAVES):
        for event in commands.get(i, []):
            out.extend(desk.on_control(event))
        b = bar("AAA", i * MIN, str(close), open=str(prev))
        prev = close
        out.extend(desk.on_bar_event(BarEvent(b, features.update(b), [], None)))
    return out


def _approved(record: DecisionRecord) -> bool:
    verdict = record.rounds[-1].verdict
    return verdict is None or verdict.approved


def _failures(record: DecisionRecord) -> list[RiskCheck]:
    verdict = record.rounds[-1].verdict
    return [] if verdict is None else verdict.failures


def _placed(out: Sequence[object]) -> list[Order]:
    return [o for o in of(Order, out) if o.version == 1]


def test_a_pause_stops_new_orders_from_its_place_and_resume_brings_them_back() -> None:
    reference = _placed(_run(TradingDesk.create(_settings([CROSS])), {}))
    assert len(reference) >= 4  # the strategy trades through every wave
    pause_ms, resume_ms = 21 * MIN, 40 * MIN  # the second wave, paused
    assert any(pause_ms < o.placed_ms < resume_ms for o in reference)
    desk = TradingDesk.create(_settings([CROSS]))
    commands = {
        21: [_control("p1", TradingState.PAUSED, pause_ms)],
        40: [_control("r1", TradingState.ACTIVE, resume_ms)],
    }
    out = _run(desk, commands)
    placed = _placed(out)
    assert not any(pause_ms < o.placed_ms < resume_ms for o in placed)
    assert [o for o in placed if o.placed_ms < pause_ms] == [
        o for o in reference if o.placed_ms < pause_ms
    ]
    assert any(o.placed_ms > resume_ms for o in placed)  # resumed: orders again
    # The strategy ran on while paused: its decisions are logged, refused with the state's
    # reason.
    refused = [
        r
        for r in of(DecisionRecord, out)
        if pause_ms < r.ts_ms < resume_ms and r.rounds and not _approved(r)
    ]
    assert refused
    assert all("the desk is paused" in c.message for r in refused for c in _failures(r))
    assert desk.strategies.strategies  # still running
    acks = of(ControlAck, out)
    assert [(a.command_id, a.state_before, a.state_after, a.applied_ms) for a in acks] == [
        ("p1", TradingState.ACTIVE, TradingState.PAUSED, pause_ms),
        ("r1", TradingState.PAUSED, TradingState.ACTIVE, resume_ms),
    ]


def _local_settings() -> Settings:
    return Settings.model_validate(
        {
            "symbols": {"ABC": {}},
            "execution": {"initial_cash": "10000", "fee_bps": "0", "slippage_bps": "0"},
            "strategy": {"controller": "local", "target_fraction": "0.5"},
            "risk": {k: str(v) for k, v in LIMITS.items()},
        }
    )


def _long(i: int) -> BarEvent:
    b = bar("ABC", i * MIN, 100)
    return bar_event(b, [signal("ABC", b.end_ms, "t", direction=Direction.LONG)], Branch.ROUTINE)


def test_halted_cancels_open_orders_and_places_none() -> None:
    desk = TradingDesk.create(_local_settings())
    first = desk.on_bar_event(_long(0))
    (order,) = _placed(first)
    out = desk.on_control(_control("h1", TradingState.HALTED, MIN + 1))
    assert CancelOpen("ABC", "cancelled: desk halted by control command h1") in out
    expired = [o for o in of(Order, out) if o.status is OrderStatus.EXPIRED]
    assert [o.client_order_id for o in expired] == [order.client_order_id]
    assert desk.decisions.open == {}
    later = desk.on_bar_event(_long(1))
    assert of(Fill, later) == [] and _placed(later) == []
    # Halted -> active is refused; through paused it resumes.
    (refused,) = of(ControlAck, desk.on_control(_control("a1", TradingState.ACTIVE, 3 * MIN)))
    assert refused.outcome == "refused" and desk.control.state is TradingState.HALTED


def test_a_command_id_is_applied_once_even_after_a_restore() -> None:
    desk = TradingDesk.create(_local_settings())
    assert of(ControlAck, desk.on_control(_control("x", TradingState.PAUSED, 1)))
    restored = TradingDesk.create(_local_settings())
    restored.restore(pickle.loads(pickle.dumps(desk.state())))
    assert restored.control.state is TradingState.PAUSED
    assert restored.on_control(_control("x", TradingState.REDUCING, 2)) == []
    assert restored.control.state is TradingState.PAUSED
    # A snapshot from before the field restores as active with no ids applied.
    older = TradingDesk.create(_local_settings())
    older.restore(desk.state()[:-1])
    assert older.control.state is TradingState.ACTIVE and not older.control.applied


def test_reducing_lets_an_exit_through() -> None:
    desk = TradingDesk.create(_local_settings())
    desk.on_bar_event(_long(0))
    desk.on_bar_event(bar_event(bar("ABC", MIN, 100)))  # filled: long
    held = desk.portfolio.quantity("ABC")
    assert held > 0
    desk.on_control(_control("r", TradingState.REDUCING, 2 * MIN))
    buy = desk.on_bar_event(_long(2))
    assert _placed(buy) == []
    b = bar("ABC", 3 * MIN, 100)
    sell = desk.on_bar_event(
        bar_event(b, [signal("ABC", b.end_ms, "t", direction=Direction.SHORT)], Branch.ROUTINE)
    )
    assert [o.side.value for o in _placed(sell)] == ["sell"]
    assert Decimal(0) < _placed(sell)[0].quantity <= held
