"""The vectorised evaluator against vectorbt, backtesting.py and the event-driven desk, on the
same one-minute bars and the same SMA(10/20) crossover, all in.

    python bench/bench_vector.py [--bars 1000000] [--bt-bars 100000] [--desk-bars 20000]

Every engine decides at a bar's close and fills at the next bar's open, with no fee and no
slippage, whole shares, from a cash balance large enough that sizing never refuses an entry,
so the trade counts must agree (printed beside the times, so a fast wrong answer shows):
- stratflow vectorised: `models.vectorized.evaluate` (features, conditions, trade loop), warm
  (best of `--repeat`) and cold (the first call in a fresh process, numba's on-disk cache
  emptied, so it includes compiling the loops), and the pure-Python loops
  (`STRATFLOW_NO_NUMBA=1`) to show whether numba pays;
- vectorbt (the `bench` extra): `MA.run` twice, `crossed_above/below`, the signals shifted one
  bar and `Portfolio.from_signals(price=open, size=inf, size_granularity=1)`, warm and cold;
- backtesting.py: `SmaCross` with `crossover()`, `buy()` all in (it fills at the next open);
  minutes on a million bars, so it runs on the first `--bt-bars` bars and its time is scaled
  linearly to the full count (its cost per bar does not grow with the bar count);
- the desk (`TradingDesk.on_bar_event` with `FeatureState`): the first `--desk-bars` bars,
  scaled the same way.
A scaled row prints the trade count of its own bars and, beside it, the vectorised evaluator's
count on the same bars. Ratios are against vectorbt's warm time measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.config.settings import FeaturesConfig
from models.strategy.spec import StrategySpec
from models.strategy.user_file import parse_specs
from models.vectorized import jit
from models.vectorized.bars import BarArrays
from models.vectorized.evaluate import Costs, evaluate

MIN = 60_000
CASH = 1e12  # large enough that all-in never runs out of whole shares
SPEC_DOC: dict[str, Any] = {
    "name": "sma-cross-10-20",
    "universe": ["BENCH"],
    "entry": {"left": "sma_10", "op": "crosses_above", "right": "sma_20"},
    "exit": {"left": "sma_10", "op": "crosses_below", "right": "sma_20"},
    "position_fraction": 1.0,
}


@dataclass
class Row:
    engine: str
    bars: int
    seconds: float
    trades: int
    scaled_from: int | None = None  # bars actually run, when the time is scaled
    our_trades: int | None = None  # the vectorised evaluator's count on those bars


def make_bars(n: int, seed: int = 20_240_101) -> BarArrays:
    """A deterministic geometric random walk (0.1% per minute); each open is the previous close
    plus a small gap. Not rounded to cents: cents make SMA(10) == SMA(20) now and then, and the
    engines define a cross through an equal bar differently (backtesting.py: strictly below
    then strictly above on consecutive bars; vectorbt: `<=` then `>`; stratflow: the last
    strict side, `models.signals.crossing`), which would blur the trade-count check."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.standard_normal(n) * 0.001))
    gap = rng.standard_normal(n) * 0.0001 * close
    open_ = np.concatenate(([close[0]], close[:-1])) + gap
    high = np.maximum(open_, close) + 0.01
    low = np.minimum(open_, close) - 0.01
    volume = np.ones(n)
    return BarArrays.from_columns("BENCH", np.arange(n) * MIN, MIN, open_, high, low, close, volume)


def spec() -> StrategySpec:
    (s,) = parse_specs(SPEC_DOC)
    return s


def costs() -> Costs:
    return Costs(initial_cash=Decimal(int(CASH)), fee_bps=Decimal(0), slippage_bps=Decimal(0))


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    t = time.perf_counter()
    trades = fn()
    return time.perf_counter() - t, trades


def best_of(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    runs = [timed(fn) for _ in range(repeat)]
    return min(r[0] for r in runs), runs[-1][1]


def ours(bars: BarArrays) -> int:
    return evaluate(spec(), bars, costs(), FeaturesConfig()).trade_count


def vectorbt_run(bars: BarArrays) -> int:
    import pandas as pd
    import vectorbt as vbt

    close = pd.Series(bars.close)
    open_ = pd.Series(bars.open)
    fast = vbt.MA.run(close, 10).ma
    slow = vbt.MA.run(close, 20).ma
    entries = fast.vbt.crossed_above(slow).shift(1, fill_value=False)
    exits = fast.vbt.crossed_below(slow).shift(1, fill_value=False)
    pf = vbt.Portfolio.from_signals(
        close,
        entries,
        exits,
        price=open_,
        size=np.inf,
        size_granularity=1,
        init_cash=CASH,
        fees=0.0,
    )
    return int(pf.trades.closed.count())


def backtesting_run(bars: BarArrays) -> int:
    import pandas as pd
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover

    def sma(values: Any, n: int) -> Any:
        return pd.Series(values).rolling(n).mean()

    class SmaCross(Strategy):  # type: ignore[misc]
        def init(self) -> None:
            self.fast = self.I(sma, self.data.Close, 10)
            self.slow = self.I(sma, self.data.Close, 20)

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.position.close()
                self.buy()
            elif crossover(self.slow, self.fast):
                self.position.close()

    frame = pd.DataFrame(
        {
            "Open": bars.open,
            "High": bars.high,
            "Low": bars.low,
            "Close": bars.close,
            "Volume": bars.volume,
        },
        index=pd.to_datetime(bars.start_ms, unit="ms"),
    )
    bt = Backtest(frame, SmaCross, cash=CASH, commission=0.0, finalize_trades=False)
    stats = bt.run()
    return len(stats["_trades"])


def desk_run(bars: BarArrays) -> int:
    from models.config.settings import build_settings
    from models.core.events import BarEvent
    from models.core.messages import Fill
    from models.desk.desk import TradingDesk
    from models.signals.features import FeatureState

    cfg = build_settings(
        {
            "symbols": {"BENCH": {}},
            "strategies": [SPEC_DOC],
            "execution": {"fee_bps": 0, "slippage_bps": 0, "initial_cash": int(CASH)},
            "risk": {
                "max_order_notional": "1e15",
                "max_position_notional": "1e15",
                "max_fee_per_order": "1e15",
                "daily_loss_limit": "1e15",
            },
        },
        {},
    )
    desk = TradingDesk.create(cfg)
    features = FeatureState(cfg.features, cfg.extra_features("BENCH"))
    fills = 0
    for b in bars.to_bars():
        out = desk.on_bar_event(BarEvent(b, features.update(b), [], None))
        fills += sum(isinstance(o, Fill) for o in out)
    return fills // 2


def cold(engine: str, n: int, env: dict[str, str]) -> tuple[float, int]:
    """The first call of `engine` in a fresh process (imports excluded, compilation included)."""
    code = (
        "import sys, time; sys.path.insert(0, 'bench'); import bench_vector as b; "
        f"bars=b.make_bars({n}); fn=b.{engine}; "
        "t=time.perf_counter(); k=fn(bars); print(time.perf_counter()-t, k)"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root), **env},
        check=True,
    )
    seconds, trades = out.stdout.split()[-2:]
    return float(seconds), int(trades)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=1_000_000)
    ap.add_argument("--bt-bars", type=int, default=100_000, help="bars for backtesting.py")
    ap.add_argument("--desk-bars", type=int, default=20_000, help="bars for the desk")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-cold", action="store_true", help="skip the cold runs (subprocesses)")
    args = ap.parse_args()
    n = args.bars
    bars = make_bars(n)
    rows: list[Row] = []
    notes: list[str] = []

    ours(make_bars(1000))  # compile (or load from numba's cache) before the warm runs
    seconds, trades = best_of(lambda: ours(bars), args.repeat)
    rows.append(
        Row(f"stratflow vectorised, warm ({'numba' if jit.JIT else 'python'})", n, seconds, trades)
    )
    if not args.no_cold:
        with tempfile.TemporaryDirectory() as cache:
            s, k = cold("ours", n, {"NUMBA_CACHE_DIR": cache})
        rows.append(Row("stratflow vectorised, cold (compiles)", n, s, k))
        s, k = cold("ours", n, {"STRATFLOW_NO_NUMBA": "1"})
        rows.append(Row("stratflow vectorised, pure Python loops", n, s, k))

    vbt_warm: float | None = None
    try:
        import vectorbt  # noqa: F401

        vectorbt_run(make_bars(1000))
        vbt_warm, k = best_of(lambda: vectorbt_run(bars), args.repeat)
        rows.append(Row("vectorbt, warm", n, vbt_warm, k))
        if not args.no_cold:
            with tempfile.TemporaryDirectory() as cache:
                s, k = cold("vectorbt_run", n, {"NUMBA_CACHE_DIR": cache})
            rows.append(Row("vectorbt, cold (first call)", n, s, k))
    except ImportError:
        notes.append("vectorbt: not installed (pip install -e '.[bench]'), skipped")

    def scaled(name: str, fn: Callable[[BarArrays], int], m: int) -> None:
        m = min(m, n)
        part = make_bars(n).slice(0, m)
        s, k = timed(lambda: fn(part))
        rows.append(Row(name, n, s * n / m, k, scaled_from=m, our_trades=ours(part)))

    try:
        import backtesting  # noqa: F401

        scaled("backtesting.py", backtesting_run, args.bt_bars)
    except ImportError:
        notes.append("backtesting.py: not installed, skipped")
    if args.desk_bars > 0:
        scaled("stratflow desk (event-driven)", desk_run, args.desk_bars)

    print(f"{n:,} one-minute bars, SMA(10/20) crossover all in, next-open fills, no costs")
    print(f"{'engine':42} {'seconds':>9} {'bars/s':>12} {'x vectorbt':>10} {'trades':>8}")
    for r in rows:
        ratio = f"{r.seconds / vbt_warm:.2f}" if vbt_warm else "-"
        count = f"{r.trades}"
        if r.scaled_from is not None:
            count += f" (ours {r.our_trades} on the same {r.scaled_from:,} bars; time scaled)"
        print(f"{r.engine:42} {r.seconds:9.3f} {n / r.seconds:12,.0f} {ratio:>10} {count:>8}")
    for note in notes:
        print(note)
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")


if __name__ == "__main__":
    main()
