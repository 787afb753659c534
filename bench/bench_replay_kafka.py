"""Replay of one-minute bars into the real local broker: read, encode, publish, end to end.

    python bench/bench_replay_kafka.py [--rows 1000000] [--symbols 1 2] [--format csv parquet]
                                       [--partitions 1] [--skip-old]

Generates a bar file of `--rows` one-minute bars (one symbol, or several interleaved), starts
the bundled Tansu broker (`connectors.kafka.broker.LocalBroker`, memory storage) and times,
for this tree ("new") and for the code before issue 11 ("old": `connectors/files/{replay,
market_file,market_source}.py` of commit `OLD_COMMIT`, taken with `git show` and imported
under other names):
  (a) scan      `open_market_file`: both passes over the file, runs written to disk;
  (b) encode    the scanned stream to (key, value) bytes: old `messages()` + `model_dump_json`,
                new `encoded()`; the two value lists are compared (identical or the bench says);
  (c) publish   the values of (b) to a fresh topic: old = the pre-issue-11 loop
                (`connectors.kafka.io.publish` with a delivery callback and `time.time()` per
                record), new = `replay`'s loop (fed the encoded list);
  (d) end2end   `replay(open_market_file(path))` into a fresh topic, scan included.
Every line shows the message count beside the time (and the records the broker holds after
(c) and (d), from its high watermarks), so a fast wrong answer shows.

Measured 2026-12-07 on the shared 2-core box (other agents working; `uptime` load 2.3-2.7
during the run), 1,000,000 bars, 1 partition, msgs/s (old -> new, ratio); every phase's
count was 1,000,000, the broker held 1,000,000 after every publish, old and new values
identical:
                       scan             encode            publish            end to end
  CSV, 1 symbol      39k -> 253k 6.5x   91k -> 842k 9.3x  393k -> 827k 2.1x   27k -> 201k 7.4x
  CSV, 2 symbols     39k -> 281k 7.2x   81k -> 750k 9.3x  262k -> 490k 1.9x   25k -> 176k 7.1x
  Parquet, 1 symbol  54k -> 203k 3.8x   98k -> 920k 9.4x  298k -> 879k 2.9x   29k -> 120k 4.2x
  Parquet, 2 symbols 55k -> 197k 3.5x   97k -> 624k 6.5x  308k -> 490k 1.6x   27k -> 129k 4.7x
`replay`'s own rate in the end-to-end runs (stream read, encoded and delivered, after the scan):
660k (CSV, 1), 485k (CSV, 2), 418k (Parquet, 1), 500k (Parquet, 2) msgs/s. An end-to-end run
is now mostly the scan (a file's problems are all known before the first record is sent).
Timings on this box vary by up to 2x from run to run with the other agents' load.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.files import replay as new_replay  # noqa: E402
from connectors.files.market_file import MergedStreams, Wire  # noqa: E402
from connectors.kafka.broker import LocalBroker, ensure_topics  # noqa: E402
from connectors.kafka.io import (  # noqa: E402
    DeliveryCounter,
    make_producer,
    publish,
    topic_end_offsets,
)

OLD_COMMIT = "b587715"
T0_MS = 1_577_836_800_000  # 2020-01-01


def write_bars(path: Path, rows: int, symbols: int) -> None:
    """`rows` one-minute bars, `symbols` symbols interleaved, two-decimal prices."""
    rng = random.Random(7)
    names = [f"SIM{chr(65 + i)}" for i in range(symbols)]
    price = {s: 100.0 + 10 * i for i, s in enumerate(names)}
    lines = ["time,symbol,open,high,low,close,volume"]
    for i in range(rows):
        sym = names[i % symbols]
        t = T0_MS + (i // symbols) * 60_000
        o = price[sym]
        c = max(1.0, o + rng.uniform(-0.5, 0.5))
        price[sym] = c
        h = max(o, c) + rng.random() * 0.2
        lo = min(o, c) - rng.random() * 0.2
        lines.append(f"{t},{sym},{o:.2f},{h:.2f},{lo:.2f},{c:.2f},{rng.randint(0, 99999) / 100}")
    path.write_text("\n".join(lines) + "\n")


def to_parquet(path: Path) -> Path:
    import pandas as pd

    out = path.with_suffix(".parquet")
    pd.read_csv(path).to_parquet(out)
    return out


def load_old() -> types.SimpleNamespace | None:
    """The pre-issue-11 modules, or None (with a note) when git or the commit is missing."""
    tmp = Path(tempfile.mkdtemp())
    mods: dict[str, types.ModuleType] = {}
    renames = {
        "connectors.files.market_source": "old_market_source",
        "connectors.files.market_file": "old_market_file",
    }
    for name in ("market_source", "market_file", "replay"):
        try:
            source = subprocess.run(
                ["git", "-C", str(ROOT), "show", f"{OLD_COMMIT}:connectors/files/{name}.py"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"old: not run (git show {OLD_COMMIT}: {exc})")
            return None
        for old, new in renames.items():
            source = source.replace(old, new)
        file = tmp / f"old_{name}.py"
        file.write_text(source)
        spec = importlib.util.spec_from_file_location(f"old_{name}", file)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[f"old_{name}"] = mod  # dataclasses look their module up
        spec.loader.exec_module(mod)
        mods[name] = mod
    return types.SimpleNamespace(**mods)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


class _Given(MergedStreams):
    """Already encoded items, for timing `replay`'s loop alone."""

    def __init__(self, items: list[Wire]) -> None:
        self.streams = []
        self.count = len(items)
        self._items = items

    def encoded(self) -> Iterator[Wire]:
        return iter(self._items)


def old_publish(bootstrap: str, topic: str, items: list[tuple[bytes, bytes]]) -> int:
    """The publishing loop of `replay` before issue 11, on already encoded values."""
    counter = DeliveryCounter()
    producer = make_producer(bootstrap)
    for key, value in items:
        publish(producer, topic, key, value, int(time.time() * 1000), on_delivery=counter)
    producer.flush(60)
    return counter.delivered


class Bench:
    def __init__(self, bootstrap: str, partitions: int) -> None:
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.n = 0

    def topic(self) -> str:
        self.n += 1
        name = f"bench-{os.getpid()}-{self.n}"
        ensure_topics(self.bootstrap, [name], self.partitions)
        return name

    def held(self, topic: str) -> int:
        return sum(topic_end_offsets(self.bootstrap, topic).values())


def line(label: str, variant: str, count: int, seconds: float, base: float | None) -> str:
    ratio = "" if base is None else f"  x{base / seconds:5.1f} vs old"
    return (
        f"  {label:<8} {variant}: {count:>9,} msgs in {seconds:6.2f} s "
        f"= {count / seconds:>9,.0f} msgs/s{ratio}"
    )


def held(bench: Bench, topic: str, rate: float | None) -> None:
    own = "" if rate is None else f"; replay's own rate {rate:,.0f} msgs/s"
    print(f"{'':11}broker holds {bench.held(topic):,}{own}", flush=True)


def run_file(path: Path, bench: Bench, old: types.SimpleNamespace | None) -> None:
    new_file = new_replay
    results: dict[str, dict[str, tuple[int, float]]] = {}

    def report(label: str, variant: str, count: int, seconds: float) -> None:
        results.setdefault(label, {})[variant] = (count, seconds)
        base = results[label].get("old") if variant == "new" else None
        print(line(label, variant, count, seconds, base[1] if base else None), flush=True)

    # (a) + (b)
    old_values: list[tuple[bytes, bytes]] | None = None
    if old is not None:
        stream, s = timed(lambda: old.market_file.open_market_file(path))
        report("scan", "old", stream.count, s)
        old_values, s = timed(
            lambda: [(m.symbol.encode(), m.model_dump_json().encode()) for m in stream.messages()]
        )
        report("encode", "old", len(old_values), s)
        stream.close()
    stream, s = timed(lambda: new_file.open_market_file(path))
    report("scan", "new", stream.count, s)
    wires, s = timed(lambda: list(stream.encoded()))
    report("encode", "new", len(wires), s)
    stream.close()
    if old_values is not None:
        same = old_values == [(k, v) for _, _, k, v in wires]
        print(f"  (key, value) of old and new: {'identical' if same else 'DIFFERENT'}")
        # (c)
        topic = bench.topic()
        delivered, s = timed(lambda: old_publish(bench.bootstrap, topic, old_values))
        report("publish", "old", delivered, s)
        held(bench, topic, None)
        del old_values
    topic = bench.topic()
    stats, s = timed(lambda: new_file.replay(bench.bootstrap, topic, _Given(wires)))
    report("publish", "new", stats.published, s)
    held(bench, topic, stats.msgs_per_s)
    wires = []
    # (d)
    if old is not None:
        topic = bench.topic()

        def old_end_to_end() -> Any:
            with old.market_file.open_market_file(path) as st:
                return old.replay.replay(bench.bootstrap, topic, st)

        stats, s = timed(old_end_to_end)
        report("end2end", "old", stats.published, s)
        held(bench, topic, None)
    topic = bench.topic()

    def new_end_to_end() -> Any:
        with new_file.open_market_file(path) as st:
            return new_file.replay(bench.bootstrap, topic, st)

    stats, s = timed(new_end_to_end)
    report("end2end", "new", stats.published, s)
    held(bench, topic, stats.msgs_per_s)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--symbols", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--format", nargs="+", choices=["csv", "parquet"], default=["csv"])
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--skip-old", action="store_true")
    args = ap.parse_args()
    old = None if args.skip_old else load_old()
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"{args.rows:,} one-minute bars; {load}")
    with tempfile.TemporaryDirectory() as tmp, LocalBroker(log_dir=Path(tmp)) as broker:
        bench = Bench(broker.bootstrap, args.partitions)
        for symbols in args.symbols:
            csv_path = Path(tmp) / f"bars{symbols}.csv"
            write_bars(csv_path, args.rows, symbols)
            for fmt in args.format:
                path = csv_path if fmt == "csv" else to_parquet(csv_path)
                size = path.stat().st_size / 1e6
                print(f"{fmt}, {symbols} symbol(s), {size:.0f} MB, {args.partitions} partition(s)")
                run_file(path, bench, old)


if __name__ == "__main__":
    main()
