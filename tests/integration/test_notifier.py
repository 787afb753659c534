"""Alerts reach a real webhook through apprise, filtered, de-duplicated, rate-limited, and the
URL's secrets never show: a tiny HTTP receiver on 127.0.0.1 stands in for the user's phone."""

from __future__ import annotations

import logging
import pickle
import socket
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.notify.notifier import Notifier, NotifierError, SendOutcome
from models.config.notify import NotifyConfig, NotifyUrl, redact_url, url_secret_fragments
from models.core.messages import Alert, Severity
from models.monitoring.alert_gate import AlertGate, GateOutcome, format_alert
from tests.support.webhook import PASSWORD, TOKEN, WAIT_S, Receiver


def closed_port() -> int:
    """A port nothing listens on (bound once by us, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def alert(
    alert_id: str = "a1",
    severity: Severity = Severity.WARNING,
    message: str = "over limit",
    context: dict[str, Any] | None = None,
) -> Alert:
    return Alert(
        alert_id=alert_id,
        ts_ms=1_709_303_400_000,
        severity=severity,
        source="risk_gate",
        message=message,
        context=context or {},
    )


def config(*urls: str, **kwargs: Any) -> NotifyConfig:
    return NotifyConfig.model_validate({"urls": list(urls), "timeout_s": 5.0, **kwargs})


# ---------------------------------------------------------------------------- delivery


def test_alert_arrives_with_title_and_body(webhook: Receiver) -> None:
    with Notifier(config(webhook.url())) as notifier:
        outcome = notifier.send(
            alert(severity=Severity.CRITICAL, context={"decision_id": "ABC@1", "round": 2})
        )
        assert outcome is SendOutcome.QUEUED
        assert notifier.flush(WAIT_S)
        stats = notifier.stats()
    assert stats.delivered == 1 and stats.failed == 0
    assert len(webhook.received) == 1
    path, payload = webhook.received[0]
    assert path == f"/hook/{TOKEN}"
    assert payload["title"] == "[critical] risk_gate"
    assert payload["message"] == "over limit\n\ndecision_id: ABC@1\nround: 2"
    assert payload["type"] == "failure"


def test_below_min_severity_nothing_is_sent(webhook: Receiver) -> None:
    with Notifier(config(webhook.url(), min_severity="critical")) as notifier:
        assert notifier.send(alert("i", Severity.INFO)) is SendOutcome.BELOW_SEVERITY
        assert notifier.send(alert("w", Severity.WARNING)) is SendOutcome.BELOW_SEVERITY
        assert notifier.send(alert("c", Severity.CRITICAL, "the one")) is SendOutcome.QUEUED
        assert notifier.flush(WAIT_S)
        assert notifier.stats().below_severity == 2
    assert [p["message"] for p in webhook.payloads()] == ["the one"]


def test_duplicate_alert_ids_are_sent_once(webhook: Receiver) -> None:
    with Notifier(config(webhook.url())) as notifier:
        outcomes = [
            notifier.send(alert("same")),
            notifier.send(alert("same")),  # re-emitted after a restart
            notifier.send(alert("same", message="same id, other text")),
            notifier.send(alert("other")),
        ]
        assert notifier.flush(WAIT_S)
        assert notifier.stats().duplicates == 2
    assert outcomes == [
        SendOutcome.QUEUED,
        SendOutcome.DUPLICATE,
        SendOutcome.DUPLICATE,
        SendOutcome.QUEUED,
    ]
    assert len(webhook.received) == 2


def test_rate_limit_holds_and_the_next_alert_reports_it(webhook: Receiver) -> None:
    clock = FakeClock()
    with Notifier(config(webhook.url(), max_per_minute=2), clock=clock) as notifier:
        storm = [notifier.send(alert(f"storm-{i}")) for i in range(6)]
        clock.now += 30
        assert notifier.send(alert("half-minute")) is SendOutcome.RATE_LIMITED
        clock.now += 31  # 61 s after the storm: the window has room again
        assert notifier.send(alert("after", message="calm again")) is SendOutcome.QUEUED
        assert notifier.flush(WAIT_S)
        stats = notifier.stats()
    assert storm == [SendOutcome.QUEUED] * 2 + [SendOutcome.RATE_LIMITED] * 4
    assert stats.rate_limited == 5 and stats.delivered == 3
    messages = [p["message"] for p in webhook.payloads()]
    assert len(messages) == 3
    assert messages[2] == "calm again\n\n(5 earlier alerts were not sent: rate limit)"


def test_unreachable_url_is_counted_never_raised(webhook: Receiver) -> None:
    dead = f"json://127.0.0.1:{closed_port()}/hook/{TOKEN}"
    with Notifier(config(dead, webhook.url())) as notifier:
        assert notifier.send(alert()) is SendOutcome.QUEUED
        assert notifier.flush(WAIT_S)
        stats = notifier.stats()
    assert stats.failed == 1  # the closed port...
    assert stats.delivered == 1  # ...does not stop delivery to the other URL
    assert len(webhook.received) == 1


def test_a_hung_webhook_costs_the_timeout_and_counts_as_failed(webhook: Receiver) -> None:
    with Notifier(config(webhook.url(path="/slow/hung"), timeout_s=0.5)) as notifier:
        assert notifier.send(alert()) is SendOutcome.QUEUED
        # The receiver holds the request until the test ends (`release`), so the queue can only
        # drain through apprise's read timeout: no wall-clock bound needed.
        assert notifier.flush(WAIT_S)
        assert notifier.stats().failed == 1
    assert webhook.slow_started.is_set()


def test_send_never_blocks_queue_full_drops_and_close_gives_up(webhook: Receiver) -> None:
    notifier = Notifier(config(webhook.url(path="/slow/x"), queue_size=1))
    try:
        assert notifier.send(alert("first")) is SendOutcome.QUEUED
        assert webhook.slow_started.wait(WAIT_S)  # the sender thread is stuck in a delivery
        # The delivery is held until `release` below: a send that waited for room would
        # never return, so returning at all shows it does not block.
        assert notifier.send(alert("second")) is SendOutcome.QUEUED  # fills the queue
        assert notifier.send(alert("third")) is SendOutcome.DROPPED
        assert notifier.close(timeout_s=0.3) is False  # "second" is left: given up
        assert notifier.send(alert("late")) is SendOutcome.DROPPED
        assert notifier.stats().dropped == 3  # third, second (abandoned), late
    finally:
        webhook.release.set()
        notifier.close(WAIT_S)  # waits for the delivery that was in flight
    assert [p["message"] for p in webhook.payloads()] == ["over limit"]  # only "first"


def test_no_urls_means_disabled() -> None:
    with Notifier(NotifyConfig()) as notifier:
        assert notifier.send(alert(severity=Severity.CRITICAL)) is SendOutcome.DISABLED
        assert notifier.stats().queued == 0


# ---------------------------------------------------------------------------- secrets


def _secret_free(text: str) -> bool:
    return TOKEN not in text and PASSWORD not in text


def test_url_secrets_never_in_logs_or_reprs(
    webhook: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"json://alerts:{PASSWORD}@127.0.0.1:{closed_port()}/hook/{TOKEN}?key={TOKEN}"
    cfg = config(webhook.url(), dead)
    with caplog.at_level(logging.DEBUG):  # every logger: apprise's and urllib3's included
        notifier = Notifier(cfg)
        notifier.send(alert())
        assert notifier.flush(WAIT_S)
        shown = [repr(notifier), repr(cfg), str(cfg), cfg.model_dump_json(), f"{cfg.urls[1]}"]
        notifier.close()
    assert len(webhook.received) == 1
    # the third-party lines that carry the request path were logged, scrubbed
    apprise_lines = [r.getMessage() for r in caplog.records if r.name == "apprise"]
    assert any("Socket Exception" in line and "***" in line for line in apprise_lines)
    assert any("not delivered to notify url 1 (json://127.0.0.1)" in m for m in caplog.messages)
    assert _secret_free(caplog.text)
    assert all(_secret_free(r.getMessage()) for r in caplog.records)
    assert all(_secret_free(text) for text in shown), shown
    assert "json://127.0.0.1" in shown[0]


def test_bad_urls_are_refused_without_being_echoed(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValidationError) as bad:
        NotifyConfig.model_validate({"urls": [f"{TOKEN}-not-a-url"]})
    assert "not a notification URL" in str(bad.value)
    assert _secret_free(str(bad.value))
    with caplog.at_level(logging.DEBUG), pytest.raises(NotifierError) as unknown:
        Notifier(config(f"nosuchscheme://{TOKEN}/{PASSWORD}"))
    assert "notify url 0 (nosuchscheme://***)" in str(unknown.value)
    assert _secret_free(str(unknown.value)) and _secret_free(caplog.text)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"jsons://alerts:{PASSWORD}@hooks.example.com:8443/x/{TOKEN}?k={TOKEN}", "hooks.example"),
        (f"mailtos://me:{PASSWORD}@gmail.com?to=x@example.com", "mailtos://gmail.com"),
        (f"tgram://123456789:{TOKEN}/-100123", "tgram://***"),
        (f"slack://T1JJ3T3L2/A1BRTD4JD/{TOKEN}/#alerts", "slack://***"),
        (f"{TOKEN}", "***"),
    ],
)
def test_redact_url_keeps_scheme_and_host_only(url: str, shown: str) -> None:
    redacted = redact_url(url)
    assert shown in redacted and _secret_free(redacted)
    assert redacted.count("/") <= 2
    if "://" in url:
        fragments = url_secret_fragments(url)
        assert all(secret in fragments for secret in (TOKEN, PASSWORD) if secret in url)
    wrapped = NotifyUrl(url)
    assert wrapped.reveal() == url
    assert _secret_free(repr(wrapped) + str(wrapped) + f"{wrapped:>40}")
    assert pickle.loads(pickle.dumps(wrapped)) == wrapped  # configs travel to workers


# ---------------------------------------------------------------------------- pure rules


def test_gate_remembers_a_bounded_number_of_ids() -> None:
    gate = AlertGate("info", max_per_minute=1000, remember=2)
    for alert_id in ("a", "b", "c"):
        assert gate.admit(alert(alert_id), 0.0).outcome is GateOutcome.SEND
    assert gate.admit(alert("c"), 0.0).outcome is GateOutcome.DUPLICATE
    assert gate.admit(alert("a"), 0.0).outcome is GateOutcome.SEND  # forgotten: oldest first


def test_format_alert_renders_context_values() -> None:
    title, body = format_alert(
        alert(severity=Severity.INFO, message="m", context={"n": None, "l": [1, "x"], "s": "t"}),
        held_back=1,
    )
    assert title == "[info] risk_gate"
    assert body == 'm\n\nn: null\nl: [1, "x"]\ns: t\n\n(1 earlier alert was not sent: rate limit)'
