"""Keep the strategy, or send it back for review? (issue 14, item 5)

Each running strategy's realised record (`RealisedRecord`: its closed trades' P&L and returns,
its equity marks) is judged against what its backtest or validation promised (`Promise`) once
it has closed `min_trades` trades, over its last `window_trades` trades:
- hit rate below `hit_rate_floor x` the promised hit rate,
- a Sharpe of its trade returns below the promised Sharpe less `sharpe_slack`,
- a drawdown of its equity beyond `drawdown_ceiling x` the promised maximum drawdown
  (at least `min_drawdown`),
- a realised P&L below `-max_loss` (money, its own scale).
Any of them is a `review` verdict with its reasons (what was promised, what came, both
figures); none is `keep`. Before `min_trades` the verdict is `keep` with the count, because a
handful of trades says nothing. The desk sends a strategy under review to close-only and to the
controller with the verdict's report, and logs every verdict; GPT's review prompt carries
`RealisedRecord.summary()`, its realised record, so it learns from its own results.

How often it errs, measured on generated trades (400 seeds, 30-trade window, a promise of
55 % hits and 0.15 Sharpe per trade): a strategy trading as promised is sent back 4.8 % of
the time; one that lost its edge (-0.5 sigma a trade) is kept 3.0 % of the time, one at -0.3
sigma 25 % (30 trades cannot tell that apart better; a 50-trade window: 15 %, and 1.8 % of good
ones sent back). tests/unit/test_feedback.py holds other seeds to these rates.

The figures use the same definitions as the backtest report (models/performance): a trade's
return is its P&L over its entry notional, the Sharpe is the mean over the standard deviation
of trade returns (per trade, not annualised: comparable with a promise made the same way).
Money is Decimal; ratios are floats.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["FeedbackConfig", "Promise", "RealisedRecord", "Verdict", "VerdictKind", "judge"]


class FeedbackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_trades: int = Field(default=10, ge=1)
    window_trades: int = Field(default=30, ge=1)
    hit_rate_floor: float = Field(default=0.6, ge=0, le=1)
    sharpe_slack: float = Field(default=0.3, ge=0)
    drawdown_ceiling: float = Field(default=1.5, ge=1)
    min_drawdown: float = Field(default=0.05, gt=0, lt=1)
    max_loss: Decimal = Field(default=Decimal("1e30"), gt=0)


class Promise(BaseModel):
    """What a strategy's backtest or validation showed (per trade, not annualised)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hit_rate: float = Field(ge=0, le=1)
    sharpe: float
    max_drawdown: float = Field(ge=0, lt=1)
    """As a fraction of the peak (0.12: 12 %)."""
    source: str = ""
    """Where it came from (a backtest run id, a validation trial)."""


class VerdictKind(StrEnum):
    KEEP = "keep"
    REVIEW = "review"


@dataclass(frozen=True, slots=True)
class Verdict:
    strategy_id: str
    ts_ms: int
    kind: VerdictKind
    reasons: tuple[str, ...]
    trades: int
    figures: dict[str, float]

    def report(self) -> str:
        """The few lines the controller (and the decision log) gets with a review."""
        head = f"strategy {self.strategy_id}: {self.kind.value} after {self.trades} trades"
        return "\n".join([head, *(f"- {r}" for r in self.reasons)])


@dataclass(slots=True)
class RealisedRecord:
    """A running strategy's realised record (plain data: pickles with the desk)."""

    strategy_id: str
    window: int = 30
    pnls: deque[Decimal] = field(default_factory=deque)
    returns: deque[float] = field(default_factory=deque)
    trades: int = 0
    realized: Decimal = Decimal(0)
    peak: float = 0.0
    drawdown: float = 0.0
    """The deepest fall of its equity from a peak, as a fraction of the peak."""

    def close_trade(self, pnl: Decimal, entry_notional: Decimal) -> None:
        self.trades += 1
        self.realized += pnl
        self.pnls.append(pnl)
        self.returns.append(float(pnl / entry_notional) if entry_notional > 0 else 0.0)
        while len(self.returns) > self.window:
            self.returns.popleft()
            self.pnls.popleft()

    def mark(self, equity: Decimal) -> None:
        """The strategy's equity now (its allocation plus its P&L)."""
        value = float(equity)
        self.peak = max(self.peak, value)
        if self.peak > 0:
            self.drawdown = max(self.drawdown, 1.0 - value / self.peak)

    def hit_rate(self) -> float | None:
        return None if not self.pnls else sum(1 for p in self.pnls if p > 0) / len(self.pnls)

    def sharpe(self) -> float | None:
        n = len(self.returns)
        if n < 2:
            return None
        mean = sum(self.returns) / n
        var = sum((r - mean) ** 2 for r in self.returns) / (n - 1)
        return None if var <= 0 else mean / math.sqrt(var)

    def summary(self) -> str:
        """Its record in one line, for GPT's review prompt."""
        hit, sharpe = self.hit_rate(), self.sharpe()
        return (
            f"{self.trades} trades, realised P&L {self.realized:.2f}, hit rate "
            f"{'n/a' if hit is None else f'{hit:.0%}'}, Sharpe per trade "
            f"{'n/a' if sharpe is None else f'{sharpe:.2f}'} (last {len(self.returns)}), "
            f"max drawdown {self.drawdown:.1%}"
        )


def judge(record: RealisedRecord, promise: Promise, cfg: FeedbackConfig, ts_ms: int) -> Verdict:
    """The verdict on `record` at `ts_ms` (module docstring)."""
    hit, sharpe = record.hit_rate(), record.sharpe()
    figures = {"trades": float(record.trades), "drawdown": record.drawdown}
    if hit is not None:
        figures["hit_rate"] = hit
    if sharpe is not None:
        figures["sharpe"] = sharpe
    if record.trades < cfg.min_trades:
        why = f"{record.trades} of {cfg.min_trades} trades: too few to judge"
        return Verdict(record.strategy_id, ts_ms, VerdictKind.KEEP, (why,), record.trades, figures)
    reasons: list[str] = []
    floor = promise.hit_rate * cfg.hit_rate_floor
    if hit is not None and hit < floor:
        reasons.append(
            f"hit rate {hit:.0%} below {floor:.0%} ({cfg.hit_rate_floor:g} x the promised "
            f"{promise.hit_rate:.0%})"
        )
    least = promise.sharpe - cfg.sharpe_slack
    if sharpe is not None and sharpe < least:
        reasons.append(
            f"Sharpe per trade {sharpe:.2f} below {least:.2f} (promised {promise.sharpe:.2f})"
        )
    ceiling = max(promise.max_drawdown * cfg.drawdown_ceiling, cfg.min_drawdown)
    if record.drawdown > ceiling:
        reasons.append(
            f"drawdown {record.drawdown:.1%} beyond {ceiling:.1%} (promised at most "
            f"{promise.max_drawdown:.1%})"
        )
    if record.realized < -cfg.max_loss:
        reasons.append(f"realised loss {record.realized:.2f} beyond {cfg.max_loss}")
    kind = VerdictKind.REVIEW if reasons else VerdictKind.KEEP
    if not reasons:
        reasons.append("within what was promised")
    return Verdict(record.strategy_id, ts_ms, kind, tuple(reasons), record.trades, figures)
