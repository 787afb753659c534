"""The circuit breaker's state machine, driven by an explicit clock (no sleeping)."""

from __future__ import annotations

import pickle

import pytest

from models.gpt.circuit_breaker import BreakerState, CircuitBreaker


def _state(cb: CircuitBreaker) -> BreakerState:
    """Read through a call: mypy would otherwise keep an earlier assert's narrowing."""
    return cb.state


def _fail(cb: CircuitBreaker, now: float, times: int = 1) -> None:
    for _ in range(times):
        assert cb.allow(now)
        cb.record_failure(now)


def test_closed_until_the_threshold_of_consecutive_failures() -> None:
    cb = CircuitBreaker(failure_threshold=3, cooldown_s=10)
    _fail(cb, 0.0, 2)
    assert _state(cb) is BreakerState.CLOSED
    assert cb.allow(0.0)
    cb.record_failure(0.0)
    assert _state(cb) is BreakerState.OPEN
    assert cb.times_opened == 1
    assert not cb.allow(1.0)


def test_a_success_resets_the_count() -> None:
    cb = CircuitBreaker(failure_threshold=3, cooldown_s=10)
    _fail(cb, 0.0, 2)
    assert cb.allow(0.0)
    cb.record_success(0.0)
    assert cb.consecutive_failures == 0
    _fail(cb, 0.0, 2)
    assert _state(cb) is BreakerState.CLOSED


def test_open_refuses_until_the_cool_down_then_lets_one_trial_through() -> None:
    cb = CircuitBreaker(failure_threshold=1, cooldown_s=10)
    _fail(cb, 100.0)
    assert cb.state_at(109.9) is BreakerState.OPEN
    assert not cb.allow(109.9)
    assert cb.retry_in(105.0) == pytest.approx(5.0)
    assert cb.state_at(110.0) is BreakerState.HALF_OPEN
    assert _state(cb) is BreakerState.OPEN  # state_at changes nothing
    assert cb.allow(110.0)  # the trial call
    assert _state(cb) is BreakerState.HALF_OPEN
    assert not cb.allow(110.5)  # only one trial at a time


def test_trial_success_closes() -> None:
    cb = CircuitBreaker(failure_threshold=2, cooldown_s=5)
    _fail(cb, 0.0, 2)
    assert cb.allow(5.0)
    cb.record_success(5.0)
    assert _state(cb) is BreakerState.CLOSED
    assert cb.allow(5.0)
    assert cb.retry_in(5.0) == 0.0


def test_trial_failure_reopens_for_a_new_cool_down() -> None:
    cb = CircuitBreaker(failure_threshold=2, cooldown_s=5)
    _fail(cb, 0.0, 2)
    assert cb.allow(6.0)
    cb.record_failure(6.0)  # one failure is enough in half-open
    assert _state(cb) is BreakerState.OPEN
    assert cb.opened_at == 6.0
    assert cb.times_opened == 2
    assert not cb.allow(10.9)
    assert cb.allow(11.0)


def test_a_lost_trial_stops_blocking_after_a_cool_down() -> None:
    cb = CircuitBreaker(failure_threshold=1, cooldown_s=5)
    _fail(cb, 0.0)
    assert cb.allow(5.0)  # trial starts, never reports back
    assert not cb.allow(9.0)
    assert cb.allow(10.0)


def test_late_failure_does_not_extend_the_cool_down() -> None:
    cb = CircuitBreaker(failure_threshold=2, cooldown_s=5)
    assert cb.allow(0.0)  # a slow call starts
    _fail(cb, 1.0, 2)  # two quick failures open the breaker at t=1
    cb.record_failure(3.0)  # the slow call fails late
    assert cb.opened_at == 1.0
    assert cb.allow(6.0)


def test_picklable_with_its_state() -> None:
    cb = CircuitBreaker(failure_threshold=2, cooldown_s=7)
    _fail(cb, 3.0, 2)
    copy = pickle.loads(pickle.dumps(cb))
    assert copy == cb
    assert _state(copy) is BreakerState.OPEN
    assert not copy.allow(4.0)
    assert copy.allow(10.0)


@pytest.mark.parametrize(
    ("threshold", "cooldown"), [(0, 1.0), (-1, 1.0), (1, -0.1), (1, float("nan"))]
)
def test_rejects_nonsense_settings(threshold: int, cooldown: float) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=threshold, cooldown_s=cooldown)


def test_zero_cool_down_half_opens_at_once() -> None:
    cb = CircuitBreaker(failure_threshold=1, cooldown_s=0)
    _fail(cb, 1.0)
    assert cb.state_at(1.0) is BreakerState.HALF_OPEN
    assert cb.allow(1.0)
