"""The executor's rule, from its spec: a Retry-After beyond ten seconds is not waited for."""

from __future__ import annotations

from decimal import Decimal

from connectors.exchange.ccxt_executor import MAX_RETRY_AFTER_S, CcxtExecutor
from connectors.sim.exchange_emulator import ExchangeEmulator, Fault
from models.core.messages import Order, OrderStatus, Side
from models.execution.reports import ExecStatus


def test_a_retry_after_beyond_ten_seconds_is_not_waited_for(
    exchange_emulator: ExchangeEmulator,
) -> None:
    too_long = int(MAX_RETRY_AFTER_S) + 1
    exchange_emulator.script("POST /api/v3/order", Fault.rate_limited(too_long))
    sleeps: list[float] = []
    executor = CcxtExecutor(exchange_emulator.client(), sleep=sleeps.append)
    order = Order(
        client_order_id="sf-0123456789abcdef01234567",
        decision_id="BTC/USDT@1709303400000",
        symbol="BTC/USDT",
        side=Side.BUY,
        quantity=Decimal("0.01"),
        status=OrderStatus.PENDING,
        placed_ms=1_709_303_400_000,
        updated_ms=1_709_303_400_000,
    )
    report = executor.execute(order)
    assert report.status is ExecStatus.FAILED and report.attempts == 1
    assert sleeps == []  # given up at once: the order may go to the fallback, not wait
    with exchange_emulator.lock:
        assert exchange_emulator.engine.all_orders("BTCUSDT") == []
