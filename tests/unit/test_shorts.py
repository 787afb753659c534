"""Short positions where the venue lends: the book's accounting both ways, strategies that
sell short or turn, the risk gate's view of a short, and the refusal where it does not lend."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.config.settings import ConfigError, build_settings
from models.core.events import BarEvent
from models.core.messages import Fill, Order, Proposal, Side, TradeIntent
from models.desk.desk import TradingDesk
from models.portfolio.book import Portfolio
from models.review.risk import check
from models.signals.features import FeatureState
from tests.support.builders import MIN, bar, fill, of

D = Decimal


def _fill(side: Side, qty: str, price: str, fee: str = "0", n: int = 0) -> Fill:
    return fill(f"f{n}", f"o{n}", f"d{n}", "AAA", side=side, quantity=qty, price=price, fee=fee)


def test_a_short_sale_adds_its_proceeds_and_a_cover_realises_the_difference() -> None:
    book = Portfolio(cash=D(1000))
    book.apply_fill(_fill(Side.SELL, "10", "50", "1"), allow_short=True)
    assert book.quantity("AAA") == D(-10) and book.cash == D(1499)
    assert book.position("AAA").avg_cost == D(50)
    book.marks["AAA"] = D(40)
    assert book.equity() == D(1499) - D(400)  # 100 open profit, less the fee
    book.apply_fill(_fill(Side.BUY, "4", "40", "1", 1), allow_short=True)
    pos = book.position("AAA")
    assert pos.quantity == D(-6) and pos.realized_pnl == D(40) - D(2)
    assert pos.avg_cost == D(50)


def test_a_fill_through_zero_closes_and_opens_the_other_side_at_its_price() -> None:
    book = Portfolio(cash=D(1000))
    book.apply_fill(_fill(Side.BUY, "5", "10"))
    book.apply_fill(_fill(Side.SELL, "8", "12", n=1), allow_short=True)
    pos = book.position("AAA")
    assert pos.quantity == D(-3) and pos.avg_cost == D(12) and pos.realized_pnl == D(10)


def test_without_a_lender_a_sell_beyond_the_position_is_refused() -> None:
    book = Portfolio(cash=D(1000))
    with pytest.raises(ValueError, match="exceeds position"):
        book.apply_fill(_fill(Side.SELL, "1", "10"))


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(1, 20), st.integers(50, 150), st.integers(0, 3)),
        min_size=1,
        max_size=30,
    )
)
def test_the_book_balances_both_ways(trades: list[tuple[bool, int, int, int]]) -> None:
    """Whatever the fills, equity - initial cash = realised + unrealised PnL (fees in the
    realised part), and the position is the sum of the signed fills."""
    book = Portfolio(cash=D(10_000))
    net = 0
    for n, (buy, qty, price, fee) in enumerate(trades):
        side = Side.BUY if buy else Side.SELL
        book.apply_fill(_fill(side, str(qty), str(price), str(fee), n), allow_short=True)
        book.marks["AAA"] = D(price)
        net += qty if buy else -qty
    pos = book.position("AAA")
    assert pos.quantity == net
    unrealised = (book.marks["AAA"] - pos.avg_cost) * pos.quantity
    assert abs(book.equity() - D(10_000) - (pos.realized_pnl + unrealised)) < D("1e-6")


def test_the_risk_gate_counts_a_short_as_exposure_only_where_the_venue_lends() -> None:
    cfg = build_settings({"symbols": {"AAA": {"shortable": True}, "BBB": {}}}, {})
    book = Portfolio(cash=D(100_000))
    sell = Proposal(
        controller="strategy",
        strategy="s",
        intents=[TradeIntent(symbol="AAA", side=Side.SELL, quantity=D(1000), reason="r")],
        rationale="",
        confidence=1.0,
    )
    prices = {"AAA": D(100), "BBB": D(100)}
    verdict = check(sell, book, prices, cfg.risk, cfg.execution, (), cfg.shortable())
    names = {c.name: c for c in verdict.checks}
    assert "long_only:AAA" not in names
    assert not names["position_notional:AAA"].passed  # 100k short over the 50k limit
    other = sell.model_copy(
        update={"intents": [TradeIntent(symbol="BBB", side=Side.SELL, quantity=D(1), reason="r")]}
    )
    verdict = check(other, book, prices, cfg.risk, cfg.execution, (), cfg.shortable())
    assert not {c.name: c for c in verdict.checks}["long_only:BBB"].passed


CROSS: dict[str, Any] = {
    "name": "turn",
    "universe": ["AAA"],
    "entry": {"left": "sma_2", "op": "crosses_above", "right": "sma_4"},
    "exit": {"left": "sma_2", "op": "crosses_below", "right": "sma_4"},
    "position_fraction": 0.5,
}
LIMITS = {"max_order_notional": 1e9, "max_position_notional": 1e9, "daily_loss_limit": 1e9}


def _desk(direction: str, shortable: bool = True) -> TradingDesk:
    cfg = build_settings(
        {
            "symbols": {"AAA": {"shortable": shortable}},
            "strategies": [{**CROSS, "direction": direction}],
            "execution": {"fee_bps": 0, "slippage_bps": 0, "initial_cash": 10_000},
            "risk": LIMITS,
        },
        {},
    )
    return TradingDesk.create(cfg)


def _run(desk: TradingDesk, closes: list[int]) -> list[object]:
    features = FeatureState(desk.settings.features, desk.settings.extra_features("AAA"))
    out: list[object] = []
    prev = closes[0]
    for i, close in enumerate(closes):
        b = bar("AAA", i * MIN, str(close), open=str(prev))
        prev = close
        out.extend(desk.on_bar_event(BarEvent(b, features.update(b), [], None)))
    return out


WAVE = [100, 98, 96, 94, 92, 95, 99, 103, 107, 104, 100, 96, 92, 88, 91, 95, 99, 103, 100, 97]


def _desk_with(spec: dict[str, Any], direction: str) -> TradingDesk:
    cfg = build_settings(
        {
            "symbols": {"AAA": {"shortable": True}},
            "strategies": [{**spec, "direction": direction}],
            "execution": {"fee_bps": 0, "slippage_bps": 0, "initial_cash": 10_000},
            "risk": LIMITS,
        },
        {},
    )
    return TradingDesk.create(cfg)


def _positions(fills: list[Fill]) -> list[Decimal]:
    out, position = [], D(0)
    for f in fills:
        position += f.quantity if f.side is Side.BUY else -f.quantity
        out.append(position)
    return out


def test_a_short_strategy_sells_on_entry_and_buys_back_on_exit() -> None:
    short = {**CROSS, "entry": CROSS["exit"], "exit": CROSS["entry"]}
    fills = of(Fill, _run(_desk_with(short, "short"), WAVE))
    assert len(fills) >= 2
    assert [f.side for f in fills[:2]] == [Side.SELL, Side.BUY]
    assert all(p <= 0 for p in _positions(fills)), "a short strategy never holds a long"
    assert all(a.side != b.side for a, b in itertools.pairwise(fills))


def test_a_both_ways_strategy_turns_from_long_to_short_and_back() -> None:
    fills = of(Fill, _run(_desk("both"), WAVE))
    positions = _positions(fills)
    assert any(p > 0 for p in positions) and any(p < 0 for p in positions)
    # A turn is a close and an open filled at the same open.
    turns = [f.ts_ms for f, g in itertools.pairwise(fills) if f.ts_ms == g.ts_ms]
    assert turns, "at least one turn"
    for ts in turns:
        pair = [f for f in fills if f.ts_ms == ts]
        assert len(pair) == 2 and pair[0].side == pair[1].side


def test_a_short_strategy_needs_a_lender() -> None:
    with pytest.raises(ConfigError, match="short sells short, but the venue does not lend AAA"):
        _desk("short", shortable=False)


def test_a_short_stop_is_above_the_entry() -> None:
    never = {"left": "sma_2", "op": ">", "right": 1e9}
    spec = {**CROSS, "entry": CROSS["exit"], "exit": never, "stop_loss_pct": 0.05}
    desk = _desk_with(spec, "short")
    out = _run(desk, [100, 102, 104, 106, 104, 100, 96, 92, 95, 99, 103, 107, 111])
    fills = of(Fill, out)
    assert [f.side for f in fills] == [Side.SELL, Side.BUY]
    reasons = [o.reason for o in of(Order, out) if o.side is Side.BUY]
    assert reasons and all("stop_loss short" in r and ">= stop" in r for r in reasons)
    entry_price = fills[0].price
    assert fills[1].price > entry_price, "a short stops out on a rise"
