"""The desk's side of the control plane (`models.control`): a command applied at its place in
the stream, its acknowledgement, the cancels a halt sends, and the state's reviewer.

`on_control` applies a `ControlEvent` through the desk's `ControlPlane` (snapshotted, so each
command id is applied once even across a restart) and emits the `ControlAck` row. A switch into
halted cancels: one `CancelOpen` command per symbol with open orders (what the `cancel_open`
fallback sends a real exchange), and on the simulated venue the orders waiting for the next
bar's open are taken back there and then (`expired`, with the command in the reason), so
nothing halted ever fills. While the state is not active, `TradingStateReviewer` joins the
review loop: every decision the state refuses is logged with the reason.

A settings change (`ChangeSettings`) is applied over the desk's settings at its place in the
stream (`reconfigure`): the risk limits, position fractions, symbol specs, GPT model and budget
read by every later bar are the new ones, and a replay of the control topic changes them at the
same bar. Values the desk's own settings refuse (its configuration may differ from the API's)
refuse the command with the reason and change nothing. The changes are part of the snapshotted
plane, so a restored desk re-applies them over its configuration (`reapply`). GPT keeps the
universe it started with: its answer schema (the gateway's) names those symbols, so a symbol
added by a change trades under the local engine until a restart.
Functions of the `TradingDesk` (its methods delegate here), so desk.py keeps to ordering the
steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError

from models.config.changes import apply_values
from models.config.settings import Settings
from models.control.commands import ChangeSettings, ControlEvent
from models.control.plane import ControlAck, ControlPlane
from models.control.reviewer import TradingStateReviewer
from models.control.states import TradingState
from models.core.commands import CancelOpen
from models.core.messages import OrderStatus
from models.execution.sim_venue import SimulatedExchange, with_status
from models.gpt.decider import GptDecider
from models.review.loop import Reviewer
from models.strategy.engine import LocalStrategyEngine

if TYPE_CHECKING:
    from models.desk.desk import DeskOutput, TradingDesk

__all__ = [
    "ControlAck",
    "ControlEvent",
    "ControlPlane",
    "on_control",
    "reapply",
    "reconfigure",
    "with_state",
]

_REVIEWERS = {s: TradingStateReviewer(s) for s in TradingState if s is not TradingState.ACTIVE}


def on_control(desk: TradingDesk, event: ControlEvent) -> list[DeskOutput]:
    """Apply one command at its stream time: its acknowledgement, then what a halt cancels;
    nothing for a command id already applied."""
    action = event.command.action
    changed: Settings | None = None
    refusal = ""
    if isinstance(action, ChangeSettings) and event.command.command_id not in desk.control.applied:
        try:
            changed = apply_values(desk.settings, action.values)
        except ValidationError as err:
            refusal = _short(err)
    ack = desk.control.apply(event.command, event.at_ms, refusal)
    if ack is None:
        return []
    if changed is not None and ack.outcome == "applied":
        reconfigure(desk, changed)
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


def _short(err: ValidationError) -> str:
    """A refused change's reason in one line (the ack's reason holds 500 characters)."""
    first = err.errors(include_input=False, include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
    text = f"the desk's settings refuse the change: {where}: {first['msg']}"
    return text if len(text) <= 500 else text[:497] + "..."


def reconfigure(desk: TradingDesk, settings: Settings) -> None:
    """Put `settings` in force in every part of the desk that keeps its own copy."""
    before = desk.settings
    desk.settings = settings
    desk.shortable = settings.shortable()
    desk.exchange.execution = settings.execution
    if isinstance(desk.controller, LocalStrategyEngine):
        desk.controller.cfg = settings.strategy
    gpt = desk.gpt
    gpt.settings = settings
    gpt.budget.cap = settings.gpt.daily_budget_usd
    if gpt.decider is not None:  # same universe (the module docstring says why)
        kept = {s: settings.symbols.get(s, spec) for s, spec in before.symbols.items()}
        same = (
            settings if kept == settings.symbols else settings.model_copy(update={"symbols": kept})
        )
        gpt.decider = GptDecider(same)


def reapply(desk: TradingDesk) -> None:
    """After a restore: the snapshot's settings changes over the configuration in force (a
    change the configuration now refuses is dropped, as a refused command is)."""
    if not desk.control.settings:
        return
    try:
        changed = apply_values(desk.settings, desk.control.settings)
    except ValidationError:
        return
    reconfigure(desk, changed)


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
