"""The dashboard's files and its equity route in-process (issue 13): the page and its scripts
load without the token and with a policy that allows this origin only, plotly.js comes from
the installed plotly package (no CDN anywhere in the page), and `GET /api/equity` (behind the
token) gives the last equity of each time bucket, oldest first. The page in a real browser:
tests/e2e/test_dashboard_browser.py."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

from api.server.dashboard import plotly_path
from connectors.store.clickhouse import Store
from models.config.settings import Settings
from models.core.messages import PositionSnapshot
from tests.support.api import AUTH, api_client


def _snapshot(ts_ms: int, symbol: str, equity: int) -> PositionSnapshot:
    one = Decimal(1)
    return PositionSnapshot(
        ts_ms=ts_ms, symbol=symbol, quantity=one, avg_cost=one, mark_price=one,
        realized_pnl=Decimal(0), unrealized_pnl=Decimal(0), cash=one, equity=Decimal(equity),
    )  # fmt: skip


def test_the_page_loads_without_the_token_from_this_origin_only(tmp_path: Path) -> None:
    settings = Settings.model_validate({"symbols": {"ABC": {}}})
    with api_client(settings, None) as (client, _ctx):
        assert client.get("/", follow_redirects=False).headers["location"] == "/dashboard"
        page = client.get("/dashboard")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "connect-src 'self'" in csp
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sources and all(s.startswith("/dashboard/") for s in sources), sources
        assert plotly_path() in sources
        for path in sources:
            assert client.get(path).status_code == 200, path
        plotly = client.get(plotly_path())
        assert b"plotly.js v" in plotly.content[:2000] and len(plotly.content) > 1_000_000
        assert "http://" not in page.text and "https://" not in page.text
        # State is not: the equity route needs the token like every other.
        assert client.get("/api/equity").status_code == 401


def test_the_equity_curve_is_the_last_value_of_each_bucket(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {"symbols": {"ABC": {}, "XYZ": {}}, "clickhouse": {"path": str(tmp_path / "ch")}}
    )
    with Store.open(settings.clickhouse, run_id="r1") as store:
        store.apply_schema()
        rows = [
            _snapshot(1000 * i, s, 100 + i + (s == "XYZ"))
            for i in range(20)
            for s in ("ABC", "XYZ")
        ]
        store.insert("positions", rows)
        with api_client(settings, store) as (client, _ctx):
            answer = client.get("/api/equity?run=r1&points=4", headers=AUTH).json()
            assert client.get("/api/equity?points=1", headers=AUTH).status_code == 422
    # 20 s in 4 buckets of 5 s: the last snapshot of each (XYZ sorts after ABC at one time).
    points = [(p["ts_ms"], Decimal(p["equity"])) for p in answer["points"]]
    assert points == [(t, Decimal(101 + t // 1000)) for t in (4000, 9000, 14000, 19000)]
