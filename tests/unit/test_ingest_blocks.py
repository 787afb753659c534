"""Ingest's block path (`PartitionIngest.blocks`, models/market/bar_runs.py) against the per-bar
path, on generated records: replay-layout bars of several symbols mixed with duplicates, late
and off-grid bars, finer and coarser bars, gaps that trip the jump guard, events ahead of the
clock, ticks, other layouts, junk, client errors, news, symbols off their home partition, cut
into batches at generated places. Expanded (`expand_rows`, `BarBlock.events()`), the block
path's outputs are the per-bar path's, table by table, item for item (down to the Decimal
digits, by repr), and the pickled states afterwards are equal, so a restart is the same too.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.config.settings import Settings
from models.core.blocks import BarBlock, BarColumns
from models.core.events import BarEvent, TextEvent
from models.core.messages import Bar, DeadLetter
from models.market.fast_bar import bar_fields
from models.market.ingest import PartitionIngest, RawBatch, Record
from models.market.merge import PartitionMark
from models.market.parsing import EPOCH_SENTINEL_MS, MAX_EVENT_MS

MARKET, NEWS = "market.ticks", "news.raw"
T0 = 1_700_000_040_000 - 1_700_000_040_000 % 300_000  # on the 5-minute grid
NOW = T0 + 400 * 86_400_000
SYMBOLS = ("AAA", "BBB", "CCC")  # CCC: 5-minute bars, and not at home on partition 0 of 2


def _settings(lateness: str, dedupe: int) -> Settings:
    return Settings.model_validate(
        {
            "symbols": {"AAA": {}, "BBB": {}, "CCC": {"bar_interval": "5m"}},
            "bars": {
                "interval": "1m",
                "allowed_lateness": lateness,
                "max_jump": "10m",
                "jump_confirmations": 2,
                "dedupe_window": dedupe,
            },
            # Short windows, so short runs warm up and the default triggers fire.
            "features": {"sma_fast": 2, "sma_slow": 3, "breakout": 3, "rsi": 2, "volatility": 2},
            "kafka": {"topics": {"market": MARKET, "news": NEWS}},
        }
    )


def _iso(ms: int) -> str:
    dt = datetime.fromtimestamp(ms / 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{ms % 1000:03d}000" if ms % 1000 else "") + "Z"


def replay_bar(
    symbol: str, ms: int, prices: Sequence[str], volume: str, interval_s: int, ident: str
) -> bytes:
    """A bar in replay's layout (connectors/files/wire.py), as the block path reads it."""
    o, h, lo, c = prices
    return (
        f'{{"type":"bar","symbol":"{symbol}","ts":"{_iso(ms)}","open":"{o}","high":"{h}",'
        f'"low":"{lo}","close":"{c}","volume":"{volume}","interval_s":{interval_s},'
        f'"id":"{ident}"}}'
    ).encode()


# Thirds that do not terminate and volumes that round them (vwap's Decimal steps show).
_price = st.sampled_from(["100", "100.5", "99.25", "101.1234", "98", "99.99", "100.0001"])
_volume = st.sampled_from(["0", "1", "3.7", "12345.67", "7.5", "1000", "0.000"])


@st.composite
def _prices(draw: st.DrawFn) -> list[str]:
    a, b = draw(_price), draw(_price)
    lo, hi = sorted((a, b), key=Decimal)
    return [a, draw(st.sampled_from([hi, str(Decimal(hi) + 1)])), lo, b]


@dataclass
class Feed:
    """The generated input: (topic, value, client error) in order, and where batches end."""

    records: list[tuple[str, bytes | None, str | None]]
    cuts: list[int]
    other_cuts: list[int]


KINDS = (
    ["bar"] * 14
    + ["dup", "late", "gap", "offgrid", "fine", "coarse", "tick", "junk", "error", "none"]
    + ["future", "badohlc", "layout", "emptyid", "news", "unknown"]
    + ["places", "escape", "micros", "bigvol", "nonascii"]
)


@st.composite
def feeds(draw: st.DrawFn) -> Feed:
    clock = {s: T0 + draw(st.integers(0, 3)) * 300_000 for s in SYMBOLS}
    sent: dict[str, list[bytes]] = {s: [] for s in SYMBOLS}
    records: list[tuple[str, bytes | None, str | None]] = []
    n = draw(st.integers(1, 70))
    # Mostly one symbol at a time, as a replay of one file sends them; sometimes interleaved.
    symbol = draw(st.sampled_from(SYMBOLS))
    for _ in range(n):
        if draw(st.integers(0, 5)) == 0:
            symbol = draw(st.sampled_from(SYMBOLS))
        kind = draw(st.sampled_from(KINDS))
        step = 300_000 if symbol == "CCC" else 60_000
        iv = step // 1000
        t = clock[symbol]
        prices, volume = draw(_prices()), draw(_volume)
        value: bytes | None
        error = None
        if kind in ("bar", "emptyid", "gap", "coarse", "fine", "offgrid"):
            if kind == "gap":
                t += draw(st.sampled_from([11, 30, 600])) * 60_000
            ms, interval_s = t, iv
            if kind == "coarse":
                interval_s = iv * 5
            elif kind == "fine":
                interval_s = iv // 2
            elif kind == "offgrid":
                ms += 30_000
            ident = "" if kind == "emptyid" else f"{symbol}:{ms}:{interval_s}"
            value = replay_bar(symbol, ms, prices, volume, interval_s, ident)
            clock[symbol] = t + (step if kind != "fine" else step // 2)
            sent[symbol].append(value)
        elif kind == "dup":
            value = draw(st.sampled_from(sent[symbol])) if sent[symbol] else b"{}"
        elif kind == "late":
            back = draw(st.integers(1, 4)) * step
            value = replay_bar(symbol, t - back, prices, volume, iv, f"late{t}:{back}")
        elif kind == "tick":
            tick = {"type": "tick", "symbol": symbol, "ts": _iso(t), "price": prices[3]}
            value = json.dumps(tick | {"size": volume, "id": f"t{t}"}).encode()
        elif kind == "junk":
            value = draw(st.sampled_from([b"x", b"{", b'{"type":"bar"}', b"\xff\xfe"]))
        elif kind == "error":
            value, error = b"whatever", "broker: record lost"
        elif kind == "none":
            value = None
        elif kind == "future":
            value = replay_bar(symbol, NOW + 86_400_000, prices, volume, iv, f"f{t}")
        elif kind == "badohlc":
            o, h, lo, c = prices
            value = replay_bar(symbol, t, [o, lo, str(Decimal(h) + 5), c], volume, iv, f"b{t}")
            clock[symbol] = t + step
        elif kind == "layout":  # the same bar, another layout: the full parser accepts it
            o, h, lo, c = prices
            bar: dict[str, str | int] = {"type": "bar", "symbol": symbol, "ts": _iso(t)}
            bar |= {"open": o, "high": h}
            bar |= {"low": lo, "close": c, "volume": volume, "interval_s": iv, "id": f"L{t}"}
            value = json.dumps(bar).encode()
            clock[symbol] = t + step
        elif kind == "places":  # more places than the bars table's 12: the per-record path
            o, h, lo, c = prices
            wide = [o, str(Decimal(h) + Decimal("1e-13")), lo, c]
            value = replay_bar(symbol, t, wide, volume, iv, f"p{t}")
            clock[symbol] = t + step
        elif kind == "escape":  # an escaped id: the same text to a JSON reader, other bytes
            value = replay_bar(symbol, t, prices, volume, iv, f"e{t}").replace(b'"e', b'"\\u0065')
            clock[symbol] = t + step
        elif kind == "micros":  # an event time with microseconds (off the grid)
            value = replay_bar(symbol, t + 7, prices, volume, iv, f"m{t}")
        elif kind == "bigvol":
            value = replay_bar(symbol, t, prices, "1000000000000000", iv, f"v{t}")
            clock[symbol] = t + step
        elif kind == "nonascii":  # an id `_BAR` refuses (UTF-8 of a non-ASCII letter)
            value = replay_bar(symbol, t, prices, volume, iv, f"\u00e9{t}")
            clock[symbol] = t + step
        elif kind == "unknown":
            value = replay_bar("ZZZ", t, prices, volume, 60, f"z{t}")
        else:  # news
            item = {"type": "news", "id": f"n{t}", "ts": _iso(t), "headline": "h"}
            records.append((NEWS, json.dumps(item | {"symbols": [symbol]}).encode(), None))
            continue
        records.append((MARKET, value, error))
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(records))), max_size=6))))
    other = sorted(set(draw(st.lists(st.integers(1, max(1, len(records))), max_size=6))))
    return Feed(records, cuts, other)


def batches(feed: Feed, cuts: list[int], partition: int, broker_time: bool) -> list[RawBatch]:
    """The records in batches: cut at `cuts` and wherever the topic changes; the last one of
    the market topic says the input is over."""
    out: list[RawBatch] = []
    current: list[Record] = []
    topic = ""
    for i, (rec_topic, value, error) in enumerate(feed.records):
        if current and (i in cuts or rec_topic != topic):
            out.append(RawBatch(topic, partition, current, broker_time=broker_time))
            current = []
        topic = rec_topic
        record_ms = 0 if broker_time and i % 7 == 3 else NOW  # 0: no broker time
        current.append((i, record_ms, value, error))
    if current:
        out.append(RawBatch(topic, partition, current, broker_time=broker_time))
    out.append(RawBatch(MARKET, partition, [], end="final", broker_time=broker_time))
    return out


def run(
    cfg: Settings,
    parts: int,
    batches_: list[RawBatch],
    blocks: bool,
    columns: bool = True,
    stretch: int = 1,
) -> tuple[Any, bytes]:
    """`columns`: batches read as columns (`parse_bars`) whatever their size, stretches of at
    least `stretch` bars taken as columns; else record by record (`bar_fields`)."""
    ingest = PartitionIngest(cfg, market_partitions=parts, blocks=blocks)
    ingest.now_ms = lambda: NOW
    out: list[Any] = []
    with (
        mock.patch("models.market.block_path.MIN_RECORDS", 1 if columns else 10**9),
        mock.patch("models.market.block_path.MIN_STRETCH", stretch),
    ):
        for batch in batches_:
            ingest.process_batch(batch, out)
    state = (ingest.symbols, ingest.clock_ms, ingest.seq, ingest.key, ingest.guard, ingest.alarm)
    return out, pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def by_table(out: list[Any]) -> dict[str, list[str]]:
    """Each table's (or the desk's) items in order, blocks expanded, as reprs: equal reprs
    are equal values of the same types with the same Decimal digits."""
    tables: dict[str, list[str]] = {}
    for item in out:
        if isinstance(item, BarBlock):
            items: list[Any] = item.events()
        elif isinstance(item, BarColumns):
            items = item.bars()
        else:
            items = [item]
        for x in items:
            kind = type(x)
            lane = "desk" if kind in (BarEvent, TextEvent, PartitionMark) else kind.__name__
            tables.setdefault(lane, []).append(repr(x))
    return tables


def _check(feed: Feed, cuts: list[int], cfg: Settings, parts: int, broker: bool) -> Any:
    plain_out, plain_state = run(cfg, parts, batches(feed, cuts, 0, broker), blocks=False)
    assert not any(isinstance(x, BarBlock | BarColumns) for x in plain_out)
    record_out, record_state = run(
        cfg, parts, batches(feed, cuts, 0, broker), blocks=True, columns=False
    )
    assert by_table(record_out) == by_table(plain_out)
    assert record_state == plain_state
    block_out, block_state = run(cfg, parts, batches(feed, cuts, 0, broker), blocks=True)
    assert by_table(block_out) == by_table(plain_out)
    assert block_state == plain_state
    # Short stretches record by record, long ones as columns, in one batch.
    mixed_out, mixed_state = run(cfg, parts, batches(feed, cuts, 0, broker), True, True, 3)
    assert by_table(mixed_out) == by_table(plain_out)
    assert mixed_state == plain_state
    return block_out


@pytest.mark.slow  # 200 generated feeds, each run four times
@given(
    feeds(),
    st.sampled_from(["0s", "0s", "0s", "20s"]),
    st.sampled_from([10_000, 6, 0]),
    st.sampled_from([1, 1, 2]),
    st.booleans(),
)
@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
def test_blocks_expand_to_the_per_bar_outputs_and_state(
    feed: Feed, lateness: str, dedupe: int, parts: int, broker: bool
) -> None:
    cfg = _settings(lateness, dedupe)
    first = _check(feed, feed.cuts, cfg, parts, broker)
    again = _check(feed, feed.other_cuts, cfg, parts, broker)

    def rows(out: list[Any]) -> dict[str, list[str]]:  # all but the marks (they follow batches)
        tables = by_table(out)
        tables["desk"] = [x for x in tables.get("desk", []) if not x.startswith("PartitionMark")]
        return tables

    assert rows(first) == rows(again)


def test_a_replayed_run_leaves_as_one_block_per_symbol_run() -> None:
    """Spelled out: three bars of AAA (the jump guard holds the partition's first events, so
    they leave bar by bar), then two of BBB (a block) and one of AAA (a lone bar: per bar),
    with consecutive seqs."""
    cfg = _settings("0s", 10_000)
    records: list[Record] = []
    for i, (symbol, minute) in enumerate([("AAA", 0), ("AAA", 1), ("AAA", 2), ("BBB", 0)]):
        value = replay_bar(symbol, T0 + minute * 60_000, ["1", "2", "1", "2"], "3", 60, f"x{i}")
        records.append((i, NOW, value, None))
    records.append(
        (4, NOW, replay_bar("BBB", T0 + 60_000, ["1", "2", "1", "2"], "3", 60, ""), None)
    )
    records.append(
        (5, NOW, replay_bar("AAA", T0 + 180_000, ["1", "2", "1", "2"], "0", 60, ""), None)
    )
    ingest = PartitionIngest(cfg, blocks=True)
    ingest.now_ms = lambda: NOW
    out: list[Any] = []
    # The partition's first events are held by the jump guard until confirmed: not a run yet.
    ingest.process_batch(RawBatch(MARKET, 0, records[:3]), out)
    assert [type(x) for x in out] == [Bar, BarEvent, Bar, BarEvent, Bar, BarEvent, PartitionMark]
    out.clear()
    ingest.process_batch(RawBatch(MARKET, 0, records[3:]), out)
    (block,) = [x for x in out if isinstance(x, BarBlock)]
    assert (block.symbol, len(block), block.first_seq) == ("BBB", 2, 4)
    assert block.clock_ms == [T0 + 180_000, T0 + 180_000]  # the partition's clock, not BBB's
    assert not any(isinstance(x, DeadLetter) for x in out)
    # A lone bar of a run (AAA's last) leaves as the per-bar path's Bar and BarEvent.
    (bar,) = [x for x in out if isinstance(x, Bar)]
    (event,) = [x for x in out if isinstance(x, BarEvent)]
    assert (bar.symbol, event.seq, event.clock_ms) == ("AAA", 6, T0 + 240_000)
    assert bar.vwap == Decimal(2)  # no volume: the close


def test_bar_fields_reads_what_replay_writes() -> None:
    value = replay_bar("AAA", T0 + 123, ["1.5", "2", "1", "1.75"], "10", 60, "AAA:1")
    got = bar_fields(value, {"AAA"}, None, 0, EPOCH_SENTINEL_MS, MAX_EVENT_MS)
    d = Decimal
    want = ("AAA", T0 + 123, d("1.5"), d("2"), d("1"), d("1.75"), d("10"), 60, "AAA:1")
    assert got == (*want, 1.75, 2.0, 1.0, 10.0)  # and the floats of close, high, low, volume
    assert bar_fields(value, {"BBB"}, None, 0, EPOCH_SENTINEL_MS, MAX_EVENT_MS) is None
    assert bar_fields(value, {"AAA"}, T0 - 1000, 0, EPOCH_SENTINEL_MS, MAX_EVENT_MS) is None
    assert bar_fields(b"\xff" + value, {"AAA"}, None, 0, EPOCH_SENTINEL_MS, MAX_EVENT_MS) is None


def _minutes(symbol: str, n: int) -> list[Record]:
    return [
        (i, NOW, replay_bar(symbol, T0 + i * 60_000, ["1", "2", "1", "2"], "3", 60, ""), None)
        for i in range(n)
    ]


def test_a_failing_feature_step_costs_the_runs_signals_and_block_not_the_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ingest = PartitionIngest(_settings("0s", 10_000), blocks=True)
    ingest.now_ms = lambda: NOW
    out: list[Any] = []
    ingest.process_batch(RawBatch(MARKET, 0, _minutes("AAA", 3)), out)  # the guard's first three

    def broken(self: object, cols: BarColumns) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("models.signals.features.FeatureState.update_block", broken)
    out.clear()
    records = _minutes("AAA", 8)[3:]
    ingest.process_batch(RawBatch(MARKET, 0, records), out)
    cols, dead, mark = out
    assert isinstance(cols, BarColumns) and len(cols) == 5
    assert isinstance(dead, DeadLetter) and dead.offset == 3
    assert dead.reason == "internal error: RuntimeError: boom"
    assert isinstance(mark, PartitionMark)


def test_a_failing_check_takes_the_per_record_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object) -> bool:
        raise RuntimeError("boom")

    cfg = _settings("0s", 10_000)
    feed = [RawBatch(MARKET, 0, _minutes("AAA", 9)), RawBatch(MARKET, 0, [], end="final")]
    plain, _ = run(cfg, 1, feed, blocks=False)
    monkeypatch.setattr("models.market.bars.BarBuilder.pass_through", broken)
    monkeypatch.setattr("models.market.block_path.passes_through", broken)
    blocks, _ = run(cfg, 1, feed, blocks=True)
    assert not any(isinstance(x, BarBlock | DeadLetter) for x in blocks)
    assert [repr(x) for x in blocks] == [repr(x) for x in plain]
