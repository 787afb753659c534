"""A watched exchange run demoted by its fills (issue 12, part 5): the desk trades on the
exchange emulator through the real ccxt client and executor (in-process, as
tests/integration/test_ccxt_executor.py drives it), the emulator is scripted to answer every
order with fills 2 % off the market (`Fault.rewrite`: the order is executed, its answer edited),
and the desk's divergence watch, once `promotion.divergence_min_orders` orders are measured
against the simulator's price on the same bars, raises one critical alert and goes close-only;
the same run without the fault is never demoted. Then the ledger records the demotion
(`sync_demotions`, as the next `approve` / `run --exchange` does)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from connectors.exchange.ccxt_executor import CcxtExecutor
from connectors.exchange.gateway import ExecutionGateway
from connectors.sim.exchange_emulator import ExchangeEmulator, Fault
from dataflows.adapters import DeskLogic
from models.config.settings import Settings
from models.core.events import BarEvent
from models.core.messages import Alert, Branch, Direction, Order, Severity, Side
from models.desk.promotion_watch import CLOSE_ONLY
from models.validation.demotion import DEMOTION_SOURCE
from models.validation.promotion import setup_hash
from tests.support import builders as build

D = Decimal
BTC = "BTC/USDT"
POST = "POST /api/v3/order"
MIN_ORDERS = 3


def _settings(tmp: Path) -> Settings:
    return Settings.model_validate(
        {
            "symbols": {BTC: {"lot_size": "0.0001"}},
            "execution": {
                "initial_cash": "100000",
                "currency": "USDT",
                "fee_bps": "10",
                "slippage_bps": "5",
            },
            "strategy": {"controller": "local", "target_fraction": "0.05"},
            "risk": {"daily_loss_limit": "1000000"},
            "promotion": {
                "watch": True,
                "divergence_min_orders": MIN_ORDERS,
                "divergence_window": 20,
            },
            "clickhouse": {"path": str(tmp / "store")},
        }
    )


def _off_market(doc: dict[str, Any]) -> dict[str, Any]:
    """The order's answer with every fill 2 % above (a buy) or below (a sell) its price."""
    up = doc.get("side") == "BUY"
    factor = D("1.02") if up else D("0.98")
    quote = D(0)
    for fill in doc.get("fills", []):
        price = (D(fill["price"]) * factor).quantize(D("0.01"))
        fill["price"] = str(price)
        quote += price * D(fill["qty"])
    if doc.get("fills"):
        doc["cummulativeQuoteQty"] = str(quote)
    return doc


def _bar_event(i: int, open_: D, close: D) -> BarEvent:
    """Bar i opens where the last one closed (the price the emulator trades at as the order
    of bar i-1 arrives): the simulator fills that order at this open."""
    bar = build.bar(BTC, i * 60_000, close, open=open_)
    direction = Direction.LONG if i % 2 == 0 else Direction.FLAT
    signal = build.signal(BTC, bar.end_ms, "flip", direction=direction)
    return build.bar_event(bar, [signal], Branch.ROUTINE)


def _run(tmp: Path, *, diverge: bool, bars: int = 14) -> tuple[list[Any], DeskLogic]:
    settings = _settings(tmp)
    out: list[Any] = []
    with ExchangeEmulator([BTC], prices={BTC: "60000"}, balances={"USDT": "100000"}) as ex:
        if diverge:
            ex.script(POST, *[Fault.rewrite(_off_market) for _ in range(bars)])
        gateway = ExecutionGateway(CcxtExecutor(ex.client(), sleep=lambda _s: None))
        logic = DeskLogic(settings, frozenset({"m#0"}), None, None, True, gateway)
        price = D(60000)
        for i in range(bars):
            close = (price * (D("1.001") if i % 3 else D("0.999"))).quantize(D("0.01"))
            items, _ = logic.on_batch([_bar_event(i, price, close)])
            out.extend(items)
            ex.set_price(BTC, close)
            price = close
        gateway.close()
    return out, logic


def _demotions(out: list[Any]) -> list[Alert]:
    return [a for a in out if isinstance(a, Alert) and a.source == DEMOTION_SOURCE]


def test_fills_off_the_simulators_price_demote_the_run_once_and_it_goes_close_only(
    tmp_path: Path,
) -> None:
    out, logic = _run(tmp_path, diverge=True)
    (alert,) = _demotions(out)
    assert alert.severity is Severity.CRITICAL
    assert alert.context["setup"] == setup_hash(logic.desk.settings)
    assert "divergence" in alert.message and "close-only" in alert.message
    assert f"over the last {MIN_ORDERS} orders" in alert.message  # not before the minimum
    watch = logic.desk.demotion
    assert watch is not None and watch.demoted and watch.measured is not None
    assert watch.measured.slippage_bps > 100  # ~200 bps off, 5 bps the simulator's own
    assert logic.desk.active_reviewers()[-1] is CLOSE_ONLY
    # Orders placed before the alert: at least the minimum; after it, no buy (close-only).
    at = out.index(alert)
    placed = [x for x in out if isinstance(x, Order) and x.version == 1]
    before = [o for o in placed if out.index(o) < at]
    after = [o for o in placed if out.index(o) > at]
    assert len(before) >= MIN_ORDERS
    assert all(o.side is Side.SELL for o in after)
    refused = [a for a in out[at:] if isinstance(a, Alert) and "(close_only)" in a.message]
    assert len(refused) >= 3, "each buy after the demotion is refused by the close-only reviewer"
    assert any(o.side is Side.SELL for o in after)  # exits still go out


def test_the_same_run_without_the_fault_is_not_demoted(tmp_path: Path) -> None:
    out, logic = _run(tmp_path, diverge=False)
    assert _demotions(out) == []
    watch = logic.desk.demotion
    assert watch is not None and watch.divergence is not None
    assert len(watch.divergence.measured) >= MIN_ORDERS  # measured, and within the limit
    assert not watch.demoted and CLOSE_ONLY not in logic.desk.active_reviewers()


def test_the_next_approve_records_the_flows_divergence_demotion(tmp_path: Path) -> None:
    from api.promotion_steps import open_ledger, sync_demotions
    from connectors.store.clickhouse import Store
    from connectors.store.promotions import record_step
    from models.validation.promotion import Step, StepRecord, live_missing
    from models.validation.verdicts import Outcome

    out, logic = _run(tmp_path, diverge=True)
    settings = logic.desk.settings
    h = setup_hash(settings)
    with open_ledger(settings) as store:
        for t, step in enumerate(
            (Step.BACKTEST, Step.VALIDATION, Step.PAPER, Step.APPROVAL), start=1
        ):
            record_step(store, StepRecord(h, step, f"r{t}", Outcome.PASS, t))
    with Store.open(settings.clickhouse, run_id="live-1") as live:
        live.insert_models(_demotions(out))
    with open_ledger(settings) as store:
        (demotion,) = sync_demotions(store, settings)
        from connectors.store.promotions import read_steps

        missing = live_missing(read_steps(store, h), h, uses_gpt=False, cutoff=None)
    assert demotion.step is Step.DEMOTION and demotion.run_id == "live-1"
    assert "divergence" in str(demotion.figures["reasons"])
    assert missing and missing[0].startswith("a passing paper run")
