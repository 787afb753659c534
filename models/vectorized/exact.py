"""The trade loop again, with the desk's own money arithmetic: `Decimal`, and the very functions
the desk calls (`models.execution.sizing.size_at_fill` and `fee_of` at a fill, the review
loop's `estimated_price` / `fee_for` cash check at a decision, `round_to_lot`), so its fills are
the desk's to the last digit.

Why both this and `models.vectorized.jit.trade_loop`: the float64 loop is what makes a sweep
fast (numba cannot run `Decimal`), and this one is the reference it is tested against
(quantities equal, prices and fees within 1e-8) and what `evaluate(..., exact=True)` runs when
the last digit matters (a confirmation, a report). It reads the same signal columns, so only
the money differs; its cost is one Python step per bar (~1 s per million bars).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

import numpy as np

from models.config.settings import ExecutionConfig
from models.core.messages import Side
from models.core.money import round_to_lot
from models.execution.sizing import BPS, PRICE_QUANTUM, Funds, fee_of, size_at_fill
from models.review.risk import estimated_price, fee_for
from models.vectorized import jit
from models.vectorized.bars import FloatArray

__all__ = ["ExactFill", "exact_trade_loop"]

ExactFill = tuple[int, Decimal, Decimal, Decimal, int]
"""(bar index, quantity, price, fee, kind) of one fill."""

_ZERO: Final = Decimal(0)
_ONE: Final = Decimal(1)


def _dec(x: float) -> Decimal:
    return Decimal(repr(x))


def exact_trade_loop(
    open_: FloatArray,
    close: FloatArray,
    enter: np.ndarray[Any, np.dtype[np.bool_]],
    leave: np.ndarray[Any, np.dtype[np.bool_]],
    *,
    fraction: Decimal,
    stop_loss: Decimal | None,
    take_profit: Decimal | None,
    execution: ExecutionConfig,
    lot: Decimal,
    min_cash: Decimal,
) -> tuple[list[ExactFill], FloatArray]:
    """As `models.vectorized.jit.trade_loop`: (fills as (bar, quantity, price, fee, kind) in
    Decimal, equity at every close as float64)."""
    opens, closes = open_.tolist(), close.tolist()
    entries, exits = enter.tolist(), leave.tolist()
    n = len(closes)
    cash = execution.initial_cash
    qty = _ZERO
    entry = _ZERO
    pending, kind = 0, jit.ENTRY
    fills: list[ExactFill] = []
    equity = np.zeros(n, dtype=np.float64)
    slip = execution.slippage_bps / BPS
    size = min(fraction, _ONE)
    for t in range(n):
        if pending:
            o = _dec(opens[t])
            if pending == 1:
                price = (o + o * slip).quantize(PRICE_QUANTUM)
                funds = Funds(cash=cash - min_cash, equity=cash, held=_ZERO)
                bought = size_at_fill(size, funds, price, execution, lot).quantity
                if bought > 0:
                    fee = fee_of(bought, price, execution)
                    cash -= bought * price + fee
                    qty, entry = bought, price
                    fills.append((t, bought, price, fee, kind))
            else:
                price = (o - o * slip).quantize(PRICE_QUANTUM)
                fee = fee_of(qty, price, execution)
                cash += qty * price - fee
                fills.append((t, qty, price, fee, kind))
                qty, entry = _ZERO, _ZERO
            pending = 0
        if qty > 0:
            c = _dec(closes[t])
            equity[t] = float(cash + qty * c)
            if stop_loss is not None and c <= entry * (_ONE - stop_loss):
                pending, kind = -1, jit.STOP_LOSS
            elif take_profit is not None and c >= entry * (_ONE + take_profit):
                pending, kind = -1, jit.TAKE_PROFIT
            elif exits[t]:
                pending, kind = -1, jit.EXIT
            continue
        equity[t] = float(cash)
        if not entries[t] or cash <= 0 or closes[t] <= 0:
            continue
        c = _dec(closes[t])
        estimate = round_to_lot(cash * fraction / c, lot)  # to_intent, flat: equity is cash
        px = estimated_price(c, Side.BUY, execution)
        spendable = cash - min_cash
        notional = estimate * px
        if estimate > 0 and notional + fee_for(notional, execution) > spendable:
            # the review loop's cash check, and the engine's adjustment to what it allows
            estimate = round_to_lot(min(estimate, spendable / (px + fee_for(px, execution))), lot)
        if estimate > 0:
            pending, kind = 1, jit.ENTRY
    return fills, equity
