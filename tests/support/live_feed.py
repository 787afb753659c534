"""A backtest-like market stream played live: a generated scenario whose ticks are stamped on
the wall clock, the first `warm_s` seconds published at once (history for the features), the
rest each when its time comes, as an exchange's feed would deliver them. A live run (`stratflow
run --api`) then decides while it is watched, and a control command sent now lands in the
middle of the stream, not after its end.

Used by the dashboard's browser test and by bench/bench_stream.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import timedelta

from connectors.kafka.io import make_producer, publish
from connectors.sim.scenario import generate_scenario


class LiveFeed:
    """Publish `symbols`' ticks (`rate` a second each) to `topic` until `stop()` or
    `duration_s` after the warm-up."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        symbols: Sequence[str],
        rate: float,
        warm_s: int,
        duration_s: int,
        seed: int = 3,
    ) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        now_ms = int(time.time() * 1000)
        self.start_ms = now_ms - warm_s * 1000
        # The generator makes no future ticks: made in the past, then moved forward.
        span_ms = (warm_s + duration_s) * 1000
        past = generate_scenario(
            list(symbols), self.start_ms - span_ms, warm_s + duration_s, rate, seed=seed, crash=None
        )
        shift = timedelta(milliseconds=span_ms)
        self.ticks = [t.model_copy(update={"ts": t.ts + shift}) for t in past]
        self.published = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-feed", daemon=True)

    def _run(self) -> None:
        producer = make_producer(self.bootstrap, **{"linger.ms": 5})
        try:
            for tick in self.ticks:
                wait = tick.ts.timestamp() - time.time()
                if wait > 0 and self._stop.wait(wait):
                    break
                publish(producer, self.topic, tick.symbol.encode(), tick.model_dump_json().encode())
                self.published += 1
                if self.published % 50 == 0:
                    producer.poll(0)
        finally:
            producer.flush(10)

    def start(self) -> LiveFeed:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
