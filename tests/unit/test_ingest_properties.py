"""Property tests of ingest: for any input, no exception escapes and nothing is lost.

Every message is accounted for exactly once: it is a dead letter (with a reason), or it counts
in exactly one bar (bar.trades) once the end of input has closed every window. Bars never
repeat a window and every bar's OHLC is consistent.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.config.settings import Settings
from models.core.events import BarEvent
from models.core.messages import Bar, DeadLetter
from models.market.ingest import PartitionIngest, RawBatch, Record
from models.market.parsing import parse_market

SYMBOLS = ["AAA", "BBB"]
T0 = 1_700_000_000_000
NOW = T0 + 10 * 86_400_000
CFG = Settings.model_validate(
    {"symbols": {s: {} for s in SYMBOLS}, "bars": {"interval": "1m", "allowed_lateness": "5s"}}
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def market_payloads(draw: st.DrawFn) -> bytes:
    """Mostly tick-shaped objects with some fields wrong, plus raw junk."""
    kind = draw(st.sampled_from(["msg"] * 8 + ["bytes", "json"]))  # simplest first: "msg"
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(json_values), allow_nan=True).encode()
    msg: dict[str, object] = {
        "type": draw(st.sampled_from(["tick", "tick", "tick", "bar", "quote"])),
        "symbol": draw(st.sampled_from([*SYMBOLS, *SYMBOLS, *SYMBOLS, "ZZZ", "aaa", ""])),
        "ts": T0 + draw(st.integers(-600_000, 3_600_000)),
        "price": draw(
            st.decimals(min_value=Decimal("0.01"), max_value=Decimal(1000), places=2).map(str)
        ),
        "size": draw(st.sampled_from(["1", "2.5", "0", "7", 3, "1", "-1", "NaN"])),
    }
    if draw(st.booleans()):
        msg["id"] = draw(st.sampled_from(["a", "b", "c", "d"])) + str(draw(st.integers(0, 30)))
    if msg["type"] == "bar":
        p = msg["price"]
        msg.update({"open": p, "high": p, "low": p, "close": p, "interval_s": 60})
        del msg["price"]
    if draw(st.sampled_from([False, False, False, True])):  # one message in four: a wrong field
        msg[draw(st.sampled_from(list(msg)))] = draw(json_values)
    return json.dumps(msg, allow_nan=True).encode()


@pytest.mark.slow  # 150 generated feeds
@given(st.lists(market_payloads(), min_size=1, max_size=80))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_every_message_is_accounted_for_exactly_once(payloads: list[bytes]) -> None:
    ingest = PartitionIngest(CFG)
    records: list[Record] = [(i, NOW, p, None) for i, p in enumerate(payloads)]
    out: list[object] = []
    half = len(records) // 2
    ingest.process_batch(RawBatch("market.ticks", 0, records[:half]), out)
    ingest.process_batch(RawBatch("market.ticks", 0, records[half:]), out)
    out.extend(ingest.flush())

    dead = [x for x in out if isinstance(x, DeadLetter)]
    bars = [x for x in out if isinstance(x, Bar)]
    assert all(d.reason and not d.reason.startswith("internal error") for d in dead), [
        d.reason for d in dead if d.reason.startswith("internal error")
    ]
    assert len({d.offset for d in dead}) == len(dead)
    assert len(dead) + sum(b.trades for b in bars) == len(payloads)
    windows = [(b.symbol, b.start_ms) for b in bars]
    assert len(windows) == len(set(windows))
    for b in bars:
        assert b.low <= min(b.open, b.close) and max(b.open, b.close) <= b.high
        assert b.volume >= 0 and b.trades >= 1
    events = [x for x in out if isinstance(x, BarEvent)]
    assert [e.bar for e in events] == bars


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_parse_never_raises_on_bytes(raw: bytes) -> None:
    out = parse_market(
        raw, topic="t", partition=0, offset=0, record_ms=NOW, symbols=SYMBOLS,
        max_future_skew_ms=300_000,
    )  # fmt: skip
    assert isinstance(out, DeadLetter | tuple)
