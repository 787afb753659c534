"""The statistics against backtesting.py itself: its SmaCross example on its GOOG (daily) and
EURUSD (hourly) data, cash 10_000, commission 0.1%, all-in `buy()` and `position.close()`
(long only) or close-and-`sell()` (long and short), with `finalize_trades` off and on.

Its closed trades become fills (an entry and an exit fill, commission as the fee) that our
pairing turns back into round trips; its equity curve, the closes and those round trips are
then the inputs of `compute_statistics`, whose every figure must equal its `stats` key by key
(floats to 1e-9 relative, durations and times exactly). Each run takes ~0.1 s, so these are
not marked slow. backtesting.py is the optional extra
`datasets` (AGPL-3.0): without it these tests are skipped.
"""

from __future__ import annotations

import functools
import math
import warnings
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from models.core.messages import Side
from models.performance.stats import compute_statistics
from models.performance.trades import TaggedFill, close_open_trades, pair_fills
from models.performance.types import Performance
from tests.support.builders import fill

pd = pytest.importorskip("pandas")

COMMISSION = Decimal("0.001")
CASH = Decimal(10_000)
N1, N2 = 10, 20
WARMUP_BARS = N2 - 1  # the first bar the slow SMA has a value: where Buy & Hold starts

KEYS = {
    "Start": "start",
    "End": "end",
    "Duration": "duration",
    "Exposure Time [%]": "exposure_time",
    "Equity Final [$]": "equity_final",
    "Equity Peak [$]": "equity_peak",
    "Commissions [$]": "commissions",
    "Return [%]": "return",
    "Buy & Hold Return [%]": "buy_and_hold_return",
    "Return (Ann.) [%]": "return_ann",
    "Volatility (Ann.) [%]": "volatility_ann",
    "CAGR [%]": "cagr",
    "Sharpe Ratio": "sharpe_ratio",
    "Sortino Ratio": "sortino_ratio",
    "Calmar Ratio": "calmar_ratio",
    "Alpha [%]": "alpha",
    "Beta": "beta",
    "Max. Drawdown [%]": "max_drawdown",
    "Avg. Drawdown [%]": "avg_drawdown",
    "Max. Drawdown Duration": "max_drawdown_duration",
    "Avg. Drawdown Duration": "avg_drawdown_duration",
    "# Trades": "trades",
    "Win Rate [%]": "win_rate",
    "Best Trade [%]": "best_trade",
    "Worst Trade [%]": "worst_trade",
    "Avg. Trade [%]": "avg_trade",
    "Max. Trade Duration": "max_trade_duration",
    "Avg. Trade Duration": "avg_trade_duration",
    "Profit Factor": "profit_factor",
    "Expectancy [%]": "expectancy",
    "SQN": "sqn",
    "Kelly Criterion": "kelly_criterion",
}


@functools.cache
def _bt() -> SimpleNamespace:
    """backtesting.py, its data and the strategies, imported when a test first needs them:
    importing backtesting.py (and bokeh under it) costs a second the fast lane's collection
    should not pay for tests it may deselect."""
    bt = pytest.importorskip("backtesting")
    from backtesting.lib import crossover
    from backtesting.test import EURUSD, GOOG, SMA

    class SmaCross(bt.Strategy):  # type: ignore[misc,name-defined]
        short = False

        def init(self) -> None:
            self.sma1 = self.I(SMA, self.data.Close, N1)
            self.sma2 = self.I(SMA, self.data.Close, N2)

        def next(self) -> None:
            if crossover(self.sma1, self.sma2):
                self.position.close()
                self.buy()
            elif crossover(self.sma2, self.sma1):
                self.position.close()
                if self.short:
                    self.sell()

    class SmaCrossLongShort(SmaCross):
        short = True

    return SimpleNamespace(
        bt=bt,
        data={"GOOG": GOOG, "EURUSD": EURUSD},
        strategies={"long": SmaCross, "long-short": SmaCrossLongShort},
    )


def _ms(ts: Any) -> int:
    return int(pd.Timestamp(ts).value // 1_000_000)


def _dec(x: float) -> Decimal:
    return Decimal(repr(float(x)))


def _run(data: Any, strategy: type, finalize: bool) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "some trades remain open"
        backtest = _bt().bt.Backtest(
            data, strategy, cash=10_000, commission=float(COMMISSION), finalize_trades=finalize
        )
        return backtest.run()


def _fills(trades: Any) -> list[TaggedFill]:
    """Each backtesting.py trade as an entry and an exit fill; at one time, exits first (a
    close-then-sell on one bar is a long's exit, then a short's entry)."""
    rows = []
    for i, t in enumerate(trades.itertuples()):
        size, entry, exit_ = abs(int(t.Size)), _dec(t.EntryPrice), _dec(t.ExitPrice)
        opening, closing = (Side.BUY, Side.SELL) if t.Size > 0 else (Side.SELL, Side.BUY)
        rows.append((_ms(t.EntryTime), 1, i, opening, size, entry, "entry"))
        rows.append((_ms(t.ExitTime), 0, i, closing, size, exit_, "sma exit: crossover"))
    rows.sort(key=lambda r: r[:3])
    return [
        TaggedFill(
            fill(
                f"f{n}",
                f"o{n}",
                f"d{n}",
                "GOOG",
                side=side,
                quantity=size,
                price=price,
                fee=size * price * COMMISSION,
                ts_ms=ts,
            ),
            controller="strategy",
            strategy="sma-cross",
            reason=reason,
        )
        for n, (ts, _, _, side, size, price, reason) in enumerate(rows)
    ]


def _ours(stats: Any, data: Any) -> Performance:
    trades = pair_fills(_fills(stats._trades)).closed
    equity = [(_ms(t), _dec(v)) for t, v in stats._equity_curve.Equity.items()]
    closes = {"GOOG": [(_ms(t), _dec(v)) for t, v in data.Close.items()]}
    return compute_statistics(
        equity,
        trades,
        closes,
        sum((t.fees for t in trades), Decimal(0)),
        CASH,
        trading_start_ms=_ms(data.index[WARMUP_BARS]),
    )


def _theirs(value: Any, key: str) -> Any:
    if isinstance(value, pd.Timestamp | pd.Timedelta):
        return int(value.value // 1_000_000)
    if "[%]" in key:
        return value / 100
    return value


def _assert_same(stats: Any, ours: Performance) -> None:
    wrong = []
    for key, our_key in KEYS.items():
        theirs, mine = _theirs(stats[key], key), ours.get(our_key).value
        if mine is None:  # undefined: NaN or infinite there
            same = not math.isfinite(float(theirs))
        elif isinstance(theirs, int) and not isinstance(mine, float):
            same = mine == theirs
        else:
            same = math.isclose(float(mine), float(theirs), rel_tol=1e-9, abs_tol=1e-12)
        if not same:
            wrong.append(f"{key}: backtesting.py {theirs!r}, ours {mine!r}")
    assert not wrong, "\n".join(wrong)


CASES = [
    pytest.param("GOOG", "long", False, id="GOOG-daily-long-open-at-end"),
    pytest.param("GOOG", "long", True, id="GOOG-daily-long-finalized"),
    pytest.param("GOOG", "long-short", False, id="GOOG-daily-long-short"),
    pytest.param("EURUSD", "long", True, id="EURUSD-hourly-long-finalized"),
    pytest.param("EURUSD", "long-short", False, id="EURUSD-hourly-long-short"),
]


@pytest.mark.parametrize(("name", "kind", "finalize"), CASES)
def test_statistics_equal_backtesting_py_key_by_key(name: str, kind: str, finalize: bool) -> None:
    data, strategy = _bt().data[name], _bt().strategies[kind]
    stats = _run(data, strategy, finalize)
    assert stats["# Trades"] > 40  # a run with enough trades to mean something
    _assert_same(stats, _ours(stats, data))


@pytest.mark.parametrize(("name", "kind"), [("GOOG", "long-short"), ("EURUSD", "long")])
def test_pairing_gives_backtesting_py_trades(name: str, kind: str) -> None:
    trades = _run(_bt().data[name], _bt().strategies[kind], False)._trades
    ours = pair_fills(_fills(trades)).closed
    assert len(ours) == len(trades)
    for mine, t in zip(ours, trades.itertuples(), strict=True):
        assert mine.direction == ("long" if t.Size > 0 else "short")
        assert (mine.entry_ms, mine.exit_ms, mine.quantity) == (
            _ms(t.EntryTime),
            _ms(t.ExitTime),
            abs(t.Size),
        )
        assert float(mine.pnl) == pytest.approx(t.PnL, rel=1e-9, abs=1e-9)
        assert float(mine.fees) == pytest.approx(t.Commission, rel=1e-9)
        assert mine.return_pct == pytest.approx(t.ReturnPct, rel=1e-9, abs=1e-12)


def test_an_open_trade_marked_at_the_end_is_backtesting_py_finalized_trade() -> None:
    """backtesting.py's `finalize_trades=True` closes the open trade at the last bar's open,
    paying commission: `close_open_trades` at that price and rate gives the same trade."""
    goog, cross = _bt().data["GOOG"], _bt().strategies["long"]
    open_run, final_run = _run(goog, cross, False), _run(goog, cross, True)
    entry = final_run._trades.iloc[-1]
    size, price = int(entry.Size), _dec(entry.EntryPrice)
    entry_fill = fill("fx", "ox", "dx", "GOOG", side=Side.BUY, quantity=size, price=price,
                      fee=size * price * COMMISSION, ts_ms=_ms(entry.EntryTime))  # fmt: skip
    fills = [*_fills(open_run._trades), TaggedFill(entry_fill, "strategy", "sma-cross")]
    pairing = pair_fills(fills)
    assert len(pairing.closed) == len(open_run._trades) == len(final_run._trades) - 1
    assert len(pairing.open) == 1
    (closed,) = close_open_trades(
        pairing.open, {"GOOG": _dec(goog.Open.iloc[-1])}, _ms(goog.index[-1]), COMMISSION
    )
    assert (closed.entry_ms, closed.exit_ms) == (_ms(entry.EntryTime), _ms(entry.ExitTime))
    assert float(closed.exit_price) == entry.ExitPrice
    assert float(closed.pnl) == pytest.approx(entry.PnL, rel=1e-9)
    assert float(closed.fees) == pytest.approx(entry.Commission, rel=1e-9)
