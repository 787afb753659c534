"""A circuit breaker for calls to a remote endpoint (the GPT API), as a pure state machine.

A failing endpoint must not be hammered: every call to it costs a timeout's worth of latency on a
decision and, on a paid API, possibly money. After `failure_threshold` consecutive failures the
breaker opens and callers skip the endpoint (and use their fallback) for `cooldown_s`; then it
lets exactly one trial call through (half-open): success closes it, failure opens it again for
another cool-down.

The clock is passed in (`now`, seconds on any monotonic scale) instead of read here, so the
breaker has no I/O, is deterministic under test, and can live in snapshotted operator state
(it pickles as plain data). It is not thread-safe by itself; a caller shared between threads
holds a lock around it (as `connectors.gpt.client.GptClient` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(StrEnum):
    CLOSED = "closed"
    """Calls go through; consecutive failures are counted."""
    OPEN = "open"
    """Calls are refused until the cool-down has passed."""
    HALF_OPEN = "half_open"
    """The cool-down has passed: one trial call may go through."""


@dataclass(slots=True)
class CircuitBreaker:
    """closed -> open after `failure_threshold` consecutive failures -> half-open after
    `cooldown_s` -> closed on the trial call's success (or open again on its failure).

    Use: `if breaker.allow(now):` call, then `record_success(now)` or `record_failure(now)`;
    every `allow()` that returned True is followed by exactly one `record_*` call.
    """

    failure_threshold: int = 5
    cooldown_s: float = 30.0
    state: BreakerState = BreakerState.CLOSED
    consecutive_failures: int = 0
    opened_at: float | None = None
    trial_started_at: float | None = None
    times_opened: int = 0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {self.failure_threshold}")
        if not self.cooldown_s >= 0:  # also refuses NaN
            raise ValueError(f"cooldown_s must be >= 0, got {self.cooldown_s}")

    def state_at(self, now: float) -> BreakerState:
        """The state a call made at `now` would see (an open breaker whose cool-down has passed
        reads as half-open). Changes nothing."""
        if self.state is BreakerState.OPEN and self._cooled(self.opened_at, now):
            return BreakerState.HALF_OPEN
        return self.state

    def allow(self, now: float) -> bool:
        """May a call start at `now`? In half-open only one trial call at a time is allowed;
        a trial that never reported back stops blocking after another cool-down, so a caller
        that lost its outcome cannot wedge the breaker open forever."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if not self._cooled(self.opened_at, now):
                return False
            self.state = BreakerState.HALF_OPEN
            self.trial_started_at = now
            return True
        # HALF_OPEN
        if self.trial_started_at is None or self._cooled(self.trial_started_at, now):
            self.trial_started_at = now
            return True
        return False

    def record_success(self, now: float) -> None:
        """The endpoint answered: close and forget past failures (also when a call that started
        before the breaker opened reports late: the endpoint evidently works again). `now` is
        taken for symmetry with `record_failure`; the transition does not need it."""
        del now
        self.state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self.opened_at = None
        self.trial_started_at = None

    def record_failure(self, now: float) -> None:
        """The endpoint failed: count it; open at the threshold, or at once if this was the
        half-open trial call."""
        self.consecutive_failures += 1
        if self.state is BreakerState.HALF_OPEN or (
            self.state is BreakerState.CLOSED
            and self.consecutive_failures >= self.failure_threshold
        ):
            self._open(now)
        # Already open: a call that started before the breaker opened reports late; it does not
        # extend the cool-down, which runs from the moment the breaker opened.

    def retry_in(self, now: float) -> float:
        """Seconds until a call may be tried again (0 when one may be tried now)."""
        if self.state is BreakerState.OPEN and self.opened_at is not None:
            return max(0.0, self.opened_at + self.cooldown_s - now)
        if self.state is BreakerState.HALF_OPEN and self.trial_started_at is not None:
            return max(0.0, self.trial_started_at + self.cooldown_s - now)
        return 0.0

    def _open(self, now: float) -> None:
        self.state = BreakerState.OPEN
        self.opened_at = now
        self.trial_started_at = None
        self.times_opened += 1

    def _cooled(self, since: float | None, now: float) -> bool:
        return since is None or now - since >= self.cooldown_s
