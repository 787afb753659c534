"""The feedback loop's verdict (models/feedback/verdict.py): a losing strategy goes back for
review, one doing what it promised is kept."""

from __future__ import annotations

import pickle
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.feedback.verdict import FeedbackConfig, Promise, RealisedRecord, VerdictKind, judge

CFG = FeedbackConfig(min_trades=10, window_trades=30)
PROMISE = Promise(hit_rate=0.55, sharpe=0.15, max_drawdown=0.08, source="backtest r1")


def _trade_record(returns: np.ndarray, notional: int = 10_000) -> RealisedRecord:
    """Trades of the given returns on a fixed notional; equity marked after each."""
    record = RealisedRecord("s1", window=CFG.window_trades)
    equity = Decimal(100_000)
    for r in returns:
        pnl = (Decimal(notional) * Decimal(str(round(float(r), 6)))).quantize(Decimal("0.01"))
        record.close_trade(pnl, Decimal(notional))
        equity += pnl
        record.mark(equity)
    return record


def test_a_losing_strategy_is_sent_back_and_a_promised_one_kept() -> None:
    """On 200 held-out seeds: returns drawn like the promise (0.15 sigma a trade) are sent back
    at most 8 % of the time, ones that lost their edge (-0.5 sigma) kept at most 6 % (measured
    on other seeds: 4.8 % and 3.0 %, the module's docstring)."""
    sent_good = kept_bad = 0
    seeds = range(1000, 1200)
    for seed in seeds:
        rng = np.random.default_rng(seed)
        good = judge(_trade_record(rng.normal(0.0015, 0.01, 30)), PROMISE, CFG, 1)
        bad = judge(_trade_record(rng.normal(-0.005, 0.01, 30)), PROMISE, CFG, 1)
        sent_good += good.kind is VerdictKind.REVIEW
        kept_bad += bad.kind is VerdictKind.KEEP
        if bad.kind is VerdictKind.REVIEW:
            assert "Sharpe per trade" in bad.report() or "hit rate" in bad.report()
    assert sent_good <= 0.08 * len(seeds) and kept_bad <= 0.06 * len(seeds)


def test_too_few_trades_say_nothing() -> None:
    record = _trade_record(np.full(9, -0.05))
    verdict = judge(record, PROMISE, CFG, 5)
    assert verdict.kind is VerdictKind.KEEP and "9 of 10 trades" in verdict.reasons[0]


def test_a_deep_drawdown_is_a_reason_of_its_own() -> None:
    returns = np.array([0.02] * 15 + [-0.9] + [0.02] * 14)  # one trade loses 9,000 of 100,000+
    tight = PROMISE.model_copy(update={"max_drawdown": 0.03})  # ceiling: max(4.5 %, 5 %)
    verdict = judge(_trade_record(returns), tight, CFG, 1)
    assert verdict.kind is VerdictKind.REVIEW
    assert any(r.startswith("drawdown 8.7% beyond 5.0%") for r in verdict.reasons)


@given(st.lists(st.floats(-0.05, 0.05), min_size=2, max_size=60))
def test_the_figures_match_an_independent_computation(returns: list[float]) -> None:
    record = _trade_record(np.array(returns))
    kept = [round(r, 6) for r in returns][-CFG.window_trades :]
    pnls = [float((Decimal(10_000) * Decimal(str(r))).quantize(Decimal("0.01"))) for r in kept]
    assert record.hit_rate() == pytest.approx(sum(p > 0 for p in pnls) / len(pnls))
    rets = np.array(pnls) / 10_000
    std = rets.std(ddof=1)
    if std > 0 and np.isfinite(std):
        assert record.sharpe() == pytest.approx(rets.mean() / std, rel=1e-6, abs=1e-9)
    equity = 100_000 + np.cumsum(
        [
            float((Decimal(10_000) * Decimal(str(round(r, 6)))).quantize(Decimal("0.01")))
            for r in returns
        ]
    )
    peak = np.maximum.accumulate(equity)
    assert record.drawdown == pytest.approx(max(0.0, float((1 - equity / peak).max())), abs=1e-12)


def test_the_record_pickles_and_summarises() -> None:
    record = _trade_record(np.array([0.01, -0.02, 0.03]))
    again = pickle.loads(pickle.dumps(record))
    assert again == record
    assert again.summary().startswith("3 trades, realised P&L 200.00, hit rate 67%")
