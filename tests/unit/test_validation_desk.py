"""The validation gate at the desk, with scripted GPT answers: a new strategy is judged on the
symbol's recent bars and stress scenarios before it runs; a refusal goes back to GPT with the
numbers and places nothing; a strategy that passes runs; answers that start no strategy are
reviewed as before; the window is kept only where it can be used, the same on every path."""

from __future__ import annotations

import pickle
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.core.blocks import BarBlock, BarColumns, BarFloats
from models.core.commands import AskGpt
from models.core.events import BarEvent
from models.core.messages import Alert, DecisionRecord, DecisionStatus, GptRequest, Order
from models.desk.bar_history import BarHistory, BarRing, proposed_strategy
from models.desk.desk import TradingDesk
from models.desk.persisted import PERSISTED
from models.review.loop import DEFAULT_REVIEWERS
from models.review.validation import ValidationReviewer
from models.strategy.compiler import Rejection, compile_strategy
from models.strategy.spec import GptDecision, StrategySpec
from tests.support import gpt as kit
from tests.support.builders import MIN, bar, of
from tests.support.validation import ALWAYS, CAREFUL, NEVER, RECKLESS, events, gate_settings, walk

D = Decimal
SYM = "ABC"


def feed(desk: TradingDesk, evs: list[BarEvent]) -> list[Any]:
    out: list[Any] = []
    for e in evs:
        out.extend(desk.on_bar_event(e))
    return out


def asked(out: list[Any]) -> GptRequest:
    (command,) = of(AskGpt, out)
    return command.request


def reply(desk: TradingDesk, request: GptRequest, doc: dict[str, Any]) -> list[Any]:
    return desk.on_gpt_answer(kit.answer(request, GptDecision.model_validate(doc)))


def last_record(out: list[Any]) -> DecisionRecord:
    return of(DecisionRecord, out)[-1]


def test_a_reckless_strategy_is_sent_back_with_its_loss_and_a_careful_one_runs(
    tmp_path: Path,
) -> None:
    cfg = gate_settings(tmp_path)
    desk = TradingDesk.create(cfg, gpt=True)
    request = asked(feed(desk, events(cfg, walk(1, 300), {299})))
    out = reply(desk, request, RECKLESS)
    assert not of(Order, out)  # never trades
    follow_up = asked(out)
    text = follow_up.messages[-1].content
    (line,) = [x for x in text.splitlines() if "validation:ABC:flash_crash_loss" in x]
    lost = float(line.split("lost ")[1].split("%")[0])
    assert 39.0 <= lost <= 41.0 and "limit 25%" in line
    assert "validation gate" in text
    pending = desk.gpt.pending[SYM]
    (refused,) = pending.rounds
    assert refused.verdict is not None and not refused.verdict.approved
    check = next(c for c in refused.verdict.checks if c.name == "validation:ABC:flash_crash_loss")
    assert check.limit == D("0.25") and check.value is not None and check.value >= D("0.39")

    out = reply(desk, follow_up, CAREFUL)
    record = last_record(out)
    assert record.status is DecisionStatus.EXECUTED
    (order,) = of(Order, out)
    assert order.decision_id == record.decision_id == request.decision_id
    passed = record.rounds[-1].verdict
    assert passed is not None and passed.approved
    names = {c.name for c in passed.checks}
    assert {"validation:ABC:flash_crash_loss", "validation:ABC:max_drawdown"} <= names
    assert [r.verdict is not None and r.verdict.approved for r in record.rounds] == [False, True]
    assert desk.strategies.get(SYM) is not None


def test_rounds_exhausted_leave_the_decision_to_the_local_engine_with_no_gpt_order(
    tmp_path: Path,
) -> None:
    cfg = gate_settings(tmp_path)
    desk = TradingDesk.create(cfg, gpt=True)
    request = asked(feed(desk, events(cfg, walk(2, 300), {299})))
    out: list[Any] = []
    for _ in range(cfg.risk.max_adjust_rounds + 1):
        out = reply(desk, request, RECKLESS)
        commands = of(AskGpt, out)
        if not commands:
            break
        request = commands[0].request
    record = last_record(out)
    assert record.note.startswith("gpt fallback (risk_refused)")
    gpt_rounds = [r for r in record.rounds if r.proposal.controller == "gpt"]
    assert len(gpt_rounds) == cfg.risk.max_adjust_rounds + 1
    assert all(r.verdict is not None and not r.verdict.approved for r in gpt_rounds)
    fallback = record.rounds[-1].proposal
    assert "validation:ABC:flash_crash_loss" in fallback.rationale
    assert desk.strategies.get(SYM) is None  # the reckless strategy never ran


def test_too_little_history_is_a_stated_refusal_not_sent_back(tmp_path: Path) -> None:
    """No answer can fix a short history: one round, then the local engine, one call spent."""
    cfg = gate_settings(tmp_path)
    desk = TradingDesk.create(cfg, gpt=True)
    request = asked(feed(desk, events(cfg, walk(3, 40), {39})))
    out = reply(desk, request, CAREFUL)
    assert not of(AskGpt, out) and SYM not in desk.gpt.pending
    record = last_record(out)
    gpt_round, *local_rounds = record.rounds
    assert gpt_round.verdict is not None and not gpt_round.verdict.approved
    (short,) = gpt_round.verdict.failures
    assert (short.name, short.value, short.limit) == ("validation:ABC:history_bars", 40, 100)
    assert short.message == "40 bars of history, at least 100 needed (warm-up 0 bars)"
    assert all(r.proposal.controller.startswith("local") for r in local_rounds)
    alerts = [a.message for a in of(Alert, out)]
    assert any("too little history to validate on, local engine" in m for m in alerts), alerts
    assert desk.strategies.get(SYM) is None


def test_a_new_strategy_placing_nothing_yet_is_still_judged(tmp_path: Path) -> None:
    """Where a strategy runs, a new one takes over from the next bar: no orders now, but its
    round is reviewed (and here refused)."""
    cfg = gate_settings(tmp_path)
    desk = TradingDesk.create(cfg, gpt=True)
    evs = events(cfg, walk(4, 320), {299, 310})
    request = asked(feed(desk, evs[:300]))
    reply(desk, request, CAREFUL)
    assert desk.strategies.get(SYM) is not None
    request = asked(feed(desk, evs[300:311]))
    other = kit.decision(entry=ALWAYS, exit=NEVER, position_fraction=1.0, stop_loss_pct=None)
    other["strategy"]["name"] = "reckless-takeover"
    out = reply(desk, request, other)
    assert not of(Order, out)
    (refused,) = desk.gpt.pending[SYM].rounds
    assert refused.proposal.intents == []
    assert refused.verdict is not None and not refused.verdict.approved


def test_an_answer_starting_no_strategy_is_reviewed_as_before(tmp_path: Path) -> None:
    cfg = gate_settings(tmp_path)
    desk = TradingDesk.create(cfg, gpt=True)
    request = asked(feed(desk, events(cfg, walk(5, 200), {199})))
    record = last_record(reply(desk, request, kit.decision("hold")))
    assert record.status is DecisionStatus.NO_ACTION
    assert [r.verdict for r in record.rounds] == [None]


def test_the_same_bars_give_the_same_verdict_after_a_restart(tmp_path: Path) -> None:
    cfg = gate_settings(tmp_path)
    evs = events(cfg, walk(6, 300), {299})
    first = TradingDesk.create(cfg, gpt=True)
    feed(first, evs[:150])
    restarted = TradingDesk.create(cfg, gpt=True)
    restarted.restore(pickle.loads(pickle.dumps(first.state())))
    verdicts = []
    for desk, rest in ((first, evs[150:]), (restarted, evs[150:])):
        request = asked(feed(desk, rest))
        reply(desk, request, RECKLESS)
        verdicts.append(desk.gpt.pending[SYM].rounds[0].verdict)
    assert verdicts[0] == verdicts[1] and verdicts[0] is not None


@pytest.mark.parametrize(("enabled", "gpt", "controller"), [(False, True, "gpt"),
                                                            (True, False, "gpt"),
                                                            (True, True, "local")])  # fmt: skip
def test_no_window_is_kept_where_no_gpt_strategy_can_be_validated(
    tmp_path: Path, enabled: bool, gpt: bool, controller: str
) -> None:
    cfg = gate_settings(tmp_path, enabled=enabled)
    cfg = cfg.model_copy(
        update={"strategy": cfg.strategy.model_copy(update={"controller": controller})}
    )
    desk = TradingDesk.create(cfg, gpt=gpt)
    assert desk.bar_history is None and desk.reviewers == DEFAULT_REVIEWERS
    feed(desk, events(cfg, walk(7, 5), set()))
    assert desk.bar_history is None


def test_a_gpt_desk_keeps_the_window_and_the_gate(tmp_path: Path) -> None:
    desk = TradingDesk.create(gate_settings(tmp_path), gpt=True)
    assert desk.bar_history is not None
    assert any(isinstance(r, ValidationReviewer) for r in desk.reviewers)


def test_a_restore_keeps_the_gate_fed_whatever_the_snapshot_held(tmp_path: Path) -> None:
    cfg = gate_settings(tmp_path)
    desk = TradingDesk.create(cfg, gpt=True)
    state = list(desk.state())
    at = [name for name, _, _ in PERSISTED].index("bar_history")
    state[at] = None  # a snapshot taken without a window
    desk.restore(tuple(state))
    assert desk.bar_history is not None


# ------------------------------------------------------------------ the window itself
def columns(closes: list[Decimal], floats: bool) -> BarColumns:
    bars = [bar(SYM, kit.T0 + i * MIN, c, open=c - 1, volume=10) for i, c in enumerate(closes)]
    return BarColumns(
        symbol=SYM,
        start_ms=[b.start_ms for b in bars],
        end_ms=[b.end_ms for b in bars],
        open=[b.open for b in bars],
        high=[b.high for b in bars],
        low=[b.low for b in bars],
        close=[b.close for b in bars],
        volume=[b.volume for b in bars],
        trades=[b.trades for b in bars],
        vwap=[b.vwap for b in bars],
        floats=BarFloats(
            [float(b.close) for b in bars],
            [float(b.high) for b in bars],
            [float(b.low) for b in bars],
            [float(b.volume) for b in bars],
        )
        if floats
        else None,
    )


@settings(deadline=None)
@given(
    n=st.integers(0, 60),
    window=st.integers(1, 20),
    cuts=st.lists(st.integers(1, 25), min_size=1, max_size=8),
    floats=st.booleans(),
    until=st.integers(0, 70),
)
def test_the_window_is_the_same_bar_by_bar_in_blocks_and_after_a_pickle(
    n: int, window: int, cuts: list[int], floats: bool, until: int
) -> None:
    closes = walk(n, n)
    cols = columns(closes, floats)
    one = BarHistory(window, frozenset({SYM}))
    many = BarHistory(window, frozenset({SYM}))
    for i in range(n):
        one.add(cols.bar(i))
    i, k = 0, 0
    while i < n:
        step = cuts[k % len(cuts)]
        many.add_columns(cols, i, min(n, i + step))
        i, k = i + step, k + 1
    cut = kit.T0 + until * MIN
    restored = pickle.loads(pickle.dumps(many))
    a, b, c = one.window(SYM, cut), many.window(SYM, cut), restored.window(SYM, cut)
    want = [(int(e), float(x)) for e, x in zip(cols.end_ms, map(float, closes), strict=True)]
    want = [w for w in want if w[0] <= cut][-window:]
    for got in (a, b, c):
        assert list(zip(got.end_ms.tolist(), got.close.tolist(), strict=True)) == want
        assert np.array_equal(got.open, a.open) and np.array_equal(got.vwap, a.vwap)


def test_a_ring_pickles_only_the_rows_in_use() -> None:
    ring = BarRing(10_000)
    empty = len(pickle.dumps(ring))
    assert empty < 2_000
    assert pickle.loads(pickle.dumps(ring)).capacity == 10_000


def test_the_block_path_keeps_the_same_window_as_bar_by_bar(tmp_path: Path) -> None:
    cfg = gate_settings(tmp_path)
    evs = events(cfg, walk(8, 120), set())
    one, many = TradingDesk.create(cfg, gpt=True), TradingDesk.create(cfg, gpt=True)
    feed(one, evs)
    names = tuple(evs[0].features.values)
    for lo in range(0, 120, 37):
        block = BarBlock.of_events(names, evs[lo : lo + 37])
        i = 0
        while i < len(block):
            _, i = many.on_bar_block(block, i)
    assert one.bar_history is not None and many.bar_history is not None
    end = evs[-1].bar.end_ms
    a, b = one.bar_history.window(SYM, end), many.bar_history.window(SYM, end)
    for f in ("start_ms", "end_ms", "open", "high", "low", "close", "volume", "vwap"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    assert len(a) == 120


def test_the_other_symbols_windows_end_before_the_trigger_whatever_arrived_first() -> None:
    """A bar of another symbol ending with the trigger may reach the desk just before or just
    after it (live vs backtest): it is left out, so both judge the same bars."""
    history = BarHistory(10, frozenset({"ABC", "XYZ"}))
    for i in range(5):
        for sym in ("ABC", "XYZ"):
            history.add(bar(sym, kit.T0 + i * MIN, "100"))
    trigger = bar("ABC", kit.T0 + 3 * MIN, "100")
    doc = kit.decision(universe=["ABC", "XYZ"])["strategy"]
    compiled = compile_strategy(StrategySpec.model_validate(doc), {"ABC", "XYZ"})
    assert not isinstance(compiled, Rejection)
    proposed = proposed_strategy(history, compiled, None, trigger)
    assert proposed is not None
    assert (
        proposed.history["ABC"].end_ms[-1] == trigger.end_ms and len(proposed.history["ABC"]) == 4
    )
    assert proposed.history["XYZ"].end_ms[-1] < trigger.end_ms and len(proposed.history["XYZ"]) == 3
    assert proposed_strategy(None, compiled, None, trigger) is None
