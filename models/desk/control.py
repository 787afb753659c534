"""The desk's side of the control plane (`models.control`): a command applied at its place in
the stream, its acknowledgement, the cancels a halt sends, and the state's reviewer.

`on_control` applies a `ControlEvent` through the desk's `ControlPlane` (snapshotted, so each
command id is applied once even across a restart) and emits the `ControlAck` row. A switch into
halted cancels: one `CancelOpen` command per symbol with open orders (what the `cancel_open`
fallback sends a real exchange), and on the simulated venue the orders waiting for the next
bar's open are taken back there and then (`expired`, with the command in the reason), so
nothing halted ever fills. While the state is not active, `TradingStateReviewer` joins the
review loop: every decision the state refuses is logged with the reason. Functions of the
`TradingDesk` (its methods delegate here), so desk.py keeps to ordering the steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from models.control.commands import ControlEvent
from models.control.plane import ControlAck, ControlPlane
from models.control.reviewer import TradingStateReviewer
from models.control.states import TradingState
from models.core.commands import CancelOpen
from models.core.messages import OrderStatus
from models.execution.sim_venue import SimulatedExchange, with_status
from models.review.loop import Reviewer

if TYPE_CHECKING:
    from models.desk.desk import DeskOutput, TradingDesk

__all__ = ["ControlAck", "ControlEvent", "ControlPlane", "on_control", "with_state"]

_REVIEWERS = {s: TradingStateReviewer(s) for s in TradingState if s is not TradingState.ACTIVE}


def on_control(desk: TradingDesk, event: ControlEvent) -> list[DeskOutput]:
    """Apply one command at its stream time: its acknowledgement, then what a halt cancels;
    nothing for a command id already applied."""
    ack = desk.control.apply(event.command, event.at_ms)
    if ack is None:
        return []
    out: list[DeskOutput] = [ack]
    # only the switch into halted cancels: a settings or mode command applied while halted
    # leaves the state as it was and sends nothing
    halts = (
        ack.outcome == "applied"
        and ack.state_after is TradingState.HALTED
        and ack.state_before is not TradingState.HALTED
    )
    if halts:
        out.extend(_cancel_all(desk, ack))
    return out


def _cancel_all(desk: TradingDesk, ack: ControlAck) -> list[DeskOutput]:
    reason = f"cancelled: desk halted by control command {ack.command_id}"
    symbols = sorted({o.symbol for o in desk.decisions.pending_orders()})
    out: list[DeskOutput] = [CancelOpen(symbol, reason) for symbol in symbols]
    exchange = desk.exchange
    if isinstance(exchange, SimulatedExchange):  # the simulated venue's own open orders
        for symbol in sorted(exchange.pending):
            for waiting in exchange.pending.pop(symbol):
                record, order = desk.decisions.order_of(
                    waiting.decision_id, waiting.client_order_id
                )
                if order is None:
                    continue
                order = with_status(order, OrderStatus.EXPIRED, ack.applied_ms, reason)
                out.append(order)
                if record is not None:
                    out.append(desk.next_version(record, order, []))
    return out


def with_state(desk: TradingDesk, base: tuple[Reviewer, ...]) -> tuple[Reviewer, ...]:
    """`base`, and the trading state's reviewer unless the desk is active."""
    state = desk.control.state
    if state is TradingState.ACTIVE:
        return base
    return (*base, _REVIEWERS[state])
