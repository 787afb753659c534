"""Settings changed while the desk runs (`ChangeSettings` on the control topic): in force from
the command's place in the stream, refused whole when the desk's settings refuse them, and
re-applied after a restore (models/desk/control.py)."""

from __future__ import annotations

import pickle
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.config.settings import Settings
from models.control.commands import ChangeSettings, ControlCommand, ControlEvent
from models.control.plane import ControlAck
from models.core.commands import AskGpt
from models.core.events import BarEvent
from models.core.messages import Branch, DecisionRecord, Direction, GptRequest, Order
from models.desk.desk import TradingDesk
from tests.support.builders import MIN, bar, bar_event, of, signal

BIG = {"max_order_notional": "1000000000", "max_position_notional": "1000000000"}


def _settings(**strategy: Any) -> Settings:
    return Settings.model_validate(
        {
            "symbols": {"ABC": {}},
            "execution": {"initial_cash": "10000", "fee_bps": "0", "slippage_bps": "0"},
            "strategy": {"controller": "local", "target_fraction": "0.5", **strategy},
            "risk": {**BIG, "daily_loss_limit": "1000000000"},
        }
    )


def _change(cid: str, values: dict[str, Any], at_ms: int) -> ControlEvent:
    command = ControlCommand(
        command_id=cid,
        action=ChangeSettings(values=values),
        issued_by="test",
        issued_ms=at_ms,
    )
    return ControlEvent(command, at_ms)


def _signal_bar(i: int, direction: Direction, price: int = 100) -> BarEvent:
    b = bar("ABC", i * MIN, price)
    return bar_event(b, [signal("ABC", b.end_ms, "t", direction=direction)], Branch.ROUTINE)


def _placed(out: list[object]) -> list[Order]:
    return [o for o in of(Order, out) if o.version == 1]


def _entry_after(desk: TradingDesk, i: int) -> Order:
    """Flat, then a long signal at bar i: the order it places."""
    (order,) = _placed(desk.on_bar_event(_signal_bar(i, Direction.LONG)))
    return order


@settings(max_examples=25, deadline=None)
@given(limit=st.integers(min_value=150, max_value=4_000))
def test_a_lower_order_limit_applies_from_the_command_on(limit: int) -> None:
    """An order placed after the change is held to the new per-order limit (resized down to
    it, the refusal logged); the same desk without the change places the configured size."""
    unchanged = TradingDesk.create(_settings())
    reference = _entry_after(unchanged, 0)
    desk = TradingDesk.create(_settings())
    (ack,) = of(ControlAck, desk.on_control(_change("c1", {"risk.max_order_notional": limit}, 1)))
    assert ack.outcome == "applied" and ack.action == "change_settings:risk.max_order_notional"
    assert desk.settings.risk.max_order_notional == Decimal(limit)
    out = desk.on_bar_event(_signal_bar(0, Direction.LONG))
    (order,) = _placed(out)
    assert order.quantity * 100 <= limit < reference.quantity * 100
    (record,) = [r for r in of(DecisionRecord, out) if r.version == 1]
    first = record.rounds[0].verdict
    assert first is not None and not first.approved
    assert "order_notional:ABC" in {c.name for c in first.failures}


def test_a_position_fraction_change_sizes_the_next_entry() -> None:
    half = _entry_after(TradingDesk.create(_settings()), 0)
    desk = TradingDesk.create(_settings())
    desk.on_control(_change("f1", {"strategy.target_fraction": "0.25"}, 1))
    quarter = _entry_after(desk, 0)
    assert half.size_fraction == Decimal("0.5") and quarter.size_fraction == Decimal("0.25")
    assert quarter.quantity < half.quantity


def test_a_change_the_desk_refuses_is_refused_whole_and_changes_nothing() -> None:
    desk = TradingDesk.create(_settings())
    before = desk.settings
    values = {"risk.max_order_notional": "5", "risk.max_position_notional": "-1"}
    (ack,) = of(ControlAck, desk.on_control(_change("bad", values, 1)))
    assert ack.outcome == "refused"
    assert ack.reason.startswith("the desk's settings refuse the change")
    assert desk.settings is before and desk.control.settings == {}
    # Refused once is seen once: the same id again is not acknowledged twice.
    assert desk.on_control(_change("bad", values, 2)) == []


def test_a_restored_desk_keeps_the_changes_over_its_configuration() -> None:
    desk = TradingDesk.create(_settings())
    desk.on_control(_change("c1", {"risk.max_order_notional": "700"}, 1))
    desk.on_control(_change("c2", {"gpt.daily_budget_usd": "3.5", "gpt.model": "gpt-x"}, 2))
    restored = TradingDesk.create(_settings())
    restored.restore(pickle.loads(pickle.dumps(desk.state())))
    assert restored.settings.risk.max_order_notional == Decimal(700)
    assert restored.gpt.budget.cap == Decimal("3.5")
    assert restored.gpt.settings.gpt.model == "gpt-x"
    order = _entry_after(restored, 0)
    assert order.quantity * 100 <= 700
    # The newest value of a key wins, whatever order the keys were changed in.
    restored.on_control(_change("c3", {"risk.max_order_notional": "900"}, 3))
    again = TradingDesk.create(_settings())
    again.restore(restored.state())
    assert again.settings.risk.max_order_notional == Decimal(900)


@pytest.mark.parametrize("key", ["gpt.model", "gpt.daily_budget_usd"])
def test_gpt_settings_reach_the_session(key: str) -> None:
    desk = TradingDesk.create(_settings())
    value = "gpt-other" if key == "gpt.model" else "0.75"
    desk.on_control(_change("g", {key: value}, 1))
    assert desk.gpt.settings is desk.settings
    if key == "gpt.model":
        assert desk.settings.gpt.model == "gpt-other"
    else:
        assert desk.gpt.budget.cap == Decimal("0.75")


def test_a_changed_gpt_model_is_what_the_next_question_is_for(tmp_path: Path) -> None:
    """The question after a `gpt.model` change carries that model and is hashed with it (the
    gateway asks the endpoint for the request's model, and its answer store keys by hash)."""
    from tests.support import builders as build
    from tests.support.gpt import MIN as GPT_MIN
    from tests.support.gpt import T0, make_settings

    def strategic(i: int) -> BarEvent:
        b = build.bar("ABC", T0 + i * GPT_MIN, 100, volume=10, trades=3)
        s = build.signal("ABC", b.end_ms, "breakout", kind="breakout", strategic=True)
        return build.bar_event(b, [s], Branch.STRATEGIC, values={"rsi": 50.0})

    def asked(desk: TradingDesk, i: int) -> GptRequest:
        (command,) = of(AskGpt, desk.on_bar_event(strategic(i)))
        return command.request

    settings = make_settings(tmp_path, gpt={"cooldown": "0s"})
    before = asked(TradingDesk.create(settings, gpt=True), 0)
    desk = TradingDesk.create(settings, gpt=True)
    desk.on_control(_change("m", {"gpt.model": "gpt-next"}, 0))
    after = asked(desk, 0)
    assert before.model == settings.gpt.model != "gpt-next"
    assert after.model == "gpt-next"
    assert after.messages == before.messages and after.prompt_hash != before.prompt_hash
