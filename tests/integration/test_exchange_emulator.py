"""The exchange emulator through the real `ccxt.binance` client (never a fake of ccxt).

The fixture `exchange_emulator` (tests/conftest.py): BTC/USDT at 60,000 and ETH/USDT at 3,000,
maker levels 5 bps apart around a 10 bps spread (5 a side, about 20,000 USDT each: 0.33333
BTC, 6.66667 ETH), 100,000 USDT and 2 BTC in the account, maker and taker fee 10 bps.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import pytest

from connectors.sim.exchange_emulator import (
    ENDPOINTS,
    ExchangeEmulator,
    ExchangeEmulatorError,
    Fault,
    FaultKind,
    LookupLag,
    ccxt_config,
)
from models.sim.matching import EngineOrderStatus
from tests.support.cli import run_cli

D = Decimal
NEW_ORDER = "POST /api/v3/order"
SCRIPT = Path(sys.executable).with_name("stratflow")


@pytest.fixture
def client(exchange_emulator: ExchangeEmulator) -> Any:
    c = exchange_emulator.client()
    c.load_markets()
    return c


def engine_order(ex: ExchangeEmulator, client_order_id: str) -> Any:
    with ex.lock:
        return ex.engine.order("BTCUSDT", client_order_id=client_order_id)


def order_count(ex: ExchangeEmulator) -> int:
    with ex.lock:
        return len(ex.engine.all_orders("BTCUSDT")) + len(ex.engine.all_orders("ETHUSDT"))


# ------------------------------------------------------------------------------ market data


def test_load_markets_spot_only_and_every_url_is_local(
    exchange_emulator: ExchangeEmulator, client: Any
) -> None:
    assert set(client.markets) == {"BTC/USDT", "ETH/USDT"}
    btc = client.market("BTC/USDT")
    assert (btc["id"], btc["spot"], btc["active"]) == ("BTCUSDT", True, True)
    assert btc["precision"]["amount"] == 1e-05 and btc["precision"]["price"] == 0.01
    assert btc["limits"]["cost"]["min"] == 5.0
    assert all(u.startswith(exchange_emulator.base_url + "/") for u in client.urls["api"].values())
    assert [r.endpoint for r in exchange_emulator.requests] == ["GET /api/v3/exchangeInfo"]


def test_public_market_data(exchange_emulator: ExchangeEmulator, client: Any) -> None:
    before = time.time_ns() // 1_000_000
    server_ms = client.fetch_time()
    after = time.time_ns() // 1_000_000 + 1
    assert before <= server_ms <= after  # the server's clock, read between the two
    ticker = client.fetch_ticker("BTC/USDT")
    assert (ticker["last"], ticker["bid"], ticker["ask"]) == (60000.0, 59970.0, 60030.0)
    book = client.fetch_order_book("BTC/USDT", 5)
    assert [p for p, _ in book["asks"]] == [60030.0, 60060.0, 60090.0, 60120.0, 60150.0]
    assert [p for p, _ in book["bids"]] == [59970.0, 59940.0, 59910.0, 59880.0, 59850.0]
    assert book["asks"][0][1] == 0.33333

    exchange_emulator.set_price("BTC/USDT", 60500, volume="0.25")
    trades = client.fetch_trades("BTC/USDT")
    assert [(t["price"], t["amount"], t["side"]) for t in trades] == [(60500.0, 0.25, "buy")]

    minute = (int(time.time() * 1000) // 60_000 - 10) * 60_000  # ten minutes ago, aligned
    for offset_s, price in ((0, 3000), (20, 3010), (40, 2990), (65, 3005), (125, 3020)):
        exchange_emulator.set_price("ETH/USDT", price, minute + offset_s * 1000)
    bars = client.fetch_ohlcv("ETH/USDT", "1m", since=minute, limit=3)
    assert bars == [
        [minute, 3000.0, 3010.0, 2990.0, 2990.0, 0.0],
        [minute + 60_000, 3005.0, 3005.0, 3005.0, 3005.0, 0.0],
        [minute + 120_000, 3020.0, 3020.0, 3020.0, 3020.0, 0.0],
    ]
    assert client.fetch_status()["status"] == "ok"
    assert set(client.fetch_tickers()) == {"BTC/USDT", "ETH/USDT"}


def test_balance_matches_the_engine(exchange_emulator: ExchangeEmulator, client: Any) -> None:
    balance = client.fetch_balance()
    assert balance["free"]["USDT"] == 100000.0 and balance["free"]["BTC"] == 2.0
    assert balance["used"]["USDT"] == 0.0
    assert balance["info"]["balances"][-1] == {
        "asset": "USDT",
        "free": "100000.00000000",
        "locked": "0.00000000",
    }


# ------------------------------------------------------------------------------ orders


def test_market_order_walks_the_book_and_the_ledger_matches(
    exchange_emulator: ExchangeEmulator, client: Any
) -> None:
    order = client.create_order("BTC/USDT", "market", "buy", 0.5, None, {"clientOrderId": "m-1"})
    assert (order["status"], order["filled"], order["clientOrderId"]) == ("closed", 0.5, "m-1")
    assert [t["price"] for t in order["trades"]] == [60030.0, 60060.0]  # two levels
    sent = exchange_emulator.requests[-1]
    assert (sent.endpoint, sent.params["newClientOrderId"], sent.params["type"]) == (
        NEW_ORDER,
        "m-1",
        "MARKET",
    )
    engine = engine_order(exchange_emulator, "m-1")
    notional = D("0.33333") * D("60030") + D("0.16667") * D("60060")
    assert engine.cumm_quote_qty == notional
    fee = sum((f.commission for f in engine.fills), D(0))
    assert D(str(order["fee"]["cost"])) == fee and order["fee"]["currency"] == "USDT"

    balance = client.fetch_balance()
    assert D(str(balance["total"]["BTC"])) == D("2.5")
    assert D(str(balance["total"]["USDT"])) == D(100000) - notional - fee
    mine = client.fetch_my_trades("BTC/USDT")
    assert [(t["order"], t["takerOrMaker"]) for t in mine] == [(order["id"], "taker")] * 2
    assert exchange_emulator.engine.check_invariants() == []


def test_limit_order_lifecycle_by_id_and_client_id(
    exchange_emulator: ExchangeEmulator, client: Any
) -> None:
    order = client.create_order(
        "BTC/USDT", "limit", "buy", 0.1, 59000, {"clientOrderId": "sf-test-1"}
    )
    assert (order["status"], order["clientOrderId"], order["price"]) == (
        "open",
        "sf-test-1",
        59000.0,
    )
    by_id = client.fetch_order(order["id"], "BTC/USDT")
    by_client_id = client.fetch_order(None, "BTC/USDT", {"origClientOrderId": "sf-test-1"})
    assert by_id["id"] == by_client_id["id"] == order["id"]
    assert [o["id"] for o in client.fetch_open_orders("BTC/USDT")] == [order["id"]]
    assert [o["id"] for o in client.fetch_open_orders()] == [order["id"]]
    assert client.fetch_balance()["used"]["USDT"] == 5905.9  # 5900 + the worst fee, locked

    cancelled = client.cancel_order(order["id"], "BTC/USDT")
    assert cancelled["status"] == "canceled"
    assert client.fetch_open_orders("BTC/USDT") == []
    assert client.fetch_order(order["id"], "BTC/USDT")["status"] == "canceled"
    assert client.fetch_balance()["used"]["USDT"] == 0.0
    with pytest.raises(ccxt.OrderNotFound):
        client.cancel_order(order["id"], "BTC/USDT")  # -2011, as for a filled order


def test_resting_limit_order_fills_when_the_price_moves(
    exchange_emulator: ExchangeEmulator, client: Any
) -> None:
    order = client.create_order("BTC/USDT", "limit", "buy", 0.1, 59900)
    assert order["status"] == "open"
    exchange_emulator.set_price("BTC/USDT", 59000)
    filled = client.fetch_order(order["id"], "BTC/USDT")
    assert (filled["status"], filled["filled"], filled["average"]) == ("closed", 0.1, 59900.0)
    (trade,) = client.fetch_my_trades("BTC/USDT")
    assert (trade["takerOrMaker"], trade["fee"]["cost"]) == ("maker", 5.99)


def test_partial_fill_is_visible(client: Any) -> None:
    order = client.create_order("BTC/USDT", "limit", "buy", 0.5, 60030)
    assert (order["status"], order["filled"], order["remaining"]) == ("open", 0.33333, 0.16667)
    assert order["info"]["status"] == EngineOrderStatus.PARTIALLY_FILLED


# ------------------------------------------------------------------------------ refusals


def test_wrong_credentials_are_authentication_errors(exchange_emulator: ExchangeEmulator) -> None:
    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        exchange_emulator.client(secret="not-the-secret").fetch_balance()
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        exchange_emulator.client(apiKey="not-the-key").fetch_balance()
    assert exchange_emulator.client(secret="x").fetch_ticker("BTC/USDT")["last"] == 60000.0
    assert [
        r.status for r in exchange_emulator.requests if r.endpoint == "GET /api/v3/account"
    ] == [
        400,
        401,
    ]


def test_a_client_order_id_is_reused_as_on_binance(
    exchange_emulator: ExchangeEmulator, client: Any
) -> None:
    """Binance refuses a repeated newClientOrderId only while an open order carries it: a
    filled market order's id makes a second order (what a blind retry does on Binance)."""
    first = client.create_order("BTC/USDT", "market", "buy", 0.01, None, {"clientOrderId": "r"})
    second = client.create_order("BTC/USDT", "market", "buy", 0.01, None, {"clientOrderId": "r"})
    assert first["status"] == second["status"] == "closed" and first["id"] != second["id"]
    client.create_order("BTC/USDT", "limit", "buy", 0.01, 50000, {"clientOrderId": "r"})
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):  # open now
        client.create_order("BTC/USDT", "market", "buy", 0.01, None, {"clientOrderId": "r"})
    with exchange_emulator.lock:
        assert exchange_emulator.engine.balance("BTC").total == D(2) + D("0.02")


@pytest.mark.parametrize("lag", [LookupLag(lookups=3), LookupLag(ms=1_000)])
def test_a_fresh_order_is_not_found_for_a_while_as_on_binance(lag: LookupLag) -> None:
    """Binance's lookup is eventually consistent: -2013 for a short time after a create
    (counted lookups, or an age on the server's clock), then the order; a reused id shows
    the older order meanwhile."""
    now = [1_700_000_000_000]
    with ExchangeEmulator(
        ["BTC/USDT"], balances={"USDT": 100_000}, clock_ms=lambda: now[0], lookup_lag=lag
    ) as ex:
        client = ex.client()
        client.milliseconds = lambda: now[0]  # the client's timestamps on the same clock
        placed = client.create_order(
            "BTC/USDT", "market", "buy", 0.01, None, {"clientOrderId": "lag-1"}
        )
        misses = 0
        while True:
            try:
                found = client.fetch_order(None, "BTC/USDT", {"origClientOrderId": "lag-1"})
                break
            except ccxt.OrderNotFound:
                misses += 1
                now[0] += 250
                assert misses < 10
        assert found["id"] == placed["id"] and found["filled"] == 0.01
        assert misses == (3 if lag.lookups else 4)
        again = client.create_order(
            "BTC/USDT", "market", "buy", 0.01, None, {"clientOrderId": "lag-1"}
        )  # Binance accepts the id of a filled order
        seen = client.fetch_order(None, "BTC/USDT", {"origClientOrderId": "lag-1"})
        assert seen["id"] == placed["id"] != again["id"]  # the lagging lookup: the older one
        with pytest.raises(ccxt.OrderNotFound):
            client.fetch_order(again["id"], "BTC/USDT")


def test_request_outside_recv_window_is_invalid_nonce() -> None:
    ahead = ExchangeEmulator(["BTC/USDT"], clock_ms=lambda: time.time_ns() // 1_000_000 + 60_000)
    with ahead, pytest.raises(ccxt.InvalidNonce, match="-1021"):
        ahead.client().fetch_balance()


def test_exchange_refusals_map_to_ccxt_classes(
    exchange_emulator: ExchangeEmulator, client: Any
) -> None:
    with pytest.raises(ccxt.InsufficientFunds):
        client.create_order("BTC/USDT", "market", "buy", 1.9)  # 114,000 USDT > 100,000
    with pytest.raises(ccxt.InsufficientFunds):
        client.create_order("BTC/USDT", "limit", "sell", 3, 70000)  # 3 BTC > 2
    client.create_order("BTC/USDT", "limit", "buy", 0.01, 50000, {"clientOrderId": "once"})
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        client.create_order("BTC/USDT", "market", "buy", 0.01, None, {"clientOrderId": "once"})
    with pytest.raises(ccxt.OrderNotFound):
        client.fetch_order("424242", "BTC/USDT")
    with pytest.raises(ccxt.OrderNotFound):
        client.fetch_order(None, "BTC/USDT", {"origClientOrderId": "never-sent"})
    with pytest.raises(ccxt.OrderImmediatelyFillable):
        client.create_order("BTC/USDT", "limit", "buy", 0.01, 61000, {"postOnly": True})
    with pytest.raises(ccxt.BadRequest, match="NOTIONAL"):
        client.create_order("BTC/USDT", "limit", "buy", 0.00001, 100)
    with pytest.raises(ccxt.BadSymbol):
        client.publicGetDepth({"symbol": "DOGEUSDT"})
    raw = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}
    with pytest.raises(ccxt.InvalidOrder, match="LOT_SIZE"):  # ccxt rounds; raw calls do not
        client.privatePostOrder({**raw, "quantity": "0.000015", "price": "59000"})
    with pytest.raises(ccxt.InvalidOrder, match="PRICE_FILTER"):
        client.privatePostOrder({**raw, "quantity": "0.001", "price": "59000.001"})
    with pytest.raises(ccxt.BadRequest, match="-1116"):
        client.privatePostOrder({**raw, "type": "STOP", "quantity": "0.001", "price": "59000"})
    assert order_count(exchange_emulator) == 1
    assert exchange_emulator.engine.check_invariants() == []


def test_unsupported_endpoint_is_a_404_never_the_internet(
    exchange_emulator: ExchangeEmulator, client: Any
) -> None:
    with pytest.raises(ccxt.ExchangeNotAvailable, match="404"):
        client.fetch_deposits()
    last = exchange_emulator.requests[-1]
    assert (last.endpoint, last.status, last.path) == (None, 404, "/sapi/v1/capital/deposit/hisrec")


# ------------------------------------------------------------------------------ faults

FAULT_CASES: list[tuple[str, Fault, type[Exception], bool]] = [
    ("503", Fault.server_error(503), ccxt.ExchangeNotAvailable, False),
    ("502", Fault.server_error(502), ccxt.ExchangeNotAvailable, False),
    ("504", Fault.server_error(504), ccxt.RequestTimeout, False),
    ("500 -1001", Fault.server_error(500, code=-1001), ccxt.OperationFailed, False),
    ("429", Fault.rate_limited(2), ccxt.DDoSProtection, False),
    ("418", Fault.rate_limited(5, status=418), ccxt.DDoSProtection, False),
    ("insufficient", Fault.insufficient_funds(), ccxt.InsufficientFunds, False),
    ("drop", Fault.drop(), ccxt.NetworkError, False),
    # Held far beyond any test's life (stop() wakes them): a RequestTimeout can only be the
    # client giving up, however loaded the machine.
    ("timeout", Fault.timeout(3600.0), ccxt.RequestTimeout, False),
    ("lost", Fault.lost_response(), ccxt.NetworkError, True),
    ("lost after timeout", Fault.lost_response(hold_s=3600.0), ccxt.RequestTimeout, True),
]


@pytest.mark.parametrize(
    ("fault", "error", "executed"),
    [case[1:] for case in FAULT_CASES],
    ids=[case[0] for case in FAULT_CASES],
)
def test_injected_fault_gives_the_ccxt_exception_a_caller_handles(
    exchange_emulator: ExchangeEmulator, fault: Fault, error: type[Exception], executed: bool
) -> None:
    # Long enough that a loaded machine never times out an answered request (only the held
    # one times out, and waits this long once).
    client = exchange_emulator.client(timeout_ms=3_000)
    client.load_markets()
    exchange_emulator.script(NEW_ORDER, fault)
    with pytest.raises(error) as raised:
        client.create_order("BTC/USDT", "market", "buy", 0.01, None, {"clientOrderId": "f-1"})
    assert type(raised.value) is error  # exactly this class, not merely a subclass
    assert exchange_emulator.pending() == 0
    last = exchange_emulator.requests[-1]
    assert (last.endpoint, last.fault) == (NEW_ORDER, fault.kind)
    if fault.kind is FaultKind.RATE_LIMITED:
        assert client.last_response_headers["Retry-After"] == str(fault.retry_after_s)
        assert last.error_code == -1003
    # Reconcile as an executor would: look the order up by its client order id.
    if executed:
        found = client.fetch_order(None, "BTC/USDT", {"origClientOrderId": "f-1"})
        assert (found["status"], found["filled"]) == ("closed", 0.01)
        assert order_count(exchange_emulator) == 1
    else:
        with pytest.raises(ccxt.OrderNotFound):
            client.fetch_order(None, "BTC/USDT", {"origClientOrderId": "f-1"})
        assert order_count(exchange_emulator) == 0
    assert exchange_emulator.engine.check_invariants() == []


def test_faults_are_per_endpoint_and_in_order(
    exchange_emulator: ExchangeEmulator, client: Any
) -> None:
    exchange_emulator.script("GET /api/v3/account", Fault.server_error(503))
    exchange_emulator.script("*", Fault.rate_limited(0))
    with pytest.raises(ValueError, match="unknown endpoint"):
        exchange_emulator.script("GET /api/v3/nope", Fault.drop())
    assert exchange_emulator.pending() == 2
    with pytest.raises(ccxt.DDoSProtection):  # "*" is taken by the first request of any kind
        client.fetch_ticker("BTC/USDT")
    assert client.fetch_ticker("BTC/USDT")["last"] == 60000.0
    with pytest.raises(ccxt.ExchangeNotAvailable):
        client.fetch_balance()
    assert client.fetch_balance()["free"]["BTC"] == 2.0
    assert exchange_emulator.pending() == 0
    assert set(ENDPOINTS) >= {NEW_ORDER, "GET /api/v3/order", "DELETE /api/v3/order"}


def run_chaos(seed: int) -> list[str]:
    with ExchangeEmulator(["BTC/USDT"], balances={"USDT": 100_000}) as ex:
        client = ex.client()
        client.load_markets()
        ex.chaos(seed, 0.4, endpoints=["GET /api/v3/ticker/24hr"])
        outcomes = []
        for _ in range(25):
            try:
                client.fetch_ticker("BTC/USDT")
                outcomes.append("ok")
            except ccxt.NetworkError as err:
                outcomes.append(type(err).__name__)
        return outcomes


def test_chaos_is_random_but_reproducible_from_its_seed() -> None:
    first = run_chaos(11)
    assert first == run_chaos(11)
    assert first != run_chaos(12)
    assert 3 <= first.count("ok") <= 22
    assert set(first) - {"ok"} <= {"ExchangeNotAvailable", "DDoSProtection", "NetworkError"}


def test_soak_orders_under_chaos_reconcile_with_the_exchange(
    exchange_emulator: ExchangeEmulator,
) -> None:
    """An executor's loop in miniature: place, and after a network error look the order up by
    client order id (retrying the look-up); the ledger must then equal the exchange's books."""
    client = exchange_emulator.client()
    client.load_markets()
    exchange_emulator.chaos(3, 0.3, endpoints=[NEW_ORDER])
    placed: dict[str, Decimal] = {}
    outcomes: set[str] = set()
    for i in range(30):
        cid = f"soak-{i}"
        try:
            order = client.create_order(
                "BTC/USDT", "market", "buy", 0.001, None, {"clientOrderId": cid}
            )
            placed[cid] = D(str(order["filled"]))
            outcomes.add("ok")
        except ccxt.NetworkError as err:
            outcomes.add(type(err).__name__)
            try:
                found = client.fetch_order(None, "BTC/USDT", {"origClientOrderId": cid})
                placed[cid] = D(str(found["filled"]))
            except ccxt.OrderNotFound:
                pass
    assert {"ok", "NetworkError"} <= outcomes
    bought = sum(placed.values(), D(0))
    with exchange_emulator.lock:
        engine = exchange_emulator.engine
        assert {o.client_order_id for o in engine.all_orders("BTCUSDT")} == set(placed)
        assert engine.balance("BTC").free == D(2) + bought
        assert engine.check_invariants() == []


def test_stop_wakes_held_requests_and_the_price_walk() -> None:
    ex = ExchangeEmulator(["BTC/USDT"], balances={"USDT": 1000}).start()
    ex.start_price_walk(seed=1, interval_s=0.02)
    client = ex.client(timeout_ms=200)
    client.load_markets()
    before = set(threading.enumerate())
    ex.script("GET /api/v3/ticker/24hr", Fault.timeout(3600.0))
    with pytest.raises(ccxt.RequestTimeout):
        client.fetch_ticker("BTC/USDT")
    held = [t for t in set(threading.enumerate()) - before if "process_request" in t.name]
    assert held, "the timed-out request is still held by its handler"
    deadline = time.monotonic() + 5
    while not ex.engine.trades("BTCUSDT") and time.monotonic() < deadline:
        time.sleep(0.02)
    with ex.lock:
        assert ex.engine.trades("BTCUSDT"), "the walk prints outside trades"
        assert len(ex.engine.bars("BTCUSDT", 1_000, limit=1000)) >= 1
    ex.stop()
    for thread in held:
        thread.join()  # it holds for an hour unless stop() woke it
    assert not ex.running


def test_emulator_refuses_a_busy_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        with pytest.raises(ExchangeEmulatorError, match=f"cannot listen on 127.0.0.1:{busy}"):
            ExchangeEmulator(["BTC/USDT"], port=busy).start()


def test_ccxt_config_points_every_api_at_the_emulator() -> None:
    config = ccxt_config("http://127.0.0.1:9", "k", "s", timeout_ms=250, apiKey="k2")
    assert config["apiKey"] == "k2" and config["timeout"] == 250
    assert config["urls"]["api"]["public"] == "http://127.0.0.1:9/api/v3"
    assert config["urls"]["api"]["sapi"] == "http://127.0.0.1:9/sapi/v1"
    assert config["options"]["fetchMarkets"] == {"types": ["spot"]}


# ------------------------------------------------------------------------------ the CLI

needs_script = pytest.mark.skipif(
    not SCRIPT.is_file(), reason="the stratflow console script is absent"
)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATFLOW")}
    env["NO_COLOR"] = "1"
    return env


@pytest.fixture
def cli_exchange(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [str(SCRIPT), "exchange", *args],
            cwd=tmp_path,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


@needs_script
def test_cli_exchange_prints_url_and_keys_and_stops_on_ctrl_c(
    cli_exchange: Callable[..., subprocess.Popen[str]],
) -> None:
    proc = cli_exchange("--port", "0", "--symbols", "BTC/USDT,eth/usdt", "--seed", "3")
    assert proc.stdout is not None
    seen: dict[str, str] = {}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, f"exited early: {proc.wait(5)} {proc.stderr.read() if proc.stderr else ''}"
        if m := re.match(r"^(EXCHANGE_\w+)=(\S+)$", line.strip()):
            seen[m[1]] = m[2]
        if "ready" in line:
            break
    client = ccxt.binance(
        ccxt_config(seen["EXCHANGE_URL"], seen["EXCHANGE_API_KEY"], seen["EXCHANGE_API_SECRET"])
    )
    assert set(client.load_markets()) == {"BTC/USDT", "ETH/USDT"}
    assert client.fetch_balance()["free"]["USDT"] == 100000.0
    assert client.create_order("ETH/USDT", "market", "buy", 0.1)["status"] == "closed"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "exchange emulator stopped" in out and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--symbols", "BTCUSDT"], "'BTCUSDT' is not a market; write BASE/QUOTE"),
        (["--symbols", "BTC/USDT,btc/usdt"], "BTC/USDT given twice"),
        (["--symbols", " , "], "--symbols is empty"),
        (["--port", "70000"], "Invalid value for '--port'"),
    ],
)
def test_cli_exchange_user_mistakes_are_one_error_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """In-process, as the console script runs it (tests/support/cli.py)."""
    proc = run_cli("exchange", *args, cwd=tmp_path)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines


def test_cli_exchange_busy_port_is_one_error_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        proc = run_cli("exchange", "--port", str(s.getsockname()[1]), cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.strip().startswith("error: cannot listen on 127.0.0.1:")
    assert len(proc.stderr.strip().splitlines()) == 1
