"""Event-time windows: boundaries, watermark, late and duplicate policy, flush, bar inputs."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from decimal import Decimal

from models.core.messages import BarIn, Tick
from models.market.bars import BarBuilder, Rejected
from models.market.interval import BarInterval

T0 = int(datetime(2024, 1, 2, tzinfo=UTC).timestamp() * 1000)
MIN = 60_000


def tick(ms: int, price: str, size: str = "1", ident: str | None = None) -> Tick:
    return Tick(
        symbol="ABC",
        ts=datetime.fromtimestamp(ms / 1000, tz=UTC),
        price=Decimal(price),
        size=Decimal(size),
        id=ident,
    )


def test_window_closes_when_event_time_passes_its_end() -> None:
    b = BarBuilder("ABC", BarInterval.fixed(MIN))
    assert b.add(tick(T0 + 1_000, "10", "2")) == []
    assert b.add(tick(T0 + 30_000, "12", "1")) == []
    assert b.add(tick(T0 + 59_999, "9", "1")) == []
    bars = b.add(tick(T0 + MIN, "11"))
    assert isinstance(bars, list) and len(bars) == 1
    bar = bars[0]
    assert (bar.start_ms, bar.end_ms) == (T0, T0 + MIN)
    assert (bar.open, bar.high, bar.low, bar.close) == (
        Decimal(10),
        Decimal(12),
        Decimal(9),
        Decimal(9),
    )
    assert bar.volume == Decimal(4) and bar.trades == 3
    assert bar.vwap == (Decimal(20) + Decimal(12) + Decimal(9)) / Decimal(4)


def test_late_tick_is_rejected_and_does_not_change_emitted_bars() -> None:
    b = BarBuilder("ABC", BarInterval.fixed(MIN))
    b.add(tick(T0 + 1_000, "10"))
    b.add(tick(T0 + MIN + 1, "11"))
    late = b.add(tick(T0 + 5_000, "99"))
    assert isinstance(late, Rejected) and late.reason.startswith("late")


def test_allowed_lateness_keeps_window_open_and_orders_by_event_time() -> None:
    b = BarBuilder("ABC", BarInterval.fixed(MIN), allowed_lateness_ms=10_000)
    b.add(tick(T0 + 20_000, "10"))
    assert b.add(tick(T0 + MIN + 5_000, "11")) == []  # watermark T0+55s: still open
    assert b.add(tick(T0 + 10_000, "8")) == []  # out of order but within lateness
    bars = b.add(tick(T0 + MIN + 10_000, "12"))
    assert isinstance(bars, list) and len(bars) == 1
    assert bars[0].open == Decimal(8) and bars[0].close == Decimal(10)


def test_duplicate_ids_are_rejected() -> None:
    b = BarBuilder("ABC", BarInterval.fixed(MIN))
    b.add(tick(T0, "10", ident="a"))
    dup = b.add(tick(T0, "10", ident="a"))
    assert isinstance(dup, Rejected) and dup.reason.startswith("duplicate")


def test_dedupe_memory_is_bounded_and_remembers_at_least_half_the_window() -> None:
    b = BarBuilder("ABC", BarInterval.fixed(MIN), dedupe_window=100)
    for i in range(1000):
        b.add(tick(T0 + i, "10", ident=str(i)))
        assert b.remembered_ids() <= 100
    for back in range(1, 51):  # the newest half of the window is always remembered
        again = b.add(tick(T0 + 1000, "10", ident=str(1000 - back)))
        assert isinstance(again, Rejected) and again.reason.startswith("duplicate"), back


def test_gaps_emit_no_empty_bars_and_flush_closes_the_rest() -> None:
    b = BarBuilder("ABC", BarInterval.fixed(MIN))
    b.add(tick(T0, "10"))
    bars = b.add(tick(T0 + 10 * MIN, "11"))
    assert isinstance(bars, list) and [x.start_ms for x in bars] == [T0]
    flushed = b.flush()
    assert [x.start_ms for x in flushed] == [T0 + 10 * MIN]
    assert b.flush() == []


def test_input_bars_close_their_window_at_once() -> None:
    b = BarBuilder("ABC", BarInterval.fixed(86_400_000))
    bar = BarIn(
        symbol="ABC",
        ts=datetime(2024, 1, 2, tzinfo=UTC),
        open=Decimal("1.5"),
        high=Decimal("2"),
        low=Decimal("1"),
        close=Decimal("1.75"),
        volume=Decimal("100"),
        interval_s=86_400,
    )
    out = b.add(bar)
    assert isinstance(out, list) and len(out) == 1
    assert out[0].close == Decimal("1.75") and out[0].volume == Decimal(100)
    again = b.add(bar)
    assert isinstance(again, Rejected)


def test_coarser_input_bar_is_rejected() -> None:
    b = BarBuilder("ABC", BarInterval.fixed(MIN))
    coarse = BarIn(
        symbol="ABC",
        ts=datetime(2024, 1, 2, tzinfo=UTC),
        open=Decimal(1),
        high=Decimal(1),
        low=Decimal(1),
        close=Decimal(1),
        interval_s=3600,
    )
    out = b.add(coarse)
    assert isinstance(out, Rejected) and "coarser" in out.reason


def test_state_pickles_mid_window() -> None:
    b = BarBuilder("ABC", BarInterval.fixed(MIN))
    b.add(tick(T0 + 1, "10", ident="x"))
    c = pickle.loads(pickle.dumps(b))
    assert c.add(tick(T0 + MIN, "11")) == b.add(tick(T0 + MIN, "11"))
