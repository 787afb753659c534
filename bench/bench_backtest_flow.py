"""Backtest speed: N one-minute bars and an SMA crossover, through the whole flow and through
backtesting.py, with each engine's trade count beside its time (a fast wrong answer shows).

    python bench/bench_backtest_flow.py [--bars 1000000] [--baseline c76b1e4 | --no-baseline]
                                        [--bt-bars N] [--keep DIR]
                                        [--fee-bps X] [--slippage-bps Y]

The bars are a seeded random walk of symbol SIMA written as a CSV (time, open, high, low, close,
volume); the strategy is a strategy file (`sma_10` crosses above `sma_20`: buy with the whole
equity; crosses below: sell). Each stratflow run is `api.backtest.run_backtest` (the CLI's
`stratflow backtest SIMA.csv -s cross.yaml`, with the built-in configuration: the bundled Tansu
broker, Bytewax, chdb) in a process of its own, and reports
- flow: `run_pipeline` alone (Kafka -> Bytewax -> desk -> ClickHouse), what issue 11's
  50,000 bars/s target is about;
- end to end: replay to Kafka + flow + reading the run back (`run_backtest`);
and the run's trades (closed round trips, as the report's "# Trades") and final equity.

The baseline is the same benchmark on the tree of commit `--baseline` (default: the commit this
work started from), extracted with `git archive` into a temporary directory and run with
PYTHONPATH pointing there; both runs see the same CSV in the same session, and the ratios are
this tree's speed over the baseline's. backtesting.py (the `datasets` extra) runs its SmaCross
on the same bars (or on the first `--bt-bars` of them), timed around `Backtest.run()`, with its
own trade count. `--fee-bps 0 --slippage-bps 0` run stratflow without costs (the built-in
10 bps fee can wear equity down until no order is placed, and then most bars cost nothing);
the options are passed to both stratflow runs. Trade counts are compared only between the
stratflow runs (they must be equal, else the benchmark fails): backtesting.py sizes and
charges differently.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BASELINE = "c76b1e4"
"""main when issue 11's consuming-side work started (about 4,200 bars/s in the flow)."""

STRATEGY = """\
name: cross
universe: [SIMA]
entry: {left: sma_10, op: crosses_above, right: sma_20}
exit: {left: sma_10, op: crosses_below, right: sma_20}
position_fraction: 1.0
"""
FAST, SLOW = 10, 20
START_MS = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1000)


def write_bars(path: Path, n: int, seed: int = 7) -> None:
    """`n` one-minute bars of a log-normal random walk (0.1% a minute), prices to 4 places."""
    rnd = random.Random(seed)
    price = 100.0
    with path.open("w", encoding="ascii") as f:
        f.write("time,open,high,low,close,volume\n")
        for i in range(n):
            o = price
            price = max(1.0, price * math.exp(rnd.gauss(0, 0.001)))
            h = max(o, price) * (1 + abs(rnd.gauss(0, 0.0005)))
            lo = min(o, price) * (1 - abs(rnd.gauss(0, 0.0005)))
            ts = datetime.fromtimestamp((START_MS + 60_000 * i) / 1000, UTC)
            f.write(
                f"{ts.strftime('%Y-%m-%dT%H:%M:%SZ')},{o:.4f},{h:.4f},{lo:.4f},{price:.4f},"
                f"{rnd.randint(1, 1000)}\n"
            )


def extract_tree(rev: str, dest: Path) -> tuple[Path | None, str]:
    """The tree of commit `rev` under `dest` (nothing in the repository changes), or None and
    why not."""
    try:
        found = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if found.returncode != 0:
            return None, f"commit {rev} is not in {ROOT}'s repository"
        commit = found.stdout.strip()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", commit],
            capture_output=True,
            check=False,
        )
    except OSError as err:
        return None, f"git is not available ({err.strerror or err})"
    if archive.returncode != 0:
        return None, f"git archive {rev} failed: {archive.stderr.decode(errors='replace')[-300:]}"
    tree = dest / f"baseline-{commit[:10]}"
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tree, filter="data")
    return tree, f"{rev} ({commit[:10]})"


def run_tree(
    tree: Path, csv: Path, strategy: Path, work: Path, costs: list[str], processes: int | None
) -> dict[str, Any]:
    """`backtest_child.py` with only `tree` on the path (the caller's PYTHONPATH may name
    another tree), on `processes` (None: the CLI's default, `default_processes`)."""
    cmd = [
        sys.executable,
        str(BENCH / "backtest_child.py"),
        "--csv",
        str(csv),
        "--strategy",
        str(strategy),
        "--work",
        str(work),
        *costs,
        *(["--processes", str(processes)] if processes is not None else []),
    ]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=False, cwd=tree, env=env, timeout=7200
    )
    if out.returncode != 0:
        raise SystemExit(f"run of {tree} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if Path(result["tree"]) != tree.resolve():
        raise SystemExit(f"the run of {tree} imported its code from {result['tree']}")
    return result


def run_backtesting_py(csv: Path, bars: int | None) -> dict[str, Any] | str:
    """backtesting.py's SmaCross (long only, all in, 0.1% commission) on the first `bars`
    bars; or why it cannot run."""
    os.environ.setdefault("TQDM_DISABLE", "1")  # its progress bar
    try:
        import warnings

        import pandas as pd
        from backtesting import Backtest, Strategy
        from backtesting.lib import crossover
        from backtesting.test import SMA
    except ImportError as err:
        return f"not installed ({err.name}); pip install backtesting (the datasets extra)"

    class SmaCross(Strategy):  # type: ignore[misc]
        def init(self) -> None:
            self.fast = self.I(SMA, self.data.Close, FAST)
            self.slow = self.I(SMA, self.data.Close, SLOW)

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.buy()
            elif crossover(self.slow, self.fast):
                self.position.close()

    frame = pd.read_csv(csv, nrows=bars, parse_dates=["time"], index_col="time")
    frame.columns = [c.capitalize() for c in frame.columns]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = Backtest(frame, SmaCross, cash=100_000, commission=0.001)
        t0 = time.perf_counter()
        stats = bt.run()
        secs = time.perf_counter() - t0
    return {
        "bars": len(frame),
        "run_s": secs,
        "trades": len(stats._trades),
        "final_equity": float(stats["Equity Final [$]"]),
    }


def line(label: str, r: dict[str, Any], base: dict[str, Any] | None) -> str:
    flow = r["bars"] / r["flow_s"]
    e2e = r["bars"] / r["backtest_s"]
    text = (
        f"{label:28} {r['flow_s']:8.1f} {flow:9,.0f} {r['backtest_s']:8.1f} {e2e:9,.0f} "
        f"{r['trades']:7} {float(r['final_equity']):14,.2f}"
    )
    if base is not None:
        flow_x, e2e_x = base["flow_s"] / r["flow_s"], base["backtest_s"] / r["backtest_s"]
        text += f"  x{flow_x:.2f} flow, x{e2e_x:.2f} e2e"
    return text + f"  ({r.get('processes', 1)} process{'' if r.get('processes', 1) == 1 else 'es'})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bars", type=int, default=1_000_000)
    ap.add_argument("--baseline", default=BASELINE, help="commit to compare with")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--bt-bars", type=int, default=None, help="backtesting.py on the first N")
    ap.add_argument("--no-bt", action="store_true", help="skip backtesting.py")
    ap.add_argument("--keep", type=Path, help="work in this directory and keep it")
    ap.add_argument("--fee-bps", type=float, default=None, help="stratflow's fee (default 10)")
    ap.add_argument("--slippage-bps", type=float, default=None, help="stratflow's slippage")
    ap.add_argument(
        "--processes",
        type=int,
        default=None,
        help="run the flow on this many processes (default: what `stratflow backtest` chooses)",
    )
    args = ap.parse_args()
    costs = [
        *(["--fee-bps", repr(args.fee_bps)] if args.fee_bps is not None else []),
        *(["--slippage-bps", repr(args.slippage_bps)] if args.slippage_bps is not None else []),
    ]

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="stratflow-btbench-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        csv, strategy = work / "SIMA.csv", work / "cross.yaml"
        write_bars(csv, args.bars)
        strategy.write_text(STRATEGY, encoding="utf-8")
        print(f"{args.bars:,} one-minute bars of SIMA, SMA {FAST}/{SLOW} crossover; {csv}")
        load = os.getloadavg()
        print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")

        results: list[tuple[str, dict[str, Any]]] = []
        if not args.no_baseline:
            tree, note = extract_tree(args.baseline, work)
            if tree is None:
                print(f"baseline: skipped, {note}")
            else:
                print(f"baseline {note}: running", flush=True)
                results.append(
                    (
                        f"baseline {args.baseline}",
                        run_tree(tree, csv, strategy, work / "base", costs, args.processes),
                    )
                )
        print("this tree: running", flush=True)
        results.append(
            ("this tree", run_tree(ROOT, csv, strategy, work / "this", costs, args.processes))
        )

        print(
            f"\n{'stratflow':28} {'flow s':>8} {'bars/s':>9} {'e2e s':>8} {'bars/s':>9} "
            f"{'trades':>7} {'final equity':>14}"
        )
        base = results[0][1] if len(results) > 1 else None
        for label, r in results:
            print(line(label, r, None if r is base else base))
        mine = results[-1][1]
        print(
            f"(this tree: {mine['import_s']:.1f}s imports, {mine['open_s']:.1f}s reading the CSV,"
            f" not in either figure; flow target 50,000 bars/s:"
            f" {mine['bars'] / mine['flow_s'] / 50_000:.2f} of it)"
        )
        agree = len({(r["trades"], r["final_equity"]) for _, r in results}) == 1
        if not args.no_bt:
            bt = run_backtesting_py(csv, args.bt_bars)
            if isinstance(bt, str):
                print(f"backtesting.py: skipped, {bt}")
            else:
                rate = bt["bars"] / bt["run_s"]
                print(
                    f"{'backtesting.py SmaCross':28} {bt['run_s']:8.1f} {rate:9,.0f} "
                    f"{'':8} {'':9} {bt['trades']:7} {bt['final_equity']:14,.2f}"
                    f"  on {bt['bars']:,} bars; this tree's flow is"
                    f" {(mine['bars'] / mine['flow_s']) / rate:.2f}x its speed"
                )
        load = os.getloadavg()
        print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        print(
            "stratflow runs agree on trades and final equity"
            if agree
            else "stratflow runs DIFFER in trades or final equity"
        )
        print(f"benchmark wall time {time.perf_counter() - started:.0f} s")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
