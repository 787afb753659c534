"""Fills paired into round trips: a trade opens when a symbol's position leaves zero and closes
when it returns to zero.

Convention (position-level round trips, as Freqtrade does): every fill that moves a position
away from zero belongs to the open trade (scaling in), every fill that moves it back towards
zero too (a partial exit does not split the trade); prices are size-weighted averages of each
side, `quantity` is everything that was entered, `fees` every fee of the trade. backtesting.py
instead makes a trade of each entry order and closes them FIFO; for the usual all-in / close-all
strategies (one entry fill, one exit fill) both conventions give the same trade, which is what
the backtesting.py comparison tests rely on. A fill that crosses zero (a long sold into a short)
closes the trade with the part that flattens it and opens a new one with the remainder; its fee
is split between the two in proportion to quantity (the two parts sum to the fee exactly).

The pnl of a trade is computed from the fills' own notionals (never from the rounded averages),
so `sum(closed pnl) + sum(open unrealised pnl at a mark)` equals the cash change of the fills
plus the positions valued at that mark, exactly, in Decimal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Context, Decimal, localcontext

from models.core.messages import Fill, Side
from models.performance.types import Direction, RoundTrip

ZERO = Decimal(0)
EXACT_DIGITS = 80
"""Sums of notionals are taken with this many digits, so no fill's product is ever rounded
(prices and sizes have at most 12 decimals and stay < 1e15: products fit in 54 digits)."""
_AVERAGE = Context()  # averages are for reading: the default 28 digits
FEE_EXPONENT = -12
"""A fee split across a flip is rounded to 1e-12 (the decision log's scale), or finer if the fee
itself is finer, so both parts add back to the fee exactly."""
END_OF_RUN = "end of run"
"""The exit reason of an open trade closed by `close_open_trades` (marked at the last price)."""


@dataclass(frozen=True, slots=True)
class TaggedFill:
    """A fill and who placed its order: the controller ("local" engine, "strategy" file or
    "gpt"), the strategy id and the order's reason (for an exit: `<strategy> stop_loss: ...`,
    `<strategy> take_profit: ...`, `<strategy> exit: ...`, or free text)."""

    fill: Fill
    controller: str
    strategy: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class OpenTrade:
    """A trade whose position has not returned to zero. Sums rather than averages, so that
    closing it later (or marking it) is exact; partial exits so far are in `exit_*`."""

    symbol: str
    strategy: str
    controller: str
    direction: Direction
    entry_ms: int
    last_ms: int
    entry_quantity: Decimal
    entry_notional: Decimal
    exit_quantity: Decimal
    exit_notional: Decimal
    fees: Decimal

    @property
    def quantity(self) -> Decimal:
        """The open size (positive for longs and shorts alike)."""
        return self.entry_quantity - self.exit_quantity

    @property
    def entry_price(self) -> Decimal:
        return _AVERAGE.divide(self.entry_notional, self.entry_quantity)

    def unrealized_pnl(self, mark: Decimal) -> Decimal:
        """The trade's pnl if the rest were closed at `mark` without a fee: partial exits and
        every fee paid so far included."""
        sign = 1 if self.direction == "long" else -1
        with localcontext(prec=EXACT_DIGITS):
            value = self.exit_notional + self.quantity * mark
            return sign * (value - self.entry_notional) - self.fees

    def close(
        self, price: Decimal, ts_ms: int, fee: Decimal = ZERO, reason: str = END_OF_RUN
    ) -> RoundTrip:
        """The round trip this trade would be if the rest were closed at `price` (with `fee`):
        what backtesting.py's `finalize_trades=True` does at the end of a run."""
        with localcontext(prec=EXACT_DIGITS):
            exit_notional = self.exit_notional + self.quantity * price
            fees = self.fees + fee
        return _round_trip(
            replace(
                self,
                last_ms=ts_ms,
                exit_quantity=self.entry_quantity,
                exit_notional=exit_notional,
                fees=fees,
            ),
            reason,
        )


@dataclass(frozen=True, slots=True)
class Pairing:
    """Closed round trips in the order they closed, and the trades still open (one per symbol
    at most, in the order they opened)."""

    closed: tuple[RoundTrip, ...]
    open: tuple[OpenTrade, ...]


def _round_trip(t: OpenTrade, reason: str) -> RoundTrip:
    sign = 1 if t.direction == "long" else -1
    with localcontext(prec=EXACT_DIGITS):
        pnl = sign * (t.exit_notional - t.entry_notional) - t.fees
    return RoundTrip(
        symbol=t.symbol,
        strategy=t.strategy,
        controller=t.controller,
        direction=t.direction,
        entry_ms=t.entry_ms,
        exit_ms=t.last_ms,
        entry_price=_AVERAGE.divide(t.entry_notional, t.entry_quantity),
        exit_price=_AVERAGE.divide(t.exit_notional, t.exit_quantity),
        quantity=t.entry_quantity,
        fees=t.fees,
        pnl=pnl,
        exit_reason=reason,
    )


def _opened(tf: TaggedFill, quantity: Decimal, fee: Decimal) -> OpenTrade:
    f = tf.fill
    return OpenTrade(
        symbol=f.symbol,
        strategy=tf.strategy,
        controller=tf.controller,
        direction="long" if f.side == Side.BUY else "short",
        entry_ms=f.ts_ms,
        last_ms=f.ts_ms,
        entry_quantity=quantity,
        entry_notional=quantity * f.price,
        exit_quantity=ZERO,
        exit_notional=ZERO,
        fees=fee,
    )


def _check(f: Fill, last_ms: int | None) -> None:
    if not (f.quantity.is_finite() and f.quantity > 0):
        raise ValueError(f"fill {f.fill_id}: quantity must be > 0, got {f.quantity}")
    if not (f.price.is_finite() and f.price > 0):
        raise ValueError(f"fill {f.fill_id}: price must be > 0, got {f.price}")
    if not f.fee.is_finite():
        raise ValueError(f"fill {f.fill_id}: fee must be a finite number, got {f.fee}")
    if last_ms is not None and f.ts_ms < last_ms:
        raise ValueError(f"fill {f.fill_id}: fills must come in time order ({f.ts_ms} < {last_ms})")


def _split(fee: Decimal, share: Decimal) -> Decimal:
    exponent = fee.as_tuple().exponent
    quantum = min(exponent if isinstance(exponent, int) else 0, FEE_EXPONENT)
    return (fee * share).quantize(Decimal(1).scaleb(quantum))


def pair_fills(fills: Iterable[TaggedFill]) -> Pairing:
    """Pair fills (in time order, any symbols interleaved) into round trips.

    Raises `ValueError` (one line) for a fill out of time order or with a quantity or price
    that is not > 0."""
    with localcontext(prec=EXACT_DIGITS):
        open_: dict[str, OpenTrade] = {}
        closed: list[RoundTrip] = []
        last_ms: int | None = None
        for tf in fills:
            f = tf.fill
            _check(f, last_ms)
            last_ms = f.ts_ms
            trade = open_.get(f.symbol)
            side: Direction = "long" if f.side == Side.BUY else "short"
            if trade is None:
                open_[f.symbol] = _opened(tf, f.quantity, f.fee)
                continue
            if trade.direction == side:  # scaling in
                open_[f.symbol] = replace(
                    trade,
                    last_ms=f.ts_ms,
                    entry_quantity=trade.entry_quantity + f.quantity,
                    entry_notional=trade.entry_notional + f.quantity * f.price,
                    fees=trade.fees + f.fee,
                )
                continue
            closing = min(f.quantity, trade.quantity)
            rest = f.quantity - closing
            fee_closing = f.fee if not rest else _split(f.fee, closing / f.quantity)
            trade = replace(
                trade,
                last_ms=f.ts_ms,
                exit_quantity=trade.exit_quantity + closing,
                exit_notional=trade.exit_notional + closing * f.price,
                fees=trade.fees + fee_closing,
            )
            if trade.quantity:
                open_[f.symbol] = trade  # a partial exit
                continue
            closed.append(_round_trip(trade, tf.reason))
            del open_[f.symbol]
            if rest:  # crossed zero: the remainder opens the opposite trade
                open_[f.symbol] = _opened(tf, rest, f.fee - fee_closing)
    return Pairing(closed=tuple(closed), open=tuple(open_.values()))


def close_open_trades(
    open_trades: Iterable[OpenTrade],
    prices: Mapping[str, Decimal],
    ts_ms: int,
    fee_rate: Decimal = ZERO,
) -> tuple[RoundTrip, ...]:
    """Each open trade closed at its symbol's `prices` entry at `ts_ms`, paying `fee_rate` of the
    exit notional (backtesting.py's `finalize_trades=True`, which closes at the last bar's open
    with its commission). Raises `KeyError` for a symbol without a price."""
    return tuple(
        t.close(prices[t.symbol], ts_ms, fee=t.quantity * prices[t.symbol] * fee_rate)
        for t in open_trades
    )


def exit_kind(reason: str) -> str:
    """The kind of an exit reason: "stop_loss", "take_profit", "exit" (a strategy's exit
    rule), "end of run" (marked at the last price), or "other" (free text, e.g. the local
    engine's or GPT's)."""
    if reason == END_OF_RUN:
        return END_OF_RUN
    for kind in ("stop_loss", "take_profit", "exit"):
        if f" {kind}: " in f" {reason}":
            return kind
    return "other"
