"""Issue 9, items 1, 3, 5: forged times, symbols split across partitions, lenient parsing.

Each class of input is generated (hypothesis) or parametrised: any forged time in either
direction on market, news and social; an outlier on any symbol at any place; any wrong
partition; any non-ASCII digit; any repeated key."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflows.adapters import IngestLogic
from models.config.settings import Settings
from models.core.messages import Alert, Bar, BarIn, DeadLetter, NewsItem, SocialPost, Tick
from models.market.ingest import PartitionIngest, RawBatch
from models.market.parsing import parse_market, parse_text_item
from models.market.partitioning import home_partition, murmur2
from models.market.time_guard import JumpGuard

T0 = 1_767_623_400_000  # 2026-01-05T14:30:00Z
NOW = T0 + 3_600_000  # the trusted clock in these tests
MIN = 60_000
DAY = 86_400_000
SYMBOLS = ["SIMA", "SIMB", "SIMC", "SIMD"]
CFG = Settings.model_validate({"symbols": {s: {} for s in SYMBOLS}, "bars": {"interval": "1m"}})
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def tick(symbol: str, ts_ms: int, price: str = "100", **extra: Any) -> bytes:
    msg = {"type": "tick", "symbol": symbol, "ts": ts_ms, "price": price, "size": "1", **extra}
    return json.dumps(msg).encode()


def run(
    values: list[bytes],
    *,
    record_ms: int | list[int] = NOW,
    broker_time: bool = False,
    now_ms: int | None = NOW,
    topic: str = "market.ticks",
    partition: int = 0,
    partitions: int = 1,
    cfg: Settings = CFG,
    end: str | None = "final",
) -> list[object]:
    ingest = PartitionIngest(cfg, market_partitions=partitions)
    if now_ms is not None:
        ingest.now_ms = lambda: now_ms
    rms = record_ms if isinstance(record_ms, list) else [record_ms] * len(values)
    records = [(i, rms[i], v, None) for i, v in enumerate(values)]
    out: list[object] = []
    ingest.process_batch(
        RawBatch(topic, partition, records, end=end, broker_time=broker_time),  # type: ignore[arg-type]
        out,
    )
    return out


def dead(out: list[object]) -> list[DeadLetter]:
    return [o for o in out if isinstance(o, DeadLetter)]


def bars(out: list[object]) -> list[tuple[str, int, int]]:
    return [(b.symbol, b.start_ms, b.trades) for b in out if isinstance(b, Bar)]


def stream(n: int = 300, symbols: list[str] = SYMBOLS, step_ms: int = 2_000) -> list[bytes]:
    return [tick(symbols[i % len(symbols)], T0 + i * step_ms) for i in range(n)]


# ------------------------------------------------------------------ item 1: forged record time


@FAST
@given(
    years=st.integers(min_value=1, max_value=170),
    at=st.integers(min_value=1, max_value=250),
    symbol=st.sampled_from(SYMBOLS),
)
def test_a_forged_future_time_with_a_forged_record_time_is_refused(
    years: int, at: int, symbol: str
) -> None:
    # Was: the record time (CreateTime, set by the same producer) was the guard's clock, so
    # a tick and its record both dated in the future passed and froze the symbol.
    base = stream()
    forged_ms = T0 + years * 365 * DAY
    values = [*base[:at], tick(symbol, forged_ms, "0.01"), *base[at:]]
    records = [NOW] * len(values)
    records[at] = forged_ms  # the producer forged the record time too
    out = run(values, record_ms=records)
    (refused,) = dead(out)
    assert refused.offset == at and "ahead of the wall clock" in refused.reason
    assert bars(out) == bars(run(base))


@pytest.mark.parametrize("kind", ["news", "social"])
@given(years=st.integers(min_value=1, max_value=170))
@FAST
def test_forged_future_text_items_are_refused(kind: str, years: int) -> None:
    forged = T0 + years * 365 * DAY
    body = {"headline": "h"} if kind == "news" else {"text": "t"}
    raw = json.dumps({"id": "x1", "ts": forged, **body}).encode()
    common = dict(topic=kind, partition=0, offset=1, max_future_skew_ms=300_000)
    got = parse_text_item(raw, kind=kind, record_ms=forged, now_ms=NOW, **common)  # type: ignore[arg-type]
    assert isinstance(got, DeadLetter) and "ahead of" in got.reason
    cfg_topic = CFG.kafka.topics.news if kind == "news" else CFG.kafka.topics.social
    out = run([raw], record_ms=forged, topic=cfg_topic)
    assert [type(o) for o in out if not hasattr(o, "clock_ms")] == [DeadLetter]


@pytest.mark.parametrize("kind", ["market", "news", "social"])
@given(back=st.integers(min_value=1, max_value=60 * 365 * DAY))
@FAST
def test_a_record_time_forged_into_the_past_cannot_refuse_genuine_events(
    kind: str, back: int
) -> None:
    # The other direction: a producer whose CreateTime lags (or lies) used to get every
    # genuine event dead-lettered as "ahead of the record time".
    ts = NOW - 1_000
    if kind == "market":
        got: object = parse_market(
            tick("SIMA", ts),
            topic="m",
            partition=0,
            offset=0,
            record_ms=max(1, ts - back),
            symbols=SYMBOLS,
            max_future_skew_ms=300_000,
            now_ms=NOW,
        )
        assert isinstance(got, tuple)
        out = run([tick("SIMA", ts)], record_ms=max(1, ts - back))
        assert not dead(out)
    else:
        body = {"headline": "h"} if kind == "news" else {"text": "t"}
        raw = json.dumps({"id": "x1", "ts": ts, **body}).encode()
        item = parse_text_item(
            raw,
            kind=kind,
            topic=kind,
            partition=0,
            offset=0,
            record_ms=max(1, ts - back),
            max_future_skew_ms=300_000,
            now_ms=NOW,
        )
        assert isinstance(item, NewsItem | SocialPost)


def test_broker_stamped_times_are_the_clock_when_there_are_some() -> None:
    # LogAppendTime records: the broker's time is trusted, whatever the ingest clock says.
    out = run([tick("SIMA", NOW + DAY)], record_ms=NOW, broker_time=True, now_ms=NOW + 2 * DAY)
    (refused,) = dead(out)
    assert "ahead of the broker's append time" in refused.reason
    assert not dead(run([tick("SIMA", NOW)], record_ms=NOW + 1, broker_time=True, now_ms=0))


# ----------------------------------------------------------------- item 1: the jump guard


@FAST
@given(
    jump_days=st.integers(min_value=8, max_value=60_000),
    at=st.integers(min_value=0, max_value=290),
    symbol=st.sampled_from(SYMBOLS),
)
def test_one_outlier_in_the_past_of_the_clock_cannot_freeze_a_symbol(
    jump_days: int, at: int, symbol: str
) -> None:
    # Without a trusted clock (history replayed with producer times), a lone event far past
    # the partition's newest event is refused when the old timeline goes on; nothing else is.
    base = stream()
    values = [*base[:at], tick(symbol, T0 + at * 2_000 + jump_days * DAY, "0.01"), *base[at:]]
    out = run(values, now_ms=None)
    (refused,) = dead(out)
    assert refused.offset == at
    assert "did not confirm" in refused.reason or "first events" in refused.reason
    assert bars(out) == bars(run(base, now_ms=None))


@FAST
@given(
    gap_days=st.integers(min_value=8, max_value=4_000),
    after=st.integers(min_value=4, max_value=100),
)
def test_a_real_gap_confirmed_by_the_events_after_it_is_accepted(gap_days: int, after: int) -> None:
    before = stream(100)
    later = [tick(SYMBOLS[i % 4], T0 + gap_days * DAY + i * 2_000) for i in range(after)]
    out = run([*before, *later], now_ms=None)
    assert not dead(out)
    trades = sum(t for _, _, t in bars(out))
    assert trades == len(before) + len(later)  # every event in a bar, none lost or late


def test_a_gap_at_the_very_end_is_refused_as_unconfirmed_and_two_outliers_both_go() -> None:
    base = stream(40)
    out = run([*base, tick("SIMA", T0 + 30 * DAY)], now_ms=None)
    (refused,) = dead(out)
    assert "the input ended first" in refused.reason
    out = run([*base[:20], tick("SIMA", T0 + 900 * DAY), tick("SIMB", T0 + 90 * DAY), *base[20:]])
    assert sorted(d.offset for d in dead(out)) == [20, 21]
    assert bars(out) == bars(run(base))


def test_daily_and_monthly_symbols_jump_by_their_own_interval() -> None:
    cfg = Settings.model_validate({"symbols": {"MON": {"bar_interval": "31d"}}})
    monthly = [
        json.dumps(
            {
                "type": "bar",
                "symbol": "MON",
                "ts": T0 + i * 31 * DAY,
                "open": "1",
                "high": "1",
                "low": "1",
                "close": "1",
                "interval_s": 31 * 86_400,
            }
        ).encode()
        for i in range(12)
    ]
    assert not dead(run(monthly, cfg=cfg, now_ms=T0 + 400 * DAY))


def test_a_burst_of_refusals_is_one_alert_and_a_lone_one_none() -> None:
    base = stream(60)
    one = run([*base[:30], tick("SIMA", T0 + 5000 * DAY), *base[30:]])
    assert not [o for o in one if isinstance(o, Alert)]
    values = list(base)
    for k in (10, 20, 30):
        values.insert(k, tick("SIMC", T0 + 9000 * DAY))
    out = run(values)
    alerts = [o for o in out if isinstance(o, Alert)]
    assert len(dead(out)) == 3 and len(alerts) == 1
    assert alerts[0].source == "ingest" and "3 records on market.ticks#0" in alerts[0].message
    assert alerts[0].alert_id == run(values)[out.index(alerts[0])].alert_id  # type: ignore[attr-defined]


def test_a_held_gap_survives_a_restart_and_the_run_start_clock_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The bounded run's clock and the guard's held events are in the snapshot: a restart in
    # the middle of a gap, a day later, gives exactly the outputs of the run without one.
    import dataflows.adapters as adapters

    before, later = stream(50), [tick("SIMA", T0 + 40 * DAY + i * 1000) for i in range(8)]
    future = tick("SIMB", T0 + 40 * DAY + 10 * MIN)  # ahead of the run's start clock
    values = [*before, *later[:4], future, *later[4:]]

    def batch(vals: list[bytes], first: int) -> list[RawBatch]:
        recs = [(first + i, 0, v, None) for i, v in enumerate(vals)]
        return [RawBatch(CFG.kafka.topics.market, 0, recs)]  # type: ignore[arg-type]

    def kept(items: list[object]) -> list[str]:
        return [repr(o) for o in items if type(o).__name__ != "PartitionMark"]

    monkeypatch.setattr(adapters, "_wall_ms", lambda: T0 + 40 * DAY)
    whole = IngestLogic(CFG, None)
    out_whole = [*whole.on_batch(batch(values, 0))[0], *whole.on_eof()[0]]
    cut = len(before) + 2
    first = IngestLogic(CFG, None)
    out_cut = list(first.on_batch(batch(values[:cut], 0))[0])
    monkeypatch.setattr(adapters, "_wall_ms", lambda: T0 + 41 * DAY)
    resumed = IngestLogic(CFG, first.snapshot())
    assert resumed.started_ms == T0 + 40 * DAY and resumed.state.guard.held
    out_cut += [*resumed.on_batch(batch(values[cut:], cut))[0], *resumed.on_eof()[0]]
    assert kept(out_cut) == kept(out_whole)
    (refused,) = dead(out_whole)
    assert refused.offset == len(before) + 4 and "when the run started" in refused.reason
    assert sum(t for _, _, t in bars(out_whole)) == len(before) + len(later)


# ------------------------------------------------------------- item 3: one home per symbol


def test_murmur2_is_kafkas() -> None:
    # Vectors of org.apache.kafka.common.utils.UtilsTest (signed 32-bit there).
    for key, signed in [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ]:
        assert murmur2(key) == signed & 0xFFFFFFFF


@FAST
@given(
    symbol=st.from_regex(r"[A-Z][A-Z0-9]{0,7}", fullmatch=True),
    partitions=st.integers(min_value=2, max_value=12),
    data=st.data(),
)
def test_a_symbol_off_its_home_partition_is_a_dead_letter(
    symbol: str, partitions: int, data: st.DataObject
) -> None:
    cfg = Settings.model_validate({"symbols": {symbol: {}}})
    home = home_partition(symbol.encode(), partitions)
    wrong = data.draw(st.integers(0, partitions - 1).filter(lambda p: p != home))
    values = [tick(symbol, T0 + i * 1000) for i in range(5)]
    out = run(values, partition=wrong, partitions=partitions, cfg=cfg)
    assert len(dead(out)) == 5 and not bars(out)
    reason = dead(out)[0].reason
    assert f"belongs to partition {home}" in reason and f"arrived on {wrong}" in reason
    assert len([o for o in out if isinstance(o, Alert)]) == 1  # a burst: the alarm rang
    good = run(values, partition=home, partitions=partitions, cfg=cfg)
    assert not dead(good) and bars(good)


# ------------------------------------------------------------------ item 5: strict parsing

NON_ASCII_DIGIT = st.characters(categories=["Nd"]).filter(lambda c: not "0" <= c <= "9")


def parse(raw: bytes) -> object:
    return parse_market(
        raw,
        topic="m",
        partition=0,
        offset=0,
        record_ms=NOW,
        symbols=SYMBOLS,
        max_future_skew_ms=300_000,
        now_ms=NOW,
    )


def bar_msg(**over: object) -> dict[str, object]:
    msg: dict[str, object] = {
        "type": "bar",
        "symbol": "SIMA",
        "ts": T0,
        "open": "10",
        "high": "11",
        "low": "9",
        "close": "10.5",
        "volume": "100",
        "interval_s": 60,
    }
    msg.update(over)
    return msg


NUMBER_FIELDS = [("tick", "price"), ("tick", "size")] + [
    ("bar", f) for f in ("open", "high", "low", "close", "volume")
]


@pytest.mark.parametrize(("kind", "name"), NUMBER_FIELDS)
@given(digit=NON_ASCII_DIGIT, where=st.integers(0, 2), escaped=st.booleans())
@FAST
def test_non_ascii_digits_in_numbers_are_refused(
    kind: str, name: str, digit: str, where: int, escaped: bool
) -> None:
    text = "10"[:where] + digit + "10"[where:]
    msg = bar_msg() if kind == "bar" else json.loads(tick("SIMA", T0))
    msg[name] = text
    if name in ("open", "close"):
        msg["high"], msg["low"] = "1e9", "1e-9"
    raw = json.dumps(msg, ensure_ascii=escaped).encode()
    got = parse(raw)
    assert isinstance(got, DeadLetter) and name in got.reason and "ASCII" in got.reason


@pytest.mark.parametrize(
    "value",
    ["1_00", "1_000.5", " 100", "100 ", "١٠٠", "１００", "+-1", "0x10", "1e", "", "١e2"],
)
def test_numbers_must_be_plain_ascii(value: str) -> None:
    got = parse(tick("SIMA", T0, value))
    assert isinstance(got, DeadLetter) and got.reason.startswith("price: Decimal input should")


@pytest.mark.parametrize("value", [True, False, "60", 60.0, "1_0", "٦٠"])
def test_interval_s_is_an_integer_and_only_that(value: object) -> None:
    got = parse(json.dumps(bar_msg(interval_s=value)).encode())
    assert isinstance(got, DeadLetter) and got.reason.startswith("interval_s:")


@given(digit=NON_ASCII_DIGIT, kind=st.sampled_from(["tick", "news", "social"]))
@FAST
def test_non_ascii_digits_in_times_are_refused(digit: str, kind: str) -> None:
    ts = f"2026-01-0{digit}T14:30:00Z" if digit != "5" else "2026-01-05T14:3٠:00Z"
    if kind == "tick":
        got: object = parse(
            json.dumps({"type": "tick", "symbol": "SIMA", "ts": ts, "price": 1}).encode()
        )
    else:
        body = {"headline": "h"} if kind == "news" else {"text": "t"}
        got = parse_text_item(
            json.dumps({"id": "a", "ts": ts, **body}).encode(),
            kind=kind,
            topic=kind,
            partition=0,
            offset=0,
            record_ms=NOW,
            max_future_skew_ms=300_000,
            now_ms=NOW,
        )
    assert isinstance(got, DeadLetter) and got.reason.startswith("ts:")


@pytest.mark.parametrize("ts", [True, "1_767_623_400", "2026-01-05_14:30:00Z", " 1767623400"])
def test_times_are_iso_or_epoch_in_plain_form(ts: object) -> None:
    got = parse(json.dumps({"type": "tick", "symbol": "SIMA", "ts": ts, "price": 1}).encode())
    assert isinstance(got, DeadLetter) and got.reason.startswith("ts:")


@pytest.mark.parametrize(
    ("ts", "price"),
    [
        ("2026-01-05T14:30:00Z", "101.25"),
        ("2026-01-05T15:30:00+01:00", 101.25),
        ("2026-01-05 14:30:00.123", "1E+3"),
        (1_767_623_400, "0.00001"),
        (1_767_623_400_000, 7),
        ("1767623400", "-0"),
        (1_767_623_400.5, "Infinity"),
    ],
)
def test_plain_forms_still_parse(ts: object, price: object) -> None:
    got = parse(json.dumps({"type": "tick", "symbol": "SIMA", "ts": ts, "price": price}).encode())
    if price in ("-0", "Infinity"):  # reach the range / finite checks, with their own words
        assert isinstance(got, DeadLetter) and got.reason.startswith("price: Input should be")
    else:
        assert isinstance(got, tuple) and isinstance(got[0], Tick | BarIn)


def _with_repeat(msg: dict[str, object], key: str, first: object, escape: bool) -> bytes:
    body = json.dumps(msg)[1:-1]
    name = "".join(f"\\u{ord(c):04x}" for c in key) if escape else key
    return ("{" + f'"{name}": {json.dumps(first)}, ' + body + "}").encode()


@given(data=st.data(), escape=st.booleans())
@FAST
def test_a_key_written_twice_is_refused_whatever_the_message(
    data: st.DataObject, escape: bool
) -> None:
    # Was: last wins, so {"symbol":"AAPL",...,"symbol":"SIMA"} was a SIMA tick.
    kind = data.draw(st.sampled_from(["tick", "bar", "news", "social"]))
    msg: dict[str, object]
    if kind == "tick":
        msg = json.loads(tick("SIMA", T0))
    elif kind == "bar":
        msg = bar_msg()
    elif kind == "news":
        msg = {"id": "n", "ts": T0, "headline": "h", "symbols": ["SIMA"]}
    else:
        msg = {"id": "p", "ts": T0, "text": "t", "author": "a"}
    key = data.draw(st.sampled_from(sorted(msg)))
    raw = _with_repeat(msg, key, msg[key], escape)
    if kind in ("tick", "bar"):
        got: object = parse(raw)
    else:
        got = parse_text_item(
            raw,
            kind=kind,
            topic=kind,
            partition=0,
            offset=0,
            record_ms=NOW,
            max_future_skew_ms=300_000,
            now_ms=NOW,
        )
    assert isinstance(got, DeadLetter), got
    assert f"key '{key}' is written twice" in got.reason


def test_the_issue_case_aapl_then_sima_is_not_a_sima_tick() -> None:
    raw = b'{"type":"tick","symbol":"AAPL","ts":1767623400000,"price":"1","symbol":"SIMA"}'
    got = parse(raw)
    assert isinstance(got, DeadLetter) and "'symbol' is written twice" in got.reason


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(min_value=-3 * DAY, max_value=40 * DAY), st.booleans()),
        min_size=1,
        max_size=60,
    )
)
def test_the_steady_fast_path_decides_as_admit_does(steps: list[tuple[int, bool]]) -> None:
    """`JumpGuard.steady` (the per-tick path ingest takes first) uses exactly the events
    `admit` alone would use at once, and leaves the guard in the same state: any walk of event
    times with gaps, jumps back and confirmations."""
    both: JumpGuard[int] = JumpGuard(confirm=3)
    alone: JumpGuard[int] = JumpGuard(confirm=3)
    ts = T0
    for i, (delta, big) in enumerate(steps):
        ts = ts + (delta * 50 if big else delta // 1000)
        jump = 7 * DAY
        expected = alone.admit(ts, jump, i)
        if both.steady(ts, jump):
            got_use, got_refuse = [i], []
        else:
            verdict = both.admit(ts, jump, i)
            got_use, got_refuse = verdict.use, verdict.refuse
        assert (got_use, got_refuse) == (expected.use, expected.refuse)
        assert (both.clock_ms, [h.item for h in both.held]) == (
            alone.clock_ms,
            [h.item for h in alone.held],
        )
