"""One timed run of the whole flow for `bench_flow.py`, in a process of its own.

    python bench/flow_child.py --settings S.json --bootstrap HOST:PORT [--cpu N]

`bench_flow.py` starts this file with PYTHONPATH set either to this tree or to an extract of an
older commit (the pre-redesign baseline), so it imports only what both layouts have, by either
name, and adds nothing of its own to the path. It prints one JSON line: the times (see `Clock`)
and the result counts read back from the store, so the runs can be checked to agree.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Clock:
    """Where one thread's wall time went, from the kernel's scheduler accounting.

    `wall_s` = `cpu_s` (on a core) + `queued_s` (runnable, waiting for a core another process
    holds) + the rest (asleep: waiting for the broker, a timer, a lock). On a shared machine the
    queueing is the other processes' doing and changes from run to run; `quiet_s` (wall minus
    queueing) is what the same run would have taken with the core to itself, near enough. The
    benchmark reports both."""

    wall_s: float
    cpu_s: float
    queued_s: float

    @property
    def quiet_s(self) -> float:
        return self.wall_s - self.queued_s

    def as_dict(self) -> dict[str, float]:
        return {"elapsed_s": self.wall_s, "cpu_s": self.cpu_s, "queued_s": self.queued_s}


def _thread_sched() -> tuple[float, float]:
    """This thread's (on-CPU, run-queue wait) seconds so far; (CPU time, 0) without /proc."""
    try:
        with open("/proc/thread-self/schedstat", encoding="ascii") as f:
            run_ns, wait_ns, _ = (int(x) for x in f.read().split())
        return run_ns / 1e9, wait_ns / 1e9
    except (OSError, ValueError):
        return time.thread_time(), 0.0


class Stopwatch:
    """Wall, CPU and queueing time of the calling thread from construction to `stop()`."""

    def __init__(self) -> None:
        self._t0 = time.perf_counter()
        self._s0 = _thread_sched()

    def stop(self) -> Clock:
        wall = time.perf_counter() - self._t0
        run, wait = _thread_sched()
        return Clock(wall, run - self._s0[0], wait - self._s0[1])


def pin(cpu: int) -> None:
    """One core for the whole process (threads started later inherit it), as the target says."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def result_counts(store: Any) -> dict[str, int]:
    """What the run decided, read back from its store: every run must report the same."""
    counts: dict[str, int] = {}
    for table in ("decisions", "orders"):
        counts[table] = int(store.query(f"SELECT count() AS n FROM {table} FINAL")[0]["n"])
    return counts


def run_flow(settings_path: Path, bootstrap: str) -> dict[str, Any]:
    try:  # the layout after the re-layout into subpackages
        from connectors.store.clickhouse import Store
        from models.config.settings import Settings
    except ImportError:  # the pre-redesign layout (ec9925c and before)
        from connectors.clickhouse_store import Store  # type: ignore[no-redef,import-not-found,unused-ignore]

        from models.config import Settings  # type: ignore[no-redef,attr-defined]
    import dataflows
    from dataflows.pipeline import FlowSpec
    from dataflows.run import run_pipeline

    settings = Settings.model_validate_json(settings_path.read_text(encoding="utf-8"))
    watch = Stopwatch()
    run_pipeline(settings, FlowSpec(bootstrap=bootstrap, tail=False, kafka_out=False))
    clock = watch.stop()
    with Store.open(settings.clickhouse) as store:
        counts = result_counts(store)
    tree = str(Path(dataflows.__file__).resolve().parents[1])
    return {**clock.as_dict(), **counts, "tree": tree}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--settings", required=True)
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--cpu", type=int, default=0)
    args = ap.parse_args()
    pin(args.cpu)
    print(json.dumps(run_flow(Path(args.settings), args.bootstrap)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
