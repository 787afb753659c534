"""The WebSocket stream's cost to the flow, and how soon a pause stops the orders (issue 13).

    python bench/bench_stream.py [--minutes 20] [--clients 50] [--repeats 2] [--pauses 30]

(a) events/s: the same replayed stream (two symbols, 1 s bars, 10 ticks/s each, historical
    time) run to its end by `bench/stream_child.py` (the flow with the control API on a thread
    of its own process, as `stratflow run --api`), with no WebSocket client and with
    `--clients` clients attached (from this process, a second one) before the flow starts.
    Each line shows the input messages and output messages beside the time, and what every
    client received, so a fast wrong answer shows; the ratio is printed.
(b) pause -> last order: `stratflow run --api` following a stream played live
    (`tests.support.live_feed`, four symbols); `--pauses` times: resume, wait for an order
    on the stream, send a pause through the API, and take the time from sending it to the
    arrival (on the WebSocket stream) of the last order placed after it was sent (0 when
    none came) and to its acknowledgement; p50/p99/max, and the orders placed after the
    pause in stream time (must be 0).

Measured 2026-12-08 on the shared 2-core box (other agents' work running, load 5-8), 20
minutes of two symbols (24,000 messages, 817 decisions, 1,893 stream messages; every client
got all 1,893, none dropped), 3 runs each:
  events/s median 11,761 without clients, 8,383 with 50: ratio 0.71 (runs 7.9k-12.1k and
  6.6k-9.7k: the load moves single runs by 2x); messages per CPU second of the run's
  process 28,242 -> 22,890: ratio 0.81 (50 clients x 1,893 messages cost ~0.15 CPU s).
  Before frames of several messages and without per-message deflate (first version), the
  same runs took 1.5-2.1 s without clients and 10.4 s with 50 (ratio ~0.17).
  pause -> last order over 20 pauses: p50 0 ms, p99 281 ms (2 of 20 had an order already
  on its way arrive after the command); pause -> ack p50 1,202 ms, p99 1,511 ms (the flow
  places the command at its record time among 1 s bars, so it waits for the bar past it);
  orders placed after a pause in stream time: 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402
import websockets  # noqa: E402

from connectors.files.replay import replay  # noqa: E402
from connectors.kafka.broker import LocalBroker, ensure_topics  # noqa: E402
from connectors.kafka.io import topic_end_offsets  # noqa: E402
from connectors.sim.scenario import generate_scenario  # noqa: E402
from models.config.settings import Settings  # noqa: E402
from tests.support.live_feed import LiveFeed  # noqa: E402

TOKEN = "bench-token-" + uuid.uuid4().hex
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FEATURES = {
    "sma_fast": 3, "sma_slow": 8, "ema": 5, "rsi": 5, "volatility": 5, "vwap": 5,
    "volume_z": 5, "breakout": 5,
}  # fmt: skip
START = int(datetime(2025, 3, 3, 14, 0, tzinfo=UTC).timestamp() * 1000)
STREAM_TOPICS = ("decisions", "orders", "fills", "alerts", "control_acks")


def settings_for(tmp: Path, symbols: list[str]) -> Settings:
    tag = uuid.uuid4().hex[:8]
    names = ("market", "news", "social", "decisions", "orders", "fills", "alerts",
             "dead_letters", "control", "control_acks")  # fmt: skip
    return Settings.model_validate(
        {
            "symbols": {s: {} for s in symbols},
            "features": FEATURES,
            "bars": {"interval": "1s"},
            "kafka": {"topics": {n: f"b.{n}.{tag}" for n in names}},
            "clickhouse": {"path": str(tmp / f"ch-{tag}")},
            "recovery": {"dir": str(tmp / f"rec-{tag}")},
        }
    )


def write_config(settings: Settings, path: Path) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(settings.model_dump(mode="json")), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- clients
class Clients:
    """`n` WebSocket clients on an event loop of their own thread, counting what they get."""

    def __init__(self, url: str, n: int) -> None:
        self.url = url.replace("http://", "ws://") + "/api/stream"
        self.n = n
        self.live = 0
        self.received = [0] * n
        self.closed: list[tuple[int, str]] = []
        self.orders: queue.Queue[tuple[float, dict[str, Any]]] = queue.Queue()
        self.loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),))
        self.thread.start()

    async def _one(self, i: int) -> None:
        try:
            async with websockets.connect(self.url, additional_headers=AUTH, max_size=None) as ws:
                async for frame in ws:
                    assert isinstance(frame, str)
                    lines = frame.split("\n")
                    if lines[0].startswith('{"kind":"live"'):
                        self.live += 1
                        continue
                    self.received[i] += len(lines)
                    if i == 0:  # one client reads the orders (for the pause bench)
                        for line in lines:
                            if line.startswith('{"kind":"order"'):
                                self.orders.put((time.time(), json.loads(line)["data"]))
        except websockets.ConnectionClosed as closed:
            if closed.rcvd is not None and closed.rcvd.code != 1000:
                self.closed.append((closed.rcvd.code, closed.rcvd.reason))
        except asyncio.CancelledError:
            pass

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        tasks = [asyncio.create_task(self._one(i)) for i in range(self.n)]
        await self._stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(30)


def until(what: str, check: Any, guard_s: float = 300) -> Any:
    deadline = time.monotonic() + guard_s
    while not (found := check()):
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {what}")
        time.sleep(0.05)
    return found


# ---------------------------------------------------------------------------- (a)
def one_run(bootstrap: str, tmp: Path, ticks: list[Any], n_clients: int) -> dict[str, Any]:
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
    clients = Clients(url, n_clients) if n_clients else None
    if clients is not None:
        until("clients not live", lambda: clients.live == n_clients)
    child.stdin.write("go\n")
    child.stdin.flush()
    result: dict[str, Any] = json.loads(child.stdout.readline())
    t = settings.kafka.topics
    out = sum(sum(topic_end_offsets(bootstrap, getattr(t, k)).values()) for k in STREAM_TOPICS)
    if clients is not None:
        until("clients did not get every message", lambda: min(clients.received) >= out)
        clients.stop()
    child.stdin.write("quit\n")
    child.stdin.flush()
    child.wait(60)
    result.update(outputs=out, n_clients=n_clients)
    if clients is not None:
        result.update(got_min=min(clients.received), got_max=max(clients.received))
        result["closed"] = clients.closed
    return result


def bench_rate(bootstrap: str, tmp: Path, minutes: int, n_clients: int, repeats: int) -> None:
    ticks = generate_scenario(["SIMA", "SIMB"], START, minutes * 60, 10.0, seed=7, crash=None)
    rates: dict[int, list[float]] = {0: [], n_clients: []}
    per_cpu: dict[int, list[float]] = {0: [], n_clients: []}
    for _ in range(repeats):
        for n in (0, n_clients):
            r = one_run(bootstrap, tmp, ticks, n)
            rate = r["records"] / r["elapsed_s"]
            rates[n].append(rate)
            per_cpu[n].append(r["records"] / r["cpu_s"])
            got = f", each client got {r['got_min']:,}-{r['got_max']:,}" if n else ""
            print(
                f"  {n:3d} clients: {r['records']:,} messages in {r['elapsed_s']:.2f} s = "
                f"{rate:,.0f} msgs/s ({r['cpu_s']:.2f} CPU s in the process, "
                f"{r['records'] / r['cpu_s']:,.0f} msgs per CPU s); {r['decisions']:,} "
                f"decisions, {r['outputs']:,} stream messages{got}; "
                f"dropped {r['stream']['dropped']}",
                flush=True,
            )
    base, loaded = statistics.median(rates[0]), statistics.median(rates[n_clients])
    print(
        f"events/s (median of {repeats}): {base:,.0f} without clients, {loaded:,.0f} with "
        f"{n_clients}: ratio {loaded / base:.3f}"
    )
    base, loaded = statistics.median(per_cpu[0]), statistics.median(per_cpu[n_clients])
    print(
        f"events per CPU second of the run's process (median, less sensitive to the other "
        f"processes' load): {base:,.0f} without clients, {loaded:,.0f} with {n_clients}: "
        f"ratio {loaded / base:.3f}"
    )


# ---------------------------------------------------------------------------- (b)
def bench_pause(bootstrap: str, tmp: Path, pauses: int) -> None:
    symbols = ["SIMA", "SIMB", "SIMC", "SIMD"]
    settings = settings_for(tmp, symbols)
    ensure_topics(bootstrap, settings.kafka.topics.all(), 1)
    feed = LiveFeed(bootstrap, settings.kafka.topics.market, symbols, 10.0, 120, 3600).start()
    cfg = write_config(settings, tmp / "pause.yaml")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STRATFLOW_API_TOKEN": TOKEN}
    argv = [sys.executable, "-c", "from api.cli import main; main()", "run", "-c", str(cfg)]
    child = subprocess.Popen(
        [*argv, "--bootstrap", bootstrap, "--api", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=tmp,
    )  # fmt: skip
    assert child.stdout is not None
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(child.stdout or []), daemon=True).start()
    m = until("no API", lambda: re.search(r"control API on (\S+) ", "".join(lines)))
    url = m.group(1)
    http = httpx2.Client(base_url=url, headers=AUTH, timeout=60)
    clients = Clients(url, 1)
    until("client not live", lambda: clients.live == 1)
    to_last: list[float] = []
    to_ack: list[float] = []
    late = 0
    try:
        for _ in range(pauses):
            r = http.post("/api/control/state", json={"state": "active", "wait_s": 30})
            assert r.status_code == 200, r.text
            while True:  # an order placed after the resume: the flow is trading
                _, order = clients.orders.get(timeout=300)
                if (
                    order.get("version", 1) == 1
                    and order["placed_ms"] > r.json()["ack"]["applied_ms"]
                ):
                    break
            sent = time.time()
            r = http.post("/api/control/state", json={"state": "paused", "wait_s": 30})
            acked = time.time()
            assert r.status_code == 200, r.text
            paused_ms = r.json()["ack"]["applied_ms"]
            to_ack.append(acked - sent)
            last = sent
            window_end = acked + 3.0  # orders already on their way arrive within this
            while (left := window_end - time.time()) > 0:
                try:
                    at, order = clients.orders.get(timeout=left)
                except queue.Empty:
                    break
                if order.get("version", 1) == 1 and at >= sent:
                    last = at
                    late += order["placed_ms"] > paused_ms
            to_last.append(last - sent)
    finally:
        clients.stop()
        feed.stop()
        child.terminate()
        child.wait(60)

    def q(xs: list[float], p: float) -> float:
        return sorted(xs)[min(len(xs) - 1, int(p * len(xs)))] * 1000

    print(
        f"pause -> last order over {len(to_last)} pauses: p50 {q(to_last, 0.5):.0f} ms, p99 "
        f"{q(to_last, 0.99):.0f} ms, max {max(to_last) * 1000:.0f} ms "
        f"({sum(1 for x in to_last if x > 0)} pauses had an order arrive after the command); "
        f"pause -> ack p50 {q(to_ack, 0.5):.0f} ms, p99 {q(to_ack, 0.99):.0f} ms; "
        f"orders placed after a pause in stream time: {late}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=int, default=20)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--pauses", type=int, default=30)
    ap.add_argument("--skip-rate", action="store_true")
    ap.add_argument("--skip-pause", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LocalBroker(Path(tmp) / "broker") as broker:
        if not args.skip_rate:
            bench_rate(broker.bootstrap, Path(tmp), args.minutes, args.clients, args.repeats)
        if not args.skip_pause:
            bench_pause(broker.bootstrap, Path(tmp), args.pauses)


if __name__ == "__main__":
    main()
