"""End to end: replay -> Tansu -> the Bytewax flow -> chdb, checked against values computed here.

The expected bars, fills and final book are recomputed in this file from the published ticks and
the stored fills, not taken from the pipeline's own objects.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from connectors.files.replay import replay
from connectors.kafka.io import make_producer, publish, read_topic
from connectors.sim.scenario import generate_scenario
from models.core.messages import Tick, to_ms
from tests.support.flowkit import (
    create_topics,
    final_book,
    make_settings,
    query,
    run_flow_subprocess,
)

pytestmark = pytest.mark.kafka

D = Decimal
MIN = 60_000
START = int(datetime(2025, 3, 3, 14, 0, tzinfo=UTC).timestamp() * 1000)
SLIP_BPS, FEE_BPS = D(5), D(10)


def expected_bars(ticks: list[Tick]) -> dict[tuple[str, int], dict[str, Any]]:
    """Tumbling one-minute OHLCV per symbol, straight from the ticks."""
    groups: dict[tuple[str, int], list[Tick]] = defaultdict(list)
    for t in ticks:
        ms = to_ms(t.ts)
        groups[(t.symbol, ms - ms % MIN)].append(t)
    out = {}
    for key, ts in groups.items():
        ts.sort(key=lambda t: to_ms(t.ts))
        out[key] = {
            "open": ts[0].price,
            "high": max(t.price for t in ts),
            "low": min(t.price for t in ts),
            "close": ts[-1].price,
            "volume": sum((t.size for t in ts), D(0)),
            "trades": len(ts),
        }
    return out


BAD_MESSAGES: list[tuple[bytes, str]] = [
    (b"\x00\x01garbage", "not valid json"),
    (b'{"type": "tick", "symbol": "SIMA"}', "field required"),
    (b'{"type": "tick", "symbol": "SIMA", "ts": "soon", "price": "1"}', "ts"),
    (b'{"type": "tick", "symbol": "SIMA", "ts": 1741010400000, "price": "NaN"}', "finite"),
    (b'{"type": "tick", "symbol": "SIMA", "ts": 1741010400000, "price": "-5"}', "to 1e-12"),
    (b'{"type": "tick", "symbol": "SIMA", "ts": 1741010400000, "price": 0}', "or equal to 1e-12"),
    (b'{"type": "tick", "symbol": "NOPE", "ts": 1741010400000, "price": "5"}', "unknown symbol"),
    (b'{"type": "tick", "symbol": "SIMA", "ts": 4102444800000, "price": "5"}', "ahead"),
    (b'{"type": "tick", "symbol": "SIMA", "ts": 1741010400000, "price": [1]}', "price"),
    (b'"just a string"', "object"),
    (b"", "empty"),
]


@pytest.fixture(scope="module")
def e2e(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("e2e")
    settings = make_settings(
        tmp,
        {"SIMA": {}, "SIMB": {}},
        features={
            "sma_fast": 5,
            "sma_slow": 15,
            "ema": 10,
            "rsi": 14,
            "volatility": 10,
            "vwap": 10,
            "volume_z": 10,
            "breakout": 10,
        },
        execution={
            "initial_cash": "100000",
            "fee_bps": str(FEE_BPS),
            "slippage_bps": str(SLIP_BPS),
        },
        storage={"ticks": True},
    )
    create_topics(kafka_bootstrap, settings)
    ticks = generate_scenario(["SIMA", "SIMB"], START, 90 * 60, 2.0, seed=11)
    replay(kafka_bootstrap, settings.kafka.topics.market, ticks)
    producer = make_producer(kafka_bootstrap)
    for raw, _ in BAD_MESSAGES:
        publish(producer, settings.kafka.topics.market, b"SIMA", raw, None)
    # a late tick (its window closed long ago) and a duplicate of the newest tick
    late = ticks[0].model_copy(update={"id": "late-1"})
    publish(producer, settings.kafka.topics.market, b"SIMA", late.model_dump_json().encode(), None)
    newest = ticks[-1]
    publish(
        producer,
        settings.kafka.topics.market,
        newest.symbol.encode(),
        newest.model_dump_json().encode(),
        None,
    )
    producer.flush(30)
    run_flow_subprocess(settings, kafka_bootstrap, tmp)
    return {"settings": settings, "ticks": ticks, "bootstrap": kafka_bootstrap}


def test_bars_match_ticks(e2e: dict[str, Any]) -> None:
    want = expected_bars(e2e["ticks"])
    rows = query(e2e["settings"], "SELECT * FROM bars FINAL")
    got = {(r["symbol"], r["start_ms"]): r for r in rows}
    assert set(got) == set(want)
    for key, w in want.items():
        g = got[key]
        assert (g["open"], g["high"], g["low"], g["close"]) == (
            w["open"],
            w["high"],
            w["low"],
            w["close"],
        ), key
        assert g["volume"] == w["volume"] and g["trades"] == w["trades"], key


def test_every_valid_tick_is_stored_once(e2e: dict[str, Any]) -> None:
    rows = query(e2e["settings"], "SELECT symbol, ts_ms, price, size, tick_id FROM ticks FINAL")
    want = {(t.symbol, to_ms(t.ts), t.price, t.size, t.id) for t in e2e["ticks"]}
    got = {(r["symbol"], r["ts_ms"], r["price"], r["size"], r["tick_id"]) for r in rows}
    assert got == want  # the late copy and the duplicate were refused, not stored


def test_every_bad_message_is_dead_lettered_with_its_reason(e2e: dict[str, Any]) -> None:
    rows = query(e2e["settings"], "SELECT reason, payload FROM dead_letters FINAL ORDER BY offset")
    reasons = [r["reason"].lower() for r in rows]
    assert len(rows) == len(BAD_MESSAGES) + 2
    for (_, expect), reason in zip(BAD_MESSAGES, reasons, strict=False):
        assert expect in reason, (expect, reason)
    assert reasons[-2].startswith("late") and reasons[-1].startswith("duplicate")
    topic_rows = read_topic(e2e["bootstrap"], e2e["settings"].kafka.topics.dead_letters, 30)
    assert len({json.loads(r.value)["dead_letter_id"] for r in topic_rows if r.value}) == len(rows)


def test_fills_are_next_bar_open_with_slippage_and_fee(e2e: dict[str, Any]) -> None:
    s = e2e["settings"]
    bars = expected_bars(e2e["ticks"])
    starts: dict[str, list[int]] = defaultdict(list)
    for sym, start in sorted(bars):
        starts[sym].append(start)
    orders = {r["client_order_id"]: r for r in query(s, "SELECT * FROM orders FINAL")}
    fills = query(s, "SELECT * FROM fills FINAL")
    assert fills, "the scenario should trade"
    for f in fills:
        order = orders[f["client_order_id"]]
        assert order["status"] == "filled"
        next_start = next(x for x in starts[f["symbol"]] if x >= order["placed_ms"])
        assert f["ts_ms"] == next_start > order["placed_ms"] - MIN  # never the decision bar
        o = bars[(f["symbol"], next_start)]["open"]
        slip = o * SLIP_BPS / D(10_000)
        price = (o + slip if f["side"] == "buy" else o - slip).quantize(D("1e-8"))
        assert f["price"] == price
        assert f["fee"] == (f["quantity"] * price * FEE_BPS / D(10_000)).quantize(D("1e-8"))


def test_final_book_equals_the_sum_of_fills(e2e: dict[str, Any]) -> None:
    s = e2e["settings"]
    cash = D(100_000)
    qty: dict[str, Decimal] = defaultdict(D)
    for f in query(s, "SELECT * FROM fills FINAL ORDER BY ts_ms, fill_id"):
        notional = f["quantity"] * f["price"]
        if f["side"] == "buy":
            cash -= notional + f["fee"]
            qty[f["symbol"]] += f["quantity"]
        else:
            cash += notional - f["fee"]
            qty[f["symbol"]] -= f["quantity"]
    book = final_book(s)
    assert book["cash"] == cash
    for sym in ("SIMA", "SIMB"):
        assert book.get(sym, D(0)) == qty[sym]
    last_close = {sym: b["close"] for (sym, _), b in sorted(expected_bars(e2e["ticks"]).items())}
    equity = query(
        s, "SELECT equity FROM positions FINAL ORDER BY ts_ms DESC, symbol DESC LIMIT 1"
    )[0]["equity"]
    assert equity == cash + sum((qty[sym] * last_close[sym] for sym in qty), D(0))


def test_every_decision_row_explains_itself(e2e: dict[str, Any]) -> None:
    rows = query(e2e["settings"], "SELECT * FROM decisions FINAL")
    assert rows
    fills = {
        r["client_order_id"]
        for r in query(e2e["settings"], "SELECT client_order_id FROM fills FINAL")
    }
    for r in rows:
        assert r["trigger_names"], r["decision_id"]
        features = json.loads(r["features"]) if isinstance(r["features"], str) else r["features"]
        assert "values" in features
        if r["status"] == "executed":
            orders = json.loads(r["orders"]) if isinstance(r["orders"], str) else r["orders"]
            assert (
                orders and json.loads(r["rounds"]) if isinstance(r["rounds"], str) else r["rounds"]
            )
            recorded = json.loads(r["fills"]) if isinstance(r["fills"], str) else r["fills"]
            assert {f["client_order_id"] for f in recorded} == {
                o["client_order_id"] for o in orders
            } & fills
