"""`parse_market`'s fast path for replay's bar layout (models/market/fast_bar.py) against the
full validation (`validate_market`): on generated payloads, valid and invalid (duplicate and
extra keys, bad numbers and times, out-of-range values, other layouts), both give the same
verdict, and an accepted bar is the same message down to its Decimal digits, tz object and
fields set."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.core.messages import BarIn, DeadLetter
from models.market.fast_bar import bar_fields, fast_bar
from models.market.parsing import EPOCH_SENTINEL_MS, MAX_EVENT_MS, parse_market, validate_market

SYMBOLS = frozenset({"SIMA", "BRK.B", "X"})

_digits = st.one_of(
    *[st.from_regex(r"[1-9][0-9]{0,5}", fullmatch=True)] * 4,
    st.text("0123456789", min_size=1, max_size=24),
)
_plain_number = st.builds(
    lambda i, f: i if f is None else f"{i}.{f}",
    _digits,
    st.none() | st.text("0123456789", min_size=1, max_size=8) | _digits,
)


def _mostly(valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]) -> Any:
    """Valid nine times in ten, so whole payloads are often valid."""
    return st.integers(0, 9).flatmap(lambda k: invalid if k == 9 else valid)


_number = _mostly(
    _plain_number,
    st.one_of(
        st.sampled_from(
            ["0", "1e-13", "1E3", "-5", "+5", "1_0", "NaN", "inf", "", " 1", "1.", ".5", "١"]
        ),
        st.decimals(allow_nan=False, allow_infinity=False, places=6).map(str),
    ),
)
_year = _mostly(
    st.integers(1971, 2199).map(lambda y: f"{y:04d}"),
    st.sampled_from(["1969", "1970", "0000", "0001", "2200", "9999"]),
)


def _field(lo: int, hi: int, bad: list[int]) -> Any:
    return _mostly(st.integers(lo, hi), st.sampled_from(bad)).map(lambda n: f"{n:02d}")


_ts = st.builds(
    lambda y, mo, d, hh, mi, ss, frac, z: f"{y}-{mo}-{d}T{hh}:{mi}:{ss}{frac}{z}",
    _year,
    _field(1, 12, [0, 13]),
    _field(1, 31, [0, 32]),
    _field(0, 23, [24, 25]),
    _field(0, 59, [60]),
    _field(0, 59, [60, 61]),
    st.sampled_from(["", "", "", ".000000", ".500000", ".123", ".999999"]),
    _mostly(st.just("Z"), st.sampled_from(["+00:00", "z", "", "+01:00"])),
)
_symbol = _mostly(
    st.sampled_from(sorted(SYMBOLS)), st.sampled_from(["sima", "SIMB", "", "A" * 33, "BRK B"])
)
_ident = _mostly(
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=130),
    st.sampled_from(["SIMA:1", 'a"b', "a\\b", "é", "x" * 128, "x" * 129, "\n"]),
)
_interval = _mostly(
    st.sampled_from([60, 1, 3600, 31 * 86400]),
    st.sampled_from([0, -60, 31 * 86400 + 1, 10**8, "60", 60.0, True, None]),
)


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    """A bar in replay's layout, then perhaps mutated."""
    o, h, lo, c, v = (draw(_number) for _ in range(5))
    if draw(st.integers(0, 3)):  # mostly consistent OHLC, so many are accepted
        nums = sorted(Decimal(x) for x in (o, h, lo, c) if _is_plain(x))
        if len(nums) == 4:
            lo, o, c, h = (str(n) for n in nums)
    fields: list[tuple[str, Any]] = [
        ("type", "bar"),
        ("symbol", draw(_symbol)),
        ("ts", draw(_ts)),
        ("open", o),
        ("high", h),
        ("low", lo),
        ("close", c),
        ("volume", v),
        ("interval_s", draw(_interval)),
        ("id", draw(_ident)),
    ]
    mutation = draw(
        st.sampled_from(
            ["none"] * 6 + ["dup", "extra", "drop", "swap", "number", "calendar", "space", "tail"]
        )
    )
    if mutation == "dup":
        i = draw(st.integers(0, len(fields) - 1))
        fields.insert(draw(st.integers(i + 1, len(fields))), fields[i])
    elif mutation == "extra":
        fields.insert(draw(st.integers(1, len(fields))), ("extra", 1))
    elif mutation == "drop":
        del fields[draw(st.integers(0, len(fields) - 1))]
    elif mutation == "swap":
        i = draw(st.integers(0, len(fields) - 2))
        fields[i], fields[i + 1] = fields[i + 1], fields[i]
    elif mutation == "number":
        i = draw(st.integers(3, 7))
        fields[i] = (fields[i][0], 100.5)
    elif mutation == "calendar":
        fields.insert(9, ("calendar", "1mo"))
    text = "{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in fields) + "}"
    if mutation == "space":
        text = text.replace(",", ", ", 1)
    elif mutation == "tail":
        text += draw(st.sampled_from(["\n", " ", "x", "}"]))
    return text.encode()


def _is_plain(text: str) -> bool:
    try:
        return Decimal(text).is_finite() and text.replace(".", "", 1).isdigit()
    except ArithmeticError:
        return False


def _same(fast: object, slow: object) -> None:
    if isinstance(slow, DeadLetter):
        assert fast == slow
        return
    assert isinstance(fast, tuple) and isinstance(slow, tuple)
    (fm, fms), (sm, sms) = fast, slow
    assert fms == sms
    assert fm == sm
    assert fm.__pydantic_fields_set__ == sm.__pydantic_fields_set__
    assert type(fm.ts.tzinfo) is type(sm.ts.tzinfo) and fm.ts.tzinfo == sm.ts.tzinfo
    for name in ("open", "high", "low", "close", "volume"):
        assert str(getattr(fm, name)) == str(getattr(sm, name))
    assert fm.model_dump_json() == sm.model_dump_json()


def _both(value: bytes, now_ms: int | None, skew_ms: int) -> tuple[object, object]:
    kw: dict[str, Any] = {
        "topic": "market",
        "partition": 0,
        "offset": 7,
        "record_ms": 1,
        "symbols": SYMBOLS,
        "max_future_skew_ms": skew_ms,
        "now_ms": now_ms,
        "clock": "the test clock",
    }
    return parse_market(value, **kw), validate_market(value, **kw)


@pytest.mark.slow
@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(payloads(), st.one_of(st.none(), st.integers(0, MAX_EVENT_MS)), st.integers(0, 10**9))
def test_fast_path_gives_the_slow_paths_verdict(
    value: bytes, now_ms: int | None, skew_ms: int
) -> None:
    fast, slow = _both(value, now_ms, skew_ms)
    _same(fast, slow)


@pytest.mark.slow
@settings(max_examples=500)
@given(
    st.integers(EPOCH_SENTINEL_MS * 1000, (MAX_EVENT_MS - 1) * 1000),
    st.decimals(Decimal("0.0001"), Decimal("99999"), places=4),
    st.integers(0, 10**6),
)
def test_replay_bars_take_the_fast_path(us: int, price: Decimal, volume: int) -> None:
    """What replay writes (connectors/files/wire.py) is accepted by the fast path itself."""
    from connectors.files.wire import bar_json

    p = str(price)
    value = bar_json("SIMA", us, (p, p, p, p, str(volume)), (60_000, ""), None)
    got = fast_bar(value, SYMBOLS, None, 0, EPOCH_SENTINEL_MS, MAX_EVENT_MS)
    assert got is not None
    _same(got, validate_market(value, **_kw()))
    assert isinstance(got[0], BarIn)


@pytest.mark.slow
@settings(max_examples=2000, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(payloads(), st.one_of(st.none(), st.integers(0, MAX_EVENT_MS)), st.integers(0, 10**9))
def test_bar_fields_are_fast_bars_fields(value: bytes, now_ms: int | None, skew_ms: int) -> None:
    """The block path's parse (`bar_fields`) accepts exactly what `fast_bar` accepts, with
    the same fields (the same Decimal digits)."""
    args = (SYMBOLS, now_ms, skew_ms, EPOCH_SENTINEL_MS, MAX_EVENT_MS)
    fields, fast = bar_fields(value, *args), fast_bar(value, *args)
    if fast is None:
        assert fields is None
        return
    assert fields is not None
    bar, ms = fast
    want = (bar.symbol, ms, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.interval_s)
    assert fields[:8] == want and fields[8] == bar.id
    assert [str(x) for x in fields[2:7]] == [str(x) for x in want[2:7]]
    floats = (bar.close, bar.high, bar.low, bar.volume)
    assert [x.hex() for x in fields[9:]] == [float(d).hex() for d in floats]


def _kw() -> dict[str, Any]:
    return {
        "topic": "market",
        "partition": 0,
        "offset": 7,
        "record_ms": 1,
        "symbols": SYMBOLS,
        "max_future_skew_ms": 0,
    }


@pytest.mark.slow
def test_generated_payloads_cover_both_verdicts() -> None:
    """The generator reaches accepted and refused payloads of the fast layout (else the
    property above would be vacuous). Derandomized: the same 400 examples every run, so the
    count is a fact about the generator, not about one run's luck."""
    accepted = refused = fast = 0

    @settings(max_examples=400, database=None, derandomize=True)
    @given(payloads())
    def count(value: bytes) -> None:
        nonlocal accepted, refused, fast
        if isinstance(validate_market(value, **_kw()), DeadLetter):
            refused += 1
        else:
            accepted += 1
        fast += fast_bar(value, SYMBOLS, None, 0, EPOCH_SENTINEL_MS, MAX_EVENT_MS) is not None

    count()
    assert accepted > 20 and refused > 20 and fast > 20, (accepted, refused, fast)


def _midpoint(x: float, up: bool) -> str:
    """The exact decimal halfway between `x` and its neighbour: the hardest text to round."""
    other = math.nextafter(x, math.inf if up else -math.inf)
    return str((Decimal(x) + Decimal(other)) / 2 if math.isfinite(other) else Decimal(x))


_float_texts = st.one_of(
    st.from_regex(r"[0-9]{1,20}(\.[0-9]{1,20})?", fullmatch=True),  # what `_BAR` admits
    st.from_regex(r"[0-9]{1,60}(\.[0-9]{1,60})?([eE][-+]?[0-9]{1,3})?", fullmatch=True),
    st.builds(
        _midpoint,
        st.floats(min_value=0, allow_nan=False, allow_infinity=False),
        st.booleans(),
    ),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
)


@pytest.mark.slow
@settings(max_examples=400, derandomize=True)
@given(_float_texts)
def test_a_number_texts_float_is_its_decimals_float(text: str) -> None:
    """`bar_fields` takes the floats the kernels read from the message text: `float(t)` is
    `float(Decimal(t))` bit for bit (both correctly rounded conversions of one value), on
    plain numbers, long digit strings, exponents and exact halfway cases."""
    assert float(text).hex() == float(Decimal(text)).hex()
    assert float(text.encode()).hex() == float(Decimal(text)).hex()


def test_float_texts_at_the_edges() -> None:
    """The fast lane's few cases of the property above: many digits, halfway, exponents."""
    for text in (
        "0",
        "0.000",
        "99999999999999999999.99999999999999999999",
        "9007199254740993",  # 2**53 + 1: halfway, rounds to even
        "0.1",
        "1e-400",
        "1.7976931348623157e308",
        _midpoint(100.1234, True),
        _midpoint(5e-324, True),
    ):
        assert float(text).hex() == float(Decimal(text)).hex()
