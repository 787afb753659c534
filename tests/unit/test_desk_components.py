"""The desk's components, each on its own: decision book, strategy book, GPT session, fill
ledger, reconciliation and the venues. The desk's own tests (test_desk*.py, test_gpt_desk.py)
check them wired together; these pin each one's rules."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.core.ids import client_order_id
from models.core.messages import (
    Branch,
    DecisionRecord,
    DecisionStatus,
    Fill,
    GptCall,
    GptOutcome,
    Order,
    OrderStatus,
    Side,
    StrategyStatus,
)
from models.desk.decision_book import CLOSED_KEPT, DecisionBook
from models.desk.fill_ledger import KEPT, FillLedger
from models.desk.gpt_session import GptSession, PendingGpt
from models.desk.strategy_book import StrategyBook
from models.execution.reports import ExchangeState
from models.execution.sim_venue import SimulatedExchange, with_status
from models.execution.venue import ExchangeVenue, Venue
from models.gpt.decider import Question
from models.portfolio.book import Portfolio
from models.portfolio.reconcile import reconcile
from models.strategy.compiler import CompiledDecision, compile_decision
from models.strategy.spec import GptDecision
from tests.support.gpt import T0, decision, ev, make_settings

D = Decimal
MIN = 60_000


def order(decision_id: str, i: int = 0, side: Side = Side.BUY, qty: str = "1") -> Order:
    return Order(
        client_order_id=client_order_id(decision_id, i),
        decision_id=decision_id,
        symbol="ABC",
        side=side,
        quantity=D(qty),
        status=OrderStatus.PENDING,
        placed_ms=T0,
        updated_ms=T0,
        reason="r",
    )


def record(decision_id: str, *orders: Order) -> DecisionRecord:
    e = ev(0)
    return DecisionRecord(
        decision_id=decision_id,
        ts_ms=e.bar.end_ms,
        symbol="ABC",
        branch=Branch.ROUTINE,
        triggers=[],
        features=e.features,
        rounds=[],
        status=DecisionStatus.EXECUTED,
        orders=list(orders),
        portfolio_before={},
        note="n",
    )


def fill(o: Order, n: int = 1, qty: str | None = None) -> Fill:
    return Fill(
        fill_id=f"{o.client_order_id}-{n}",
        client_order_id=o.client_order_id,
        decision_id=o.decision_id,
        symbol=o.symbol,
        side=o.side,
        quantity=D(qty) if qty else o.quantity,
        price=D(100),
        fee=D(0),
        ts_ms=T0,
    )


# ------------------------------------------------------------------------ decision book


def test_a_decision_stays_open_until_every_order_is_settled() -> None:
    book = DecisionBook()
    a, b = order("d", 0), order("d", 1)
    rec = record("d", a, b)
    book.taken(rec)
    assert book.made == 1 and "d" in book.open and book.pending_orders() == [a, b]
    rec = book.update(rec, with_status(a, OrderStatus.FILLED, T0), [fill(a)])
    assert rec.version == 2 and "d" in book.open and book.pending_orders() == [b]
    rec = book.update(rec, with_status(b, OrderStatus.FILLED, T0), [fill(b)])
    assert rec.version == 3 and book.open == {} and book.closed == {}
    assert len(rec.fills) == 2


def test_a_later_version_of_a_decision_does_not_count_as_a_new_decision() -> None:
    book = DecisionBook()
    book.taken(record("d"))
    book.taken(record("d").model_copy(update={"version": 2}))
    assert book.made == 1 and book.open == {}  # no orders: never open


@given(st.lists(st.tuples(st.sampled_from([Side.BUY, Side.SELL]), st.integers(1, 9)), max_size=6))
def test_in_flight_is_the_net_of_pending_orders(orders: list[tuple[Side, int]]) -> None:
    book = DecisionBook()
    for i, (side, q) in enumerate(orders):
        book.taken(record(f"d{i}", order(f"d{i}", side=side, qty=str(q))))
    want = sum((D(q) if s is Side.BUY else -D(q) for s, q in orders), D(0))
    assert book.in_flight("ABC") == want and book.in_flight("XYZ") == 0


def test_the_exchange_venue_keeps_settled_unfilled_decisions_for_late_reports() -> None:
    book = DecisionBook(venue="exchange")
    for i in range(CLOSED_KEPT + 5):
        o = order(f"d{i}")
        rec = record(f"d{i}", o)
        book.taken(rec)
        book.update(rec, with_status(o, OrderStatus.REJECTED, T0), [])
    assert len(book.closed) == CLOSED_KEPT and "d0" not in book.closed  # newest kept
    last = f"d{CLOSED_KEPT + 4}"
    found, held = book.order_of(last, client_order_id(last, 0))
    assert found is not None and held is not None and held.status is OrderStatus.REJECTED
    sim = DecisionBook(venue="sim")
    o = order("s")
    sim.taken(record("s", o))
    sim.update(record("s", o), with_status(o, OrderStatus.REJECTED, T0), [])
    assert sim.closed == {}  # the simulated venue never reports again


# ------------------------------------------------------------------------ strategy book


def compiled(action: str = "create", **spec: Any) -> CompiledDecision:
    result = compile_decision(GptDecision.model_validate(decision(action, **spec)), {"ABC", "XYZ"})
    assert isinstance(result, CompiledDecision), result
    return result


def test_a_new_strategy_replaces_what_ran_on_its_universe() -> None:
    book = StrategyBook()
    first = book.activate(compiled(universe=["ABC"]), "d1", "ABC", T0, D(1000))
    assert [r.status for r in first] == [StrategyStatus.ACTIVE]
    again = book.activate(compiled(universe=["ABC"]), "d2", "ABC", T0 + MIN, D(1000))
    assert again == [] and book.get("ABC") is not None  # same strategy: keeps running
    assert book.strategies["ABC"].activation_id == "d1"
    other = book.activate(
        compiled(universe=["ABC", "XYZ"], name="pair"), "d3", "ABC", T0 + 2 * MIN, D(1000)
    )
    assert [r.status for r in other] == [StrategyStatus.REPLACED, StrategyStatus.ACTIVE]
    assert book.strategies["ABC"] is book.strategies["XYZ"]


def test_hold_changes_nothing_and_derisk_without_a_strategy_retires() -> None:
    book = StrategyBook()
    book.activate(compiled(), "d1", "ABC", T0, D(1000))
    assert book.activate(compiled("hold"), "d2", "ABC", T0, D(1000)) == []
    derisk = CompiledDecision(action="derisk", strategy=None, rationale="r", confidence=0.5)
    (ended,) = book.activate(derisk, "d3", "ABC", T0, D(1000))
    assert ended.status is StrategyStatus.RETIRED and book.get("ABC") is None


def test_a_strategy_expires_after_its_horizon_of_bars() -> None:
    book = StrategyBook()
    book.activate(compiled(horizon_bars=2), "d1", "ABC", T0, D(1000))
    folio = Portfolio(cash=D(1000))
    ended: list[Any] = []
    for i in range(3):
        owned, _ = book.on_bar(ev(i, "100", rsi=65.0), folio, D(0), D(1), ended)
    assert [r.status for r in ended] == [StrategyStatus.EXPIRED] and not owned
    assert book.get("ABC") is None


def test_only_the_owning_strategy_is_credited_with_a_fill() -> None:
    book = StrategyBook()
    book.activate(compiled(), "d1", "ABC", T0, D(1000))
    active = book.strategies["ABC"]
    o = order("mine", side=Side.SELL)
    book.own("mine", active)
    book.credit(fill(o), D(90), D(1))  # a sell closes a trade: 10 profit on 1
    book.credit(fill(order("other", side=Side.SELL)), D(90), D(1))
    assert active.trades == 1 and active.realized == D(10)
    book.settled("mine")
    book.credit(fill(o, 2), D(90), D(2))
    assert active.trades == 1


# ------------------------------------------------------------------------ GPT session


def session(tmp: Path, **gpt: Any) -> GptSession:
    return GptSession.create(make_settings(tmp, gpt=gpt), ask=True)


def pending_at(s: GptSession, i: int) -> PendingGpt:
    e = ev(i)
    q = Question((), None)
    return PendingGpt(e, f"ABC@{e.bar.end_ms}", s.request("d", "ABC", 0, e.bar.end_ms, q), q)


def test_cooldown_and_timeout_follow_event_time(tmp_path: Path) -> None:
    s = session(tmp_path, cooldown="5m", max_wait="2m")
    s.asked(pending_at(s, 0))
    end = T0 + MIN
    assert s.cooling_down("ABC", end + 4 * MIN) and not s.cooling_down("ABC", end + 5 * MIN)
    assert s.timed_out("ABC", end + 2 * MIN) is None
    assert s.timed_out("ABC", end + 2 * MIN + 1) is not None
    assert not s.cooling_down("XYZ", end)


def test_safe_local_symbols_are_not_asked_about(tmp_path: Path) -> None:
    s = session(tmp_path)
    assert s.asks_about("ABC")
    s.local_only.add("ABC")
    assert not s.asks_about("ABC") and s.asks_about("XYZ")
    assert not GptSession.create(s.settings, ask=False).asks_about("XYZ")


def test_the_budget_is_checked_in_one_place_with_one_alert_per_day(tmp_path: Path) -> None:
    s = session(tmp_path, daily_budget_usd="0.05", cost_estimate_usd="0.02")
    assert s.affordable(T0, 2) == (True, None)
    ok, alert = s.affordable(T0, 3)
    assert not ok and alert is not None and alert.source == "gpt"
    assert s.affordable(T0, 3) == (False, None)  # the day's alert was raised already
    replay = session(tmp_path, daily_budget_usd="0", cache_mode="replay")
    assert replay.affordable(T0, 100) == (True, None)  # recorded answers cost nothing


def test_money_really_spent_counts_and_alerts_when_it_crosses_the_cap(tmp_path: Path) -> None:
    s = session(tmp_path, daily_budget_usd="1")
    call = GptCall(
        call_id="c", ts_ms=T0, decision_id="d", round=0, symbol="ABC", model="m",
        prompt_hash="h", outcome=GptOutcome.OK, cost=D("0.6"),
    )  # fmt: skip
    assert s.billed(call) is None
    assert s.billed(call.model_copy(update={"call_id": "c2"})) is not None


# ------------------------------------------------------------------------ fill ledger


def test_the_ledger_remembers_a_bounded_newest_set() -> None:
    ledger = FillLedger()
    for i in range(KEPT + 3):
        ledger.fell_back(f"o{i}")
        ledger.gave_up(f"o{i}", f"d{i}")
    assert len(ledger.fallen_back) == KEPT and "o0" not in ledger.fallen_back
    assert len(ledger.given_up) == KEPT and ledger.given_up[f"o{KEPT + 2}"] == f"d{KEPT + 2}"


# ------------------------------------------------------------------------ reconciliation


def test_reconcile_adopts_the_exchanges_balances_and_names_strange_orders(tmp_path: Path) -> None:
    cfg = make_settings(tmp_path, execution={"currency": "USDT"})
    cfg = cfg.model_copy(update={"symbols": {"BTC/USDT": cfg.symbols["ABC"]}})
    folio = Portfolio(cash=D(1000))
    state = ExchangeState(
        balances={"USDT": D(900), "BTC": D("0.5")},
        free={"USDT": D(900), "BTC": D("0.5")},
        prices={"BTC/USDT": D(20000)},
        open_orders=[{"clientOrderId": "mine"}, {"clientOrderId": "x", "id": "7"}],
    )
    alerts = reconcile(folio, state, cfg, ["mine"], T0)
    assert folio.cash == D(900) and folio.quantity("BTC/USDT") == D("0.5")
    assert folio.position("BTC/USDT").avg_cost == D(20000)  # no made-up profit
    assert len(alerts) == 2 and "1 open order(s)" in alerts[1].message and "x" in alerts[1].message
    assert reconcile(folio, state, cfg, ["mine", "x"], T0 + 1) == []


# ------------------------------------------------------------------------ venues


@pytest.mark.parametrize("venue", ["sim", "exchange"])
def test_both_venues_refuse_a_client_order_id_twice(tmp_path: Path, venue: str) -> None:
    execution = make_settings(tmp_path).execution
    v: Venue = SimulatedExchange(execution) if venue == "sim" else ExchangeVenue(execution)
    o = order("d")
    assert v.accept(o) and not v.accept(o)
    later = ev(1).bar.model_copy(update={"start_ms": T0 + 10 * MIN, "end_ms": T0 + 11 * MIN})
    reports = v.on_bar(later)
    assert len(reports) == (1 if venue == "sim" else 0)  # a real exchange's come from its executor
    for report in reports:  # the simulated venue fills the whole order at the bar's open
        assert report.filled == o.quantity == sum(f.quantity for f in report.fills)
        assert report.average_price == later.open and report.ts_ms == later.start_ms
