"""The control API's status endpoint under load: p99 while a replay runs, against idle (issue 13).

    python bench/bench_status.py [--minutes 240] [--repeats 2] [--idle-requests 300]

One bounded run of the flow with the control API served from the flow's own process (what
`stratflow run --api` does: `bench/stream_child.py`, the same child as the stream bench), on
the bundled broker and chdb. This process, a second one, asks `GET /api/status` over loopback,
one request after the other on a kept-alive connection, and times each answer:
- idle, before: the API up, the flow not started yet (an empty decision log);
- under load: from the `go` that starts the flow to the end of its input (the replayed
  scenario, two symbols, 1 s bars, 10 ticks/s each, historical time);
- idle, after: the flow finished, the decision log full (what a status query reads is largest
  then, so this idle figure is the conservative one for the ratio).
Each line shows the request count and the errors beside the times (a fast wrong answer shows:
every answer must be 200 and name the run), and the flow's input records and elapsed time, so
the load is visible; the ratios loaded / idle-after of p99 and p50 are printed. No figure is
asserted.

Measured 2026-12-07 on the shared 2-core box (other agents' work running, load ~6), 240
minutes of two symbols (288,000 messages, 10,172 decisions, ~14 s of flow at ~20,000
messages/s), 2 runs: under load 123-124 requests, p50 93-106 ms, p99 329-868 ms (max 1.7 s);
idle after the run 300 requests, p50 34 ms, p99 210-523 ms; idle before it (empty log) p50
19-22 ms, p99 202-241 ms. Ratio of p99s 0.63 and 4.14 (median 2.4): at this load one slow
answer moves a p99 of ~120 requests by 2x; the p50s say it steadier, ~3x under load. Where the
time goes: the status queries share the flow's process and its chdb connection (the API of a
running flow is served from inside it: `run --api`), so they queue behind the flow's inserts
and the GIL; with a ClickHouse server the API runs apart (`stratflow serve`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402

from bench.bench_stream import START, settings_for, write_config  # noqa: E402
from connectors.files.replay import replay  # noqa: E402
from connectors.kafka.broker import LocalBroker, ensure_topics  # noqa: E402
from connectors.sim.scenario import generate_scenario  # noqa: E402

TOKEN = "bench-token-" + uuid.uuid4().hex
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WARM_UP = 5


class Timings:
    """Latencies (ms) of status answers, with the count of answers that were not right."""

    def __init__(self) -> None:
        self.ms: list[float] = []
        self.errors = 0
        self.run_ids: set[str] = set()

    def ask(self, client: httpx2.Client, url: str) -> None:
        t0 = time.perf_counter()
        try:
            answer = client.get(url + "/api/status", headers=AUTH)
        except httpx2.HTTPError:
            self.errors += 1
            return
        elapsed = (time.perf_counter() - t0) * 1000
        if answer.status_code != 200:
            self.errors += 1
            return
        self.run_ids.add(str(answer.json().get("run_id")))
        self.ms.append(elapsed)

    def line(self, label: str) -> str:
        if not self.ms:
            return f"{label:<14} no answers ({self.errors} errors)"
        ordered = sorted(self.ms)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        return (
            f"{label:<14} {len(self.ms):>6,} requests  {self.errors} errors  "
            f"p50 {statistics.median(ordered):7.1f} ms  p99 {p99:7.1f} ms  "
            f"max {ordered[-1]:7.1f} ms"
        )

    def p99(self) -> float:
        ordered = sorted(self.ms)
        return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else 0.0


def idle(client: httpx2.Client, url: str, n: int) -> Timings:
    t = Timings()
    for _ in range(n):
        t.ask(client, url)
    return t


def one_run(bootstrap: str, tmp: Path, ticks: list[Any], idle_requests: int) -> dict[str, Any]:
    settings = settings_for(tmp, ["SIMA", "SIMB"])
    ensure_topics(bootstrap, settings.kafka.topics.all(), 1)
    replay(bootstrap, settings.kafka.topics.market, ticks)
    cfg = write_config(settings, tmp / f"cfg-{uuid.uuid4().hex[:6]}.yaml")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STRATFLOW_API_TOKEN": TOKEN}
    child = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "stream_child.py"), str(cfg), bootstrap],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tmp,
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    url = json.loads(child.stdout.readline())["url"]
    with httpx2.Client(timeout=60) as client:
        idle(client, url, WARM_UP)  # the first answers import and plan: not timed
        before = idle(client, url, idle_requests)
        done: list[dict[str, Any]] = []
        reader = threading.Thread(
            target=lambda: done.append(json.loads(child.stdout.readline()))  # type: ignore[union-attr]
        )
        reader.start()
        child.stdin.write("go\n")
        child.stdin.flush()
        loaded = Timings()
        while not done:
            loaded.ask(client, url)
        reader.join()
        after = idle(client, url, idle_requests)
    child.stdin.write("quit\n")
    child.stdin.flush()
    child.wait(60)
    return {"before": before, "loaded": loaded, "after": after, "flow": done[0]}


LABELS = {"before": "idle, before", "loaded": "under load", "after": "idle, after"}


def run_all(bootstrap: str, tmp: Path, ticks: list[Any], repeats: int, idle_n: int) -> None:
    ratios: list[float] = []
    for i in range(repeats):
        r = one_run(bootstrap, tmp, ticks, idle_n)
        flow = r["flow"]
        print(
            f"run {i + 1}: flow {flow['records']:,} records in {flow['elapsed_s']:.2f} s "
            f"({flow['records'] / flow['elapsed_s']:,.0f}/s), {flow['decisions']:,} decisions"
        )
        for key, label in LABELS.items():
            print("  " + r[key].line(label))
        runs = set().union(*(r[k].run_ids for k in LABELS))
        if len(runs) != 1:
            print(f"  answers named {len(runs)} runs: {sorted(runs)}")
        if r["after"].p99() > 0:
            ratio = r["loaded"].p99() / r["after"].p99()
            ratios.append(ratio)
            p50 = statistics.median(r["loaded"].ms) / statistics.median(r["after"].ms)
            print(f"  ratio under load / idle after: p99 {ratio:.2f}, p50 {p50:.2f}")
    if ratios:
        print(f"median ratio over {len(ratios)} run(s): {statistics.median(ratios):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=240, help="scenario length (2 symbols)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--idle-requests", type=int, default=300)
    args = parser.parse_args()
    ticks = generate_scenario(["SIMA", "SIMB"], START, args.minutes * 60, 10.0, seed=7, crash=None)
    print(f"status p99 under load: {len(ticks):,} ticks a run, {args.repeats} run(s)")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        with LocalBroker(tmp / "broker") as broker:
            run_all(broker.bootstrap, tmp, ticks, args.repeats, args.idle_requests)


if __name__ == "__main__":
    main()
