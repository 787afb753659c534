"""Synthetic, reproducible tick streams for load tests, demos and end-to-end tests.

Historical files are too calm and too small to exercise the pipeline's interesting paths, so the
generator deliberately packs a trading day's worth of events into a short stream: trends that
feed crossover triggers, volatility regimes that change feature values, jumps, and one flash crash
that must trip the drawdown trigger and the risk gate. Everything comes from one
`numpy.random.default_rng(seed)`, so a failing run can be replayed exactly from its seed.

Volatilities are per square-root *hour* (0.01 = 1 % typical move per hour) rather than annualised:
scenarios last minutes to hours, and annual figures would make them look flat.
"""

from __future__ import annotations

import gc
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt

from models.core.messages import SYMBOL_PATTERN, Tick

__all__ = [
    "DEFAULT_REGIMES",
    "CrashWindow",
    "FlashCrash",
    "Jump",
    "Regime",
    "RegimeSegment",
    "ScenarioPlan",
    "TickScenario",
    "TrendSegment",
    "build_scenario",
    "generate_scenario",
    "past_start_ms",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SYMBOL_RE = re.compile(SYMBOL_PATTERN)
_MS_PER_HOUR = 3_600_000.0

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Regime:
    """A market-wide volatility level; regimes switch at random times during a scenario."""

    name: str
    vol_per_sqrt_hour: float


DEFAULT_REGIMES: tuple[Regime, ...] = (
    Regime("calm", 0.004),
    Regime("normal", 0.010),
    Regime("stressed", 0.030),
)


@dataclass(frozen=True)
class FlashCrash:
    """A fall of `depth` within `fall_s`, then `recovery` of the fall regained over `recover_s`.

    Durations shrink proportionally when the scenario is too short to hold them, so even a
    five-minute test stream contains its crash.
    """

    symbol: str | None = None  # None: the first symbol
    at_fraction: float = 0.6
    depth: float = 0.15
    fall_s: float = 45.0
    recovery: float = 0.5
    recover_s: float = 300.0
    size_multiplier: int = 5


@dataclass(frozen=True)
class RegimeSegment:
    start_ms: int
    end_ms: int
    name: str
    vol_per_sqrt_hour: float


@dataclass(frozen=True)
class TrendSegment:
    start_ms: int
    end_ms: int
    drift_per_hour: float


@dataclass(frozen=True)
class Jump:
    symbol: str
    ts_ms: int
    log_return: float


@dataclass(frozen=True)
class CrashWindow:
    symbol: str
    start_ms: int
    bottom_ms: int
    end_ms: int
    depth: float
    recovery: float


@dataclass(frozen=True)
class ScenarioPlan:
    """What was scheduled, so tests and reports can check the stream against its intent."""

    seed: int
    start_ms: int
    end_ms: int
    start_prices: dict[str, Decimal]
    regimes: list[RegimeSegment]
    trends: dict[str, list[TrendSegment]]
    jumps: list[Jump]
    crash: CrashWindow | None
    tick_size: Decimal


@dataclass(frozen=True)
class TickScenario:
    ticks: list[Tick]
    plan: ScenarioPlan
    per_symbol: dict[str, int] = field(default_factory=dict)


def past_start_ms(duration_s: float, now_ms: int | None = None, margin_s: float = 60.0) -> int:
    """A start, floored to the minute, such that the whole scenario lies in the past.

    The pipeline dead-letters events that are too far ahead of their Kafka record time, so
    synthetic events must never be stamped in the future.
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    start = now - int((duration_s + margin_s) * 1000)
    return start - start % 60_000


def _segments(
    rng: np.random.Generator, duration_ms: int, mean_s: float, min_s: float
) -> list[tuple[int, int]]:
    bounds: list[tuple[int, int]] = []
    t = 0
    while t < duration_ms:
        length = max(min_s, float(rng.exponential(mean_s))) * 1000.0
        end = min(duration_ms, t + max(1, int(length)))
        bounds.append((t, end))
        t = end
    return bounds


def _piecewise(times: I64, starts: I64, values: F64) -> F64:
    idx = np.searchsorted(starts, times, side="right") - 1
    return values[np.clip(idx, 0, len(values) - 1)]


def build_scenario(
    symbols: Sequence[str],
    start_ms: int,
    duration_s: int,
    ticks_per_second_per_symbol: float,
    seed: int,
    regimes: Sequence[Regime] = DEFAULT_REGIMES,
    *,
    crash: FlashCrash | None = FlashCrash(),
    tick_size: Decimal = Decimal("0.01"),
    start_prices: Mapping[str, Decimal] | None = None,
    regime_mean_s: float = 600.0,
    trend_mean_s: float = 900.0,
    trend_sd_per_hour: float = 0.02,
    jumps_per_hour: float = 1.0,
    jump_sd: float = 0.01,
    now_ms: int | None = None,
) -> TickScenario:
    """Generate the stream and its plan; see `generate_scenario` for the common case."""
    syms = list(symbols)
    if not syms:
        raise ValueError("need at least one symbol")
    if len(set(syms)) != len(syms):
        raise ValueError("symbols must be unique")
    for s in syms:
        if not _SYMBOL_RE.match(s):
            raise ValueError(f"{s!r} is not a valid symbol")
    if duration_s <= 0:
        raise ValueError("duration_s must be > 0")
    if not ticks_per_second_per_symbol > 0:
        raise ValueError("ticks_per_second_per_symbol must be > 0")
    if not regimes:
        raise ValueError("need at least one regime")
    if not (tick_size.is_finite() and tick_size > 0):
        raise ValueError("tick_size must be > 0")
    duration_ms = int(duration_s) * 1000
    end_ms = start_ms + duration_ms
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if end_ms > now:
        raise ValueError(
            "scenario would end in the future; use past_start_ms(duration_s) as the start"
        )
    crash_symbol = None
    if crash is not None:
        crash_symbol = crash.symbol or syms[0]
        if crash_symbol not in syms:
            raise ValueError(f"flash-crash symbol {crash_symbol!r} is not among the symbols")
        if not (0 < crash.depth < 1 and 0 <= crash.recovery <= 1 and 0 <= crash.at_fraction < 1):
            raise ValueError("flash crash needs 0 < depth < 1, 0 <= recovery <= 1, 0 <= at < 1")

    rng = np.random.default_rng(seed)
    tick_f = float(tick_size)

    # Market-wide volatility regimes; consecutive segments always differ, so a switch is a switch.
    min_seg_s = min(60.0, duration_s / 4)
    regime_plan: list[RegimeSegment] = []
    prev = -1
    for a, b in _segments(rng, duration_ms, regime_mean_s, min_seg_s):
        choices = [i for i in range(len(regimes)) if i != prev] or [0]
        k = choices[int(rng.integers(len(choices)))]
        prev = k
        r = regimes[k]
        regime_plan.append(RegimeSegment(start_ms + a, start_ms + b, r.name, r.vol_per_sqrt_hour))
    reg_starts = np.array([s.start_ms for s in regime_plan], dtype=np.int64)
    reg_vols = np.array([s.vol_per_sqrt_hour for s in regime_plan], dtype=np.float64)

    crash_window: CrashWindow | None = None
    if crash is not None and crash_symbol is not None:
        room_ms = duration_ms * (1 - crash.at_fraction) * 0.9
        want_ms = (crash.fall_s + crash.recover_s) * 1000
        shrink = min(1.0, room_ms / want_ms) if want_ms > 0 else 1.0
        c0 = start_ms + int(duration_ms * crash.at_fraction)
        c1 = c0 + max(1, int(crash.fall_s * 1000 * shrink))
        c2 = c1 + max(1, int(crash.recover_s * 1000 * shrink))
        crash_window = CrashWindow(crash_symbol, c0, c1, c2, crash.depth, crash.recovery)

    n = max(1, round(ticks_per_second_per_symbol * duration_s))
    all_times: list[I64] = []
    all_ticks: list[I64] = []
    all_sizes: list[I64] = []
    trends: dict[str, list[TrendSegment]] = {}
    jumps: list[Jump] = []
    prices0: dict[str, Decimal] = {}

    for sym in syms:
        if start_prices is not None and sym in start_prices:
            p0 = float(start_prices[sym])
        else:
            p0 = float(rng.uniform(20.0, 500.0))
        p0_ticks = max(1, round(p0 / tick_f))
        prices0[sym] = Decimal(p0_ticks) * tick_size

        tr = [
            TrendSegment(start_ms + a, start_ms + b, float(rng.normal(0.0, trend_sd_per_hour)))
            for a, b in _segments(rng, duration_ms, trend_mean_s, min_seg_s)
        ]
        trends[sym] = tr

        times = start_ms + np.sort(rng.integers(0, duration_ms, size=n, dtype=np.int64))
        sigma = _piecewise(times, reg_starts, reg_vols)
        mu = _piecewise(
            times,
            np.array([t.start_ms for t in tr], dtype=np.int64),
            np.array([t.drift_per_hour for t in tr], dtype=np.float64),
        )
        dt_h = np.diff(times, prepend=start_ms).astype(np.float64) / _MS_PER_HOUR
        z = rng.standard_normal(n)
        steps = (mu - 0.5 * sigma * sigma) * dt_h + sigma * np.sqrt(dt_h) * z

        n_jumps = int(rng.poisson(jumps_per_hour * duration_s / 3600.0))
        jump_t = start_ms + np.sort(rng.integers(0, duration_ms, size=n_jumps, dtype=np.int64))
        jump_r = rng.normal(0.0, jump_sd, size=n_jumps)
        for jt, jr in zip(jump_t.tolist(), jump_r.tolist(), strict=True):
            jumps.append(Jump(sym, int(jt), float(jr)))
        jump_steps = np.zeros(n, dtype=np.float64)
        np.add.at(jump_steps, np.searchsorted(times, jump_t, side="left").clip(0, n - 1), jump_r)

        log_p = math.log(float(prices0[sym])) + np.cumsum(steps + jump_steps)

        sizes = np.maximum(1, np.rint(rng.lognormal(3.0, 1.0, size=n))).astype(np.int64)
        if crash_window is not None and sym == crash_window.symbol and crash is not None:
            cw = crash_window
            bottom = math.log(1.0 - cw.depth)
            after = math.log(1.0 - cw.depth * (1.0 - cw.recovery))
            log_p = log_p + np.interp(
                times.astype(np.float64),
                [float(cw.start_ms), float(cw.bottom_ms), float(cw.end_ms)],
                [0.0, bottom, after],
            )
            in_crash = (times >= cw.start_ms) & (times < cw.end_ms)
            sizes = np.where(in_crash, sizes * crash.size_multiplier, sizes)

        price_ticks = np.maximum(1, np.rint(np.exp(log_p) / tick_f)).astype(np.int64)
        all_times.append(times)
        all_ticks.append(price_ticks)
        all_sizes.append(sizes)

    times_all = np.concatenate(all_times)
    order = np.argsort(times_all, kind="stable")  # ties: symbol order, then arrival order
    sym_idx = np.repeat(np.arange(len(syms)), n)[order].tolist()
    seq = np.tile(np.arange(n), len(syms))[order].tolist()
    t_list = times_all[order].tolist()
    p_list = np.concatenate(all_ticks)[order].tolist()
    s_list = np.concatenate(all_sizes)[order].tolist()

    ticks = _make_ticks(syms, sym_idx, seq, t_list, p_list, s_list, tick_size, seed)
    plan = ScenarioPlan(
        seed=seed,
        start_ms=start_ms,
        end_ms=end_ms,
        start_prices=prices0,
        regimes=regime_plan,
        trends=trends,
        jumps=sorted(jumps, key=lambda j: (j.ts_ms, j.symbol)),
        crash=crash_window,
        tick_size=tick_size,
    )
    return TickScenario(ticks=ticks, plan=plan, per_symbol=dict.fromkeys(syms, n))


def _make_ticks(
    syms: list[str],
    sym_idx: list[int],
    seq: list[int],
    times: list[int],
    price_ticks: list[int],
    sizes: list[int],
    tick_size: Decimal,
    seed: int,
) -> list[Tick]:
    """Tick objects via `model_construct`, valid by construction.

    Symbols were checked up front, prices and sizes are at least one tick / one unit, ids are
    short and times are aware UTC datetimes; full validation would add ~50 % to the run time of
    a million-tick load test. The cyclic garbage collector is paused meanwhile: with a million
    young objects it, not pydantic, would dominate.
    """
    prefixes = [f"sc{seed}-{s}-" for s in syms]
    price_cache: dict[int, Decimal] = {}
    size_cache: dict[int, Decimal] = {}
    out: list[Tick] = []
    append = out.append
    construct = Tick.model_construct
    fields = {"symbol", "ts", "price", "size", "id"}
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for k, i, t, p, z in zip(sym_idx, seq, times, price_ticks, sizes, strict=True):
            price = price_cache.get(p)
            if price is None:
                price = price_cache[p] = Decimal(p) * tick_size
            size = size_cache.get(z)
            if size is None:
                size = size_cache[z] = Decimal(z)
            append(
                construct(
                    fields,
                    symbol=syms[k],
                    ts=_EPOCH + timedelta(milliseconds=t),
                    price=price,
                    size=size,
                    id=prefixes[k] + str(i),
                )
            )
    finally:
        if was_enabled:
            gc.enable()
    return out


def generate_scenario(
    symbols: Sequence[str],
    start_ms: int,
    duration_s: int,
    ticks_per_second_per_symbol: float,
    seed: int,
    regimes: Sequence[Regime] = DEFAULT_REGIMES,
    **options: Any,
) -> list[Tick]:
    """Ticks of all symbols sorted by event time; same arguments and seed => same ticks.

    Each symbol gets round(rate * duration) ticks at uniformly random times (a Poisson stream
    conditioned on its count, so the size of a load test is exact), with a GBM price driven by
    the shared volatility regimes, its own trend segments and jumps; `crash=FlashCrash(...)` or
    `crash=None` controls the flash crash (default: -15 % within 45 s on the first symbol, half
    recovered). Other keywords are those of `build_scenario`.
    """
    return build_scenario(
        symbols,
        start_ms,
        duration_s,
        ticks_per_second_per_symbol,
        seed,
        regimes,
        **options,
    ).ticks
