"""The equity curve of a run, rebuilt from its bars and fills with the desk's own accounting.

The curve is sampled at every bar's close and labelled with the bar's open time, as
backtesting.py and pandas label bars (and as the trades are stamped: a fill happens at an open):
the portfolio after every fill up to that bar's open
(fills happen at an open: `models.execution.sim_venue`), marked to the closes known then. A fill
stamped at the same instant as a bar end (the next bar's open) comes after that sample, as the
desk marks a bar before the next one fills anything. It uses `Portfolio` itself, so the curve
and the desk cannot disagree about fees or average cost; its last point is the desk's final
equity (tests hold it to that).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from models.core.messages import Fill
from models.portfolio.book import Portfolio


@dataclass(frozen=True, slots=True)
class BarClose:
    """What the curve needs of a bar: its symbol, its open and end times, and its close."""

    symbol: str
    start_ms: int
    end_ms: int
    close: Decimal


def equity_curve(
    closes: Iterable[BarClose], fills: Sequence[Fill], initial_cash: Decimal
) -> list[tuple[int, Decimal]]:
    """(bar open ms, equity at its close) at every distinct bar end, in time order; bars of
    several symbols ending together give one point, labelled with the earliest open."""
    book = Portfolio(cash=initial_cash)
    ordered_fills = sorted(fills, key=lambda f: (f.ts_ms, f.fill_id))
    next_fill = 0
    curve: list[tuple[int, Decimal]] = []
    ends: list[int] = []
    for bar in sorted(closes, key=lambda b: (b.end_ms, b.symbol)):
        # Fills strictly before this bar's end: at its open or earlier.
        while next_fill < len(ordered_fills) and ordered_fills[next_fill].ts_ms < bar.end_ms:
            book.apply_fill(ordered_fills[next_fill], allow_short=True)
            next_fill += 1
        book.marks[bar.symbol] = bar.close
        equity = book.equity()
        if ends and ends[-1] == bar.end_ms:
            curve[-1] = (min(curve[-1][0], bar.start_ms), equity)
        else:
            ends.append(bar.end_ms)
            curve.append((bar.start_ms, equity))
    return curve
