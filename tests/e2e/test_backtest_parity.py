"""Parity with backtesting.py, through the whole flow (issue 11, item 6).

backtesting.py's SMA(10/20) crossover on its bundled GOOG data (all-in `buy()`,
`position.close()`, commission 0.1%, fills at the next open, cash 10,000) and the same strategy
as a stratflow strategy file, run by `stratflow backtest`'s job (replay -> Kafka -> Bytewax ->
desk -> ClickHouse), give the same trades (entry and exit bar, prices, sizes, P&L), the same
final equity to the cent and the same statistics. The test runs backtesting.py itself.
The risk limits are set out of the way: backtesting.py has none, and the review loop would
otherwise (rightly) shrink an all-in order.
"""

from __future__ import annotations

import io
import math
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from api.backtest_output import finish
from connectors.files.datasets import dataset_path
from connectors.files.market_file import MergedStreams, open_market_file
from models.config.settings import build_settings
from tests.unit.test_performance_vs_backtesting import KEYS

bt = pytest.importorskip("backtesting")
pd = pytest.importorskip("pandas")
from backtesting.lib import crossover  # noqa: E402
from backtesting.test import GOOG, SMA  # noqa: E402

pytestmark = pytest.mark.kafka

STRATEGY = {
    "name": "sma-cross",
    "universe": ["GOOG"],
    "entry": {"left": "sma_10", "op": "crosses_above", "right": "sma_20"},
    "exit": {"left": "sma_10", "op": "crosses_below", "right": "sma_20"},
    "position_fraction": 1.0,
}
NO_LIMIT = "1000000000000"


class SmaCross(bt.Strategy):  # type: ignore[misc]
    def init(self) -> None:
        self.sma1 = self.I(SMA, self.data.Close, 10)
        self.sma2 = self.I(SMA, self.data.Close, 20)

    def next(self) -> None:
        if crossover(self.sma1, self.sma2):
            self.buy()
        elif crossover(self.sma2, self.sma1):
            self.position.close()


def _ms(ts: Any) -> int:
    return int(pd.Timestamp(ts).value // 1_000_000)


def test_sma_cross_on_goog_equals_backtesting_py(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = bt.Backtest(GOOG, SmaCross, cash=10_000, commission=0.001).run()
    settings = build_settings(
        {
            "symbols": {"GOOG": {"bar_interval": "1d"}},
            "execution": {"initial_cash": 10_000, "fee_bps": 10, "slippage_bps": 0},
            "risk": {
                "max_order_notional": NO_LIMIT,
                "max_position_notional": NO_LIMIT,
                "max_fee_per_order": NO_LIMIT,
                "daily_loss_limit": NO_LIMIT,
            },
            "strategies": [STRATEGY],
        },
        {},
    )
    with open_market_file(dataset_path("GOOG"), symbol="GOOG", interval="1d") as stream:
        outcome = finish(
            settings,
            MergedStreams([stream]),
            tmp_path,
            as_json=False,
            say=lambda line: print(line, file=io.StringIO()),
        )

    want = theirs._trades
    got = outcome.trades
    assert len(got) == len(want) > 10
    for ours, row in zip(got, want.itertuples(), strict=True):
        assert ours.entry_ms == _ms(row.EntryTime)
        assert ours.exit_ms == _ms(row.ExitTime)
        assert ours.quantity == Decimal(int(row.Size))
        assert ours.entry_price == Decimal(repr(float(row.EntryPrice))).quantize(ours.entry_price)
        assert ours.exit_price == Decimal(repr(float(row.ExitPrice))).quantize(ours.exit_price)
        assert abs(float(ours.pnl) - float(row.PnL)) < 0.005
    final = {s.key: s.value for s in outcome.performance.statistics}
    percent = {s.key for s in outcome.performance.statistics if s.unit == "pct"}
    their_final = Decimal(repr(float(theirs["Equity Final [$]"])))
    assert abs(Decimal(str(final["equity_final"])) - their_final) < Decimal("0.005")
    # Commissions: ours are every fee paid; backtesting.py counts closed trades only, so ours
    # also hold the entry fee of the trade still open at the end.
    last = outcome.run.rows.fills[-1]
    assert last.side.value == "buy", "the run ends long, as backtesting.py's does"
    their_fees = Decimal(repr(float(theirs["Commissions [$]"]))) + last.fee
    assert abs(Decimal(str(final["commissions"])) - their_fees) < Decimal("0.005")
    for label, key in KEYS.items():
        if key == "commissions":
            continue
        a, b = final.get(key), theirs[label]
        if isinstance(b, float) and math.isnan(b):
            assert a is None, (key, a)
        elif isinstance(b, pd.Timedelta):
            assert a == int(b.value // 1_000_000), (key, a, b)
        elif isinstance(b, pd.Timestamp):
            assert a == _ms(b), (key, a, b)
        else:
            assert a is not None, key
            ours_value = float(a) * (100 if key in percent else 1)
            assert math.isclose(ours_value, float(b), rel_tol=1e-6, abs_tol=1e-6), (key, a, b)
