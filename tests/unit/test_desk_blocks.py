"""The desk takes a `BarBlock` at once exactly as its events one by one (the block path).

Generated bars (random walks with flat stretches, across a UTC midnight) go through features,
triggers and the router as ingest computes them, then into two desks behind their drivers:
one event at a time, and as blocks cut at random places. Standing strategy files (crossovers,
thresholds, stops, take-profit, short and both ways on a shortable symbol), the local engine on
routine triggers and GPT strategies answered inline (short horizons make them expire) must give
the same rows (expanded, compared by repr: values and Decimal exponents) and the same pickled
desk state after (its content: `content`).
"""

from __future__ import annotations

import dataclasses
import math
import pickle
import random
from collections import deque
from decimal import Decimal
from enum import Enum
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataflows.driver import DeskDriver
from models.config.settings import Settings
from models.core.blocks import BarBlock, BarColumns, PositionColumns, expand_rows
from models.core.events import BarEvent
from models.core.messages import Bar, Fill, GptRequest
from models.core.packed import BarFloats
from models.desk.desk import DeskRow, TradingDesk
from models.gpt.decider import GptAnswer
from models.signals.features import FeatureState
from models.signals.router import route
from models.signals.triggers import TriggerState
from models.strategy.spec import GptDecision
from tests.support.builders import bar as make_bar
from tests.support.gpt import answer

D = Decimal
MIN = 60_000
DAY = 86_400_000
T0 = (1_700_000_000_000 // DAY + 1) * DAY - 90 * MIN  # 90 minutes before a UTC midnight
SYMBOLS = ("ABC", "XYZ")

CROSS = {
    "entry": {"left": "sma_3", "op": "crosses_above", "right": "sma_5"},
    "exit": {"left": "sma_3", "op": "crosses_below", "right": "sma_5"},
}
FILES: dict[str, dict[str, Any]] = {
    "cross": {**CROSS, "position_fraction": 1.0},
    "threshold-stops": {
        "entry": {"left": "close", "op": ">", "right": "sma_5"},
        "exit": {"left": "rsi_7", "op": ">=", "right": 70},
        "position_fraction": 0.5,
        "stop_loss_pct": 0.01,
        "take_profit_pct": 0.015,
    },
    "groups": {
        "entry": {
            "match": "all",
            "conditions": [
                {"left": "rsi_7", "op": "crosses_below", "right": 45},
                {"left": "close", "op": "<=", "right": "sma_5"},
            ],
        },
        "exit": {
            "match": "any",
            "conditions": [
                {"left": "rsi_7", "op": "crosses_above", "right": 55},
                {"left": "sma_3", "op": "<", "right": 1},
            ],
        },
        "position_fraction": 0.3,
        "take_profit_pct": 0.02,
    },
    "short": {**CROSS, "direction": "short", "position_fraction": 0.4, "stop_loss_pct": 0.02},
    "both": {**CROSS, "direction": "both", "position_fraction": 0.4, "take_profit_pct": 0.03},
}


def make_settings(files: dict[str, str], controller: str = "local") -> Settings:
    strategies = [
        {"name": f"{name}-{sym}", "universe": [sym], **FILES[name]} for sym, name in files.items()
    ]
    return Settings.model_validate(
        {
            "symbols": {"ABC": {"shortable": True}, "XYZ": {}},
            "features": {"sma_fast": 3, "sma_slow": 5, "breakout": 8},
            "triggers": [
                {"kind": "crossover", "name": "x", "fast": "sma_fast", "slow": "sma_slow"},
                {"kind": "breakout", "name": "b", "strategic": True},
            ],
            "strategies": strategies,
            "execution": {"initial_cash": "100000", "fee_bps": "10", "slippage_bps": "5"},
            "strategy": {
                "controller": controller,
                "target_fraction": "0.1",
                "strategic_fraction": "0.2",
            },
            "risk": {"max_position_notional": "100000", "daily_loss_limit": "100000"},
            "gpt": {
                "model": "stratflow-local",
                "cache_dir": "/nonexistent/answers",
                "cooldown": "3m",
                "max_wait": "10m",
                "daily_budget_usd": "1000",
            },
        }
    )


def gpt_cross(horizon: int) -> GptDecision:
    return GptDecision.model_validate(
        {
            "action": "create",
            "strategy": {
                "name": "sma-cross",
                "version": 1,
                "universe": list(SYMBOLS),
                "entry": {"left": "sma_fast", "op": "crosses_above", "right": "sma_slow"},
                "exit": {"left": "sma_fast", "op": "crosses_below", "right": "sma_slow"},
                "position_fraction": 0.2,
                "stop_loss_pct": 0.02,
                "take_profit_pct": None,
                "target_weights": [],
                "horizon_bars": horizon,
                "rationale": "trend",
                "confidence": 0.6,
            },
            "rationale": "trend",
            "confidence": 0.6,
        }
    )


class InlineGpt:
    """A backtest's GPT line: every question answered at once with one decision."""

    in_flight = 0

    def __init__(self, decision: GptDecision) -> None:
        self.decision = decision

    def answer(self, request: GptRequest) -> GptAnswer:
        return answer(request, self.decision)

    def submit(self, request: GptRequest) -> None:
        raise AssertionError("inline only")

    def ready(self) -> list[GptAnswer]:
        return []

    def wait(self, timeout_s: float | None = None) -> None:
        return None


def closes(rng: random.Random, n: int) -> list[float]:
    price = 100.0
    out: list[float] = []
    while len(out) < n:
        if rng.random() < 0.06:
            out.extend([price] * rng.randint(3, 12))
        else:
            price = max(1.0, round(price * math.exp(rng.gauss(0.0, 0.012)), 2))
            out.append(price)
    return out[:n]


def stream(cfg: Settings, seed: int, n: int) -> list[BarEvent]:
    """Each symbol's bars through features, triggers and the router, the symbols interleaved
    in runs of random length (each symbol's own bars in time order)."""
    rng = random.Random(seed)
    series = {s: closes(rng, n) for s in SYMBOLS}
    state = {
        s: (FeatureState(cfg.features, cfg.extra_features(s)), TriggerState(cfg.triggers))
        for s in SYMBOLS
    }
    done = dict.fromkeys(SYMBOLS, 0)
    events: list[BarEvent] = []
    while any(k < n for k in done.values()):
        sym = rng.choice([s for s in SYMBOLS if done[s] < n])
        for _ in range(rng.randint(1, 40)):
            k = done[sym]
            if k >= n:
                break
            done[sym] += 1
            close = D(repr(series[sym][k]))
            opened = D(repr(series[sym][k - 1])) if k else close
            bar = make_bar(sym, T0 + k * MIN, close, open=opened, volume=10, trades=3)
            features, triggers = state[sym]
            fv = features.update(bar)
            signals = triggers.evaluate(fv)
            branch = route(signals, cfg.router)
            seq = k + 1
            events.append(BarEvent(bar, fv, signals, branch, "m#0", bar.end_ms, seq))
    return events


def blocks(events: list[BarEvent], cuts: random.Random, most: int) -> list[BarBlock]:
    """The events as blocks: runs of one symbol, cut at random places."""
    out: list[BarBlock] = []
    run: list[BarEvent] = []

    def close_run() -> None:
        names = tuple(run[0].features.values)
        i = 0
        while i < len(run):
            size = cuts.randint(1, most)
            block = BarBlock.of_events(names, run[i : i + size])
            out.append(with_floats(block) if cuts.random() < 0.5 else block)
            i += size
        run.clear()

    for event in events:
        if run and event.bar.symbol != run[0].bar.symbol:
            close_run()
        run.append(event)
    if run:
        close_run()
    return out


def with_floats(block: BarBlock) -> BarBlock:
    """The block with its closes' floats, as ingest gives them (`BarColumns.floats`)."""
    cols = block.bars
    made = BarFloats(
        *(
            np.array([float(v) for v in c], np.float64)
            for c in (cols.close, cols.high, cols.low, cols.volume)
        )
    )
    fields = (cols.start_ms, cols.end_ms, cols.open, cols.high, cols.low, cols.close)
    rest = (cols.volume, cols.trades, cols.vwap)
    return dataclasses.replace(block, bars=BarColumns(cols.symbol, *fields, *rest, made))


def desk_for(cfg: Settings, decision: GptDecision | None) -> DeskDriver:
    desk = TradingDesk.create(cfg, gpt=decision is not None)
    return DeskDriver(desk, gpt=InlineGpt(decision) if decision is not None else None)


def both_ways(
    cfg: Settings, decision: GptDecision | None, seed: int, n: int, most: int
) -> tuple[list[DeskRow], list[DeskRow], DeskDriver, DeskDriver]:
    cut = blocks(stream(cfg, seed, n), random.Random(seed + 1), most)
    one, many = desk_for(cfg, decision), desk_for(cfg, decision)
    per_bar: list[DeskRow] = []
    one.run([e for b in cut for e in b.events()], per_bar)  # the bars the blocks stand for
    at_once: list[DeskRow] = []
    many.run(cut, at_once)
    return per_bar, at_once, one, many


def assert_same(
    per_bar: list[DeskRow], at_once: list[DeskRow], one: DeskDriver, many: DeskDriver
) -> None:
    assert [repr(r) for r in expand_rows(at_once)] == [repr(r) for r in per_bar]
    assert content(many.desk.state()) == content(one.desk.state())


def content(state: object) -> object:
    """What a desk state holds, as it is restored from its snapshot: values compared by
    value and type (a Decimal by its digits and exponent), not which equal immutable values
    are one object, nor the order a set was built in (a pydantic model's fields set)."""
    return _canon(pickle.loads(pickle.dumps(state)))


def _canon(obj: Any) -> Any:
    kind = type(obj)
    if obj is None or kind in (bool, int, str, bytes):
        return obj
    if kind in (float, Decimal):
        return (kind.__name__, repr(obj))
    if kind in (list, tuple, deque):
        return (kind.__name__, tuple(_canon(x) for x in obj))
    if kind in (set, frozenset):
        return (kind.__name__, tuple(sorted((_canon(x) for x in obj), key=repr)))
    if kind is dict:
        return ("dict", tuple((_canon(k), _canon(v)) for k, v in obj.items()))
    if isinstance(obj, Enum):
        return (kind.__name__, obj.value)
    if dataclasses.is_dataclass(obj):
        fields = dataclasses.fields(obj)
        return (kind.__name__, tuple((f.name, _canon(getattr(obj, f.name))) for f in fields))
    if hasattr(obj, "__dict__"):  # a pydantic model, a compiled strategy
        return (kind.__name__, _canon(dict(vars(obj))))
    return (kind.__name__, repr(obj))


FILE_CHOICES = st.fixed_dictionaries(
    {},
    optional={
        "ABC": st.sampled_from(sorted(FILES)),
        "XYZ": st.sampled_from(["cross", "threshold-stops", "groups"]),
    },
)


@settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    files=FILE_CHOICES,
    seed=st.integers(0, 10_000),
    n=st.integers(20, 220),
    most=st.sampled_from([1, 3, 17, 64, 400]),
)
def test_strategy_files_and_the_local_engine_block_as_bar_by_bar(
    files: dict[str, str], seed: int, n: int, most: int
) -> None:
    per_bar, at_once, one, many = both_ways(make_settings(files), None, seed, n, most)
    assert_same(per_bar, at_once, one, many)


@settings(
    max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(30, 200),
    most=st.sampled_from([2, 9, 50, 400]),
    horizon=st.sampled_from([7, 40, 10_000]),
)
def test_gpt_strategies_block_as_bar_by_bar(seed: int, n: int, most: int, horizon: int) -> None:
    cfg = make_settings({}, controller="gpt")
    per_bar, at_once, one, many = both_ways(cfg, gpt_cross(horizon), seed, n, most)
    assert_same(per_bar, at_once, one, many)


def test_most_bars_of_a_crossover_file_are_quiet() -> None:
    """The block path is taken: a crossover file's bars leave mostly as position columns."""
    per_bar, at_once, one, many = both_ways(
        make_settings({"ABC": "cross", "XYZ": "cross"}), None, 5, 400, 400
    )
    assert_same(per_bar, at_once, one, many)
    quiet = sum(len(r) for r in at_once if isinstance(r, PositionColumns))
    assert quiet > 0.6 * 2 * 400


def test_failures_inside_a_block_are_the_failed_bars_alerts(monkeypatch: Any) -> None:
    """A bar whose handling raises (a fill, an answer carried out inline) gives the alert the
    driver gives for that bar's event, and the rest of the block goes on, as bar by bar."""
    from models.execution.sim_venue import SimulatedExchange

    execute = SimulatedExchange.execute
    answered = TradingDesk.on_gpt_answer

    def failing_execute(self: SimulatedExchange, order: Any, bar: Bar, *args: Any) -> Any:
        if bar.end_ms // MIN % 3 == 0:
            raise RuntimeError("venue bug")
        return execute(self, order, bar, *args)

    def failing_answer(self: TradingDesk, reply: GptAnswer) -> Any:
        if int(reply.request_id.split("@")[1].split("/")[0]) // MIN % 3 == 1:
            raise RuntimeError("answer bug")
        return answered(self, reply)

    monkeypatch.setattr(SimulatedExchange, "execute", failing_execute)
    monkeypatch.setattr(TradingDesk, "on_gpt_answer", failing_answer)
    for cfg, decision, bug in [
        (make_settings({"ABC": "cross", "XYZ": "threshold-stops"}), None, "venue bug"),
        (make_settings({}, controller="gpt"), gpt_cross(40), "answer bug"),
    ]:
        per_bar, at_once, one, many = both_ways(cfg, decision, 8, 250, 60)
        assert any(bug in getattr(r, "message", "") for r in per_bar)
        assert_same(per_bar, at_once, one, many)


def test_a_bar_failing_after_a_quiet_run_leaves_that_runs_last_bar_as_latest(
    monkeypatch: Any,
) -> None:
    """The block path makes no event for `latest` at the end of a quiet run that the next bar's
    `on_bar_event` follows (it keeps its own); when that bar fails before keeping it, the run's
    last bar is `latest`, as bar by bar. Bars with a branch (the local engine decides them) fail
    once the venue's fills at their open are made (`_after_fills`, which both paths run: the
    block path makes a fill bar's fills itself), before anything else moved; the desks are
    compared after every block."""
    after_fills = TradingDesk._after_fills

    def failing(self: TradingDesk, event: BarEvent, out: list[Any]) -> Any:
        if event.branch is not None and event.bar.end_ms // MIN % 2 == 0:
            raise RuntimeError("desk bug")
        return after_fills(self, event, out)

    monkeypatch.setattr(TradingDesk, "_after_fills", failing)
    cfg = make_settings({})
    cut = blocks(stream(cfg, 3, 300), random.Random(4), 120)
    one, many = desk_for(cfg, None), desk_for(cfg, None)
    per_bar: list[DeskRow] = []
    at_once: list[DeskRow] = []
    failed_last = 0
    for block in cut:
        one.run(block.events(), per_bar)
        many.run([block], at_once)
        assert content(many.desk.latest) == content(one.desk.latest)
        last = block.event(len(block) - 1)
        failed_last += last.branch is not None and last.bar.end_ms // MIN % 2 == 0
    assert failed_last >= 2  # blocks that end on a failed bar: `latest` is seen before it
    assert sum("desk bug" in getattr(r, "message", "") for r in per_bar) >= 3
    assert_same(per_bar, at_once, one, many)


def test_fill_bars_open_quiet_runs(monkeypatch: Any) -> None:
    """A bar that only fills what the venue holds (and then is quiet) does not go through
    `on_bar_event` on the block path: its fills are made, and it opens the next quiet run; the
    rows and the desk are those of bar by bar."""
    events_seen: set[tuple[str, int]] = set()
    event_of = TradingDesk.on_bar_event

    def counted(self: TradingDesk, event: BarEvent) -> Any:
        events_seen.add((event.bar.symbol, event.bar.end_ms))
        return event_of(self, event)

    cfg = make_settings({"ABC": "cross", "XYZ": "cross"})
    per_bar, _, one, _ = both_ways(cfg, None, 5, 400, 400)
    monkeypatch.setattr(TradingDesk, "on_bar_event", counted)
    many = desk_for(cfg, None)
    at_once: list[DeskRow] = []
    many.run(blocks(stream(cfg, 5, 400), random.Random(6), 400), at_once)
    fills = [r for r in per_bar if isinstance(r, Fill)]
    assert len(fills) >= 4
    assert_same(per_bar, at_once, one, many)
    # The block path: a fill's bar (its start is the fill's time) is among the quiet runs'.
    quiet = {(r.symbol, t) for r in at_once if isinstance(r, PositionColumns) for t in r.ts_ms}
    taken = [f for f in fills if (f.symbol, f.ts_ms + MIN) in quiet]
    assert len(taken) >= len(fills) // 2
    assert all((f.symbol, f.ts_ms + MIN) not in events_seen for f in taken)
