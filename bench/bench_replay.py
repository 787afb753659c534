"""`stratflow replay FILE`: messages/s and peak memory, streaming (now) vs in-memory (before).

    python bench/bench_replay.py [--rows 1000000] [--shuffled]

Generates a trade CSV of `--rows` trades (two symbols; `--shuffled` mixes it in blocks, so the
external sort runs), then replays it into a fake producer (every record is built and
serialised as for Kafka, nothing is sent) with:
- new: `open_market_file` + `replay` of the stream (this tree);
- old: `load_market_file` + `replay` of the list, from `connectors/files/replay.py` as of commit
  2bfd149 (before issue 9), taken with `git show` and imported under another name; skipped,
  with a note, when git or that commit is not available.
Each variant runs in its own process, so its peak RSS (ru_maxrss) is its own; "growth" is the
peak minus the RSS after imports.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OLD_COMMIT = "2bfd149"


class FakeProducer:
    def __init__(self) -> None:
        self.count = 0
        self.bytes = 0

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        partition: int = -1,
        on_delivery: Any = None,
        timestamp: int = 0,
    ) -> None:
        self.count += 1
        self.bytes += len(value)
        if on_delivery is not None:  # the old loop's callback; the new one counts failures only
            on_delivery(None, None)

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0


def write_trades(path: Path, rows: int, shuffled: bool) -> None:
    rng = random.Random(7)
    t = 1_709_510_400_000
    lines = []
    for i in range(rows):
        t += rng.randint(0, 900)
        sym = "SIMA" if rng.random() < 0.5 else "SIMB"
        lines.append([str(t), sym, f"{100 + rng.random():.4f}", str(rng.randint(1, 50)), str(i)])
    if shuffled:
        blocks = [lines[i : i + 9973] for i in range(0, len(lines), 9973)]
        rng.shuffle(blocks)
        lines = [r for b in blocks for r in b]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["time", "symbol", "price", "size", "id"])
        w.writerows(lines)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(variant: str, path: Path) -> dict[str, Any]:
    if variant == "new":
        import connectors.files.replay as mod
    else:
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{OLD_COMMIT}:connectors/files/replay.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        old = Path(tempfile.mkdtemp()) / "old_replay.py"
        old.write_text(source)
        spec = importlib.util.spec_from_file_location("old_replay", old)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules["old_replay"] = mod  # its dataclasses look their module up
        spec.loader.exec_module(mod)
    producer = FakeProducer()
    setattr(mod, "wait_for_broker", lambda *a, **k: None)  # noqa: B010
    setattr(mod, "make_producer", lambda *a, **k: producer)  # noqa: B010
    base = _rss_mb()
    t0 = time.perf_counter()
    if variant == "new":
        with mod.open_market_file(path) as stream:
            mod.replay("fake:9092", "bench", stream)
    else:
        loaded = mod.load_market_file(path)
        mod.replay("fake:9092", "bench", loaded.messages)
    seconds = time.perf_counter() - t0
    peak = _rss_mb()
    return {
        "variant": variant,
        "messages": producer.count,
        "seconds": round(seconds, 2),
        "msgs_per_s": round(producer.count / seconds),
        "peak_rss_mb": round(peak, 1),
        "growth_mb": round(peak - base, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--shuffled", action="store_true")
    ap.add_argument("--variant", choices=["new", "old"])
    ap.add_argument("--file", type=Path)
    ap.add_argument("--make", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.make:
        write_trades(args.file, args.rows, args.shuffled)
        return
    if args.variant:
        print(json.dumps(child(args.variant, args.file)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trades.csv"
        # In a process of its own: Linux carries a parent's peak RSS over fork and exec, so
        # a parent that built the rows would inflate every child's figure.
        make = [sys.executable, __file__, "--make", "--rows", str(args.rows), "--file", str(path)]
        subprocess.run([*make, *(["--shuffled"] if args.shuffled else [])], check=True)
        size_mb = path.stat().st_size / 1e6
        print(f"{args.rows:,} trades, {size_mb:.0f} MB CSV, shuffled={args.shuffled}")
        for variant in ("new", "old"):
            proc = subprocess.run(
                [sys.executable, __file__, "--variant", variant, "--file", str(path)],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["?"])[-1]
                print(f"{variant:>4}: not run ({last})")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(
                f"{variant:>4}: {r['messages']:,} msgs in {r['seconds']} s "
                f"({r['msgs_per_s']:,} msgs/s), peak RSS {r['peak_rss_mb']} MB "
                f"(+{r['growth_mb']} MB over imports)"
            )


if __name__ == "__main__":
    main()
