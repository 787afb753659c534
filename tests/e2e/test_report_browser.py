"""The backtest report in a real browser: Debian's chromium, headless, offline.

What a reader's browser must see: every chart drawn (plotly's SVG with marks in it, not an empty
frame), the tables complete, no JavaScript error, no request leaving the file (the network is
cut: any attempt fails the test) and no script from a hostile strategy name. Chromium comes from
the system (`apt-get install chromium`, done by `make install` as root), never from
`playwright install`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from api.backtest_charts import CHART_POINTS, thin_bars
from api.backtest_report import BacktestReport, write_backtest_report
from tests.support import backtests

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")


@dataclass
class Visit:
    """What one page load did: errors, attempted requests, dialogs, and the DOM facts read."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    charts_state: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    hover: str = ""
    """The hover label's text over the first trade marker of the first price chart."""


# Per chart div: plotly's SVG roots, and the marks drawn in it by kind.
_FACTS_JS = """() => {
  const count = (el, sel) => el.querySelectorAll(sel).length;
  const segments = (el) => Array.from(el.querySelectorAll('.scatterlayer path.js-line'))
      .map(p => (p.getAttribute('d') || '').split('L').length - 1);
  const charts = {};
  document.querySelectorAll('div.chart').forEach(d => { charts[d.id] = {
      svg: count(d, '.main-svg'), lines: segments(d), fills: count(d, '.scatterlayer path.js-fill'),
      candles: count(d, '.boxlayer path.box'), points: count(d, '.scatterlayer path.point'),
      heat: count(d, '.heatmaplayer image'), cells: count(d, '.heatmaplayer text') }; });
  const rows = (id) => { const t = document.getElementById(id);
      return t ? t.tBodies[0].rows.length : -1; };
  const tables = {};
  document.querySelectorAll('table[id]').forEach(t => { tables[t.id] = rows(t.id); });
  return { charts, tables,
    sections: count(document, 'section.backtest'),
    compareColumns: document.querySelector('#comparison thead tr')?.cells.length ?? 0,
    hostileImages: count(document, 'img'),
    external: Array.from(document.querySelectorAll('script[src],link[href],img[src],iframe[src]'))
      .map(e => e.getAttribute('src') || e.getAttribute('href')) };
}"""


class Browser:
    def __init__(self, context: Any) -> None:
        self.context = context

    def visit(self, path: Path) -> Visit:
        visit = Visit()
        page = self.context.new_page()

        def route(r: Any) -> None:
            url = r.request.url
            if url.startswith(LOCAL_SCHEMES):
                r.continue_()
            else:
                visit.requests.append(url)
                r.abort()

        page.route("**/*", route)
        page.on("pageerror", lambda e: visit.errors.append(f"pageerror: {e}"))
        page.on(
            "console",
            lambda m: (
                visit.errors.append(f"console.{m.type}: {m.text}")
                if m.type in ("error", "assert")
                else None
            ),
        )
        page.on(
            "request",
            lambda r: None if r.url.startswith(LOCAL_SCHEMES) else visit.requests.append(r.url),
        )

        def dialog(d: Any) -> None:
            visit.dialogs.append(d.message)
            d.dismiss()

        page.on("dialog", dialog)
        page.goto(path.as_uri(), wait_until="load")
        page.wait_for_function("document.body && document.body.dataset.charts", timeout=60_000)
        visit.charts_state = page.evaluate("document.body.dataset.charts")
        visit.facts = page.evaluate(_FACTS_JS)
        marker = page.locator("#price-0-0 .scatterlayer path.point").first
        if marker.count():
            marker.hover(force=True)
            page.wait_for_function(
                "document.querySelector('#price-0-0 .hoverlayer .hovertext') !== null",
                timeout=10_000,
            )
            visit.hover = page.locator("#price-0-0 .hoverlayer").text_content() or ""
            visit.facts["hostileImages"] = page.evaluate("document.querySelectorAll('img').length")
        page.close()
        return visit


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the report's browser test needs Debian's chromium "
            "(run `apt-get install chromium` as root; `make install` does it when root)",
            pytrace=False,
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: pip install -e '.[dev]'", pytrace=False)
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=ARGS,
            viewport={"width": 1280, "height": 900},
            offline=True,
        )
        try:
            yield Browser(context)
        finally:
            context.close()


def _two_backtests() -> list[BacktestReport]:
    """Two eras, each its own backtest: hourly bars of two symbols over months (one strategy id
    is hostile markup), and a year of daily bars of one symbol."""
    return [
        backtests.report(1, strategy=backtests.HOSTILE, dataset="generated 2023-24"),
        backtests.report(
            2,
            symbols=("EURUSD",),
            start=datetime(2017, 1, 1),
            step_ms=86_400_000,
            bars_per_symbol=400,
            trades_per_symbol=9,
            dataset="EURUSD 2017-18",
            title="EURUSD",
        ),
    ]


def _assert_clean(visit: Visit) -> None:
    assert visit.errors == [], visit.errors
    assert visit.requests == [], f"the report tried the network: {visit.requests}"
    assert visit.dialogs == [], f"a script ran a dialog: {visit.dialogs}"
    assert visit.facts["external"] == [], visit.facts["external"]


def test_two_backtests_render_offline_with_every_chart_and_table(
    browser: Browser, tmp_path: Path
) -> None:
    reports = _two_backtests()
    visit = browser.visit(write_backtest_report(reports, tmp_path / "report.html"))

    _assert_clean(visit)
    assert visit.charts_state == "ready"
    facts = visit.facts
    assert facts["sections"] == 2
    assert facts["compareColumns"] == 3
    assert facts["hostileImages"] == 0  # the hostile strategy id stayed text, hovered too
    assert "strategy " + backtests.HOSTILE in visit.hover
    charts, tables = facts["charts"], facts["tables"]
    for i, r in enumerate(reports):
        assert charts[f"equity-{i}"]["svg"] > 0
        # strategy equity and buy and hold, each a line through many points
        assert len(charts[f"equity-{i}"]["lines"]) == 2
        assert min(charts[f"equity-{i}"]["lines"]) > 50
        assert charts[f"drawdown-{i}"]["lines"][0] > 50
        assert charts[f"drawdown-{i}"]["fills"] == 1
        for j, (symbol, bars) in enumerate(sorted(r.bars.items())):
            price = charts[f"price-{i}-{j}"]
            trips = [t for t in r.trades if t.symbol == symbol]
            assert price["candles"] == len(bars)  # under the thinning limit: every bar
            assert price["points"] == 2 * len(trips)  # an entry and an exit marker per trade
        months = {(y, m) for ms, _ in r.equity for y, m in [_year_month(ms)]}
        assert charts[f"monthly-{i}"]["heat"] == 1
        assert charts[f"monthly-{i}"]["cells"] == len(months)
        assert tables[f"stats-{i}"] == len(r.statistics)
        assert tables[f"trades-{i}"] == len(r.trades)
        assert tables[f"gpt-{i}"] == len(r.gpt_calls) + 1  # and the total
        assert tables[f"breakdown-{i}-0"] == len(r.breakdowns[0].rows)


def _year_month(ms: int) -> tuple[int, int]:
    d = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return d.year, d.month


def test_the_check_catches_script_errors_network_and_empty_charts(
    browser: Browser, tmp_path: Path
) -> None:
    """The harness itself: a page with a script error, a request for a remote image and a chart
    that never draws is reported on all three counts (else the test above proves nothing)."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!doctype html><html><body><div class='chart' id='equity-0'></div>"
        "<img src='https://example.invalid/pixel.png'>"
        "<script>document.body.dataset.charts='ready'; undefinedFunction();</script>"
        "</body></html>",
        encoding="utf-8",
    )
    visit = browser.visit(page)
    assert any("undefinedFunction" in e for e in visit.errors)
    assert any(u.startswith("https://example.invalid") for u in visit.requests)
    assert visit.facts["charts"]["equity-0"]["svg"] == 0
    with pytest.raises(AssertionError):
        _assert_clean(visit)


def test_a_long_single_backtest_draws_thinned_candles_and_no_comparison(
    browser: Browser, tmp_path: Path
) -> None:
    """More bars than a chart draws: the candles are thinned, every trade keeps its markers."""
    report = backtests.report(
        3,
        symbols=("BTCUSD",),
        step_ms=60_000,
        bars_per_symbol=CHART_POINTS + 3000,
        trades_per_symbol=5,
    )
    bars = report.bars["BTCUSD"]
    shown = thin_bars(bars, [ms for t in report.trades for ms in (t.entry_ms, t.exit_ms)])
    assert len(shown) < len(bars)
    visit = browser.visit(write_backtest_report([report], tmp_path / "one.html"))
    _assert_clean(visit)
    assert visit.charts_state == "ready"
    assert visit.facts["sections"] == 1
    assert visit.facts["compareColumns"] == 0
    price = visit.facts["charts"]["price-0-0"]
    assert price["candles"] == len(shown)
    assert price["points"] == 2 * len(report.trades)
