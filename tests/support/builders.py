"""Message builders several test files used to write out field by field: a bar, a signal, the
event the desk gets for a bar, an order, a fill. Each takes what tests vary as arguments and
fills the rest the way those tests did (a flat one-minute bar of volume 1 and one trade, vwap at
the close; a pending order placed and updated at the same time), so a test says only what it
is about. Optional model fields a builder is not given stay unset.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import numpy as np

from models.core.events import BarEvent
from models.core.messages import (
    Bar,
    Branch,
    Direction,
    FeatureVector,
    Fill,
    Order,
    OrderStatus,
    Side,
    Signal,
)
from models.vectorized.bars import BarArrays

MIN = 60_000
T = TypeVar("T")
Number = str | int | Decimal


def bar(
    symbol: str,
    start_ms: int,
    close: Number,
    *,
    open: Number | None = None,
    length_ms: int = MIN,
    volume: Number = 1,
    trades: int = 1,
) -> Bar:
    """A bar from `start_ms` to `start_ms + length_ms`, flat at `close` unless `open` is given
    (high and low are then the larger and smaller of the two); vwap at the close."""
    c = Decimal(close)
    o = c if open is None else Decimal(open)
    return Bar(
        symbol=symbol,
        start_ms=start_ms,
        end_ms=start_ms + length_ms,
        open=o,
        high=max(o, c),
        low=min(o, c),
        close=c,
        volume=Decimal(volume),
        trades=trades,
        vwap=c,
    )


def walk_bar(
    i: int, open: Decimal, high: Decimal, low: Decimal, close: Decimal, volume: Decimal
) -> Bar:
    """Bar `i` of a generated run of one-minute SIMA bars from the epoch, vwap at its typical
    price `(high + low + close) / 3` (as a bar built from one input bar has it)."""
    return Bar(
        symbol="SIMA",
        start_ms=MIN * i,
        end_ms=MIN * (i + 1),
        open=open,
        high=high,
        low=low,
        close=close,
        volume=volume,
        trades=1,
        vwap=(high + low + close) / 3,
    )


def signal(
    symbol: str,
    ts_ms: int,
    trigger: str,
    *,
    kind: str = "crossover",
    direction: Direction = Direction.LONG,
    strength: float = 0.5,
    strategic: bool = False,
    detail: dict[str, float | str | None] | None = None,
) -> Signal:
    extra: dict[str, Any] = {} if detail is None else {"detail": detail}
    return Signal(
        symbol=symbol,
        ts_ms=ts_ms,
        trigger=trigger,
        kind=kind,
        direction=direction,
        strength=strength,
        strategic=strategic,
        **extra,
    )


def bar_event(
    b: Bar,
    signals: Sequence[Signal] = (),
    branch: Branch | None = None,
    values: dict[str, float | None] | None = None,
) -> BarEvent:
    """What the desk gets for bar `b`: its feature vector (the close, `values`), the signals it
    fired and the branch they route to."""
    fv = FeatureVector(symbol=b.symbol, ts_ms=b.end_ms, close=float(b.close), values=values or {})
    return BarEvent(b, fv, list(signals), branch)


def order(
    client_order_id: str,
    decision_id: str,
    symbol: str,
    *,
    side: Side = Side.BUY,
    quantity: Number = 1,
    status: OrderStatus = OrderStatus.PENDING,
    placed_ms: int = 0,
    updated_ms: int | None = None,
    **extra: Any,
) -> Order:
    """An order placed at `placed_ms` and last updated then unless `updated_ms` is given;
    `extra` sets the optional fields (reason, version)."""
    return Order(
        client_order_id=client_order_id,
        decision_id=decision_id,
        symbol=symbol,
        side=side,
        quantity=Decimal(quantity),
        status=status,
        placed_ms=placed_ms,
        updated_ms=placed_ms if updated_ms is None else updated_ms,
        **extra,
    )


def fill(
    fill_id: str,
    client_order_id: str,
    decision_id: str,
    symbol: str,
    *,
    side: Side = Side.BUY,
    quantity: Number,
    price: Number,
    fee: Number = 0,
    ts_ms: int = 0,
) -> Fill:
    return Fill(
        fill_id=fill_id,
        client_order_id=client_order_id,
        decision_id=decision_id,
        symbol=symbol,
        side=side,
        quantity=Decimal(quantity),
        price=Decimal(price),
        fee=Decimal(fee),
        ts_ms=ts_ms,
    )


def of(kind: type[T], out: Iterable[object]) -> list[T]:
    """The items of `out` that are a `kind`, in order."""
    return [x for x in out if isinstance(x, kind)]


def now_ms() -> int:
    """The wall clock in epoch milliseconds (what an exchange stamps its trades with)."""
    return time.time_ns() // 1_000_000


def walk_arrays(
    seed: int,
    n: int,
    *,
    drift: float = 0.0,
    vol: float = 0.002,
    symbol: str = "SIMA",
    first: float = 100.0,
) -> BarArrays:
    """A generated random walk of `n` one-minute bars as columns (`BarArrays`): log returns of
    mean `drift` and stdev `vol` from `numpy.random.default_rng(seed)`, each bar opening at the
    previous close, high and low a little beyond, volume around 10."""
    rng = np.random.default_rng(seed)
    close = first * np.exp(np.cumsum(rng.normal(drift, vol, n)))
    open_ = np.concatenate(([first], close[:-1]))[:n]
    wick = 1.0 + np.abs(rng.normal(0.0, vol / 2, n))
    return BarArrays.from_columns(
        symbol,
        np.arange(n, dtype=np.int64) * MIN,
        MIN,
        open_,
        np.maximum(open_, close) * wick,
        np.minimum(open_, close) / wick,
        close,
        10.0 + rng.random(n),
    )
