"""Issue 9, item 14, the rule: an order older than `execution.max_order_age` is re-checked at
the current price with the risk gate's limits, or dropped with the reason (through the executor,
the gateway and the desk against the exchange emulator: tests/integration/test_stale_order.py)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from models.config.settings import Settings
from models.core.messages import Order, Side
from models.execution.stale_order import StaleRule, stale_reason, stale_rule
from tests.support import builders as build

D = Decimal


BTC = "BTC/USDT"
RULE = StaleRule(
    max_age_ms=5_000, price_tolerance_bps=D(50), max_order_notional=D(25_000), fee_bps=D(10)
)


def order(placed_ms: int, side: Side = Side.BUY, qty: str = "0.1", n: int = 0) -> Order:
    return build.order(
        f"sf-stale-{n:04d}", f"{BTC}@{placed_ms}", BTC, side=side, quantity=qty, placed_ms=placed_ms
    )


@pytest.mark.parametrize(
    ("age_ms", "side", "qty", "decided", "current", "free", "why"),
    [
        (5_000, Side.BUY, "0.1", "60000", "70000", "0", None),  # not older than the age
        (30_600, Side.BUY, "0.1", "60717", "63385", "100000", "price moved 439.4 bps"),
        (30_600, Side.SELL, "0.1", "63385", "60717", None, "price moved 420.9 bps"),
        (6_000, Side.BUY, "0.1", "60000", "60290", "100000", None),  # 48 bps: still sent
        (6_000, Side.SELL, "0.1", "60000", "59710", None, None),
        (6_000, Side.BUY, "0.5", "60000", "60100", "100000", "notional 30050.0 at 60100"),
        (6_000, Side.BUY, "0.1", "60000", "60100", "6000", "free cash 6000"),
        (6_000, Side.BUY, "0.1", None, "60100", "100000", "price at the decision is unknown"),
        (6_000, Side.BUY, "0.1", "60000", None, "100000", "no current price"),
    ],
)
def test_a_stale_order_is_rechecked_at_the_current_price(
    age_ms: int,
    side: Side,
    qty: str,
    decided: str | None,
    current: str | None,
    free: str | None,
    why: str | None,
) -> None:
    now = 1_700_000_000_000
    got = stale_reason(
        order(now - age_ms, side, qty),
        now,
        RULE,
        decided_price=None if decided is None else D(decided),
        current_price=None if current is None else D(current),
        free_quote=None if free is None else D(free),
    )
    if why is None:
        assert got is None
    else:
        assert got is not None and got.startswith(
            f"stale: decided at {now - age_ms}, {age_ms} ms old; "
        )
        assert why in got


def test_the_rule_comes_from_the_settings_and_zero_turns_it_off() -> None:
    def settings(**execution: Any) -> Settings:
        return Settings.model_validate({"symbols": {BTC: {}}, "execution": execution})

    custom = settings(max_order_age="2s", stale_price_tolerance_bps="20")
    rule = stale_rule(custom)
    assert (rule.max_age_ms, rule.price_tolerance_bps) == (2_000, D(20))
    assert rule.max_order_notional == custom.risk.max_order_notional
    assert not stale_rule(settings(max_order_age=0)).is_stale(order(0), 10**12)
    assert stale_rule(settings()).max_age_ms == 5_000
