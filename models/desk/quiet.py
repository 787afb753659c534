"""The desk's block path: a `BarBlock` at once, its quiet bars cheaply, exactly as bar by bar.

A bar is *quiet* when `TradingDesk.on_bar_event` would only mark the book, keep the bar
(`latest`, the feature history), run and age the symbol's strategy without any action, and emit
the symbol's position snapshot. `quiet_bars` proves that before it touches anything, bar by bar:
- the venue has nothing due for the symbol (the simulated exchange holds no order of it; a real
  exchange's fills come as reports, never on a bar);
- no GPT question of the symbol is out (no coalescing, no timeout);
- the desk keeps no demotion watch (`models.validation.demotion`: a live run's equity is
  watched bar by bar);
- no configured strategy starts on the bar, the symbol's strategy does not expire on it, and it
  returns no action (`models.strategy.rows.RowProbe` on the feature rows);
- the bar has no branch, or a branch its strategy owns (a routine trigger, or a strategic one GPT
  is not asked about);
and handles the run of quiet bars from `start` with the same arithmetic, in the same order, as
the per-bar path (so the book, the strategy's age, peak and drawdown, its crossing memory and the
snapshots are equal to the last digit and exponent). The run's snapshots leave as one
`PositionColumns`; `latest` and the history get the run's last bar's event, the other bars are
kept lazily (`FeatureHistory.add_block`), and when the next bar goes to `on_bar_event` at once
(which keeps its own event as `latest` before anything reads it) the last bar is kept lazily
too and no event is made (`followed`); the validation gate's window (`bar_history`), when
kept, gets every bar of the run. The first bar that is not quiet is left for
`on_bar_event`, unchanged: a fallback is always right.
"""

from __future__ import annotations

from bisect import bisect_left
from decimal import Decimal
from itertools import repeat
from operator import add, mul, sub
from typing import TYPE_CHECKING, Final

from models.core.blocks import BarBlock, PositionColumns
from models.core.events import BarEvent
from models.core.messages import Branch
from models.execution.sim_venue import SimulatedExchange
from models.execution.venue import ExchangeVenue
from models.portfolio.book import DAY_MS, Portfolio, Position
from models.strategy.rows import probe
from models.strategy.user_file import STANDING_PREFIX

if TYPE_CHECKING:
    from models.desk.desk import TradingDesk

_ZERO: Final = Decimal(0)
SHORTEST_RUN: Final = 2  # bars left in a block worth the block path's fixed cost (~ one bar's)


def quiet_bars(
    desk: TradingDesk,
    block: BarBlock,
    start: int,
    branched: list[int] | None = None,
    *,
    followed: bool = False,
) -> tuple[PositionColumns | None, int]:
    """Handle the quiet bars of `block` from `start`; their snapshots (None: no bar was quiet)
    and the index of the first bar left for `on_bar_event` (`len(block)`: none).
    `branched`: the bars with a branch, in order (`sorted(block.branches)`), if known.
    `followed`: the caller hands that first bar to `on_bar_event` at once, which keeps its own
    event as the symbol's `latest` before anything reads it, so the run's last event is not
    made for `latest` (the caller makes it if that bar fails before: `keep_latest`)."""
    if branched is None:
        branched = sorted(block.branches)
    stop = _quiet_end(desk, block, start, branched)
    if stop == start:
        return None, start
    return _apply(desk, block, start, stop, followed and stop < len(block)), stop


def fills_due(desk: TradingDesk, symbol: str) -> bool:
    """Whether the simulated venue holds an order of `symbol` (the bar may fill it): the desk
    makes such a bar's fills (`TradingDesk._venue_fills`) and then asks `quiet_bars` again,
    from the same bar, which the fills may have left quiet."""
    exchange = desk.exchange
    return type(exchange) is SimulatedExchange and bool(exchange.pending.get(symbol))


def keep_latest(desk: TradingDesk, block: BarBlock, last: int, failed: BarEvent) -> None:
    """A run of `block` ending at bar `last` was handled `followed`, and `on_bar_event` failed
    on the next bar (`failed`): the symbol's `latest` is the run's last bar, as bar by bar,
    unless `on_bar_event` had kept its own event already."""
    if desk.latest.get(block.symbol) is not failed:
        desk.latest[block.symbol] = block.event(last)


def _quiet_end(desk: TradingDesk, block: BarBlock, lo: int, branched: list[int]) -> int:
    """The end of the run of quiet bars from `lo` (nothing changed yet, except the strategy's
    crossing memory, advanced over the run it returns)."""
    hi = len(block)
    sym = block.symbol
    exchange = desk.exchange
    if type(exchange) is SimulatedExchange:
        if exchange.pending.get(sym):
            return lo
    elif type(exchange) is not ExchangeVenue:
        return lo  # a venue this module does not know: every bar the per-bar way
    if sym in desk.gpt.pending:
        return lo
    if desk.demotion is not None:  # every bar's equity is watched (a live run: one bar a time)
        return lo
    strategies = desk.strategies
    active = strategies.strategies.get(sym)
    if active is None:
        started = strategies.standing_started
        if any(
            sym in s.universe and f"{STANDING_PREFIX}{s.spec.name}" not in started
            for s in strategies.standing
        ):
            return lo  # a configured strategy starts on this bar
        return _next_branch(block, branched, lo, hi, None)  # any branch decides something
    if sym == active.symbol and not active.activation_id.startswith(STANDING_PREFIX):
        hi = min(hi, lo + max(0, active.strategy.horizon_bars - active.bars - 1))
    if desk.gpt.asks_about(sym) and not strategies.is_standing(sym):  # a strategic one asks
        hi = _next_branch(block, branched, lo, hi, Branch.STRATEGIC)
    if hi == lo:
        return lo
    portfolio = desk.portfolio
    held = portfolio.quantity(sym)
    position = held + desk.decisions.in_flight(sym)
    entry = portfolio.positions[sym].avg_cost if held != 0 else None
    cols = block.bars
    floats = None if cols.floats is None else cols.floats.close  # float(close), bit for bit
    return probe(active.strategy, block.features.names).quiet_until(
        sym, block.features.rows, cols.close, cols.end_ms, lo, hi, position, entry, floats
    )


def _next_branch(
    block: BarBlock, branched: list[int], lo: int, hi: int, only: Branch | None
) -> int:
    """The first bar in `lo..hi-1` with a branch (`only` that branch, if given); `hi`: none."""
    for k in range(bisect_left(branched, lo), len(branched)):
        i = branched[k]
        if i >= hi:
            break
        if only is None or block.branches[i] is only:
            return i
    return hi


def _apply(
    desk: TradingDesk, block: BarBlock, lo: int, hi: int, followed: bool = False
) -> PositionColumns:
    """Bars `lo..hi-1`, proven quiet: what `on_bar_event` does to the book, the strategy and the
    kept bars, and their snapshots (`followed`: bar `hi` goes to `on_bar_event` next, which
    keeps `latest`)."""
    sym = block.symbol
    cols = block.bars
    portfolio = desk.portfolio
    active = desk.strategies.strategies.get(sym)
    ages = active is not None and sym == active.symbol
    pos = portfolio.positions.get(sym, Position())
    qty, avg = pos.quantity, pos.avg_cost
    cash = portfolio.cash
    closes = cols.close[lo:hi]
    ends = cols.end_ms[lo:hi]
    # equity() = cash + sum(qty * mark over positions, 0): the symbol's term is the only one
    # that moves, so the others fold as before and after it, in the book's order.
    prefix: Decimal = _ZERO
    after: list[Decimal] = []
    seen = False
    for s, p in portfolio.positions.items():
        if s == sym:
            seen = True
            continue
        term = p.quantity * portfolio.marks.get(s, p.avg_cost)
        if seen:
            after.append(term)
        else:
            prefix = prefix + term
    # The snapshot's, and the strategy's: (close - avg) * qty a bar, the same operations as a
    # comprehension would make, in C (`map`).
    unrealized = list(map(mul, map(sub, closes, repeat(avg)), repeat(qty)))
    if not ages or qty == 0 or (active is not None and active.universe == {sym}):
        _mark_all(portfolio, sym, closes, ends)
        if active is not None and ages:
            if qty == 0:  # its open profit does not move with this symbol's mark
                active.on_quiet_bars(portfolio, hi - lo)
            else:
                active.on_held_bars(unrealized)
    else:  # held, and other symbols in the universe: aged bar by bar, as `on_bar` does
        assert active is not None
        for close, end in zip(closes, ends, strict=True):
            portfolio.mark(sym, close, end)
            active.on_bar(portfolio)
    if not seen:
        equity = [cash + prefix] * len(closes)
    elif not after:  # cash + (prefix + qty * close) a bar
        equity = list(
            map(add, repeat(cash), map(add, repeat(prefix), map(mul, repeat(qty), closes)))
        )
    else:
        equity = []
        for close in closes:
            total = prefix + qty * close
            for term in after:
                total = total + term
            equity.append(cash + total)
    if followed:
        desk.feature_history.add_block(block, lo, hi)
    else:
        last = block.event(hi - 1)
        desk.latest[sym] = last
        desk.feature_history.add_block(block, lo, hi, last.features)
    if desk.bar_history is not None:  # the validation gate's window (GPT desks only)
        desk.bar_history.add_columns(cols, lo, hi)
    return PositionColumns(
        symbol=sym,
        quantity=qty,
        avg_cost=avg,
        realized_pnl=pos.realized_pnl,
        cash=cash,
        ts_ms=ends,
        mark_price=closes,
        unrealized_pnl=unrealized,
        equity=equity,
    )


def _mark_all(portfolio: Portfolio, sym: str, closes: list[Decimal], ends: list[int]) -> None:
    """`Portfolio.mark` of each bar, where only the last mark and a new day's start equity
    (taken from the marks as they were then) can be seen afterwards."""
    day = portfolio.day
    if (max(ends) - 1) // DAY_MS <= day:  # no bar of a later day (most runs)
        portfolio.marks[sym] = closes[-1]
        return
    for k, end in enumerate(ends):
        if (end - 1) // DAY_MS > day:
            if k:
                portfolio.marks[sym] = closes[k - 1]
            portfolio.mark(sym, closes[k], end)
            day = portfolio.day
    portfolio.marks[sym] = closes[-1]
