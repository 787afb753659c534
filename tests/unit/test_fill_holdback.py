"""Issue 9, item 13: a real fill that did not fit the book ("does not fit the book") was
dropped. A fill that does not fit yet is held until the reports it waits for arrive; one that
never fits is given up with a critical alert. Whatever order the reports arrive in, the book
ends where it would with the reports in order."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from models.config.settings import Settings
from models.core.messages import Alert, Fill, Side
from models.desk.desk import TradingDesk
from models.execution.fill_holdback import MAX_WAITS, FillHoldback
from models.execution.reports import ExecStatus, ExecutionReport

D = Decimal
BTC = "BTC/USDT"
SETTINGS = Settings.model_validate(
    {
        "symbols": {BTC: {"lot_size": "0.0001"}, "ETH/USDT": {"lot_size": "0.001"}},
        "execution": {"initial_cash": "100000", "currency": "USDT"},
        "strategy": {"controller": "local"},
    }
)


def report(n: int, side: Side, qty: str, price: str, symbol: str = BTC) -> ExecutionReport:
    cid = f"sf-hold-{n:04d}"
    fill = Fill(
        fill_id=f"{cid}:1",
        client_order_id=cid,
        decision_id=f"{symbol}@{n}",
        symbol=symbol,
        side=side,
        quantity=D(qty),
        price=D(price),
        fee=D("0.5"),
        ts_ms=n,
    )
    return ExecutionReport(
        client_order_id=cid,
        decision_id=fill.decision_id,
        symbol=symbol,
        side=side,
        quantity=D(qty),
        status=ExecStatus.FILLED,
        filled=D(qty),
        average_price=D(price),
        fills=[fill],
        ts_ms=n,
    )


def book(desk: TradingDesk) -> tuple[Decimal, Decimal, Decimal]:
    return desk.portfolio.cash, desk.portfolio.quantity(BTC), desk.portfolio.fees_paid


def run(reports: list[ExecutionReport]) -> tuple[TradingDesk, list[Any]]:
    desk = TradingDesk.create(SETTINGS, venue="exchange")
    out: list[Any] = []
    for r in reports:
        out.extend(desk.on_execution(r))
    return desk, out


def test_a_sell_reported_before_its_buy_is_held_then_booked() -> None:
    buy, sell = report(1, Side.BUY, "0.02", "60000"), report(2, Side.SELL, "0.02", "61000")
    desk, out = run([sell])
    assert book(desk) == (D(100000), D(0), D(0)) and len(desk.fills.held) == 1
    assert not [a for a in out if isinstance(a, Alert)]  # not an alarm yet: held
    out = desk.on_execution(buy)
    assert [f.fill_id for f in out if isinstance(f, Fill)] == ["sf-hold-0001:1", "sf-hold-0002:1"]
    assert book(desk) == book(run([buy, sell])[0]) and len(desk.fills.held) == 0
    assert desk.portfolio.position(BTC).realized_pnl == D(20) - D(1)  # 0.02 * 1000 - fees


def test_a_fill_that_never_fits_is_given_up_with_an_alert() -> None:
    desk, out = run([report(1, Side.SELL, "0.02", "61000")])
    for n in range(MAX_WAITS):
        out.extend(desk.on_execution(report(100 + n, Side.BUY, "0.001", "3000", "ETH/USDT")))
    alerts = [a for a in out if isinstance(a, Alert)]
    assert len(alerts) == 1 and alerts[0].severity.value == "critical"
    assert "sf-hold-0001:1 does not fit the book" in alerts[0].message
    assert f"still after {MAX_WAITS} later reports" in alerts[0].message
    assert len(desk.fills.held) == 0 and desk.portfolio.quantity(BTC) == 0


def test_the_same_held_fill_reported_twice_is_booked_once() -> None:
    sell = report(2, Side.SELL, "0.02", "61000")
    desk, _ = run([sell, sell, report(1, Side.BUY, "0.02", "60000"), sell])
    assert book(desk) == book(run([report(1, Side.BUY, "0.02", "60000"), sell])[0])


def test_held_fills_are_bounded() -> None:
    hold = FillHoldback(max_held=2)
    fills = [r.fills[0] for r in (report(n, Side.SELL, "1", "100") for n in range(3))]
    assert hold.hold(fills[0], "a") == [] and hold.hold(fills[1], "b") == []
    assert hold.hold(fills[2], "c") == [(fills[0], "a (held fills full)")]


ROUND_TRIPS = [
    ("0.02", "60000", "61000"),
    ("0.01", "59000", "58000"),
    ("0.03", "62000", "62500"),
]


@settings(max_examples=60, deadline=None)
@given(st.permutations(range(2 * len(ROUND_TRIPS))))
def test_any_arrival_order_ends_with_the_book_of_the_placement_order(order: list[int]) -> None:
    """Buy then sell, three times; the reports arrive in any order (sells never exceed what
    the buys before them bought, so every fill fits once its buys are in): the same cash,
    position and fees, every fill booked, no alert."""
    placed = []
    for i, (qty, buy_at, sell_at) in enumerate(ROUND_TRIPS):
        placed += [report(2 * i, Side.BUY, qty, buy_at), report(2 * i + 1, Side.SELL, qty, sell_at)]
    expected, _ = run(placed)
    desk, out = run([placed[i] for i in order])
    assert book(desk) == book(expected)
    # (realised P&L depends on the average cost, i.e. on the order the fills are booked in)
    assert not [a for a in out if isinstance(a, Alert)] and len(desk.fills.held) == 0
    assert sorted(f.fill_id for f in out if isinstance(f, Fill)) == sorted(
        r.fills[0].fill_id for r in placed
    )
