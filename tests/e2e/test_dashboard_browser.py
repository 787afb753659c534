"""The dashboard in a real browser (issue 13): Debian's chromium, headless, driven by
playwright (never `playwright install`), against `stratflow run --api` on the real broker
(Tansu) while a backtest-like stream is played live (`tests.support.live_feed`).

The page is opened with the token typed once; then, with no JavaScript error and no request
leaving the API's origin: the stream goes live, the equity curve is drawn (plotly's SVG with
a line of several points), positions and decisions are listed, new decisions arrive over the
WebSocket, a decision opens its story, the halt button asks for its confirmation (cancelled
here), a settings change the config refuses is shown under its field, and a click on Pause
is acknowledged by the running flow (the state badge, the ack on the stream) — after which
the decision log holds no order placed after the pause while the flow goes on deciding.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx2
import pytest

from tests.support.api import AUTH, TOKEN
from tests.support.flowkit import ROOT, create_topics, make_settings, write_config
from tests.support.live_feed import LiveFeed

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
        "--disable-background-networking", "--disable-component-update"]  # fmt: skip
FEATURES = {
    "sma_fast": 3, "sma_slow": 8, "ema": 5, "rsi": 5, "volatility": 5, "vwap": 5,
    "volume_z": 5, "breakout": 5,
}  # fmt: skip
GUARD_S = 120  # a hang guard, never a bound on how fast anything must be
WAIT_MS = GUARD_S * 1000

_CHART_JS = """() => {
  const d = document.getElementById('equity-chart');
  const line = d.querySelector('.scatterlayer path.js-line');
  return { svg: d.querySelectorAll('.main-svg').length,
           segments: line ? (line.getAttribute('d') || '').split('L').length - 1 : 0 };
}"""


# Answers the page asks for and handles, which chromium still logs as failed loads: a story
# not written to the log yet (404, retried), a halt's confirmation (428), a refused setting (422).
HANDLED = re.compile(
    r"^Failed to load resource: the server responded with a status of (404|422|428) "
)


def _console_error(message: Any, errors: list[str]) -> None:
    if message.type == "error" and not HANDLED.match(message.text):
        errors.append(f"console: {message.text}")


def _lines(stream: IO[str], kept: list[str]) -> None:
    for line in stream:
        kept.append(line)


@pytest.fixture
def served(kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[str, LiveFeed]]:
    """`stratflow run --api` following a live-played stream of two symbols, 1 s bars."""
    settings = make_settings(
        tmp_path, {"SIMA": {}, "SIMB": {}}, features=FEATURES, bars={"interval": "1s"}
    )
    create_topics(kafka_bootstrap, settings)
    feed = LiveFeed(
        kafka_bootstrap, settings.kafka.topics.market, ["SIMA", "SIMB"], 10.0, 120, 600
    ).start()
    cfg = write_config(settings, tmp_path / "cfg.yaml")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    env["STRATFLOW_API_TOKEN"] = TOKEN
    proc = subprocess.Popen(
        [
            *(sys.executable, "-c", "from api.cli import main; main()", "run", "-c", str(cfg)),
            *("--bootstrap", kafka_bootstrap, "--api", "127.0.0.1:0"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out: list[str] = []
    err: list[str] = []
    assert proc.stdout is not None and proc.stderr is not None
    threading.Thread(target=_lines, args=(proc.stdout, out), daemon=True).start()
    threading.Thread(target=_lines, args=(proc.stderr, err), daemon=True).start()
    try:
        deadline = time.monotonic() + GUARD_S
        while not (m := re.search(r"control API on (http://127\.0\.0\.1:\d+)", "".join(out))):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(err)[-3000:]
            time.sleep(0.2)
        yield m.group(1), feed
    finally:
        feed.stop()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert TOKEN not in "".join(out) + "".join(err)


def _until(what: str, check: Any) -> Any:
    deadline = time.monotonic() + GUARD_S
    while not (found := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.3)
    return found


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the dashboard's browser test needs Debian's chromium "
            "(run `apt-get install chromium` as root; `make install` does it when root)",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=ARGS,
            viewport={"width": 1280, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()


def test_the_dashboard_watches_the_run_and_a_click_pauses_it(
    served: tuple[str, LiveFeed], browser: Any
) -> None:
    base, _feed = served
    http = httpx2.Client(base_url=base, headers=AUTH, timeout=60)
    _until("the flow placed no order", lambda: http.get("/api/orders").json()["items"])
    _until("no equity yet", lambda: len(http.get("/api/equity").json()["points"]) > 5)

    page = browser.new_page()
    errors: list[str] = []
    elsewhere: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on("console", lambda m: _console_error(m, errors))

    def route(r: Any) -> None:
        if r.request.url.startswith(base):
            r.continue_()
        else:
            elsewhere.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(f"{base}/dashboard")
    page.fill("#token", TOKEN)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector('#stream[data-stream="live"]', timeout=WAIT_MS)
    assert page.evaluate("sessionStorage.getItem('stratflow.token')") == TOKEN

    # The equity curve is drawn, with a line of several points; positions and decisions shown.
    page.wait_for_function(
        "() => document.querySelectorAll('#equity-chart .scatterlayer path.js-line').length",
        timeout=WAIT_MS,
    )
    chart = page.evaluate(_CHART_JS)
    assert chart["svg"] >= 1 and chart["segments"] >= 5, chart
    assert page.locator("#positions tbody tr").count() >= 1
    before = page.locator("#decisions tbody tr").count()
    assert before >= 1
    assert page.text_content("#equity-now") not in ("", "–")
    assert "calls" in (page.text_content("#gpt-detail") or "")
    # New decisions arrive over the stream (the REST list was read once, at the start).
    page.wait_for_function(
        f"() => document.querySelectorAll('#decisions tbody tr').length > {before}",
        timeout=WAIT_MS,
    )

    # One decision's story.
    page.click("#decisions tbody tr >> nth=0")
    page.wait_for_selector("#story-panel:not([hidden]) #story *", timeout=WAIT_MS)
    story = page.text_content("#story") or ""
    assert page.locator("#story h3").count() >= 3, story[:500]
    assert "orders" in story and "rounds" in story

    # Halt asks for its confirmation (a nonce from the API); cancelled here.
    page.click("#btn-halt")
    page.wait_for_selector("#halt-confirm:not([hidden])", timeout=WAIT_MS)
    assert "repeat the request" in (page.text_content("#halt-detail") or "")
    page.click("#btn-halt-cancel")

    # A setting the config refuses: the 422 is shown under its field, nothing is sent.
    field = 'input[name="risk.max_order_notional"]'
    page.wait_for_selector(field, timeout=WAIT_MS)
    page.fill(field, "-5")
    page.click("#settings-form button[type=submit]")
    error = '.field[data-key="risk.max_order_notional"] .error'
    page.wait_for_function(
        f"() => (document.querySelector('{error}')?.textContent || '').length > 0",
        timeout=WAIT_MS,
    )

    # Pause: acknowledged by the running flow, shown by the page.
    page.click("#btn-pause")
    page.wait_for_selector('#control-result[data-status="200"]', timeout=WAIT_MS)
    assert "paused" in (page.text_content("#control-result") or "")
    page.wait_for_selector('#state[data-state="paused"]', timeout=WAIT_MS)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#orders li')]"
        ".some(li => li.textContent.includes('set_trading_state:paused applied'))",
        timeout=WAIT_MS,
    )
    # The control_log row lands with the flow's next write of the log.
    status = _until(
        "the status never showed the pause",
        lambda: (s := http.get("/api/status").json())["trading_state"] == "paused" and s,
    )
    paused_at = int(status["state_since_ms"])

    # The flow goes on deciding for a while of stream time; no order follows the pause.
    _until(
        "no decision after the pause",
        lambda: any(
            d["ts_ms"] > paused_at + 10_000
            for d in http.get("/api/decisions?limit=50").json()["items"]
        ),
    )
    orders = http.get("/api/orders?limit=500").json()["items"]
    assert any(o["placed_ms"] <= paused_at for o in orders)
    assert [o for o in orders if o["placed_ms"] > paused_at] == []
    assert errors == [] and elsewhere == []
    page.close()
