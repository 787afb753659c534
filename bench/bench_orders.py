"""Orders per second through the executor, ccxt and the exchange emulator, and decision->ack
latency on loopback, against the simulated venue, on the same generated orders.

    python bench/bench_orders.py [--orders 2000] [--seed 5] [--no-chaos]

A seeded BTC/USDT price path drives the flow's desk adapter (`DeskLogic`, the object the
Bytewax flow runs) with one bar per order: routine signals alternating long and flat, so the
local engine buys about 5 % of equity, then sells it all, and so on. Modes, each on a fresh
emulator (`connectors.sim.exchange_emulator`, a real `ccxt.binance` pointed at it):
  sim          baseline: the desk on its simulated venue (`orders=None`), fills inside the
               desk at the next bar; latency is one `on_batch` (decision -> order out);
  exec         `CcxtExecutor.execute` in a loop over the orders `sim` placed (same client
               ids, sides, quantities, prices): latency is create call -> report;
  desk-inline  the desk with the executor inline (`ExecutionGateway`, `inline=True`): latency
               is one `on_batch`, i.e. bar handed over -> order placed -> report applied;
  desk-live    the live path (`inline=False`): one worker thread places the order; the bench
               polls `on_notify()` until the order's report is applied, then hands over the
               next bar (the next decision depends on the fill); latency as for desk-inline;
  exec-chaos   `exec` again with 10 % random faults on every request (`emulator.chaos`):
               5xx, 429 with Retry-After 0, dropped connections, lost responses; the
               executor's real backoff sleeps included.
Setting the emulator's price before each bar or order is not timed; orders/s is orders over
the timed (busy) seconds. Ratios: orders/s against `sim` and against `exec`, from the same run.
The emulator serves from threads of this same process: client and server share one GIL.

Checks (the exit status is 1 if any fails): every order acknowledged (clean modes: filled at
the first attempt; chaos: a definite outcome, never `unknown`); at most one emulator order per
client order id, and none that was not sent; the book equals the emulator's balances at the
end (desk modes: the desk's cash and BTC position; exec modes: the reports' fills applied to the
starting balances).
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.exchange.ccxt_executor import CcxtExecutor  # noqa: E402
from connectors.exchange.gateway import ExecutionGateway  # noqa: E402
from connectors.sim.exchange_emulator import ExchangeEmulator  # noqa: E402
from dataflows.adapters import DeskLogic  # noqa: E402
from models.config.settings import Settings  # noqa: E402
from models.core.events import BarEvent  # noqa: E402
from models.core.messages import (  # noqa: E402
    Bar,
    Branch,
    Direction,
    FeatureVector,
    Order,
    OrderStatus,
    Side,
    Signal,
)
from models.execution.reports import ExecStatus, ExecutionReport  # noqa: E402

D = Decimal
SYMBOL = "BTC/USDT"
CASH = D(100_000)
EXEC_BTC = D(1)  # exec modes start with some BTC too: a sell never depends on a failed buy
CENT = D("0.01")
PARTITIONS = frozenset({"market#0"})
LIVE_TIMEOUT_S = 30.0


def settings() -> Settings:
    return Settings.model_validate(
        {
            "symbols": {SYMBOL: {"lot_size": "0.0001"}},
            "execution": {"initial_cash": str(CASH), "currency": "USDT", "fee_bps": "10"},
            "strategy": {"controller": "local", "target_fraction": "0.05"},
            "risk": {"daily_loss_limit": "1000000"},
        }
    )


def bar_event(i: int, price: Decimal) -> BarEvent:
    bar = Bar(
        symbol=SYMBOL,
        start_ms=i * 60_000,
        end_ms=(i + 1) * 60_000,
        open=price,
        high=price,
        low=price,
        close=price,
        volume=D(1),
        trades=1,
        vwap=price,
    )
    signal = Signal(
        symbol=SYMBOL,
        ts_ms=bar.end_ms,
        trigger="bench",
        kind="crossover",
        direction=Direction.LONG if i % 2 == 0 else Direction.FLAT,
        strength=0.5,
        strategic=False,
    )
    fv = FeatureVector(symbol=SYMBOL, ts_ms=bar.end_ms, close=float(price), values={})
    return BarEvent(bar, fv, [signal], Branch.ROUTINE)


def generate_bars(n: int, seed: int) -> list[BarEvent]:
    """A seeded random walk around 60,000 (20 bps steps), one bar per minute."""
    rng = random.Random(seed)
    price = 60_000.0
    events = []
    for i in range(n):
        price *= 1.0 + rng.gauss(0.0, 0.002)
        events.append(bar_event(i, D(repr(price)).quantize(CENT)))
    return events


@dataclass
class Result:
    name: str
    orders: int = 0
    busy_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def per_s(self) -> float:
        return self.orders / self.busy_s if self.busy_s > 0 else float("nan")

    def pct(self, q: float) -> float:
        lat = sorted(self.latencies_ms)
        if not lat:
            return float("nan")
        return statistics.median(lat) if q == 0.5 else lat[min(len(lat) - 1, int(len(lat) * q))]


def placed(items: list[Any]) -> list[Order]:
    return [x for x in items if isinstance(x, Order) and x.version == 1]


def emulator(btc: Decimal | None = None) -> ExchangeEmulator:
    balances = {"USDT": CASH, **({"BTC": btc} if btc else {})}
    return ExchangeEmulator([SYMBOL], prices={SYMBOL: "60000"}, balances=balances)


def client_for(ex: ExchangeEmulator) -> Any:
    client = ex.client(timeout_ms=5_000)
    client.load_markets()  # once, before anything is timed (a running desk has its markets)
    return client


def exchange_book(ex: ExchangeEmulator) -> tuple[list[str], Decimal, Decimal]:
    """(client ids of every order the engine holds, USDT total, BTC total)."""
    with ex.lock:
        ids = [o.client_order_id for o in ex.engine.all_orders("BTCUSDT", limit=10_000_000)]
        balances = ex.engine.balances()
    usdt = balances["USDT"].total if "USDT" in balances else D(0)
    btc = balances["BTC"].total if "BTC" in balances else D(0)
    return ids, usdt, btc


def check_ids(name: str, ids: list[str], sent: set[str], errors: list[str]) -> None:
    if len(ids) != len(set(ids)):
        errors.append(f"{name}: {len(ids) - len(set(ids))} duplicate client order id(s)")
    if not set(ids) <= sent:
        errors.append(f"{name}: {len(set(ids) - sent)} emulator order(s) never sent")


# --------------------------------------------------------------------------- desk modes


def run_sim(events: list[BarEvent], n: int) -> tuple[Result, list[tuple[Order, Decimal]]]:
    """The baseline; also returns the orders it placed with their bar's price (for exec)."""
    result = Result("sim")
    logic = DeskLogic(settings(), PARTITIONS, None, None, True, None)
    orders: list[tuple[Order, Decimal]] = []
    for event in events:
        if len(orders) >= n:
            break
        start = time.perf_counter()
        out, _ = logic.on_batch([event])
        took = time.perf_counter() - start
        result.busy_s += took
        new = placed(list(out))
        if new:
            result.latencies_ms.append(took * 1000)
            orders.extend((o, event.bar.close) for o in new)
    result.orders = len(orders)
    return result, orders


def run_desk(events: list[BarEvent], n: int, inline: bool, errors: list[str]) -> Result:
    """The desk with the executor, inline or through the worker."""
    name = "desk-inline" if inline else "desk-live"
    result = Result(name)
    with emulator() as ex:
        gateway = ExecutionGateway(CcxtExecutor(client_for(ex)))
        logic = DeskLogic(settings(), PARTITIONS, None, None, inline, gateway)
        out: list[Any] = []
        sent = 0
        for event in events:
            if sent >= n:
                break
            ex.set_price(SYMBOL, event.bar.close)
            start = time.perf_counter()
            items, _ = logic.on_batch([event])
            batch = list(items)
            new = {o.client_order_id for o in placed(batch)}
            if not inline and new:
                deadline = start + LIVE_TIMEOUT_S
                done = {x.client_order_id for x in batch if isinstance(x, Order) and x.version > 1}
                while not new <= done and time.perf_counter() < deadline:
                    time.sleep(0.0001)
                    more, _ = logic.on_notify()
                    more_list = list(more)
                    batch.extend(more_list)
                    done.update(
                        x.client_order_id
                        for x in more_list
                        if isinstance(x, Order) and x.version > 1
                    )
                if not new <= done:
                    errors.append(f"{name}: no report within {LIVE_TIMEOUT_S:.0f} s for {new}")
                    break
            took = time.perf_counter() - start
            result.busy_s += took
            out.extend(batch)
            if new:
                sent += len(new)
                result.latencies_ms.append(took * 1000)
        items, _ = logic.on_eof()
        out.extend(items)
        gateway.close()
        ids, usdt, btc = exchange_book(ex)
    orders = placed(out)
    result.orders = len(orders)
    finals = {x.client_order_id: x for x in out if isinstance(x, Order) and x.version > 1}
    not_filled = [o for o in orders if o.client_order_id not in finals] + [
        f for f in finals.values() if f.status is not OrderStatus.FILLED
    ]
    if len(orders) < n:
        errors.append(f"{name}: only {len(orders)} of {n} orders placed")
    if not_filled or logic.desk.unreported_orders():
        errors.append(f"{name}: {len(not_filled)} order(s) not acknowledged as filled")
    check_ids(name, ids, {o.client_order_id for o in orders}, errors)
    if len(ids) != len(orders):
        errors.append(f"{name}: {len(orders)} orders placed, {len(ids)} on the emulator")
    cash, pos = logic.desk.portfolio.cash, logic.desk.portfolio.quantity(SYMBOL)
    if (cash, pos) != (usdt, btc):
        errors.append(f"{name}: desk {cash} USDT {pos} BTC != emulator {usdt} USDT {btc} BTC")
    return result


# --------------------------------------------------------------------------- executor modes


@dataclass
class Split:
    """Where an order's time goes: the client's HTTP calls, the emulator's handler."""

    http_s: float = 0.0
    http_calls: int = 0
    server_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def instrument(ex: ExchangeEmulator, client: Any, split: Split) -> None:
    """Time ccxt's HTTP round trip (`Exchange.fetch`: the request and its answer, no signing
    or parsing) and the emulator's request handler (after the HTTP server parsed the request
    line and headers: body, auth, engine, JSON, write)."""
    fetch: Callable[..., Any] = client.fetch
    handle: Callable[..., None] = ex._handle

    def timed_fetch(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fetch(*args, **kwargs)
        finally:
            split.http_s += time.perf_counter() - start
            split.http_calls += 1

    def timed_handle(*args: Any) -> None:
        start = time.perf_counter()
        try:
            handle(*args)
        finally:
            took = time.perf_counter() - start
            with split.lock:
                split.server_s += took

    client.fetch = timed_fetch
    setattr(ex, "_handle", timed_handle)  # noqa: B010 - a method replaced on one instance


def run_exec(
    orders: list[tuple[Order, Decimal]], chaos_seed: int | None, errors: list[str]
) -> tuple[Result, Split]:
    name = "exec" if chaos_seed is None else "exec-chaos"
    result = Result(name)
    split = Split()
    reports: list[ExecutionReport] = []
    with emulator(EXEC_BTC) as ex:
        client = client_for(ex)
        # This emulator's lookups are current (no `LookupLag`): a "does not exist" proves an
        # order absent at once; on Binance the executor waits out recvWindow, backend and lag.
        executor = CcxtExecutor(client, absent_after_ms=0)
        if chaos_seed is None:
            instrument(ex, client, split)
        else:
            ex.chaos(chaos_seed, 0.1)
        for order, price in orders:
            ex.set_price(SYMBOL, price)
            start = time.perf_counter()
            report = executor.execute(order)
            took = time.perf_counter() - start
            result.busy_s += took
            result.latencies_ms.append(took * 1000)
            reports.append(report)
        ex.calm()
        faults = sum(1 for r in ex.requests if r.fault is not None)
        ids, usdt, btc = exchange_book(ex)
    result.orders = len(reports)
    status = {s: sum(1 for r in reports if r.status is s) for s in ExecStatus}
    retried = sum(1 for r in reports if r.attempts > 1)
    reconciled = sum(1 for r in reports if r.reconciled)
    if chaos_seed is not None:
        shown = ", ".join(f"{n} {s.value}" for s, n in status.items() if n)
        result.notes.append(
            f"{name}: {faults} faulted request(s); {shown}; {retried} retried, "
            f"{reconciled} adopted by lookup"
        )
    # Acknowledged: filled at once when nothing fails; under faults a definite outcome.
    if chaos_seed is None:
        bad = [r for r in reports if r.status is not ExecStatus.FILLED or r.attempts != 1]
    else:
        bad = [r for r in reports if r.status is ExecStatus.UNKNOWN]
    if bad:
        errors.append(f"{name}: {len(bad)} order(s) not acknowledged, e.g. {bad[0].error!r}")
    check_ids(name, ids, {o.client_order_id for o, _ in orders}, errors)
    with_fills = {r.client_order_id for r in reports if r.fills}
    if set(ids) != with_fills:
        errors.append(
            f"{name}: emulator has {len(set(ids))} orders, reports show {len(with_fills)} filled"
        )
    # The reports' fills on the starting balances must give the emulator's balances.
    cash, pos = CASH, EXEC_BTC
    for r in reports:
        for f in r.fills:
            notional = f.quantity * f.price
            if f.side is Side.BUY:
                cash, pos = cash - notional - f.fee, pos + f.quantity
            else:
                cash, pos = cash + notional - f.fee, pos - f.quantity
    if (cash, pos) != (usdt, btc):
        errors.append(f"{name}: reports {cash} USDT {pos} BTC != emulator {usdt} USDT {btc} BTC")
    return result, split


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=2000, help="orders per mode")
    parser.add_argument("--seed", type=int, default=5, help="price path and chaos seed")
    parser.add_argument("--no-chaos", action="store_true", help="skip the exec-chaos mode")
    args = parser.parse_args()
    # The executor logs every fault it meets; the chaos mode counts them instead.
    logging.getLogger("connectors").setLevel(logging.ERROR)
    n = args.orders
    if n < 1:
        parser.error("--orders must be at least 1")
    events = generate_bars(2 * n + 10, args.seed)  # one order per bar; room to spare
    errors: list[str] = []
    t0 = time.perf_counter()

    sim, orders = run_sim(events, n)
    if len(orders) < n:
        errors.append(f"sim: only {len(orders)} of {n} orders placed")
    results = [sim]
    exec_result, split = run_exec(orders, None, errors)
    results.append(exec_result)
    inline = run_desk(events, n, True, errors)
    live = run_desk(events, n, False, errors)
    results += [inline, live]
    if not args.no_chaos:
        chaos, _ = run_exec(orders, args.seed, errors)
        results.append(chaos)
    wall = time.perf_counter() - t0

    sides = sum(1 for o, _ in orders if o.side is Side.BUY)
    print(
        f"{n:,} orders per mode ({sides:,} buys, {len(orders) - sides:,} sells) on {SYMBOL}, "
        f"seed {args.seed}; total {wall:.1f} s"
    )
    print()
    print(
        f"{'mode':<12} {'orders':>7} {'orders/s':>10} {'vs sim':>7} {'vs exec':>8} "
        f"{'p50 ms':>8} {'p99 ms':>8}"
    )
    base, ex = sim.per_s, exec_result.per_s
    for r in results:
        print(
            f"{r.name:<12} {r.orders:>7,} {r.per_s:>10,.1f} {r.per_s / base:>7.4f} "
            f"{r.per_s / ex:>8.2f} {r.pct(0.5):>8.3f} {r.pct(0.99):>8.3f}"
        )
    print()
    print("latency: sim and desk-* from handing the bar to the desk until its order is out (sim)")
    print("or its execution report applied (desk-*); exec* from the create call to the report.")
    if exec_result.orders and split.http_calls:
        per = 1000 / exec_result.orders
        total = exec_result.busy_s * per
        http = split.http_s * per
        server = split.server_s * per
        print(
            f"exec, per order: {total:.3f} ms = {total - http:.3f} ms ccxt + executor outside "
            f"HTTP (signing, parsing, report) + {http:.3f} ms in ccxt's HTTP call "
            f"({split.http_calls / exec_result.orders:.2f}/order); of that, {server:.3f} ms in "
            f"the emulator's handler, {http - server:.3f} ms in requests/urllib3, a new TCP "
            "connection and server thread per request (HTTP/1.0), GIL hand-offs"
        )
    for r in results:
        for note in r.notes:
            print(note)
    if errors:
        print()
        for e in errors:
            print(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
