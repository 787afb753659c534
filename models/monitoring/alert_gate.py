"""Which alerts reach the user's phone, and the text they read: pure rules, clock passed in.

An alert storm (a flapping feed, a broker outage, a bug raising on every bar) must not turn
into hundreds of notifications, and an alert re-emitted after a restart (Bytewax replays the
last epoch's outputs) must not arrive twice. `AlertGate.admit` decides, per alert, in order:
below the minimum severity -> not sent; an `alert_id` already admitted in this process -> not
sent again; more than `max_per_minute` sent in the last 60 s -> not sent, but counted, and the
next alert that is sent says how many were held back, so a storm is never silent.

No I/O and no `time.time()`: `now_s` comes from the caller (any monotonic scale), so the rules
are deterministic under test. Not thread-safe: `connectors.notify.notifier.Notifier` holds a lock.
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from models.core.messages import Alert, Severity

__all__ = [
    "RATE_WINDOW_S",
    "SEVERITY_RANK",
    "AlertGate",
    "GateDecision",
    "GateOutcome",
    "format_alert",
]

RATE_WINDOW_S: Final = 60.0
"""The rate limit counts alerts sent in the last this many seconds."""

SEVERITY_RANK: Final[dict[Severity, int]] = {
    Severity.INFO: 0,
    Severity.WARNING: 1,
    Severity.CRITICAL: 2,
}


class GateOutcome(StrEnum):
    SEND = "send"
    BELOW_SEVERITY = "below_severity"
    DUPLICATE = "duplicate"
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True, slots=True)
class GateDecision:
    outcome: GateOutcome
    held_back: int = 0
    """With `SEND`: how many alerts the rate limit held back since the last one sent (to be
    reported in this one's body); 0 otherwise."""


class AlertGate:
    """Severity floor, per-process de-duplication by `alert_id`, and a sliding-window rate limit.

    `remember` bounds the memory of seen ids (oldest forgotten first): an id older than that
    many admitted alerts could be sent again, which only a storm of that many distinct alerts
    can cause."""

    def __init__(
        self,
        min_severity: Severity | str,
        max_per_minute: int,
        *,
        remember: int = 100_000,
    ) -> None:
        if max_per_minute < 1:
            raise ValueError(f"max_per_minute must be >= 1, got {max_per_minute}")
        if remember < 1:
            raise ValueError(f"remember must be >= 1, got {remember}")
        self.min_severity = Severity(min_severity)
        self.max_per_minute = max_per_minute
        self._remember = remember
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._sent_at: deque[float] = deque()
        self._held_back = 0

    @property
    def held_back(self) -> int:
        """Alerts held back by the rate limit and not yet reported in a sent alert."""
        return self._held_back

    def admit(self, alert: Alert, now_s: float) -> GateDecision:
        """Decide one alert. Every alert that passes the severity floor is remembered, whatever
        happens next, so a held-back alert re-emitted later is still a duplicate (a replay
        re-emits a storm's alerts together, and they were reported as held back)."""
        if SEVERITY_RANK[alert.severity] < SEVERITY_RANK[self.min_severity]:
            return GateDecision(GateOutcome.BELOW_SEVERITY)
        if alert.alert_id in self._seen:
            self._seen.move_to_end(alert.alert_id)
            return GateDecision(GateOutcome.DUPLICATE)
        self._seen[alert.alert_id] = None
        if len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        while self._sent_at and self._sent_at[0] <= now_s - RATE_WINDOW_S:
            self._sent_at.popleft()
        if len(self._sent_at) >= self.max_per_minute:
            self._held_back += 1
            return GateDecision(GateOutcome.RATE_LIMITED)
        self._sent_at.append(now_s)
        held_back, self._held_back = self._held_back, 0
        return GateDecision(GateOutcome.SEND, held_back)


def _context_value(value: object) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):  # e.g. a circular structure
        return repr(value)


def format_alert(alert: Alert, held_back: int = 0) -> tuple[str, str]:
    """(title, body) of a notification: `[severity] source`, then the message, one
    `key: value` line per context entry (in the alert's order) and, when the rate limit held
    alerts back before this one, a line saying how many."""
    title = f"[{alert.severity.value}] {alert.source}"
    lines = [alert.message]
    if alert.context:
        lines.append("")
        lines.extend(f"{key}: {_context_value(value)}" for key, value in alert.context.items())
    if held_back:
        plural = "alert was" if held_back == 1 else "alerts were"
        lines.extend(["", f"({held_back} earlier {plural} not sent: rate limit)"])
    return title, "\n".join(lines)
