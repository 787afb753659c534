"""Demotion of a live setup (issue 12, part 5): the drawdown watch fires once, at the first
bar past the limit; the close-only reviewer lets exits through and refuses what opens or grows
a position; the desk of a watched exchange run raises the critical alert and goes close-only
(models/validation/demotion.py, models/desk/desk.py)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from models.config.gates import PromotionConfig
from models.config.settings import Settings
from models.core.messages import Alert, Proposal, Severity, Side, TradeIntent
from models.desk.desk import TradingDesk
from models.desk.promotion_watch import CLOSE_ONLY
from models.portfolio.book import Portfolio
from models.review.loop import ReviewContext
from models.validation.demotion import DEMOTION_SOURCE, CloseOnlyReviewer, DemotionWatch
from models.validation.promotion import setup_hash
from tests.support.builders import bar, bar_event, fill, of

POLICY = PromotionConfig(demote_drawdown=Decimal("0.15"))


@given(st.lists(st.integers(min_value=1, max_value=10_000).map(Decimal), max_size=40))
def test_the_watch_fires_once_at_the_first_equity_past_the_limit(equities: list[Decimal]) -> None:
    watch = DemotionWatch("s")
    fired = [i for i, e in enumerate(equities) if watch.observe(e, i, POLICY)]
    # Written out: the running peak, and the first point more than 15 % below it.
    peak, first = Decimal(0), None
    for i, e in enumerate(equities):
        peak = max(peak, e)
        if first is None and (peak - e) / peak > Decimal("0.15"):
            first = i
    assert fired == ([] if first is None else [first])
    assert watch.demoted == (first is not None) and watch.demoted_ms == first


def _ctx(held: Decimal) -> ReviewContext:
    portfolio = Portfolio(cash=Decimal(10_000))
    if held:
        portfolio.position("X").quantity = held
    settings = Settings.model_validate({"symbols": {"X": {"shortable": True}}})
    return ReviewContext(settings, portfolio, {"X": Decimal(10)}, [])


@given(
    held=st.integers(min_value=-20, max_value=20).map(Decimal),
    side=st.sampled_from([Side.BUY, Side.SELL]),
    qty=st.integers(min_value=1, max_value=40).map(Decimal),
)
def test_close_only_passes_exactly_the_orders_that_only_reduce_a_position(
    held: Decimal, side: Side, qty: Decimal
) -> None:
    proposal = Proposal(
        controller="gpt",
        strategy="s",
        intents=[TradeIntent(symbol="X", side=side, quantity=qty)],
        rationale="",
        confidence=0.5,
    )
    verdict = CloseOnlyReviewer().review(proposal, _ctx(held))
    after = held + (qty if side is Side.BUY else -qty)
    reduces = held != 0 and (after == 0 or (after * held > 0 and abs(after) < abs(held)))
    assert verdict.approved == reduces
    if not reduces:
        assert "close-only" in verdict.failures[0].message


def _bars(desk: TradingDesk, closes: list[int]) -> list[Alert]:
    out = []
    for i, close in enumerate(closes):
        out += desk.on_bar_event(bar_event(bar("GOOG", 60_000 * (i + 1), close)))
    return of(Alert, out)


def test_a_watched_exchange_desk_alerts_once_and_goes_close_only() -> None:
    settings = Settings.model_validate(
        {"symbols": {"GOOG": {}}, "promotion": {"watch": True, "demote_drawdown": "0.15"}}
    )
    desk = TradingDesk.create(settings, venue="exchange")
    desk.portfolio.apply_fill(fill("f", "o", "d", "GOOG", quantity=500, price=100))
    alerts = _bars(desk, [100, 80, 60, 50])  # equity 100k, 90k, 80k (20 % down), 75k
    (alert,) = [a for a in alerts if a.source == DEMOTION_SOURCE]
    assert alert.severity is Severity.CRITICAL and alert.ts_ms == 3 * 60_000 + 60_000
    assert alert.context["setup"] == setup_hash(settings)
    assert "drawdown 0.2000 past the limit 0.15" in alert.message
    assert desk.active_reviewers()[-1] is CLOSE_ONLY
    # The watch is in the snapshot: a restarted desk stays demoted.
    again = TradingDesk.create(settings, venue="exchange")
    again.restore(desk.state())
    assert again.demotion is not None and again.demotion.demoted


def test_sim_and_unwatched_desks_keep_no_watch() -> None:
    plain = Settings.model_validate({"symbols": {"GOOG": {}}})
    watched = Settings.model_validate({"symbols": {"GOOG": {}}, "promotion": {"watch": True}})
    assert TradingDesk.create(plain, venue="exchange").demotion is None
    assert TradingDesk.create(watched, venue="sim").demotion is None  # backtests never
    desk = TradingDesk.create(plain, venue="exchange")
    desk.portfolio.apply_fill(fill("f", "o", "d", "GOOG", quantity=500, price=100))
    assert not [a for a in _bars(desk, [100, 10]) if a.source == DEMOTION_SOURCE]
    assert CLOSE_ONLY not in desk.active_reviewers()


def _place_and_fill(desk: TradingDesk, n: int, price: int) -> list[Alert]:
    """Bar 2n: a decision buys 1 GOOG at its close; bar 2n+1 opens at 100 (the simulator's
    fill); then the exchange reports the order filled at `price`."""
    from models.core.messages import DecisionStatus
    from models.execution.reports import ExecStatus, ExecutionReport

    out: list[object] = []
    first = bar("GOOG", 60_000 * (2 * n + 1), 100, open=100)
    event = bar_event(first)
    out += desk.on_bar_event(event)
    intent = TradeIntent(symbol="GOOG", side=Side.BUY, quantity=Decimal(1))
    proposal = Proposal(
        controller="local", strategy="s", intents=[intent], rationale="", confidence=0.5
    )
    decision_id = f"GOOG@{first.end_ms}"
    placed = desk.finalize(
        event, decision_id, [], DecisionStatus.EXECUTED, proposal, "", first.end_ms
    )
    (order,) = [o for o in placed if type(o).__name__ == "Order"]
    out += desk.on_bar_event(bar_event(bar("GOOG", 60_000 * (2 * n + 2), 100, open=100)))
    got = fill(f"f{n}", order.client_order_id, decision_id, "GOOG", quantity=1, price=price)
    report = ExecutionReport(
        client_order_id=order.client_order_id,
        decision_id=decision_id,
        symbol="GOOG",
        side=Side.BUY,
        quantity=Decimal(1),
        status=ExecStatus.FILLED,
        filled=Decimal(1),
        average_price=Decimal(price),
        fills=[got],
        ts_ms=10**13,  # the executor's clock: not the alert's time
    )
    out += desk.on_execution(report)
    return of(Alert, out)


def test_a_watched_exchange_desk_demotes_on_diverging_fills_after_the_minimum() -> None:
    settings = Settings.model_validate(
        {
            "symbols": {"GOOG": {}},
            "execution": {"slippage_bps": "0", "fee_bps": "0"},
            "promotion": {"watch": True, "divergence_min_orders": 2, "divergence_window": 5},
        }
    )
    desk = TradingDesk.create(settings, venue="exchange")
    # 3 % above the simulator's price (the next bar's open): 300 bps against a 25 bps scale.
    assert not [a for a in _place_and_fill(desk, 0, 103) if a.source == DEMOTION_SOURCE]
    assert CLOSE_ONLY not in desk.active_reviewers()  # one odd fill: not judged yet
    (alert,) = [a for a in _place_and_fill(desk, 1, 103) if a.source == DEMOTION_SOURCE]
    assert alert.severity is Severity.CRITICAL and alert.context["setup"] == setup_hash(settings)
    assert alert.ts_ms == 5 * 60_000  # event time: the end of the last bar (4 to 5 min)
    assert "divergence 12.0000 past the limit 1 over the last 2 orders" in alert.message
    assert desk.active_reviewers()[-1] is CLOSE_ONLY
    assert not [a for a in _place_and_fill(desk, 2, 103) if a.source == DEMOTION_SOURCE]
    again = TradingDesk.create(settings, venue="exchange")
    again.restore(desk.state())
    assert again.demotion is not None and again.demotion.demoted
    assert again.demotion.divergence is not None and len(again.demotion.divergence.measured) == 3


def test_fills_at_the_simulators_price_never_demote() -> None:
    settings = Settings.model_validate(
        {
            "symbols": {"GOOG": {}},
            "execution": {"slippage_bps": "0", "fee_bps": "0"},
            "promotion": {"watch": True, "divergence_min_orders": 1, "divergence_window": 5},
        }
    )
    desk = TradingDesk.create(settings, venue="exchange")
    for n in range(4):
        assert not [a for a in _place_and_fill(desk, n, 100) if a.source == DEMOTION_SOURCE]
    assert desk.demotion is not None and not desk.demotion.demoted
    assert desk.demotion.divergence is not None and len(desk.demotion.divergence.measured) == 4
