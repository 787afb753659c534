"""The desk's two paths inside its block path, as the flow runs them: the acting bars (each
through `TradingDesk.on_bar_event`: decision bars and fill bars) and the quiet runs (the rest
of `TradingDesk.on_bar_block`), per bar and per run, with the counts beside the times, and
against a baseline commit measured in the same session.

    PYTHONPATH=$PWD python bench/bench_desk_paths.py [--bars 200000] [--block 2500]
                                                     [--repeat 3] [--baseline REV]
                                                     [--dump FILE]

The bars are `bench_desk_block`'s (a seeded random walk under the SMA(10/20) crossover file,
features, triggers and routes computed once, before any timing). One desk behind its driver (a
backtest: inline) takes them as `BarBlock`s of `--block` bars; the CPU time of the process is
taken around `DeskDriver.run`, `on_bar_block` and each `on_bar_event` call the block path makes
(an acting bar: one whose outputs hold a first decision version is a decision bar, one with a
fill a fill bar). A fill bar the block path takes itself (trees that have it: its fills,
`_venue_fills`, then `_after_fills` or the quiet run it opens) is timed around those calls, and
one that opens a quiet run gets its share of the run at the quiet path's cost a bar. The quiet
path is the rest of `on_bar_block`'s time, per quiet bar and per run of quiet bars, and as
fitted (`fixed + per bar * bars`) to the times of each `quiet.quiet_bars` call. Each figure
is the median of `--repeat` runs, each without cycle
collection (as a bounded flow runs: `dataflows/run.py`). The CPU clock costs ~0.6 µs a reading.

`--baseline REV` extracts that commit with `git archive` and runs this same file there (as a
child, PYTHONPATH pointing at it), alternating with this tree's runs: the ratios are this tree's
CPU time over the baseline's, and the fill counts, final equity, decision and fill bars and a
digest of every row (its JSON, repr and fields set: `bench_acting_bars.row_text`) must be
equal, else the benchmark fails (how many bars each path took may differ). `--dump` writes
those row texts, one a line.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("DESK_PATHS_TREE", BENCH.parent))
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "bench"))  # the bars and the row text, as the tree has them

from bench_acting_bars import row_text  # noqa: E402
from bench_desk_block import events, settings  # noqa: E402

from dataflows.driver import DeskDriver  # noqa: E402
from models.core.blocks import BarBlock, PositionColumns, expand_rows  # noqa: E402
from models.core.messages import DecisionRecord, Fill, PositionSnapshot  # noqa: E402
from models.desk import quiet  # noqa: E402
from models.desk.desk import TradingDesk  # noqa: E402

KINDS = ("decision", "fill", "other")


def one_run(cfg: Any, blocks: list[BarBlock], dump: Path | None) -> dict[str, Any]:
    """One timed run over `blocks`: CPU times (ns) of the whole and of each acting bar."""
    clock = time.process_time_ns
    acting = {k: 0 for k in KINDS}
    counts = {k: 0 for k in KINDS}
    original = TradingDesk.on_bar_event

    timed: list[tuple[int, list[Any]]] = []  # sorted into kinds after the run
    inside = [False]  # in an `on_bar_event` call

    def timed_event(self: TradingDesk, event: Any) -> Any:
        started = clock()
        inside[0] = True
        try:
            out = original(self, event)
        finally:
            inside[0] = False
        timed.append((clock() - started, out))
        return out

    # A fill bar the block path takes itself (trees that have it): its fills
    # (`_venue_fills`), then either the rest of the bar (`_after_fills`, timed into the same
    # record) or the quiet run it opens (its share counted at the quiet path's cost a bar).
    fill_bars: list[list[Any]] = []  # [ns, outputs, joined a quiet run]
    venue_fills = TradingDesk._venue_fills
    after_fills = getattr(TradingDesk, "_after_fills", None)

    def timed_fills(self: TradingDesk, bar: Any) -> Any:
        if inside[0]:
            return venue_fills(self, bar)
        started = clock()
        out = venue_fills(self, bar)
        fill_bars.append([clock() - started, list(out), True])
        return out

    def timed_after(self: TradingDesk, event: Any, out: Any) -> Any:
        if inside[0] or after_fills is None:
            return after_fills(self, event, out)  # type: ignore[misc]
        started = clock()
        got = after_fills(self, event, out)
        record = fill_bars[-1]
        record[0] += clock() - started
        record[1], record[2] = list(got), False
        return got

    runs: list[tuple[int, int]] = []  # (bars, ns) of each `quiet.quiet_bars` call
    quiet_bars = quiet.quiet_bars

    def timed_quiet(desk: TradingDesk, block: BarBlock, start: int, *more: Any, **kw: Any) -> Any:
        started = clock()
        got = quiet_bars(desk, block, start, *more, **kw)
        runs.append((got[1] - start, clock() - started))
        return got

    block_ns = [0]
    on_bar_block = TradingDesk.on_bar_block

    def timed_block(self: TradingDesk, block: BarBlock, start: int = 0) -> Any:
        started = clock()
        got = on_bar_block(self, block, start)
        block_ns[0] += clock() - started
        return got

    TradingDesk.on_bar_event = timed_event  # type: ignore[method-assign]
    TradingDesk.on_bar_block = timed_block  # type: ignore[method-assign]
    TradingDesk._venue_fills = timed_fills  # type: ignore[method-assign]
    if after_fills is not None:
        TradingDesk._after_fills = timed_after  # type: ignore[method-assign]
    quiet.quiet_bars = timed_quiet
    try:
        driver = DeskDriver(TradingDesk.create(cfg))
        rows: list[Any] = []
        gc.collect()
        gc.disable()  # as a bounded flow runs (dataflows/run.py)
        started = clock()
        driver.run(blocks, rows)
        total = clock() - started
    finally:
        gc.enable()
        TradingDesk.on_bar_event = original  # type: ignore[method-assign]
        TradingDesk.on_bar_block = on_bar_block  # type: ignore[method-assign]
        TradingDesk._venue_fills = venue_fills  # type: ignore[method-assign]
        if after_fills is not None:
            TradingDesk._after_fills = after_fills  # type: ignore[method-assign]
        quiet.quiet_bars = quiet_bars
    joined = sum(1 for _, _, j in fill_bars if j)  # fill bars inside a quiet run
    timed += [(ns, out) for ns, out, _ in fill_bars]
    for took, out in timed:
        decided = any(type(r) is DecisionRecord and r.version == 1 for r in out)
        kind = "decision" if decided else "fill" if any(type(r) is Fill for r in out) else "other"
        acting[kind] += took
        counts[kind] += 1
    fixed, per_bar = fit(runs)
    columns = [r for r in rows if isinstance(r, PositionColumns)]
    expanded = list(expand_rows(rows))
    digest = hashlib.sha256()
    texts: list[str] = []
    for row in expanded:
        text = row_text(row)
        digest.update(text.encode() + b"\n")
        if dump is not None:
            texts.append(text)
    if dump is not None:
        dump.write_text("\n".join(texts) + "\n")
    last = expanded[-1]
    return {
        "total_ns": total,
        "block_ns": block_ns[0],
        "acting_ns": acting,
        "acting": counts,
        "quiet_runs": len(columns),
        "quiet_bars": sum(len(r) for r in columns),
        "quiet_fit": [fixed, per_bar],
        "joined": joined,
        "fills": sum(type(r) is Fill for r in expanded),
        "equity": str(last.equity) if isinstance(last, PositionSnapshot) else "?",
        "digest": digest.hexdigest(),
    }


def figures(run: dict[str, Any]) -> dict[str, float]:
    """µs: a whole run (the driver's work included) per bar, each acting kind per bar, the
    quiet path per bar and per run."""
    acting_ns = sum(run["acting_ns"].values())
    quiet_ns = run["block_ns"] - acting_ns
    # A fill bar that opened a quiet run: its share of the run, at the run's cost a bar.
    joined = run.get("joined", 0)
    quiet_bars = max(run["quiet_bars"], 1)
    share = quiet_ns * joined / quiet_bars
    out = {"total": run["total_ns"] / 1e3 / run["bars"], "acting": (acting_ns + share) / 1e3}
    for kind in KINDS:
        ns = run["acting_ns"][kind] + (share if kind == "fill" else 0)
        out[kind] = ns / 1e3 / max(run["acting"][kind], 1)
    out["quiet/bar"] = (quiet_ns - share) / 1e3 / max(run["quiet_bars"] - joined, 1)
    out["quiet/run"] = quiet_ns / 1e3 / max(run["quiet_runs"], 1)
    out["fit fixed"], out["fit /bar"] = (v / 1e3 for v in run["quiet_fit"])
    return out


def fit(runs: list[tuple[int, int]]) -> tuple[float, float]:
    """Least squares `ns = fixed + per_bar * bars` over the quiet calls that took bars."""
    xs = [float(n) for n, _ in runs if n]
    ys = [float(t) for n, t in runs if n]
    if len(xs) < 2:
        return 0.0, 0.0
    slope, intercept = statistics.linear_regression(xs, ys)
    return intercept, slope


def extract(rev: str, into: Path) -> Path:
    """The tree of commit `rev` (`git archive`), with this file's bench helpers beside it."""
    archive = subprocess.run(
        ["git", "-C", str(BENCH.parent), "archive", "--format=tar", rev],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def child(tree: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One run of this file on `tree`, in a process of its own."""
    env = dict(os.environ, PYTHONPATH=str(tree), DESK_PATHS_TREE=str(tree))
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--repeat", "1"]
    command += ["--bars", str(args.bars), "--block", str(args.block)]
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout.splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=200_000)
    parser.add_argument("--block", type=int, default=2500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", default=None, help="a commit to compare against")
    parser.add_argument("--dump", type=Path, default=None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline is None or args.child:
        cfg = settings("0", "0")
        evs = events(cfg, args.bars)
        names = tuple(evs[0].features.values)
        blocks = [
            BarBlock.of_events(names, evs[i : i + args.block])
            for i in range(0, len(evs), args.block)
        ]
        runs = [one_run(cfg, blocks, args.dump if k == 0 else None) for k in range(args.repeat)]
        for run in runs:
            run["bars"] = args.bars
        if args.child:
            print(json.dumps(runs[0]))
            return
        report({"this tree": runs})
        return
    with tempfile.TemporaryDirectory(prefix="desk-paths-") as tmp:
        base = extract(args.baseline, Path(tmp))
        here = ROOT
        got: dict[str, list[dict[str, Any]]] = {args.baseline: [], "this tree": []}
        for _ in range(args.repeat):  # alternating: the machine's load hits both alike
            got[args.baseline].append(child(base, args))
            got["this tree"].append(child(here, args))
    for runs in got.values():
        for run in runs:
            run["bars"] = args.bars
    report(got)
    (b, t) = (got[args.baseline][0], got["this tree"][0])
    # The bars of each kind are the same; how many bars each path took may differ (a fill bar
    # the block path takes itself opens a quiet run).
    for key in ("fills", "equity", "digest"):
        if b[key] != t[key]:
            raise SystemExit(f"{key} differs: baseline {b[key]}, this tree {t[key]}")
    for kind in ("decision", "fill"):  # a bar left at a block's end may be "other" or quiet
        if b["acting"][kind] != t["acting"][kind]:
            raise SystemExit(f"{kind} bars differ: baseline {b['acting']}, this tree {t['acting']}")
    print("rows identical (digest", t["digest"][:16] + ")")


def report(got: dict[str, list[dict[str, Any]]]) -> None:
    medians: dict[str, dict[str, float]] = {}
    for name, runs in got.items():
        per = [figures(r) for r in runs]
        medians[name] = {k: statistics.median(p[k] for p in per) for k in per[0]}
        first = runs[0]
        print(
            f"{name}: {len(runs)} runs, fills {first['fills']}, final equity {first['equity']}, "
            f"acting bars {first['acting']}, quiet runs {first['quiet_runs']} "
            f"({first['quiet_bars']} bars)"
        )
        print("   " + "  ".join(f"{k} {v:7.2f}" for k, v in medians[name].items()) + "  (µs)")
    if len(medians) == 2:
        (b, t) = medians.values()
        print(
            "ratio (this tree / baseline, CPU time): "
            + "  ".join(f"{k} {t[k] / b[k]:.3f}" for k in t if b[k])
        )


if __name__ == "__main__":
    main()
