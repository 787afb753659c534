"""Guards on event time at ingest: no single record may move a market partition's clock far ahead.

A market partition's clock (its newest accepted event time) decides which events are late for
every symbol on it and where its bars sort in the desk's merge. One forged record dated 2199
used to be accepted and freeze the symbol: every later real tick was "late". Two guards:

- The clock guard (`models.market.parsing`): an event more than `bars.max_future_skew` ahead of a
  trusted clock is refused. Trusted is the broker's append time (a `LogAppendTime` record), else
  the wall clock at ingest (live) or at the run's start (bounded, kept in the recovery snapshot
  so a restarted backtest judges every record as the first run did). A producer-set
  `CreateTime` is never trusted: the producer sets it, as it sets the event time.
- The jump guard (`JumpGuard`, here), for history that is in the past whatever the clock: an
  event more than `jump_ms` past the partition's clock (`bars.max_jump`, at least two bar
  intervals of its symbol) is a candidate new timeline, held, not used; so are the partition's
  first events (nothing to compare the first one with yet; a short bounded input's first events
  are used at its end). Real data has gaps
  (weekends, outages, a second data set that starts years later), so the gap is accepted once
  `confirm` (`bars.jump_confirmations`) more events land on the same new timeline (each within
  `jump_ms` of the held ones): then that timeline's held events are released, in arrival
  order, and the clock moves. Held events that fit no candidate timeline start one of their
  own (at most `MAX_LINES`; the one with the fewest events makes room), so a stray event among
  a partition's first events cannot take the genuine ones down with it: the first timeline to
  be confirmed wins and the others are refused. A lone outlier is refused with the reason when
  the old timeline continues (an event newer than the clock and within `jump_ms` of it), when
  another candidate is confirmed first, or when a bounded input ends before it was confirmed
  (with no clock yet, the input's largest candidate is used then). Events at or before the
  clock (late ones, other symbols lagging behind) neither confirm nor refute anything and pass
  as before.

News and social partitions get the clock guard only: their feeds are sparse and unordered
(months between headlines, older items after newer ones), so a gap says nothing there.

`GuardAlarm` turns a burst of guard refusals on one partition (`bars.guard_alert_burst` within
`bars.guard_alert_window` of arrival time) into one `Alert`, so an attack or a broken producer
is seen, not only counted.

Pure: no clock of its own; arrival times are passed in. State pickles with the ingest snapshot.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from models.core.ids import alert_id
from models.core.messages import Alert, Severity, ms_to_datetime

T = TypeVar("T")

MAX_LINES = 4  # candidate timelines held at once (each holds at most `confirm` events)

__all__ = ["GuardAlarm", "JumpGuard", "JumpVerdict", "describe_ms"]


def describe_ms(ms: int) -> str:
    """A duration the way a person reads it: 3d 4h, 12m 5s, 250ms."""
    if ms < 1000:
        return f"{ms}ms"
    secs = ms // 1000
    parts: list[str] = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if secs >= size:
            parts.append(f"{secs // size}{unit}")
            secs %= size
    return " ".join(parts[:2])


def _iso(ms: int) -> str:
    try:
        return ms_to_datetime(ms).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms"


@dataclass(slots=True)
class JumpVerdict(Generic[T]):
    """What to do after one event: `use` in this order now; `refuse` with the reason given."""

    use: list[T] = field(default_factory=list)
    refuse: list[tuple[T, str]] = field(default_factory=list)


@dataclass(slots=True)
class _Held(Generic[T]):
    ts_ms: int
    jump_ms: int
    item: T
    line: int = 0  # the candidate timeline it belongs to


@dataclass(slots=True)
class JumpGuard(Generic[T]):
    """One market partition's clock and the events held after a gap (see the module doc)."""

    confirm: int
    clock_ms: int | None = None  # newest accepted event time; None before the first event
    held: list[_Held[T]] = field(default_factory=list)
    next_line: int = 0

    def steady(self, ts_ms: int, jump_ms: int) -> bool:
        """The common case, decided without building a verdict: the clock is known, nothing is
        held and `ts_ms` is within `jump_ms` of the clock, so the event is used now (the clock
        moves to it). False: ask `admit`, which decides every other case."""
        clock = self.clock_ms
        if clock is None or self.held or ts_ms > clock + jump_ms:
            return False
        if ts_ms > clock:
            self.clock_ms = ts_ms
        return True

    def admit(self, ts_ms: int, jump_ms: int, item: T) -> JumpVerdict[T]:
        verdict: JumpVerdict[T] = JumpVerdict()
        clock = self.clock_ms
        if clock is not None and ts_ms <= clock + jump_ms:
            if self.held and ts_ms > clock:
                self._refuse(
                    verdict, self.held, f"the events after it continued from {_iso(clock)}"
                )
            if ts_ms > clock:
                self.clock_ms = ts_ms
            verdict.use.append(item)
            return verdict
        # Past the gap, or the partition's first events (no clock yet: the first one could be
        # the outlier): held on a candidate timeline until it is confirmed.
        line = self._line_of(ts_ms, jump_ms)
        if line is None:
            sizes: dict[int, int] = {}
            for h in self.held:
                sizes[h.line] = sizes.get(h.line, 0) + 1
            if len(sizes) >= MAX_LINES:  # make room: the candidate with the fewest events goes
                weakest = min(sizes, key=lambda k: (sizes[k], k))
                gone = [h for h in self.held if h.line == weakest]
                self._refuse(verdict, gone, "other candidate timelines outnumbered it")
            line = self.next_line
            self.next_line += 1
        self.held.append(_Held(ts_ms, jump_ms, item, line))
        members = [h for h in self.held if h.line == line]
        if len(members) > self.confirm:  # the gap is real: this timeline's events, in order
            others = [h for h in self.held if h.line != line]
            start = _iso(min(h.ts_ms for h in members))
            self._refuse(verdict, others, f"the events after it confirmed another from {start}")
            self.held = members
            self._release(verdict)
        return verdict

    def finish(self) -> JumpVerdict[T]:
        """A bounded input ended: what is still held after a gap was never confirmed; the
        first events of a short input have nothing that contradicts them and are used."""
        verdict: JumpVerdict[T] = JumpVerdict()
        if self.clock_ms is None and self.held:
            sizes: dict[int, int] = {}
            for h in self.held:
                sizes[h.line] = sizes.get(h.line, 0) + 1
            best = max(sizes, key=lambda k: (sizes[k], -k))
            others = [h for h in self.held if h.line != best]
            self._refuse(verdict, others, "the input ended with another timeline larger")
            self.held = [h for h in self.held if h.line == best]
            self._release(verdict)
        else:
            self._refuse(verdict, self.held, "the input ended first")
        return verdict

    def _release(self, verdict: JumpVerdict[T]) -> None:
        if not self.held:
            return
        verdict.use.extend(h.item for h in self.held)
        newest = max(h.ts_ms for h in self.held)
        self.clock_ms = newest if self.clock_ms is None else max(self.clock_ms, newest)
        self.held = []

    def _line_of(self, ts_ms: int, jump_ms: int) -> int | None:
        """The held candidate timeline `ts_ms` extends (within `jump_ms` of its events)."""
        bounds: dict[int, tuple[int, int]] = {}
        for h in self.held:
            low, high = bounds.get(h.line, (h.ts_ms, h.ts_ms))
            bounds[h.line] = (min(low, h.ts_ms), max(high, h.ts_ms))
        for line, (low, high) in sorted(bounds.items()):
            if low - jump_ms <= ts_ms <= high + jump_ms:
                return line
        return None

    def _reason(self, ts_ms: int, why: str) -> str:
        if self.clock_ms is None:
            return (
                f"event time {_iso(ts_ms)}, among the partition's first events, is not followed "
                f"by {self.confirm} events of the same timeline: {why}"
            )
        clock = self.clock_ms
        return (
            f"event time {_iso(ts_ms)} jumps {describe_ms(ts_ms - clock)} past the partition's "
            f"newest event {_iso(clock)}, and {self.confirm} later events did not confirm the "
            f"gap: {why}"
        )

    def _refuse(self, verdict: JumpVerdict[T], which: list[_Held[T]], why: str) -> None:
        for h in which:
            verdict.refuse.append((h.item, self._reason(h.ts_ms, why)))
        gone = {id(h) for h in which}
        self.held = [h for h in self.held if id(h) not in gone]


@dataclass(slots=True)
class GuardAlarm:
    """Counts guard refusals on one partition; `burst` of them within `window_ms` is an alert.

    Arrival times are the broker's append time or the ingest clock, so in a backtest the same
    records raise the same alert (same id) in every run and after a restart."""

    partition: str
    burst: int
    window_ms: int
    recent: deque[int] = field(default_factory=deque)

    def refused(self, arrival_ms: int, offset: int, reason: str) -> Alert | None:
        recent = self.recent
        recent.append(arrival_ms)
        while recent and recent[0] < arrival_ms - self.window_ms:
            recent.popleft()
        if len(recent) < self.burst:
            return None
        count = len(recent)
        recent.clear()  # the next alert needs a burst of its own
        return Alert(
            alert_id=alert_id("ingest-guard", self.partition, offset),
            ts_ms=arrival_ms,
            severity=Severity.WARNING,
            source="ingest",
            message=(
                f"{count} records on {self.partition} refused for their time or partition "
                f"within {describe_ms(self.window_ms)}; latest (offset {offset}): {reason}"
            ),
            context={"partition": self.partition, "count": count, "offset": offset},
        )
