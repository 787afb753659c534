"""The desk's acting bars alone: per-bar µs of a bar on which the strategy decides and of a bar
on which the simulated venue fills, under the SMA(10/20) crossover strategy file on a seeded
random walk (the bars of `bench_desk_block`).

    PYTHONPATH=$PWD python bench/bench_acting_bars.py [--bars 50000] [--fee-bps 0]
                                                      [--slippage-bps 0] [--dump FILE]

Every bar goes through `TradingDesk.on_bar_event` (each call timed with the process CPU clock);
a bar whose outputs hold a first decision version is a decision bar, one with a fill a fill bar,
the rest quiet. `--dump` writes every output row's JSON, one a line, with its type: the rows of
two versions of the desk must be the same file.

`--replay N` times each acting bar again, less noisily on a shared machine: the desk's state
one bar before it is pickled during the run; afterwards each acting bar is replayed N times
from that state (the bar before it replayed first, untimed, so its objects are warm) and its
best CPU time kept; the median and mean of those best times are printed per kind (the first
pass pickles the desk before every bar, which slows its own figures: read the replayed ones).
"""

from __future__ import annotations

import argparse
import gc
import pickle
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_desk_block import events, settings  # noqa: E402

from models.core.events import BarEvent  # noqa: E402
from models.core.messages import DecisionRecord, Fill  # noqa: E402
from models.desk.desk import TradingDesk  # noqa: E402


def row_text(row: object) -> str:
    """A row as compared: its JSON, its repr (types: `Decimal('1.0')` is not `Decimal('1')`)
    and the fields it was given."""
    dump = getattr(row, "model_dump_json", None)
    fields = sorted(getattr(row, "model_fields_set", ()))
    return f"{type(row).__name__} {dump() if dump else ''} {row!r} {fields}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars", type=int, default=50_000)
    parser.add_argument("--fee-bps", default="0")
    parser.add_argument("--slippage-bps", default="0")
    parser.add_argument("--dump", type=Path, default=None)
    parser.add_argument("--replay", type=int, default=0, help="replays of each acting bar")
    args = parser.parse_args()
    cfg = settings(args.fee_bps, args.slippage_bps)
    evs = events(cfg, args.bars)
    desk = TradingDesk.create(cfg)
    clock = time.process_time_ns
    kinds: dict[str, list[int]] = {"decision": [], "fill": [], "quiet": []}
    lines: list[str] = []
    states: dict[str, list[tuple[bytes, BarEvent, BarEvent]]] = {"decision": [], "fill": []}
    before: tuple[bytes, BarEvent] | None = None  # the state before the previous bar, that bar
    for event in evs:
        state = pickle.dumps(desk) if args.replay else b""
        started = clock()
        out = desk.on_bar_event(event)
        took = clock() - started
        decided = any(isinstance(r, DecisionRecord) and r.version == 1 for r in out)
        filled = any(isinstance(r, Fill) for r in out)
        kind = "decision" if decided else "fill" if filled else "quiet"
        kinds[kind].append(took)
        if args.replay and before is not None and kind in states:
            states[kind].append((*before, event))
        before = (state, event)
        if args.dump is not None:
            lines.extend(row_text(r) for r in out)
    for kind, times in kinds.items():
        mean = sum(times) / len(times) / 1e3 if times else 0.0
        print(f"{kind:9} {len(times):7} bars  {mean:7.1f} µs/bar")
    print(f"final equity {desk.portfolio.equity()}")
    if args.dump is not None:
        args.dump.write_text("\n".join(lines) + "\n")
    for kind, cases in states.items():
        if cases:
            best = sorted(replayed(state, warm, event, args.replay) for state, warm, event in cases)
            median, mean = best[len(best) // 2] / 1e3, sum(best) / len(best) / 1e3
            print(
                f"{kind:9} {len(best):7} bars replayed: best of {args.replay}, "
                f"median {median:7.1f} µs  mean {mean:7.1f} µs"
            )


def replayed(state: bytes, warm: BarEvent, event: BarEvent, times: int) -> int:
    """The best CPU time (ns) of `event` on the desk pickled in `state` after `warm`."""
    best: int | None = None
    gc.disable()  # as a bounded flow runs (dataflows/run.py)
    try:
        for _ in range(times):
            desk = pickle.loads(state)
            desk.on_bar_event(warm)
            started = time.process_time_ns()
            desk.on_bar_event(event)
            took = time.process_time_ns() - started
            best = took if best is None else min(best, took)
    finally:
        gc.enable()
    assert best is not None
    return best


if __name__ == "__main__":
    main()
