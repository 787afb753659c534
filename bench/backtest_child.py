"""One timed `run_backtest` for `bench_backtest_flow.py`, in a process of its own.

    python bench/backtest_child.py --csv SIMA.csv --strategy cross.yaml --work DIR
                                   [--fee-bps X] [--slippage-bps Y] [--processes N]

It runs on the processes `stratflow backtest` would choose (`dataflows.cluster
.default_processes`) unless `--processes` says; the JSON line says how many it used.

`bench_backtest_flow.py` starts this file with PYTHONPATH set either to this tree or to an
extract of an older commit, so it imports only the public entry points both have and adds
nothing of its own to the path. It prints one JSON line: the times, the trade count (closed
round trips, paired as the report pairs them: its "# Trades"), the final equity and the tree
it ran.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any


def run(
    csv: Path,
    strategy: Path,
    work: Path,
    fee_bps: float | None,
    slippage_bps: float | None,
    processes: int | None = None,
    rows_apart: bool | None = None,
) -> dict[str, Any]:
    t_start = time.perf_counter()
    import dataflows
    from api.backtest import run_backtest
    from api.backtest_cmd import open_data, with_run_settings
    from api.cli import settings_from
    from connectors.files.strategy_file import read_strategy_files

    imported = time.perf_counter()
    specs = read_strategy_files([strategy])
    settings = with_run_settings(settings_from(None), specs, None, fee_bps, slippage_bps)
    with contextlib.ExitStack() as stack:
        data = open_data(settings, [str(csv)], "SIMA", None, stack)
        opened = time.perf_counter()
        if processes is None:  # what `stratflow backtest` runs on (older trees: one process)
            try:
                from dataflows.cluster import default_processes
            except ImportError:
                processes = 1
            else:
                try:
                    processes = default_processes(getattr(data, "count", 0))
                except TypeError:  # a tree whose default did not depend on the input
                    processes = default_processes()  # type: ignore[call-arg]
        more: dict[str, Any] = {"processes": processes} if processes > 1 else {}
        if rows_apart is not None:  # else the tree's default
            more["rows_apart"] = rows_apart
        result = run_backtest(settings, data, work, say=lambda _line: None, progress=False, **more)
        done = time.perf_counter()
    from models.performance.trades import TaggedFill, pair_fills

    fills = result.rows.fills
    sells = sum(1 for f in fills if f.side.value == "sell")
    # Round trips as the report counts them ("# Trades"): fills paired by the report's code.
    trips = len(pair_fills(TaggedFill(f, "", "", "") for f in fills).closed)
    return {
        "tree": str(Path(dataflows.__file__).resolve().parents[1]),
        "bars": len(result.rows.bars.get("SIMA", [])),
        "published": result.published,
        "import_s": imported - t_start,
        "open_s": opened - imported,
        "backtest_s": done - opened,  # replay + flow + reading the run back
        "flow_s": result.flow_seconds,
        "process_s": done - t_start,
        "fills": len(fills),
        "trades": trips,
        "sell_fills": sells,
        "final_equity": str(result.rows.final_equity),
        "processes": processes,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", required=True, type=Path)
    ap.add_argument("--strategy", required=True, type=Path)
    ap.add_argument("--work", required=True, type=Path)
    ap.add_argument("--fee-bps", type=float, default=None)
    ap.add_argument("--slippage-bps", type=float, default=None)
    ap.add_argument("--processes", type=int, default=None, help="default: the CLI's")
    ap.add_argument(
        "--rows-with-desk",
        action="store_true",
        help="on a cluster, the store in the desk's process (the layout before rows_apart)",
    )
    args = ap.parse_args()
    result = run(
        args.csv,
        args.strategy,
        args.work,
        args.fee_bps,
        args.slippage_bps,
        args.processes,
        False if args.rows_with_desk else None,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
