"""The validation gate's desk kit, shared by its unit and integration tests: settings with the
gate on (a 40 % flash crash, room in the risk limits for a strategy of all the equity), a
generated walk of bars through the feature state, and the two GPT answers the tests send: one
that loses ~40 % in the flash crash, one that loses a fifth of that."""

from __future__ import annotations

import math
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

from models.config.settings import Settings
from models.core.events import BarEvent
from models.core.messages import Branch
from models.signals.features import FeatureState
from tests.support import gpt as kit
from tests.support.builders import MIN, bar, signal

D = Decimal
SYM = "ABC"
ALWAYS: dict[str, Any] = {"left": "close", "op": ">", "right": 0}
NEVER: dict[str, Any] = {"left": "close", "op": "<", "right": 0}
# Always long with all the equity and no stop: the 40 % flash crash takes 40 % of it.
RECKLESS = kit.decision(entry=ALWAYS, exit=NEVER, position_fraction=1.0, stop_loss_pct=None)
# The same rules at a fifth of the equity: 8 % in that crash.
CAREFUL = kit.decision(entry=ALWAYS, exit=NEVER, position_fraction=0.2, stop_loss_pct=None)


def gate_settings(tmp: Path, **validation: Any) -> Settings:
    doc: dict[str, Any] = {
        "enabled": True,
        "window_bars": 400,
        "thresholds": {"min_trades": 0, "min_history_bars": 100},
        "scenarios": {"flash_crash_pct": 0.4, "shocks": 2},
    }
    doc.update(validation)
    return kit.make_settings(
        tmp,
        strategy={"target_fraction": "0.1", "strategic_fraction": "1.0"},
        risk={
            "max_order_notional": "1000000",
            "max_position_notional": "1000000",
            "max_fee_per_order": "10000",
            "daily_loss_limit": "1000000",
        },
        gpt={"cooldown": "0s", "max_wait": "1h"},
        validation=doc,
    )


def walk(seed: int, n: int) -> list[Decimal]:
    rng = random.Random(seed)
    price, out = 100.0, []
    for _ in range(n):
        price = round(price * math.exp(rng.gauss(0.0, 0.002)), 2)
        out.append(D(repr(price)))
    return out


def events(cfg: Settings, closes: list[Decimal], strategic_at: set[int]) -> list[BarEvent]:
    """Bars of SYM through the feature state; a strategic breakout on the bars asked for."""
    features = FeatureState(cfg.features, ())
    out: list[BarEvent] = []
    for i, close in enumerate(closes):
        opened = closes[i - 1] if i else close
        b = bar(SYM, kit.T0 + i * MIN, close, open=opened, volume=10, trades=3)
        fv = features.update(b)
        strategic = i in strategic_at
        sigs = (
            [signal(SYM, b.end_ms, "breakout", kind="breakout", strength=0.8, strategic=True)]
            if strategic
            else []
        )
        out.append(BarEvent(b, fv, sigs, Branch.STRATEGIC if strategic else None, "m#0", 0, i))
    return out
