"""The synthetic tick stream: reproducible, valid, and containing what it promises."""

from __future__ import annotations

import itertools
import math
import statistics
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from connectors.sim.scenario import (
    FlashCrash,
    TickScenario,
    build_scenario,
    generate_scenario,
    past_start_ms,
)
from models.core.messages import Tick, to_ms

START = int(datetime(2026, 1, 5, 14, 30, tzinfo=UTC).timestamp() * 1000)
SYMBOLS = ["SIMA", "SIMB", "SIMC"]


@pytest.fixture(scope="module")
def hour() -> TickScenario:
    return build_scenario(SYMBOLS, START, 3600, 2.0, seed=11)


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    a = generate_scenario(SYMBOLS, START, 600, 5.0, seed=1)
    b = generate_scenario(SYMBOLS, START, 600, 5.0, seed=1)
    c = generate_scenario(SYMBOLS, START, 600, 5.0, seed=2)
    assert a == b
    assert [t.model_dump_json() for t in a] == [t.model_dump_json() for t in b]
    assert [t.price for t in a] != [t.price for t in c]


def test_stream_shape_and_validity(hour: TickScenario) -> None:
    ticks = hour.ticks
    assert len(ticks) == 3 * 7200 and hour.per_symbol == dict.fromkeys(SYMBOLS, 7200)
    ms = [to_ms(t.ts) for t in ticks]
    assert ms == sorted(ms)
    assert ms[0] >= START and ms[-1] < START + 3_600_000
    assert len({t.id for t in ticks}) == len(ticks)
    for t in ticks:
        assert Tick.model_validate_json(t.model_dump_json()) == t
        assert t.size > 0
        assert t.price == t.price.quantize(Decimal("0.01"))


def _prices(ticks: list[Tick], symbol: str) -> list[tuple[int, float]]:
    return [(to_ms(t.ts), float(t.price)) for t in ticks if t.symbol == symbol]


def test_flash_crash_falls_fifteen_percent_within_a_minute(hour: TickScenario) -> None:
    crash = hour.plan.crash
    assert crash is not None and crash.symbol == "SIMA"
    assert crash.bottom_ms - crash.start_ms <= 60_000
    series = _prices(hour.ticks, "SIMA")
    before = [p for t, p in series if crash.start_ms - 30_000 <= t < crash.start_ms]
    low = min(p for t, p in series if crash.start_ms <= t <= crash.bottom_ms + 5_000)
    after = [p for t, p in series if crash.end_ms <= t < crash.end_ms + 30_000]
    drop = 1 - low / statistics.mean(before)
    assert 0.12 < drop < 0.19
    recovered = statistics.mean(after) / statistics.mean(before) - 1
    assert -0.11 < recovered < -0.04  # about half of the fall regained, not all of it
    # The other symbols do not crash.
    for sym in ("SIMB", "SIMC"):
        other = _prices(hour.ticks, sym)
        pre = statistics.mean(p for t, p in other if crash.start_ms - 30_000 <= t < crash.start_ms)
        dip = min(p for t, p in other if crash.start_ms <= t <= crash.bottom_ms + 5_000)
        assert dip / pre > 0.95
    assert generate_scenario(SYMBOLS, START, 300, 2.0, seed=11, crash=None)  # optional


def test_volatility_regimes_change_realised_volatility(hour: TickScenario) -> None:
    names = {r.name for r in hour.plan.regimes}
    assert {"calm", "stressed"} <= names, names
    crash = hour.plan.crash
    assert crash is not None
    # ~30-second log returns of a non-crashing symbol per regime, scaled to per-sqrt-hour;
    # returns spanning a scheduled jump are left out, they are not diffusion.
    series = _prices(hour.ticks, "SIMB")
    jumps = [j.ts_ms for j in hour.plan.jumps if j.symbol == "SIMB"]
    realised: dict[str, list[float]] = {}
    for seg in hour.plan.regimes:
        pts = [(t, p) for t, p in series if seg.start_ms <= t < seg.end_ms][::60]
        for (ta, pa), (tb, pb) in itertools.pairwise(pts):
            if not any(ta < j <= tb for j in jumps):
                realised.setdefault(seg.name, []).append(math.log(pb / pa))
    vol = {k: statistics.pstdev(v) * math.sqrt(120) for k, v in realised.items() if len(v) > 5}
    assert vol["stressed"] > 3 * vol["calm"], vol
    for seg_name, target in (("calm", 0.004), ("stressed", 0.03)):
        assert target / 2 < vol[seg_name] < target * 2, vol


def test_rejects_a_future_scenario_and_bad_arguments() -> None:
    now = int(datetime.now(UTC).timestamp() * 1000)
    with pytest.raises(ValueError, match="future"):
        generate_scenario(["AAA"], now, 60, 1.0, seed=1)
    start = past_start_ms(60)
    assert start + 60_000 < now and start % 60_000 == 0
    with pytest.raises(ValueError, match="valid symbol"):
        generate_scenario(["bad sym"], start, 60, 1.0, seed=1)
    with pytest.raises(ValueError, match="not among"):
        generate_scenario(["AAA"], start, 60, 1.0, seed=1, crash=FlashCrash(symbol="ZZZ"))
