"""Background jobs keyed by what they work on, for the gateways that keep the flow from waiting.

The GPT gateway (questions) and the order gateway (orders) both hand work to threads and collect
the results later, and both must never start the same key twice (a restart re-submits what was
pending). This is that mechanism, once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

__all__ = ["KeyedWorker"]

R = TypeVar("R")


class KeyedWorker(Generic[R]):
    """A thread pool whose keyed jobs run once per key at a time; their results come out of
    `ready()` in completion order. `run` queues an unkeyed job on the same threads."""

    def __init__(self, workers: int, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._in_flight: dict[str, Future[R]] = {}
        self._done: list[R] = []
        self.submitted = 0  # keyed jobs started so far

    def submit(self, key: str, fn: Callable[..., R], *args: Any) -> bool:
        """Start `fn(*args)` unless a job with `key` is still out (then False)."""
        with self._lock:
            if key in self._in_flight:
                return False
            future = self._pool.submit(fn, *args)
            self._in_flight[key] = future
            self.submitted += 1
        future.add_done_callback(lambda f: self._collect(key, f))
        return True

    def _collect(self, key: str, future: Future[R]) -> None:
        with self._lock:
            self._in_flight.pop(key, None)
            self._done.append(future.result())

    def run(self, fn: Callable[..., object], *args: Any) -> None:
        self._pool.submit(fn, *args)

    def ready(self) -> list[R]:
        """The results that arrived since the last call, in arrival order."""
        with self._lock:
            done, self._done = self._done, []
        return done

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def wait(self, timeout_s: float | None = None) -> None:
        """Block until every job out now has finished."""
        with self._lock:
            futures = list(self._in_flight.values())
        for f in futures:
            f.exception(timeout=timeout_s)

    def shutdown(self, *, wait: bool) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
