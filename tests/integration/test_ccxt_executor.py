"""The order executor through the real ccxt.binance client and the project's exchange emulator:
each fault alone, then 1,000 orders of the desk under random faults (zero duplicate orders, the
desk's ledger equals the exchange's balances, every failed order has an alert and a fallback
entry in the decision log)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.exchange.ccxt_executor import RESOLVE_LOOKUPS, CcxtExecutor, classify
from connectors.exchange.gateway import ExecutionGateway
from connectors.sim.exchange_emulator import ExchangeEmulator, Fault, FaultKind, LookupLag
from dataflows.adapters import DeskLogic
from models.config.settings import Settings
from models.core.events import BarEvent
from models.core.messages import (
    Alert,
    Branch,
    DecisionRecord,
    Direction,
    Fill,
    Order,
    OrderStatus,
    Side,
)
from models.desk.desk import TradingDesk
from models.execution.reports import ErrorKind, ExecStatus
from models.sim.matching import EngineConfig
from tests.support import builders as build

D = Decimal
POST = "POST /api/v3/order"
GET = "GET /api/v3/order"


def order(n: int = 0, side: Side = Side.BUY, qty: str = "0.01") -> Order:
    return build.order(
        f"sf-test-{n:06d}", f"BTC/USDT@{n}", "BTC/USDT", side=side, quantity=qty, placed_ms=n
    )


def engine_orders(ex: ExchangeEmulator, client_id: str) -> list[Any]:
    with ex.lock:
        return [
            o
            for o in ex.engine.all_orders("BTCUSDT", limit=100_000)
            if o.client_order_id == client_id
        ]


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class Clock:
    """The executor's clock, moved only by its sleeps (no test waits for real time)."""

    def __init__(self, start_ms: int | None = None) -> None:
        self.now = time.time_ns() // 1_000_000 if start_ms is None else start_ms
        self.sleeps: list[float] = []

    def __call__(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += round(seconds * 1000)


def executor_on(ex: ExchangeEmulator, clock: Clock | None = None, **kw: Any) -> CcxtExecutor:
    clock = clock or Clock()
    return CcxtExecutor(ex.client(**kw), sleep=clock.sleep, clock_ms=clock)


def test_a_clean_market_order_is_filled_with_the_exchange_figures(
    exchange_emulator: ExchangeEmulator,
) -> None:
    report = CcxtExecutor(exchange_emulator.client()).execute(order())
    assert report.status is ExecStatus.FILLED and report.attempts == 1 and not report.reconciled
    assert report.filled == D("0.01") and report.fills
    with exchange_emulator.lock:
        trades = exchange_emulator.engine.my_trades("BTCUSDT")
    assert sorted(f.price for f in report.fills) == sorted(t.price for t in trades)
    assert sum(f.fee for f in report.fills) == sum(t.commission for t in trades)
    assert len(engine_orders(exchange_emulator, "sf-test-000000")) == 1


@pytest.mark.parametrize(
    "fault",
    [
        Fault.server_error(503),
        Fault.server_error(504),
        Fault.drop(),
        Fault.server_error(500, -1001),
    ],
)
def test_a_transient_failure_is_reconciled_then_retried_once(
    exchange_emulator: ExchangeEmulator, fault: Fault
) -> None:
    """The create may have been executed (Binance: a 5xx or a dropped answer leaves the
    execution status unknown): the retry goes out only once lookups have proved the order
    absent, i.e. a "does not exist" came `absent_after_ms` after the create was sent."""
    exchange_emulator.script(POST, fault)
    clock = Clock()
    executor = executor_on(exchange_emulator, clock)
    start = clock()
    report = executor.execute(order())
    assert report.status is ExecStatus.FILLED and report.attempts == 2
    assert len(engine_orders(exchange_emulator, "sf-test-000000")) == 1
    kinds = [r.endpoint for r in exchange_emulator.requests if r.endpoint in (GET, POST)]
    assert kinds[0] == POST and kinds[-1] == POST and set(kinds[1:-1]) == {GET}
    assert clock() - start >= executor.absent_after_ms  # it looked until sure, then retried


def test_a_timeout_is_retried(exchange_emulator: ExchangeEmulator) -> None:
    exchange_emulator.script(POST, Fault.timeout(1.0))
    report = executor_on(exchange_emulator, timeout_ms=300).execute(order())
    assert report.status is ExecStatus.FILLED and report.attempts == 2


def test_rate_limit_waits_for_retry_after(exchange_emulator: ExchangeEmulator) -> None:
    exchange_emulator.script(POST, Fault.rate_limited(2))
    sleeps = Sleeps()
    report = CcxtExecutor(exchange_emulator.client(), sleep=sleeps).execute(order())
    assert report.status is ExecStatus.FILLED and report.attempts == 2
    assert sleeps == [2.0]


def test_a_lost_response_is_adopted_not_sent_again(exchange_emulator: ExchangeEmulator) -> None:
    exchange_emulator.script(POST, Fault.lost_response())
    report = CcxtExecutor(exchange_emulator.client()).execute(order())
    assert report.status is ExecStatus.FILLED and report.reconciled and report.attempts == 1
    assert len([r for r in exchange_emulator.requests if r.endpoint == POST]) == 1
    assert len(engine_orders(exchange_emulator, "sf-test-000000")) == 1
    assert report.fills and report.filled == D("0.01")


def test_insufficient_funds_is_not_retried(exchange_emulator: ExchangeEmulator) -> None:
    exchange_emulator.script(POST, Fault.insufficient_funds())
    report = CcxtExecutor(exchange_emulator.client()).execute(order())
    assert report.status is ExecStatus.REJECTED and report.attempts == 1
    assert "InsufficientFunds" in report.error
    assert len([r for r in exchange_emulator.requests if r.endpoint == POST]) == 1


def test_two_failures_give_up_without_an_order(exchange_emulator: ExchangeEmulator) -> None:
    exchange_emulator.script(POST, Fault.server_error(503), Fault.server_error(503))
    exchange_emulator.script(GET, Fault.server_error(503))  # even the lookup fails once
    report = executor_on(exchange_emulator).execute(order())
    assert report.status is ExecStatus.FAILED and report.attempts == 2 and report.error
    assert engine_orders(exchange_emulator, "sf-test-000000") == []


def test_a_resent_order_is_found_not_duplicated(exchange_emulator: ExchangeEmulator) -> None:
    executor = executor_on(exchange_emulator)
    first = executor.execute(order())
    # A restart sends the unreported order again, as a resend: on Binance a second create
    # of a filled order's id would be a second order.
    again = executor.execute(order(), resend=True)
    assert again.status is ExecStatus.FILLED and again.reconciled

    def key(f: Any) -> tuple[Any, ...]:
        return (f.fill_id, f.quantity, f.price, f.fee)

    # The same fills (same ids: the desk applies them once), read back from the exchange.
    assert [key(f) for f in again.fills] == [key(f) for f in first.fills]
    assert len(engine_orders(exchange_emulator, "sf-test-000000")) == 1


def test_duplicate_message_is_classified_as_duplicate() -> None:
    import ccxt

    assert classify(ccxt.InvalidOrder("binance Duplicate order sent.")) is ErrorKind.DUPLICATE
    assert classify(ccxt.InsufficientFunds("no")) is ErrorKind.PERMANENT
    assert classify(ccxt.ExchangeError("-1008 overloaded")) is ErrorKind.TRANSIENT


# ------------------------------------------------- Binance's rules: lagging lookups, reused ids


def lagging(lookups: int) -> ExchangeEmulator:
    """An emulator whose lookups say "does not exist" for the first `lookups` lookups of a
    fresh order (Binance's eventual consistency), with Binance's client order id rule."""
    return ExchangeEmulator(
        ["BTC/USDT"],
        prices={"BTC/USDT": "60000"},
        balances={"USDT": "100000"},
        lookup_lag=LookupLag(lookups=lookups),
    )


@pytest.mark.parametrize("lag", [1, 3, 8])
@pytest.mark.parametrize(
    "fault",
    [Fault.lost_response(), Fault.server_error(503), Fault.rewrite(lambda _d: {})],
    ids=["lost", "503-html", "empty-200"],
)
def test_does_not_exist_after_a_lost_answer_never_creates_again(lag: int, fault: Fault) -> None:
    """Binance answers -2013 for a while after a create and accepts a filled order's id
    again: a create after one "does not exist" was a second order (issue 9, item 12). The
    order is looked up until the exchange shows it; it is never created twice."""
    with lagging(lag) as ex:
        if fault.kind is not FaultKind.SERVER_ERROR:
            ex.script(POST, fault)
        else:  # a 5xx that was executed all the same (Binance: status unknown)
            ex.script(POST, Fault.lost_response())
        report = executor_on(ex).execute(order())
        assert len(engine_orders(ex, "sf-test-000000")) == 1
        assert report.status is ExecStatus.FILLED and report.reconciled
        assert report.filled == D("0.01") and report.attempts == 1
        assert len([r for r in ex.requests if r.endpoint == POST]) == 1


def test_an_order_the_exchange_cannot_place_is_unknown_until_it_is_known() -> None:
    """No lookup answers (the exchange is down for lookups): the order is `unknown`, never
    created again; the flow's re-send (resend=True) then finds it."""
    with lagging(0) as ex:
        ex.script(POST, Fault.lost_response())
        ex.script(GET, *[Fault.server_error(503) for _ in range(RESOLVE_LOOKUPS)])
        clock = Clock()
        executor = executor_on(ex, clock)
        report = executor.execute(order())
        assert report.status is ExecStatus.UNKNOWN and "looked up again" in report.error
        assert len([r for r in ex.requests if r.endpoint == POST]) == 1
        again = executor.execute(order(), resend=True)
        assert again.status is ExecStatus.FILLED and again.reconciled
        assert len(engine_orders(ex, "sf-test-000000")) == 1


def test_a_resend_after_a_restart_waits_for_proof_before_creating() -> None:
    """A new executor (a restart) does not know when the order was last sent: it counts
    from its own start, so a lagging "does not exist" right after a restart proves nothing."""
    with lagging(5) as ex:
        ex.client().create_order(
            "BTC/USDT", "market", "buy", 0.01, None, {"clientOrderId": "sf-test-000000"}
        )  # sent by the process that crashed before its answer was booked
        report = executor_on(ex).execute(order(), resend=True)
        assert report.status is ExecStatus.FILLED and report.reconciled
        assert len(engine_orders(ex, "sf-test-000000")) == 1


def test_a_refused_create_is_not_looked_up_for_proof() -> None:
    """A rate limit certainly did not reach the matching engine: retry once after its
    Retry-After, no lookups needed; twice limited: failed, alert and fallback."""
    with lagging(3) as ex:
        ex.script(POST, Fault.rate_limited(1), Fault.rate_limited(1))
        clock = Clock()
        report = executor_on(ex, clock).execute(order())
        assert report.status is ExecStatus.FAILED and report.attempts == 2
        assert clock.sleeps == [1.0]
        assert not [r for r in ex.requests if r.endpoint == GET]


JSON_LEAF = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=6,
)
NOT_AN_ID = (
    st.none()
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
    | st.sampled_from(["", "a b", "1\n2", True, 1.5])
)
NOT_A_STATUS = st.none() | st.integers() | st.lists(st.text(max_size=3), max_size=2) | st.just("")


@st.composite
def junk_answer(draw: st.DrawFn) -> Callable[[Any], Any]:
    """A 200 answer to a create that is not an order report: any other JSON shape, or the
    real answer with its order id or status missing or of the wrong type."""
    kind = draw(st.sampled_from(["shape", "no-id", "bad-id", "no-status", "bad-status"]))
    if kind == "shape":
        doc = draw(
            JSON.filter(lambda d: not (isinstance(d, dict) and {"orderId", "status"} <= set(d)))
        )
        return lambda _real: doc
    value = draw(NOT_AN_ID if kind == "bad-id" else NOT_A_STATUS)
    key = "orderId" if "id" in kind else "status"

    def edit(real: dict[str, Any]) -> dict[str, Any]:
        if kind.startswith("no-"):
            real.pop(key, None)
        else:
            real[key] = value
        return real

    return edit


def test_a_200_answer_of_the_wrong_shape_is_looked_up_not_booked() -> None:
    """Issue 9, item 13: `[...]`, `{}`, `null`, `"FILLED"` or an answer without an order
    id or status was booked as open with nothing filled. Whatever the shape, the order
    may exist: it is looked up at once and booked as the exchange has it."""
    with lagging(2) as ex:
        n = iter(range(10_000))

        @settings(max_examples=40, deadline=None)
        @given(junk_answer())
        def check(edit: Callable[[Any], Any]) -> None:
            o = order(next(n))
            ex.script(POST, Fault.rewrite(edit))
            report = executor_on(ex).execute(o)
            assert report.status is ExecStatus.FILLED and report.reconciled, report.error
            placed = engine_orders(ex, o.client_order_id)
            assert len(placed) == 1 and report.filled == placed[0].executed_qty
            assert sum(f.quantity for f in report.fills) == D("0.01")

        check()
        ex.script(POST, Fault.rewrite(lambda _d: None))  # JSON null: ccxt raises TypeError
        report = executor_on(ex).execute(order(20_000))
        assert report.status is ExecStatus.FILLED and report.reconciled
        # A lookup answered with junk tells nothing either: looked up again, never booked.
        ex.script(POST, Fault.lost_response())
        ex.script(GET, *[Fault.rewrite(lambda _d: {}) for _ in range(3)])
        report = executor_on(ex).execute(order(20_001))
        assert report.status is ExecStatus.FILLED and report.reconciled
        assert len(engine_orders(ex, "sf-test-020001")) == 1


# --------------------------------------------------------------------------- the soak test


def bar_event(i: int, price: D, direction: Direction) -> BarEvent:
    bar = build.bar("BTC/USDT", i * 60_000, price)
    signal = build.signal("BTC/USDT", bar.end_ms, "soak", direction=direction)
    return build.bar_event(bar, [signal], Branch.ROUTINE)


@pytest.mark.slow
def test_a_thousand_orders_under_random_faults(tmp_path: Any) -> None:
    settings = Settings.model_validate(
        {
            "symbols": {"BTC/USDT": {"lot_size": "0.0001"}},
            "execution": {
                "initial_cash": "100000",
                "currency": "USDT",
                "fee_bps": "10",
                "fallback": "cancel_open",
            },
            "strategy": {"controller": "local", "target_fraction": "0.05"},
            "risk": {"daily_loss_limit": "1000000"},
        }
    )
    # Binance's rules: a client order id is refused only while its order is open, and a
    # fresh order is "does not exist" to its first lookups (issue 9, item 12).
    with ExchangeEmulator(
        ["BTC/USDT"],
        prices={"BTC/USDT": "60000"},
        balances={"USDT": "100000"},
        lookup_lag=LookupLag(lookups=3),
    ) as ex:
        executor = executor_on(ex, timeout_ms=2_000)
        gateway = ExecutionGateway(executor)
        logic = DeskLogic(settings, frozenset({"m#0"}), None, None, True, gateway)
        ex.chaos(seed=7, probability=0.2)
        out: list[Any] = []
        price = D(60000)
        i = 0
        while sum(1 for x in out if isinstance(x, Order) and x.version == 1) < 1000:
            price = price * (D("1.002") if i % 3 else D("0.997"))
            ex.set_price("BTC/USDT", price.quantize(D("0.01")))
            direction = Direction.LONG if i % 2 == 0 else Direction.FLAT
            items, _ = logic.on_batch([bar_event(i, price.quantize(D("0.01")), direction)])
            out.extend(items)
            i += 1
            assert i < 5000, "the desk stopped placing orders"
        ex.calm()
        for _ in range(3):  # orders whose state the exchange could not tell are looked up again
            if not logic.desk.unreported_orders():
                break
            items, _ = logic.on_batch([])
            out.extend(items)
        assert logic.desk.unreported_orders() == []
        gateway.close()
        with ex.lock:
            engine_orders_all = ex.engine.all_orders("BTCUSDT", limit=1_000_000)
            balances = ex.engine.balances()

    placed = [x for x in out if isinstance(x, Order) and x.version == 1]
    finals = {x.client_order_id: x for x in out if isinstance(x, Order) and x.version > 1}
    assert len(placed) >= 1000
    # Zero duplicates: one exchange order per client order id, and none the desk did not place.
    ids = [o.client_order_id for o in engine_orders_all]
    twice = sorted(cid for cid, n in Counter(ids).items() if n > 1)
    assert twice == [], f"{len(twice)} desk orders made more than one exchange order"
    assert set(ids) <= {o.client_order_id for o in placed}
    # Every order got an answer; the failed ones are not on the exchange.
    assert set(finals) == {o.client_order_id for o in placed}
    failed = [o for o in finals.values() if o.status is OrderStatus.REJECTED]
    assert failed, "the chaos should have made some orders fail"
    assert not set(o.client_order_id for o in failed) & set(ids)
    # The ledger equals the exchange.
    desk = logic.desk
    assert desk.portfolio.cash == balances["USDT"].total
    assert desk.portfolio.quantity("BTC/USDT") == balances.get("BTC", None).total
    # Every failed order has a critical alert and a fallback entry in the decision log.
    alerts = {a.message.split()[1] for a in out if isinstance(a, Alert) and a.source == "executor"}
    newest: dict[str, DecisionRecord] = {}
    for r in (x for x in out if isinstance(x, DecisionRecord)):
        newest[r.decision_id] = r
    for o in failed:
        assert o.client_order_id in alerts
        note = newest[o.decision_id].note
        assert o.client_order_id in note and "fallback: cancel_open" in note


def test_start_reconciles_the_book_with_the_exchange() -> None:
    settings = Settings.model_validate(
        {
            "symbols": {"BTC/USDT": {"lot_size": "0.0001"}},
            "execution": {"initial_cash": "100000", "currency": "USDT"},
            "strategy": {"controller": "local"},
        }
    )
    with ExchangeEmulator(
        ["BTC/USDT"], prices={"BTC/USDT": "60000"}, balances={"USDT": "50000", "BTC": "0.5"}
    ) as ex:
        ex.client().create_order(
            "BTC/USDT", "limit", "buy", 0.01, 50000, {"clientOrderId": "by-hand-1"}
        )
        gateway = ExecutionGateway(CcxtExecutor(ex.client()))
        logic = DeskLogic(settings, frozenset({"m#0"}), None, None, True, gateway)
        out, _ = logic.on_batch([])
        gateway.close()
    alerts = [a.message for a in out if isinstance(a, Alert)]
    assert any("cash 100000 -> 50000" in m and "BTC/USDT 0 -> 0.5" in m for m in alerts), alerts
    assert any("did not place: by-hand-1" in m for m in alerts), alerts
    assert logic.desk.portfolio.cash == D("50000")  # total: 500 of it locked by the open buy
    assert logic.desk.portfolio.quantity("BTC/USDT") == D("0.5")
    # Adopted at the exchange's last price (its cost is unknown), not at 0: no made-up profit.
    position = logic.desk.portfolio.position("BTC/USDT")
    assert D(59_000) < position.avg_cost < D(61_000)
    assert logic.desk.portfolio.marks["BTC/USDT"] == position.avg_cost


def test_live_desk_rechecks_the_book_against_the_exchange() -> None:
    settings = Settings.model_validate(
        {
            "symbols": {"BTC/USDT": {"lot_size": "0.0001"}},
            "execution": {
                "initial_cash": "100000",
                "currency": "USDT",
                "reconcile_every": "200ms",
            },
            "strategy": {"controller": "local"},
        }
    )
    with ExchangeEmulator(
        ["BTC/USDT"], prices={"BTC/USDT": "60000"}, balances={"USDT": "100000"}
    ) as ex:
        gateway = ExecutionGateway(CcxtExecutor(ex.client()))
        logic = DeskLogic(settings, frozenset({"m#0"}), None, None, False, gateway)
        out, _ = logic.on_batch([])
        assert not [a for a in out if isinstance(a, Alert)]  # the book matched at start
        ex.deposit("USDT", "250")  # money arrives from outside the pipeline
        deadline = time.monotonic() + 5
        alerts: list[Alert] = []
        while not alerts and time.monotonic() < deadline:
            time.sleep(0.05)
            assert logic.notify_at() is not None  # the flow comes back for the next check
            got, _ = logic.on_notify()
            alerts = [a for a in got if isinstance(a, Alert)]
        gateway.close()
    assert alerts and "cash 100000 -> 100250" in alerts[0].message
    assert logic.desk.portfolio.cash == D("100250")
    assert logic.desk.portfolio.daily_pnl() == 0  # a deposit is not a profit


def test_a_resend_looks_up_first_and_never_creates_again(
    exchange_emulator: ExchangeEmulator,
) -> None:
    executor = executor_on(exchange_emulator)
    executor.execute(order())
    posts = len([r for r in exchange_emulator.requests if r.endpoint == POST])
    again = executor.execute(order(), resend=True)  # Binance would accept a closed order's id
    assert again.status is ExecStatus.FILLED and again.reconciled
    assert len([r for r in exchange_emulator.requests if r.endpoint == POST]) == posts
    fresh = executor.execute(order(1), resend=True)  # never placed: created after the lookup
    assert fresh.status is ExecStatus.FILLED and not fresh.reconciled


def test_an_order_the_exchange_left_open_is_polled_until_it_fills() -> None:
    """An accepted order that has not filled (reported `open`) is looked up again at every
    `execution.reconcile_every` while the flow runs, so its later fills reach the book."""
    settings = Settings.model_validate(
        {
            "symbols": {"BTC/USDT": {"lot_size": "0.0001"}},
            "execution": {
                "initial_cash": "100000",
                "currency": "USDT",
                "reconcile_every": "200ms",
            },
            "strategy": {"controller": "local", "target_fraction": "0.05"},
        }
    )
    event = bar_event(0, D(60000), Direction.LONG)
    # The order the desk will place (ids and sizes are deterministic): the exchange already
    # holds a resting limit order under that id, so the desk's create is a duplicate that is
    # adopted as the open order it finds.
    (expected,) = [
        o for o in TradingDesk.create(settings).on_bar_event(event) if isinstance(o, Order)
    ]
    with ExchangeEmulator(
        ["BTC/USDT"], prices={"BTC/USDT": "60000"}, balances={"USDT": "100000"}
    ) as ex:
        gateway = ExecutionGateway(CcxtExecutor(ex.client()))
        logic = DeskLogic(settings, frozenset({"m#0"}), None, None, False, gateway)
        logic.on_batch([])
        resting = {"clientOrderId": expected.client_order_id}
        ex.client().create_order(
            "BTC/USDT", "limit", "buy", float(expected.quantity), 59000, resting
        )
        out, _ = logic.on_batch([event])
        assert [o.client_order_id for o in out if isinstance(o, Order)] == [
            expected.client_order_id
        ]
        deadline = time.monotonic() + 5
        while gateway.in_flight and time.monotonic() < deadline:
            time.sleep(0.02)
        got, _ = logic.on_notify()
        assert not [f for f in got if isinstance(f, Fill)]
        assert logic.desk.unreported_orders(), "the adopted order is open, not filled"
        assert logic.desk.portfolio.quantity("BTC/USDT") == 0
        ex.set_price("BTC/USDT", D(58900))  # the market comes down through the resting buy
        fills: list[Any] = []
        while not fills and time.monotonic() < deadline + 5:
            time.sleep(0.05)
            more, _ = logic.on_notify()
            fills = [f for f in more if isinstance(f, Fill)]
        gateway.close()
        with ex.lock:
            balances = ex.engine.balances()
    assert fills and sum(f.quantity for f in fills) == expected.quantity
    assert logic.desk.unreported_orders() == []
    assert logic.desk.portfolio.quantity("BTC/USDT") == balances["BTC"].total
    assert logic.desk.portfolio.cash == balances["USDT"].total


def test_a_commission_in_the_base_asset_keeps_the_book_equal_to_the_exchange() -> None:
    """Binance takes a buy's commission from the base asset it delivers: the book receives
    the quantity less the fee (valued in quote as its fee), sells whole lots only, and its cash
    and quantity stay equal to the exchange's balances through a run of buys and sells."""
    settings = Settings.model_validate(
        {
            "symbols": {"BTC/USDT": {"lot_size": "0.0001"}},
            "execution": {"initial_cash": "100000", "currency": "USDT", "fee_bps": "10"},
            "strategy": {"controller": "local", "target_fraction": "0.05"},
            "risk": {"daily_loss_limit": "1000000"},
        }
    )
    config = EngineConfig(fee_in_received_asset=True)
    with ExchangeEmulator(
        ["BTC/USDT"], prices={"BTC/USDT": "60000"}, balances={"USDT": "100000"}, config=config
    ) as ex:
        executor = CcxtExecutor(ex.client())
        buy = executor.execute(order(qty="0.01"))
        assert buy.status is ExecStatus.FILLED and buy.filled == D("0.01")
        (trade,) = buy.fills
        fee_btc = D("0.01") * D("0.001")  # 10 bps of the quantity, in BTC
        assert trade.quantity == D("0.01") - fee_btc
        assert trade.fee == fee_btc * trade.price
        with ex.lock:
            assert ex.engine.balances()["BTC"].total == trade.quantity
        # The desk through a run of entries and exits on the same exchange.
        gateway = ExecutionGateway(CcxtExecutor(ex.client()))
        logic = DeskLogic(settings, frozenset({"m#0"}), None, None, True, gateway)
        start = [a.message for a in logic.on_batch([])[0] if isinstance(a, Alert)]
        assert start == [
            "book reconciled with the exchange: cash 100000 -> 99399.7 USDT; "
            f"BTC/USDT 0 -> {trade.quantity}"
        ]  # the buy above, adopted
        out: list[Any] = []
        price = D(60000)
        for i in range(40):
            price = price * (D("1.003") if i % 3 else D("0.996"))
            ex.set_price("BTC/USDT", price.quantize(D("0.01")))
            direction = Direction.LONG if i % 4 < 2 else Direction.FLAT
            out.extend(logic.on_batch([bar_event(i, price.quantize(D("0.01")), direction)])[0])
        gateway.close()
        with ex.lock:
            balances = ex.engine.balances()
    orders = [x for x in out if isinstance(x, Order) and x.version > 1]
    sells = [o for o in orders if o.side is Side.SELL]
    assert sells and all(o.status is OrderStatus.FILLED for o in orders)  # no lot-size refusals
    book = logic.desk.portfolio
    assert book.cash == balances["USDT"].total
    assert book.quantity("BTC/USDT") == balances["BTC"].total  # dust below a lot included
    assert [a.message for a in out if isinstance(a, Alert)] == []  # no drift to reconcile
