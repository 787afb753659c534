"""The desk's side of a live setup's demotion (`models.validation.demotion`): the watch it keeps
in an exchange run, what each bar, placed order and exchange report tells it, and the reviewers
once it has fired.

An exchange run (`venue == "exchange"`) with `promotion.watch` (always on for real orders)
keeps a `DemotionWatch` with a `DivergenceWatch` in it. Per bar: the equity's drawdown is
judged, and the bar's open is the simulator's fill price for the symbol's orders placed before
it. Per placed order: it is followed. Per exchange report: its new fills are summed, and a
final report settles the order. When an order is measured (settled and its next bar seen) the
window's divergence score is judged. Either limit passed demotes the setup once: one critical
alert (`demotion_alert`), then the close-only reviewer (`CLOSE_ONLY`) joins the review loop.

The time of a report's demotion is the desk's event time (the symbol's latest bar end), not
the report's clock, so the same events give the same alert. Functions of the `TradingDesk`
(its methods delegate here), so desk.py keeps to ordering the steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from models.config.settings import Settings
from models.core.messages import Alert, Bar, Fill, Order
from models.review.loop import Reviewer
from models.validation.demotion import CloseOnlyReviewer, DemotionWatch, demotion_alert
from models.validation.live_divergence import DivergenceWatch
from models.validation.promotion import FillSeen, OrderSeen, setup_hash

if TYPE_CHECKING:
    from models.desk.desk import TradingDesk

__all__ = ["CLOSE_ONLY", "active_reviewers", "on_bar", "on_report", "placed", "watch_for"]

CLOSE_ONLY = CloseOnlyReviewer()


def watch_for(settings: Settings, venue: str) -> DemotionWatch | None:
    """The watch of an exchange run with `promotion.watch`; None otherwise (backtests never)."""
    if venue != "exchange" or not settings.promotion.watch:
        return None
    return DemotionWatch(
        setup_hash(settings), divergence=DivergenceWatch(settings.promotion.divergence_window)
    )


def _divergence(watch: DemotionWatch) -> DivergenceWatch | None:
    return getattr(watch, "divergence", None)  # a snapshot from before the field: unset


def on_bar(desk: TradingDesk, bar: Bar) -> list[Alert]:
    """After the bar marked the book: the drawdown, then the bar's open as the simulator's
    price for the orders placed before it."""
    watch = desk.demotion
    if watch is None:
        return []
    settings = desk.settings
    fired = bool(watch.observe(desk.portfolio.equity(), bar.end_ms, settings.promotion))
    follow = _divergence(watch)
    if follow is not None and follow.on_bar(bar.symbol, bar.start_ms, bar.open) and not fired:
        fired = bool(watch.judge_divergence(bar.end_ms, settings.promotion, settings.execution))
    return [demotion_alert(watch, bar.end_ms)] if fired else []


def placed(desk: TradingDesk, order: Order) -> None:
    """An order the desk placed with the exchange: followed until measured."""
    follow = _divergence(desk.demotion) if desk.demotion is not None else None
    if follow is not None:
        seen = OrderSeen(order.client_order_id, order.symbol, order.side, order.placed_ms)
        follow.placed(seen)


def on_report(
    desk: TradingDesk, order: Order, applied: Sequence[Fill], settled: bool
) -> list[Alert]:
    """An exchange report of `order`: its fills booked now (`applied`) and whether it is final;
    the alert when the order's measurement demotes the setup."""
    watch = desk.demotion
    follow = _divergence(watch) if watch is not None else None
    if watch is None or follow is None:
        return []
    fills = [FillSeen(f.client_order_id, f.quantity, f.price, f.fee) for f in applied]
    if not follow.on_fills(order.client_order_id, fills, settled):
        return []
    latest = desk.latest.get(order.symbol)
    now = latest.bar.end_ms if latest is not None else order.updated_ms
    if watch.judge_divergence(now, desk.settings.promotion, desk.settings.execution):
        return [demotion_alert(watch, now)]
    return []


def active_reviewers(desk: TradingDesk) -> tuple[Reviewer, ...]:
    """The desk's reviewers, and once the setup is demoted the close-only one."""
    if desk.demotion is not None and desk.demotion.demoted:
        return (*desk.reviewers, CLOSE_ONLY)
    return desk.reviewers
