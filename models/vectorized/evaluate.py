"""Run one strategy over one symbol's bars, vectorised: the trades the desk would make.

`evaluate(spec, bars, costs, features)` computes the features the strategy reads
(`models.vectorized.features`), its entry and exit columns (`models.vectorized.conditions`),
then the position state machine (`models.vectorized.jit.trade_loop`), and returns the fills and
the equity at every close (`VectorResult`), from which `performance()` gives the statistics of
`models.performance.stats.compute_statistics`, key for key as a desk run's.

What it reproduces (tests/unit/test_vectorized_equivalence.py holds it to the desk on generated
strategies and bars): a standing strategy (`models.strategy.user_file`) of one symbol, long
only, decided at each close and filled at the next open with slippage and fee, a buy sized at
its fill from the cash then available (`models.execution.sizing`), whole lots, stop loss, take
profit and exit rules in the compiler's order.
What it does not model: the review loop's limits other than cash (`risk.max_order_notional`,
`max_position_notional`, `max_fee_per_order`, `daily_loss_limit`, a symbol's `min_notional`),
which can shrink or refuse an order in the desk; several symbols sharing one cash balance;
rebalancing to `target_weights`; GPT. Sweep with limits that do not bind, then confirm the
winners through the full flow.

Money is float64 here (the desk's is Decimal): quantities in whole lots agree exactly unless a
budget falls within a rounding error of a lot boundary; prices, fees and cash agree to about
1e-12 relative (float64 carries ~16 digits and a run accumulates one rounding per fill).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Any, Final

import numpy as np

from models.config.settings import ExecutionConfig, FeaturesConfig, Settings
from models.core.messages import Fill, Side
from models.performance.stats import compute_statistics
from models.performance.trades import Pairing, TaggedFill, pair_fills
from models.performance.types import Performance, RoundTrip
from models.strategy.compiler import one_line
from models.strategy.spec import Comparison, StrategySpec
from models.vectorized import conditions, jit
from models.vectorized.bars import BarArrays, FloatArray
from models.vectorized.features import feature_arrays

__all__ = ["Costs", "StatValue", "VectorResult", "evaluate", "signals"]

BPS: Final = Decimal(10_000)
KIND_NAMES: Final = {
    jit.ENTRY: "entry",
    jit.STOP_LOSS: "stop_loss",
    jit.TAKE_PROFIT: "take_profit",
    jit.EXIT: "exit",
}
StatValue = Decimal | float | int | str | None
CONTROLLER: Final = "strategy"  # a strategy file's controller, as the desk tags its fills


@dataclass(frozen=True, slots=True)
class Costs:
    """What the evaluator needs of the configuration for one symbol."""

    initial_cash: Decimal = Decimal(100_000)
    fee_bps: Decimal = Decimal(10)
    slippage_bps: Decimal = Decimal(5)
    lot: Decimal = Decimal(1)
    min_cash: Decimal = Decimal(0)

    @classmethod
    def from_settings(cls, settings: Settings, symbol: str) -> Costs:
        spec = settings.symbols.get(symbol)
        ex = settings.execution
        return cls(
            initial_cash=ex.initial_cash,
            fee_bps=ex.fee_bps,
            slippage_bps=ex.slippage_bps,
            lot=spec.lot_size if spec is not None else Decimal(1),
            min_cash=settings.risk.min_cash,
        )


def _dec(x: float) -> Decimal:
    return Decimal(repr(float(x)))


def signals(
    spec: StrategySpec,
    bars: BarArrays,
    features: FeaturesConfig,
    cache: dict[Any, FloatArray] | None = None,
) -> tuple[conditions.BoolArray, conditions.BoolArray]:
    """(enter, leave): where a flat strategy buys (entry holds and exit does not) and where a
    long one sells on its exit rule. `cache` shares feature columns across strategies."""
    names = sorted(spec.operand_names())
    columns = feature_arrays(names, bars, features, cache)
    n = len(bars)
    memo: dict[Comparison, conditions.BoolArray] = {}
    entry = conditions.evaluate(spec.entry, columns, n, memo)
    leave = conditions.evaluate(spec.exit, columns, n, memo)
    return entry & ~leave, leave


@dataclass(frozen=True, eq=False)
class VectorResult:
    """Fills (one row each: bar index, quantity, price, fee, kind) and the equity at every
    close, in float64; the `Fill`s, round trips and statistics are built from them on demand."""

    spec: StrategySpec
    bars: BarArrays
    costs: Costs
    fill_bar: np.ndarray[Any, np.dtype[np.int64]]
    fill_qty: FloatArray
    fill_price: FloatArray
    fill_fee: FloatArray
    fill_kind: np.ndarray[Any, np.dtype[np.int64]]
    equity: FloatArray
    exact: tuple[tuple[Decimal, Decimal, Decimal], ...] | None = None
    """(quantity, price, fee) of each fill in Decimal, from `evaluate(..., exact=True)`."""

    @property
    def strategy_id(self) -> str:
        name = one_line(self.spec.name) or "strategy"
        return f"{name}@v{self.spec.version}#{self.spec.fingerprint()[:12]}"

    @property
    def trade_count(self) -> int:
        """Closed round trips (a buy and the sell that closed it)."""
        return len(self.fill_bar) // 2

    def fills(self) -> list[TaggedFill]:
        """The fills as the desk books them (Decimal of each float's repr), tagged as a strategy
        file's fills are, so `models.performance.trades.pair_fills` pairs them."""
        out: list[TaggedFill] = []
        sid = self.strategy_id
        for j in range(len(self.fill_bar)):
            i = int(self.fill_bar[j])
            kind = KIND_NAMES[int(self.fill_kind[j])]
            if self.exact is not None:
                qty, price, fee = self.exact[j]
            else:
                qty, price, fee = (
                    _dec(self.fill_qty[j]),
                    _dec(self.fill_price[j]),
                    _dec(self.fill_fee[j]),
                )
            fill = Fill(
                fill_id=f"vec-{j}",
                client_order_id=f"vec-{j}",
                decision_id=f"{self.bars.symbol}@{int(self.bars.start_ms[i])}",
                symbol=self.bars.symbol,
                side=Side.BUY if kind == "entry" else Side.SELL,
                quantity=qty,
                price=price,
                fee=fee,
                ts_ms=int(self.bars.start_ms[i]),
            )
            out.append(TaggedFill(fill, CONTROLLER, sid, f"{sid} {kind}: vectorised"))
        return out

    @cached_property
    def pairing(self) -> Pairing:
        return pair_fills(self.fills())

    @property
    def round_trips(self) -> tuple[RoundTrip, ...]:
        return self.pairing.closed

    def equity_curve(self) -> list[tuple[int, Decimal]]:
        """Equity at each bar's close, labelled with the bar's open time, as the flow's curve
        (`models.performance.equity`) and backtesting.py label it."""
        return [(int(t), _dec(e)) for t, e in zip(self.bars.start_ms, self.equity, strict=True)]

    def performance(self, trading_start_ms: int | None = None) -> Performance:
        """The statistics of `models.performance.stats` for this run (open trades reported,
        not counted, as a desk run's)."""
        closes = {
            self.bars.symbol: [
                (int(t), _dec(c)) for t, c in zip(self.bars.start_ms, self.bars.close, strict=True)
            ]
        }
        commissions = sum((tf.fill.fee for tf in self.fills()), Decimal(0))
        return compute_statistics(
            self.equity_curve(),
            self.pairing.closed,
            closes,
            commissions,
            self.costs.initial_cash,
            open_trades=self.pairing.open,
            trading_start_ms=trading_start_ms,
        )

    def statistics(self, trading_start_ms: int | None = None) -> dict[str, StatValue]:
        """key -> value of every statistic (`Statistic.key`)."""
        return {s.key: s.value for s in self.performance(trading_start_ms).statistics}


def _later(column: np.ndarray[Any, Any], delay: int) -> np.ndarray[Any, Any]:
    """`column` moved `delay` bars later (the first `delay` bars: False)."""
    out = np.zeros_like(column)
    if delay < len(column):
        out[delay:] = column[: len(column) - delay]
    return out


def evaluate(
    spec: StrategySpec,
    bars: BarArrays,
    costs: Costs,
    features: FeaturesConfig,
    cache: dict[Any, FloatArray] | None = None,
    *,
    exact: bool = False,
    trade_from: int = 0,
    delay: int = 0,
) -> VectorResult:
    """The fills and equity of `spec` on `bars` (one symbol of its universe). `exact`: the money
    in Decimal with the desk's own functions (`models.vectorized.exact`), one Python step per
    bar; else float64 (numba when installed). Long strategies only: a short or both-ways
    strategy file raises `ValueError` (the full flow runs those). `trade_from`: no entry is
    decided before this bar (the bars before it only warm the features up, as a walk-forward
    window's warm-up: `models.validation.walkforward`). `delay`: the entry and exit signals are
    acted on that many bars later than decided (the one-bar lag test:
    `models.validation.lag`)."""
    if spec.direction != "long":
        raise ValueError(
            f"direction: the vectorised evaluator runs long strategies, not {spec.direction}"
            " (a backtest without --sweep runs it through the flow)"
        )
    enter, leave = signals(spec, bars, features, cache)
    if delay > 0:
        enter, leave = _later(enter, delay), _later(leave, delay)
    if trade_from > 0:
        enter = enter.copy()
        enter[:trade_from] = False
    if exact:
        from models.vectorized.exact import exact_trade_loop  # needs models.execution.sizing

        rows, equity = exact_trade_loop(
            bars.open,
            bars.close,
            enter,
            leave,
            fraction=Decimal(repr(spec.position_fraction)),
            stop_loss=None if spec.stop_loss_pct is None else Decimal(repr(spec.stop_loss_pct)),
            take_profit=(
                None if spec.take_profit_pct is None else Decimal(repr(spec.take_profit_pct))
            ),
            execution=ExecutionConfig(
                initial_cash=costs.initial_cash,
                fee_bps=costs.fee_bps,
                slippage_bps=costs.slippage_bps,
            ),
            lot=costs.lot,
            min_cash=costs.min_cash,
        )
        return VectorResult(
            spec,
            bars,
            costs,
            np.array([r[0] for r in rows], dtype=np.int64),
            np.array([float(r[1]) for r in rows], dtype=np.float64),
            np.array([float(r[2]) for r in rows], dtype=np.float64),
            np.array([float(r[3]) for r in rows], dtype=np.float64),
            np.array([r[4] for r in rows], dtype=np.int64),
            equity,
            exact=tuple((r[1], r[2], r[3]) for r in rows),
        )
    fill_bar, qty, price, fee, kind, equity = jit.trade_loop(
        bars.open,
        bars.close,
        enter,
        leave,
        fraction=min(spec.position_fraction, 1.0),
        stop_loss=spec.stop_loss_pct,
        take_profit=spec.take_profit_pct,
        fee_rate=float(costs.fee_bps / BPS),
        slip=float(costs.slippage_bps / BPS),
        lot=float(costs.lot),
        cash=float(costs.initial_cash),
        min_cash=float(costs.min_cash),
    )
    return VectorResult(spec, bars, costs, fill_bar, qty, price, fee, kind, equity)
