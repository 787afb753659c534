"""The shapes the statistics and the report share: a round trip and one statistic.

Kept apart from the computations so the report (api/) and the statistics (models/performance)
can be written and tested independently: both only agree on these plain, frozen values.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

Direction = Literal["long", "short"]
Unit = Literal["money", "pct", "ratio", "count", "duration", "time", "text"]
"""How a statistic reads: money (Decimal, rounded to cents for reading), pct (a fraction:
0.1 shows as 10.00%), ratio (a plain float), count (int), duration (milliseconds), time (epoch
milliseconds, UTC), text."""


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """One closed trade: the fills that opened a position and the fills that closed it.

    Prices are size-weighted averages of the fills on each side; `pnl` is net of every fee of
    the trade (entry and exit); `return_pct` is pnl over the entry notional (a fraction)."""

    symbol: str
    strategy: str  # the strategy id ("local-routine", "sma-cross@v1#...", ...)
    controller: str  # who proposed the entry: "local", "strategy" (a strategy file), "gpt"
    direction: Direction
    entry_ms: int
    exit_ms: int
    entry_price: Decimal
    exit_price: Decimal
    quantity: Decimal
    fees: Decimal
    pnl: Decimal
    exit_reason: str

    @property
    def duration_ms(self) -> int:
        return self.exit_ms - self.entry_ms

    @property
    def return_pct(self) -> float:
        notional = self.entry_price * self.quantity
        return float(self.pnl / notional) if notional else 0.0


@dataclass(frozen=True, slots=True)
class Statistic:
    """One line of the statistics table: a stable key for scripts (`--json`), a label for
    people, the value (None when it is undefined, e.g. a win rate without trades) and its unit."""

    key: str
    label: str
    value: Decimal | float | int | str | None
    unit: Unit


@dataclass(frozen=True, slots=True)
class GroupStatistics:
    """One row of a breakdown: the group (a symbol, a strategy id, a controller, an exit kind)
    and its statistics, the same keys in the same order for every row of the breakdown."""

    group: str
    statistics: tuple[Statistic, ...]


@dataclass(frozen=True, slots=True)
class Performance:
    """Everything the statistics of a run give: the ordered table, then a breakdown of the
    closed trades per symbol, strategy, controller ("local", "strategy", "gpt") and exit kind
    ("stop_loss", "take_profit", "exit", "end of run", "other")."""

    statistics: tuple[Statistic, ...]
    by_symbol: tuple[GroupStatistics, ...]
    by_strategy: tuple[GroupStatistics, ...]
    by_controller: tuple[GroupStatistics, ...]
    by_exit_kind: tuple[GroupStatistics, ...]

    def get(self, key: str) -> Statistic:
        """The statistic with this key (`KeyError` if there is none)."""
        for s in self.statistics:
            if s.key == key:
                return s
        raise KeyError(key)
