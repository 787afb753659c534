"""Portfolio accounting, the risk gate, the local engine's adjust step, the simulated exchange."""

from __future__ import annotations

from decimal import Decimal

import pytest

from models.config.settings import ExecutionConfig, RiskConfig, StrategyConfig
from models.core.ids import client_order_id
from models.core.messages import (
    Bar,
    Branch,
    Direction,
    FeatureVector,
    Fill,
    Order,
    OrderStatus,
    Proposal,
    Side,
    Signal,
    TradeIntent,
)
from models.execution.sim_venue import SimulatedExchange
from models.portfolio.book import Portfolio
from models.review.risk import check
from models.strategy.engine import DecisionContext, LocalStrategyEngine
from tests.support import builders as build

D = Decimal
EXEC = ExecutionConfig(initial_cash=D(10_000), fee_bps=D(10), slippage_bps=D(0))


def fill(side: Side, qty: str, price: str, fee: str = "0") -> Fill:
    return build.fill("f", "c", "d", "ABC", side=side, quantity=qty, price=price, fee=fee)


def test_average_cost_realised_pnl_and_equity_identity() -> None:
    p = Portfolio(cash=D(10_000))
    p.apply_fill(fill(Side.BUY, "10", "100", "1"))
    p.apply_fill(fill(Side.BUY, "10", "110", "1"))
    assert p.position("ABC").avg_cost == D(105)
    p.apply_fill(fill(Side.SELL, "5", "120", "0.5"))
    pos = p.position("ABC")
    assert pos.quantity == D(15)
    assert pos.realized_pnl == D(75) - D("2.5")  # (120-105)*5 minus all fees
    assert p.cash == D(10_000) - D(1001) - D(1101) + D(599.5)
    p.mark("ABC", D(130), 0)
    assert p.equity() == p.cash + D(15) * D(130)
    with pytest.raises(ValueError):
        p.apply_fill(fill(Side.SELL, "16", "1"))


def test_daily_pnl_resets_each_utc_day() -> None:
    p = Portfolio(cash=D(1000))
    p.apply_fill(fill(Side.BUY, "1", "100"))
    p.mark("ABC", D(100), 1)
    p.mark("ABC", D(90), 1000)
    assert p.daily_pnl() == D(-10)
    p.mark("ABC", D(80), 86_400_000)  # the bar ending at midnight still belongs to day 0
    assert p.daily_pnl() == D(-20)
    p.mark("ABC", D(80), 86_400_001)
    assert p.daily_pnl() == D(0)


def test_a_late_bar_of_an_earlier_day_does_not_reset_the_loss_baseline() -> None:
    p = Portfolio(cash=D(10_000))
    p.apply_fill(fill(Side.BUY, "100", "100"))
    p.mark("ABC", D(100), 3_600_000)  # day 0
    p.mark("ABC", D(100), 86_400_000 + 60_000)  # day 1 starts: baseline 10000
    p.mark("ABC", D(40), 86_400_000 + 120_000)
    assert p.daily_pnl() == D(-6000)
    p.mark("XYZ", D(1), 86_400_000 - 60_000)  # a quiet symbol's 23:58 bar, emitted late
    p.mark("ABC", D(40), 86_400_000 + 180_000)
    assert p.daily_pnl() == D(-6000)


def proposal(*intents: tuple[Side, str]) -> Proposal:
    return Proposal(
        controller="t",
        strategy="t",
        rationale="",
        confidence=0.5,
        intents=[TradeIntent(symbol="ABC", side=s, quantity=D(q)) for s, q in intents],
    )


def test_gate_names_each_failed_limit_with_value() -> None:
    risk = RiskConfig(
        max_order_notional=D(1000), max_position_notional=D(1500), max_fee_per_order=D(100)
    )
    p = Portfolio(cash=D(10_000))
    v = check(proposal((Side.BUY, "20")), p, {"ABC": D(100)}, risk, EXEC)
    assert not v.approved
    failed = {c.name: c for c in v.failures}
    assert set(failed) == {"order_notional:ABC", "position_notional:ABC"}
    assert failed["order_notional:ABC"].value == D(2000)
    assert v.fee_estimate == D(2)
    ok = check(proposal((Side.BUY, "5")), p, {"ABC": D(100)}, risk, EXEC)
    assert ok.approved


def test_gate_refuses_short_sales_cash_overdraft_and_buys_after_daily_loss() -> None:
    risk = RiskConfig(daily_loss_limit=D(50))
    p = Portfolio(cash=D(500))
    assert {
        c.name for c in check(proposal((Side.SELL, "1")), p, {"ABC": D(10)}, risk, EXEC).failures
    } == {"long_only:ABC"}
    assert {
        c.name for c in check(proposal((Side.BUY, "60")), p, {"ABC": D(10)}, risk, EXEC).failures
    } == {"cash"}
    p.apply_fill(fill(Side.BUY, "10", "10"))
    p.mark("ABC", D(10), 0)
    p.mark("ABC", D(4), 1)  # lost 60 today
    v = check(proposal((Side.BUY, "1")), p, {"ABC": D(4)}, risk, EXEC)
    assert [c.name for c in v.failures] == ["daily_loss"]
    assert check(proposal((Side.SELL, "10")), p, {"ABC": D(4)}, risk, EXEC).approved


def test_money_moved_outside_the_book_is_not_a_profit_or_loss_of_the_day() -> None:
    p = Portfolio(cash=D(10_000))
    p.apply_fill(fill(Side.BUY, "10", "100"))
    p.mark("ABC", D(100), 1)
    p.mark("ABC", D(90), 2)
    assert p.daily_pnl() == D(-100)
    p.set_cash(p.cash - D(5_000))  # a withdrawal found by the reconciliation
    p.adopt("ABC", D(4), D(100))  # six units left the account
    assert p.daily_pnl() == D(-100)  # the trading loss, nothing else
    p.mark("ABC", D(95), 3)
    assert p.daily_pnl() == D(-100) + D(4) * D(5)


def placed(side: Side, qty: str, symbol: str = "ABC") -> Order:
    return Order(
        client_order_id=f"{symbol}-{side.value}-{qty}",
        decision_id="earlier",
        symbol=symbol,
        side=side,
        quantity=D(qty),
        status=OrderStatus.PENDING,
        placed_ms=0,
        updated_ms=0,
    )


def test_gate_reserves_cash_and_quantity_of_orders_not_filled_yet() -> None:
    risk = RiskConfig(min_cash=D(0))
    p = Portfolio(cash=D(1000))
    prices = {"ABC": D(10), "XYZ": D(10)}
    buy = proposal((Side.BUY, "60"))
    assert check(buy, p, prices, risk, EXEC).approved  # 600 + fee of 1,000 cash
    # Another symbol's buy of 50 (500 + 0.5 fee) is on its way: 499.5 left, not 1,000.
    v = check(buy, p, prices, risk, EXEC, [placed(Side.BUY, "50", "XYZ")])
    (cash,) = v.failures
    assert cash.name == "cash" and cash.limit == D("499.5")
    # A pending sell frees no cash before it fills, and the quantity it sells is spoken for.
    p.apply_fill(fill(Side.BUY, "10", "10"))
    again = proposal((Side.SELL, "10"))
    assert check(again, p, prices, risk, EXEC).approved
    v = check(again, p, prices, risk, EXEC, [placed(Side.SELL, "6")])
    (short,) = v.failures
    assert short.name == "long_only:ABC" and short.limit == D(4)
    # A pending buy counts towards the position limit.
    capped = RiskConfig(min_cash=D(0), max_position_notional=D(150))
    assert check(proposal((Side.BUY, "5")), p, prices, capped, EXEC).approved
    v = check(proposal((Side.BUY, "5")), p, prices, capped, EXEC, [placed(Side.BUY, "1")])
    assert [c.name for c in v.failures] == ["position_notional:ABC"]


def ctx(
    position: str = "0",
    cash: str = "10000",
    branch: Branch = Branch.ROUTINE,
    direction: Direction = Direction.LONG,
    risk: RiskConfig | None = None,
) -> DecisionContext:
    sig = Signal(
        symbol="ABC",
        ts_ms=0,
        trigger="t",
        kind="crossover",
        direction=direction,
        strength=0.5,
        strategic=branch is Branch.STRATEGIC,
    )
    return DecisionContext(
        decision_id="ABC@0",
        symbol="ABC",
        branch=branch,
        signals=[sig],
        features=FeatureVector(symbol="ABC", ts_ms=0, close=100.0, values={}),
        price=D(100),
        position=D(position),
        cash=D(cash),
        equity=D(cash) + D(position) * 100,
        lot_size=D(1),
        risk=risk or RiskConfig(),
        execution=EXEC,
    )


def test_local_engine_sizes_by_branch_and_goes_flat_on_risk_off() -> None:
    eng = LocalStrategyEngine(StrategyConfig(target_fraction=D("0.1"), strategic_fraction=D("0.2")))
    assert eng.propose(ctx()).intents[0].quantity == D(10)
    assert eng.propose(ctx(branch=Branch.STRATEGIC)).intents[0].quantity == D(20)
    flat = eng.propose(ctx(position="7", direction=Direction.FLAT))
    assert [(i.side, i.quantity) for i in flat.intents] == [(Side.SELL, D(7))]
    assert eng.propose(ctx(position="0", direction=Direction.FLAT)).intents == []


def test_adjust_shrinks_to_what_the_verdict_allows() -> None:
    risk = RiskConfig(max_order_notional=D(550))
    eng = LocalStrategyEngine(StrategyConfig(target_fraction=D("0.1")))
    c = ctx(risk=risk)
    first = eng.propose(c)
    v = check(first, Portfolio(cash=D(10_000)), {"ABC": D(100)}, risk, EXEC)
    assert not v.approved
    second = eng.adjust(c, first, v)
    assert second.intents[0].quantity == D(5)
    assert check(second, Portfolio(cash=D(10_000)), {"ABC": D(100)}, risk, EXEC).approved


def bar(start: int, o: str, c: str) -> Bar:
    return build.bar("ABC", start, c, open=o)


def order(placed: int) -> Order:
    return build.order(client_order_id("ABC@1", 0), "ABC@1", "ABC", quantity=2, placed_ms=placed)


def test_exchange_fills_next_bar_open_with_fee_and_slippage_never_earlier() -> None:
    ex = SimulatedExchange(ExecutionConfig(fee_bps=D(10), slippage_bps=D(50)))
    assert ex.accept(order(placed=60_000))
    assert not ex.accept(order(placed=60_000))  # same client order id: ignored
    assert ex.on_bar(bar(0, "100", "101")) == []  # started before the order existed
    (report,) = ex.on_bar(bar(60_000, "200", "201"))
    fills = report.fills
    assert len(fills) == 1 and report.filled == fills[0].quantity
    assert fills[0].price == D("201.00000000")  # 200 + 0.5 %
    assert fills[0].fee == (D(2) * D(201) * D(10) / D(10_000)).quantize(D("1e-8"))
    assert ex.on_bar(bar(120_000, "1", "1")) == []


def test_client_order_ids_are_deterministic_and_distinct() -> None:
    assert client_order_id("X@1", 0) == client_order_id("X@1", 0)
    assert client_order_id("X@1", 0) != client_order_id("X@1", 1)
    assert client_order_id("X@1", 0) != client_order_id("X@2", 0)
