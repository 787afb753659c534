"""A live run's divergence from the simulator, measured in the flow as its orders settle.

`models.validation.promotion.divergence` judges a finished run from its rows. A run with real
orders must not wait for that: its desk keeps a `DivergenceWatch` (inside the `DemotionWatch`,
snapshotted with it) that follows each order it places from placement to measurement:

- the simulator's side: the open of the symbol's first bar starting at or after the order was
  placed (`on_bar`; the simulator fills there, with `execution.slippage_bps` against it);
- the venue's side: the fills the exchange reported for it (`on_fills`), summed as they come
  (quantity, notional, fee of the fills with a quantity, and how many were reported), until a
  final report settles it (filled, partly filled and closed, rejected, expired).

An order is *measured* once both are known, and enters a bounded window of the last
`promotion.divergence_window` measured orders; `divergence()` scores that window exactly as
the batch `divergence` scores the same orders and fills (slippage, fill mismatch, P&L gap, the
largest over its scale). Orders still waiting are bounded too (the oldest are dropped past
`MAX_WAITING_FACTOR` windows: an order the exchange never settles is the batch measure's
business). Everything is event time: bars and reports, no wall clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from models.config.gates import PromotionConfig
from models.core.messages import Side
from models.execution.sizing import BPS
from models.validation.promotion import Divergence, FillSeen, OrderSeen, sim_price

__all__ = ["MAX_WAITING_FACTOR", "DivergenceWatch", "OrderTrack"]

MAX_WAITING_FACTOR = 4
"""Orders placed and not measured yet kept at most: this many windows (at least 64)."""


@dataclass(slots=True)
class OrderTrack:
    """One order on its way to measurement: the simulator's open once its bar came, the
    venue's fills summed as reported, and whether a final report settled it."""

    order: OrderSeen
    sim_open: Decimal | None = None
    reported: int = 0  # fill records reported (any quantity)
    quantity: Decimal = Decimal(0)  # of the fills with a quantity
    notional: Decimal = Decimal(0)
    fee: Decimal = Decimal(0)
    settled: bool = False


@dataclass(slots=True)
class DivergenceWatch:
    """The orders waiting to be measured and the window of the last `window` measured."""

    window: int
    waiting: dict[str, OrderTrack] = field(default_factory=dict)
    measured: deque[OrderTrack] = field(default_factory=deque)

    def placed(self, order: OrderSeen) -> None:
        """An order the desk placed (once per client order id)."""
        if order.client_order_id in self.waiting:
            return
        self.waiting[order.client_order_id] = OrderTrack(order)
        cap = max(64, MAX_WAITING_FACTOR * self.window)
        while len(self.waiting) > cap:  # dicts keep insertion order: the oldest first
            del self.waiting[next(iter(self.waiting))]

    def on_bar(self, symbol: str, start_ms: int, open_: Decimal) -> int:
        """A bar of `symbol`: the simulator's open for its orders placed at or before its start
        that had none; returns how many orders were measured by it."""
        if not self.waiting:  # most bars
            return 0
        done = 0
        for cid, track in list(self.waiting.items()):
            order = track.order
            if track.sim_open is None and order.symbol == symbol and start_ms >= order.placed_ms:
                track.sim_open = open_
                done += self._measure_if_ready(cid, track)
        return done

    def on_fills(self, client_order_id: str, fills: Sequence[FillSeen], settled: bool) -> int:
        """Fills the exchange reported for an order (new ones only), and whether its report is
        final; returns 1 when this measured the order, else 0 (an order not placed by this run,
        or measured already: a late report changes nothing here)."""
        track = self.waiting.get(client_order_id)
        if track is None:
            return 0
        for f in fills:
            track.reported += 1
            if f.quantity > 0:
                track.quantity += f.quantity
                track.notional += f.quantity * f.price
                track.fee += f.fee
        track.settled = track.settled or settled
        return self._measure_if_ready(client_order_id, track)

    def _measure_if_ready(self, cid: str, track: OrderTrack) -> int:
        if not track.settled or track.sim_open is None:
            return 0
        del self.waiting[cid]
        self.measured.append(track)
        while len(self.measured) > self.window:
            self.measured.popleft()
        return 1

    def divergence(
        self,
        *,
        slippage_bps: Decimal,
        fee_bps: Decimal,
        equity: Decimal,
        policy: PromotionConfig,
    ) -> Divergence:
        """The window's divergence: what `promotion.divergence` gives for the same orders (in
        the order they were measured), fills and bars."""
        slips: list[Decimal] = []
        gap = Decimal(0)
        mismatched = matched = reported = 0
        for t in self.measured:
            if t.reported:
                reported += 1
            if t.quantity <= 0:  # the simulator fills it, the venue did not
                mismatched += 1
                continue
            assert t.sim_open is not None  # measured: its bar came
            if t.sim_open <= 0:
                continue
            matched += 1
            sim = sim_price(t.sim_open, t.order.side, slippage_bps)
            vwap = t.notional / t.quantity
            slips.append(abs(vwap - sim) / sim * BPS)
            sign = 1 if t.order.side is Side.BUY else -1
            gap += sign * t.quantity * (vwap - sim) + (t.fee - t.quantity * sim * fee_bps / BPS)
        expected = len(self.measured)
        mean_slip = sum(slips, Decimal(0)) / len(slips) if slips else Decimal(0)
        mismatch = Decimal(mismatched) / max(expected, 1)
        pnl_gap = abs(gap) / equity if equity > 0 else Decimal(0)
        score = max(
            mean_slip / policy.slippage_scale_bps,
            mismatch / policy.fill_mismatch_scale,
            pnl_gap / policy.pnl_gap_scale,
        )
        return Divergence(mean_slip, mismatch, pnl_gap, matched, expected, reported, score)
