"""Send alerts to the user (webhook, mail, Slack, Telegram, ...) through apprise, off the flow.

The pipeline raises alerts from inside the dataflow, where a slow mail server or a dead webhook
must cost nothing: `Notifier.send` only decides (`models.monitoring.alert_gate`: severity floor, one
delivery per `alert_id` per process, rate limit) and puts the alert on a bounded queue; one
background thread delivers it to every configured URL, each with the configured timeout.
Failures are counted and logged, never raised; a full queue drops the new alert (counted).
`close()` lets the queue drain for a bounded time and then gives up on what is left.

Notification URLs hold credentials, so this module shows them only as `scheme://host`
(`models.config.notify.redact_url`), in its logs, its errors and its repr. apprise and the HTTP
client below it (urllib3) log request paths and exception texts that contain the rest of the
URL; while a notifier is open a filter on those loggers replaces every hidden part of its URLs
with `***` before any handler sees the record.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from enum import StrEnum
from types import TracebackType
from typing import Final, Self

import apprise

from models.config.notify import HIDDEN, NotifyConfig, NotifyUrl
from models.core.messages import Alert, Severity
from models.monitoring.alert_gate import AlertGate, GateOutcome, format_alert

__all__ = [
    "SCRUBBED_LOGGERS",
    "Notifier",
    "NotifierError",
    "NotifierStats",
    "SendOutcome",
]

_LOG: Final = logging.getLogger("stratflow.notify")

SCRUBBED_LOGGERS: Final = (
    "apprise",
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.util.retry",
    "requests",
)
"""Loggers that may print a notification URL's path or credentials while apprise sends. A filter
on a logger sees only records created by that very logger, hence the full names."""

_NOTIFY_TYPE: Final = {
    Severity.INFO: apprise.NotifyType.INFO,
    Severity.WARNING: apprise.NotifyType.WARNING,
    Severity.CRITICAL: apprise.NotifyType.FAILURE,
}

_STOP: Final = object()


class NotifierError(RuntimeError):
    """A configured URL apprise cannot use; raised when the notifier is built (at start-up),
    never while sending. The message shows the URL redacted."""


class SendOutcome(StrEnum):
    QUEUED = "queued"
    """Accepted: the sender thread will deliver it to every URL."""
    BELOW_SEVERITY = "below_severity"
    DUPLICATE = "duplicate"
    """This `alert_id` was already handled by this notifier."""
    RATE_LIMITED = "rate_limited"
    """Over `max_per_minute`: not sent; the next alert sent reports it."""
    DROPPED = "dropped"
    """Queue full, notifier closed, or an internal error: not sent (counted, logged)."""
    DISABLED = "disabled"
    """No URL is configured: nothing to do."""


@dataclass(frozen=True, slots=True)
class NotifierStats:
    queued: int = 0
    delivered: int = 0
    """Deliveries that apprise reported as done (one per alert and URL)."""
    failed: int = 0
    """Deliveries that failed (refused, unreachable, timed out, error status, exception)."""
    below_severity: int = 0
    duplicates: int = 0
    rate_limited: int = 0
    dropped: int = 0
    """Alerts never delivered anywhere: queue full, sent after close, left when close gave up."""


class _ScrubFilter(logging.Filter):
    """Replaces hidden URL parts in a third-party record's text (message, arguments and any
    exception text are merged into the message first). Never drops a record."""

    def __init__(self, fragments: Iterable[str]) -> None:
        super().__init__()
        self._fragments = sorted(set(fragments), key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for fragment in self._fragments:
            text = text.replace(fragment, HIDDEN)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a broken format string: keep only the template
            text = str(record.msg)
        if record.exc_info:
            text = f"{text}\n{logging.Formatter().formatException(record.exc_info)}"
            record.exc_info = None
        if record.exc_text:
            text = f"{text}\n{record.exc_text}"
            record.exc_text = None
        if record.stack_info:
            text = f"{text}\n{record.stack_info}"
            record.stack_info = None
        record.msg, record.args = self.scrub(text), None
        return True


@dataclass(frozen=True, slots=True)
class _Target:
    label: str
    """`notify url <index> (<scheme://host>)`: which URL, without its secrets."""
    client: apprise.Apprise


@dataclass(frozen=True, slots=True)
class _Job:
    alert_id: str
    title: str
    body: str
    notify_type: apprise.NotifyType


class Notifier:
    """`send(alert)` never blocks on the network and never raises; `close()` (or leaving a
    `with` block) flushes for at most `timeout_s`.

    `clock` (seconds, monotonic) is what the rate limit reads; tests pass a fake one."""

    def __init__(
        self,
        config: NotifyConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._clock = clock
        self._gate = AlertGate(config.min_severity, config.max_per_minute)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._closed = False
        self._clean = True
        self._counts: dict[str, int] = {f.name: 0 for f in fields(NotifierStats)}
        self._queue: queue.Queue[_Job | object] = queue.Queue(maxsize=config.queue_size)
        self._filter = _ScrubFilter(f for url in config.urls for f in url.secret_fragments())
        self._targets: tuple[_Target, ...] = ()
        self._thread: threading.Thread | None = None
        if not config.urls:
            return
        self._install_filter()  # before apprise parses a URL: it logs the ones it refuses
        try:
            self._targets = tuple(
                self._target(i, url, config.timeout_s) for i, url in enumerate(config.urls)
            )
        except BaseException:
            self._remove_filter()
            raise
        self._thread = threading.Thread(target=self._run, name="stratflow-notifier", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ set-up

    @staticmethod
    def _target(index: int, url: NotifyUrl, timeout_s: float) -> _Target:
        label = f"notify url {index} ({url.redacted})"
        asset = apprise.AppriseAsset(storage_mode="memory")  # no files under the home directory
        plugin = apprise.Apprise.instantiate(url.reveal(), asset=asset)
        if plugin is None:
            raise NotifierError(
                f"{label} cannot be used by apprise "
                "(unknown scheme, or a required part is missing or malformed)"
            )
        plugin.socket_connect_timeout = timeout_s
        plugin.socket_read_timeout = timeout_s
        client = apprise.Apprise(asset=asset)
        client.add(plugin)
        return _Target(label, client)

    def _install_filter(self) -> None:
        for name in SCRUBBED_LOGGERS:
            logging.getLogger(name).addFilter(self._filter)

    def _remove_filter(self) -> None:
        for name in SCRUBBED_LOGGERS:
            logging.getLogger(name).removeFilter(self._filter)

    # ------------------------------------------------------------------ caller side

    @property
    def targets(self) -> tuple[str, ...]:
        """The configured URLs, redacted (`scheme://host`)."""
        return tuple(url.redacted for url in self.config.urls)

    def send(self, alert: Alert) -> SendOutcome:
        """Decide and enqueue; returns at once. Never raises."""
        try:
            return self._send(alert)
        except Exception as exc:  # a bug here must not take the flow down with it
            self._count("dropped")
            _LOG.error("alert not sent: internal error (%s)", type(exc).__name__)
            return SendOutcome.DROPPED

    def _send(self, alert: Alert) -> SendOutcome:
        if not self._targets:
            return SendOutcome.DISABLED
        with self._lock:
            if self._closed:
                self._counts["dropped"] += 1
                _LOG.warning("alert %s not sent: the notifier is closed", alert.alert_id)
                return SendOutcome.DROPPED
            decision = self._gate.admit(alert, self._clock())
            if decision.outcome is GateOutcome.BELOW_SEVERITY:
                self._counts["below_severity"] += 1
                return SendOutcome.BELOW_SEVERITY
            if decision.outcome is GateOutcome.DUPLICATE:
                self._counts["duplicates"] += 1
                return SendOutcome.DUPLICATE
            if decision.outcome is GateOutcome.RATE_LIMITED:
                self._counts["rate_limited"] += 1
                if self._gate.held_back == 1:  # once per burst, not once per alert
                    _LOG.warning(
                        "alert rate limit reached (%d a minute): holding alerts back",
                        self.config.max_per_minute,
                    )
                return SendOutcome.RATE_LIMITED
            title, body = format_alert(alert, decision.held_back)
            job = _Job(alert.alert_id, title, body, _NOTIFY_TYPE[alert.severity])
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                self._counts["dropped"] += 1
                _LOG.warning("alert %s not sent: the notification queue is full", alert.alert_id)
                return SendOutcome.DROPPED
            self._pending += 1
            self._counts["queued"] += 1
            return SendOutcome.QUEUED

    def stats(self) -> NotifierStats:
        with self._lock:
            return NotifierStats(**self._counts)

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every queued alert has been tried (True), or `timeout_s` (default: the
        configured timeout) has passed (False)."""
        limit = self.config.timeout_s if timeout_s is None else timeout_s
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout=limit)

    def close(self, timeout_s: float | None = None) -> bool:
        """Refuse new alerts, let the queue drain for at most `timeout_s` (default: the
        configured timeout), then stop the sender thread. True when everything queued was
        tried and the thread has ended. What is still queued after the timeout is counted as
        dropped; a delivery in flight finishes (or times out) in the daemon thread, and a later
        `close()` waits for it again. Idempotent."""
        limit = self.config.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + limit
        with self._lock:
            first, self._closed = not self._closed, True
        thread = self._thread
        if thread is None:
            return True
        if first:
            drained = self.flush(limit)
            with self._lock:
                abandoned = self._drain_queue()
                self._counts["dropped"] += abandoned
                self._pending -= abandoned
                self._idle.notify_all()
            if abandoned:
                _LOG.warning("notifier closed: %d queued alert(s) not sent", abandoned)
            self._clean = drained and not abandoned
            self._queue.put_nowait(_STOP)  # cannot be full: just drained, and sends refused
        thread.join(max(0.0, deadline - time.monotonic()))
        return self._clean and not thread.is_alive()

    def _drain_queue(self) -> int:
        dropped = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return dropped
            if isinstance(item, _Job):
                dropped += 1

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Notifier(targets={list(self.targets)!r}, min_severity="
            f"{self.config.min_severity!r}, max_per_minute={self.config.max_per_minute}, "
            f"closed={self._closed})"
        )

    # ------------------------------------------------------------------ sender thread

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if not isinstance(item, _Job):
                    return
                try:
                    for target in self._targets:
                        self._deliver(target, item)
                finally:
                    with self._lock:
                        self._pending -= 1
                        self._idle.notify_all()
        finally:
            self._remove_filter()  # only now: a delivery may log until the very end

    def _deliver(self, target: _Target, job: _Job) -> None:
        try:
            ok = bool(
                target.client.notify(
                    body=job.body,
                    title=job.title,
                    notify_type=job.notify_type,
                    body_format=apprise.NotifyFormat.TEXT,
                )
            )
            problem = "" if ok else "refused or unreachable, see the apprise log"
        except Exception as exc:
            ok, problem = False, f"{type(exc).__name__}: {self._filter.scrub(str(exc))}"
        if ok:
            self._count("delivered")
            return
        self._count("failed")
        _LOG.warning("alert %s not delivered to %s (%s)", job.alert_id, target.label, problem)
