"""The desk: decide at a bar's close, fill at the next bar's open, log every round and fill."""

from __future__ import annotations

import pickle
from decimal import Decimal

from models.config.settings import Settings
from models.core.events import BarEvent
from models.core.messages import (
    Alert,
    Bar,
    Branch,
    DecisionRecord,
    DecisionStatus,
    Direction,
    FeatureVector,
    Fill,
    Order,
    OrderStatus,
    PositionSnapshot,
    Signal,
)
from models.desk.desk import TradingDesk
from models.strategy.engine import LocalStrategyEngine

D = Decimal
MIN = 60_000


def settings(*symbols: str, **risk: str) -> Settings:
    return Settings.model_validate(
        {
            "symbols": {s: {} for s in symbols or ("ABC",)},
            "execution": {"initial_cash": "10000", "fee_bps": "10", "slippage_bps": "0"},
            "strategy": {"target_fraction": "0.5", "strategic_fraction": "0.5"},
            "risk": {
                "max_order_notional": "100000",
                "max_position_notional": "100000",
                "max_fee_per_order": "1000",
                **risk,
            },
        }
    )


def event(
    i: int, o: str, c: str, direction: Direction | None = None, symbol: str = "ABC"
) -> BarEvent:
    bar = Bar(
        symbol=symbol,
        start_ms=i * MIN,
        end_ms=(i + 1) * MIN,
        open=D(o),
        high=max(D(o), D(c)),
        low=min(D(o), D(c)),
        close=D(c),
        volume=D(10),
        trades=3,
        vwap=D(c),
    )
    fv = FeatureVector(symbol=symbol, ts_ms=bar.end_ms, close=float(c), values={"rsi": 50.0})
    signals = (
        [
            Signal(
                symbol=symbol,
                ts_ms=bar.end_ms,
                trigger="t",
                kind="crossover",
                direction=direction,
                strength=0.3,
                strategic=False,
            )
        ]
        if direction
        else []
    )
    return BarEvent(
        bar=bar, features=fv, signals=signals, branch=Branch.ROUTINE if direction else None
    )


def of(kind: type, out: list[object]) -> list:  # type: ignore[type-arg]
    return [x for x in out if isinstance(x, kind)]


def test_decide_then_fill_next_bar_open_and_update_the_decision_row() -> None:
    desk = TradingDesk.create(settings())
    out = desk.on_bar_event(event(0, "100", "100", Direction.LONG))
    rec = of(DecisionRecord, out)[0]
    assert rec.status is DecisionStatus.EXECUTED and rec.version == 1
    orders = of(Order, out)
    assert len(orders) == 1 and orders[0].quantity == D(50)  # 50 % of 10000 at 100: estimate
    assert orders[0].size_fraction == D("0.5")  # sized at the fill
    assert of(Fill, out) == []  # never at the decision bar
    out2 = desk.on_bar_event(event(1, "102", "104"))
    fills = of(Fill, out2)
    # 50 % of equity at the open, fee included: 5000 / (102 * 1.001) = 48.97 -> 48 units.
    assert len(fills) == 1 and fills[0].price == D(102) and fills[0].ts_ms == MIN
    assert fills[0].quantity == D(48)
    fee = D(48) * D(102) * D(10) / D(10_000)
    assert fills[0].fee == fee
    updated = of(DecisionRecord, out2)[0]
    assert updated.version == 2 and updated.fills == fills
    assert updated.orders[0].status is OrderStatus.FILLED
    assert updated.orders[0].quantity == D(48)  # the decision log shows what was bought
    assert [o.quantity for o in of(Order, out2)] == [D(48)]
    assert updated.rounds[-1].proposal.intents[0].quantity == D(50)  # and what was estimated
    snap = of(PositionSnapshot, out2)[-1]
    expected_cash = D(10_000) - D(48) * D(102) - fee
    assert snap.cash == expected_cash
    assert snap.equity == expected_cash + D(48) * D(104)
    assert desk.decisions.open == {}


def test_over_limit_goes_back_to_controller_and_every_round_is_logged() -> None:
    desk = TradingDesk.create(settings(max_order_notional="1050"))
    out = desk.on_bar_event(event(0, "100", "100", Direction.LONG))
    rec = of(DecisionRecord, out)[0]
    assert [r.verdict.approved for r in rec.rounds] == [False, True]
    assert rec.orders[0].quantity == D(10)  # resized to the 1050 limit at price 100
    alerts = of(Alert, out)
    assert len(alerts) == 1 and "sent back" in alerts[0].message


def test_rounds_exhausted_rejects_and_alerts_critical() -> None:
    desk = TradingDesk.create(settings(max_order_notional="1050", max_adjust_rounds="0"))
    out = desk.on_bar_event(event(0, "100", "100", Direction.LONG))
    rec = of(DecisionRecord, out)[0]
    assert rec.status is DecisionStatus.REJECTED and of(Order, out) == []
    assert of(Alert, out)[0].severity.value == "critical"


def test_a_gap_up_buys_what_the_cash_pays_at_the_open() -> None:
    desk = TradingDesk.create(settings(min_cash="0"))
    desk.on_bar_event(event(0, "100", "100", Direction.LONG))  # estimate: 50 at 100
    out = desk.on_bar_event(event(1, "300", "300"))  # 50 x 300 > cash: sized at the open
    (fill,) = of(Fill, out)
    assert fill.quantity == D(16)  # 5000 / (300 * 1.001) = 16.65
    assert of(Order, out)[0].status is OrderStatus.FILLED
    assert desk.portfolio.quantity("ABC") == D(16) and desk.portfolio.cash >= 0


def test_an_explicit_buy_the_cash_cannot_pay_at_the_open_is_rejected_whole() -> None:
    # The per-order limit binds: the buy becomes explicit (10 at 100), then gaps to 2000.
    desk = TradingDesk.create(settings(min_cash="0", max_order_notional="1050"))
    (order,) = of(Order, desk.on_bar_event(event(0, "100", "100", Direction.LONG)))
    assert order.quantity == D(10) and order.size_fraction is None
    out = desk.on_bar_event(event(1, "2000", "2000"))  # 10 x 2000 > cash
    assert of(Fill, out) == []
    (rejected,) = of(Order, out)
    assert rejected.status is OrderStatus.REJECTED
    assert rejected.reason == "insufficient cash at fill"
    assert "insufficient cash at fill" in of(Alert, out)[0].message
    assert desk.portfolio.cash == D(10_000) and desk.portfolio.quantity("ABC") == 0


def test_two_symbols_deciding_on_one_bar_do_not_spend_the_same_cash() -> None:
    desk = TradingDesk.create(settings("ABC", "XYZ", min_cash="0"))
    first = desk.on_bar_event(event(0, "100", "100", Direction.LONG, "ABC"))
    second = desk.on_bar_event(event(0, "100", "100", Direction.LONG, "XYZ"))
    (abc,) = of(Order, first)
    assert abc.quantity == D(50)  # half of the 10,000 equity
    # XYZ's decision sees ABC's 5,005 (with fee) on its way: what is left fits, no more.
    (xyz,) = of(Order, second)
    assert abc.quantity * D(100) * D("1.001") + xyz.quantity * D(100) * D("1.001") <= D(10_000)
    desk.on_bar_event(event(1, "100", "100", symbol="ABC"))
    out = desk.on_bar_event(event(1, "100", "100", symbol="XYZ"))
    assert of(Order, out)[0].status is OrderStatus.FILLED  # both fill: nothing overdrawn
    assert desk.portfolio.cash >= 0
    # Each bought to half of equity at its fill, fee included: 49 units.
    assert desk.portfolio.quantity("ABC") == D(49) and desk.portfolio.quantity("XYZ") == D(49)


def test_snapshot_restore_continues_identically() -> None:
    events = [
        event(0, "100", "100", Direction.LONG),
        event(1, "101", "99"),
        event(2, "99", "90", Direction.FLAT),
        event(3, "91", "95"),
    ]
    whole = TradingDesk.create(settings())
    expected = [whole.on_bar_event(e) for e in events]
    first = TradingDesk.create(settings())
    got = [first.on_bar_event(e) for e in events[:2]]
    state = pickle.loads(pickle.dumps(first.state()))
    second = TradingDesk.create(settings())
    second.restore(state)
    got += [second.on_bar_event(e) for e in events[2:]]
    assert got == expected
    assert second.portfolio.quantity("ABC") == 0


def test_exit_too_big_for_one_order_is_sliced_not_trapped() -> None:
    desk = TradingDesk.create(settings(max_order_notional="2100"))
    desk.on_bar_event(event(0, "100", "100", Direction.LONG))  # buys 21 (2100 / 100)
    desk.on_bar_event(event(1, "100", "200"))  # fills 21 @ 100; now worth 4200
    assert desk.portfolio.quantity("ABC") == D(21)
    out = desk.on_bar_event(event(2, "200", "200", Direction.FLAT))
    rec = of(DecisionRecord, out)[0]
    assert rec.status is DecisionStatus.EXECUTED
    assert sorted(o.quantity for o in rec.orders) == [D(1), D(10), D(10)]
    assert len({o.client_order_id for o in rec.orders}) == 3
    desk.on_bar_event(event(3, "200", "200"))
    assert desk.portfolio.quantity("ABC") == 0


def test_stalled_adjustment_stops_early() -> None:
    desk = TradingDesk.create(settings(max_fee_per_order="0.0001", max_adjust_rounds="5"))
    out = desk.on_bar_event(event(0, "100", "100", Direction.LONG))
    rec = of(DecisionRecord, out)[0]
    assert rec.status in (DecisionStatus.REJECTED, DecisionStatus.NO_ACTION)
    assert len(rec.rounds) < 6


def test_several_sells_of_one_symbol_share_the_position_when_adjusted() -> None:
    from models.config.settings import ExecutionConfig, RiskConfig
    from models.core.messages import Proposal, RiskCheck, RiskVerdict, Side, TradeIntent
    from models.strategy.engine import DecisionContext, LocalStrategyEngine

    ctx = DecisionContext(
        decision_id="ABC@1", symbol="ABC", branch=Branch.STRATEGIC, signals=[],
        features=FeatureVector(symbol="ABC", ts_ms=1, close=100.0, values={}),
        price=D(100), position=D(100), cash=D(0), equity=D(10_000), lot_size=D(1),
        risk=RiskConfig(), execution=ExecutionConfig(slippage_bps=D(0)),
    )  # fmt: skip
    for asked, want in (([150, 150], [100]), ([80, 80], [80, 20])):
        prev = Proposal(
            controller="t", strategy="t", rationale="", confidence=0.5,
            intents=[TradeIntent(symbol="ABC", side=Side.SELL, quantity=D(q)) for q in asked],
        )  # fmt: skip
        verdict = RiskVerdict(
            approved=False, fee_estimate=D(0),
            checks=[RiskCheck(name="long_only:ABC", passed=False, limit=D(100), value=D(150))],
        )  # fmt: skip
        got = LocalStrategyEngine(settings().strategy).adjust(ctx, prev, verdict)
        assert [i.quantity for i in got.intents] == [D(x) for x in want]


def test_a_failing_decision_still_logs_the_fills_of_the_bar() -> None:
    class Exploding(LocalStrategyEngine):
        def propose(self, ctx):  # type: ignore[no-untyped-def]
            raise RuntimeError("boom")

    desk = TradingDesk.create(settings())
    desk.on_bar_event(event(0, "100", "100", Direction.LONG))
    desk.controller = Exploding(settings().strategy)
    out = desk.on_bar_event(event(1, "101", "101", Direction.LONG))
    assert len(of(Fill, out)) == 1 and of(Order, out)[0].status is OrderStatus.FILLED
    assert of(DecisionRecord, out)[0].version == 2
    alerts = of(Alert, out)
    assert alerts and alerts[-1].severity.value == "critical" and "boom" in alerts[-1].message


def test_orders_under_the_symbols_min_notional_are_left_out() -> None:
    def desk_with(min_notional: str) -> TradingDesk:
        doc = settings().model_dump(mode="json")
        doc["symbols"] = {"ABC": {"lot_size": "0.001", "min_notional": min_notional}}
        return TradingDesk.create(Settings.model_validate(doc))

    for floor, placed in (("0", True), ("10", False)):
        desk = desk_with(floor)
        desk.on_bar_event(event(0, "100", "100", Direction.LONG))
        # Filled at 100: 49.950 (half of equity, fee included); at 99.8 the target is
        # 50.025: a top-up of 0.075 (7.49 of value).
        out = desk.on_bar_event(event(1, "100", "99.8", Direction.LONG))
        orders = [o for o in of(Order, out) if o.status is OrderStatus.PENDING]
        (rec,) = [r for r in of(DecisionRecord, out) if r.decision_id.endswith(str(2 * MIN))]
        if placed:
            assert [o.quantity for o in orders] == [D("0.075")]
        else:
            assert orders == [] and rec.status is DecisionStatus.NO_ACTION
            assert rec.note == "under min_notional, none placed: buy 0.075 ABC"
