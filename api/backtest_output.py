"""What a finished backtest shows: statistics from the run's rows, the report, the terminal table.

The run's fills are paired into round trips, each tagged with who placed it: the local engine,
a strategy file, or GPT (a proposal of GPT itself, or of a strategy GPT wrote); the equity
curve is rebuilt from the bars and fills with the desk's accounting
(`models.performance.equity`). The run is finished when `backtest.json` is written beside the
report, last: a directory without it holds no result.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from api.backtest import BacktestRun, RunRows, run_backtest
from api.backtest_report import BacktestReport, Breakdown, GptCalls, OhlcBar, write_backtest_report
from connectors.files.market_file import MergedStreams
from models.config.settings import Settings, result_settings
from models.performance.equity import BarClose, equity_curve
from models.performance.stats import compute_statistics, render_breakdown, render_table
from models.performance.trades import TaggedFill, pair_fills
from models.performance.types import Performance, RoundTrip
from models.validation.cutoff import RunLabel, label_decision, label_run

RESULT_FILE = "backtest.json"


def emit(text: str) -> None:
    """A result line on stdout, through the CLI's console (tests capture it; no markup)."""
    from api.cli import console

    console.out(text, highlight=False)


@dataclass
class BacktestOutcome:
    run: BacktestRun
    performance: Performance
    trades: list[RoundTrip]
    report: Path
    result: Path


def who_placed(rows: RunRows, decision_id: str) -> tuple[str, str]:
    """(controller, strategy id) of a decision's orders: "local", "strategy file" or "gpt"."""
    controller, strategy = rows.proposers.get(decision_id, ("local", ""))
    if controller == "strategy":
        controller = "strategy file" if strategy in rows.file_strategies else "gpt"
    return controller or "local", strategy


def bar_closes(rows: RunRows) -> list[BarClose]:
    return [
        BarClose(sym, start, end, close)
        for sym, bars in rows.bars.items()
        for start, end, _, _, _, close in bars
    ]


def trading_start_ms(settings: Settings, rows: RunRows) -> int | None:
    """The first bar any configured strategy could trade: where each has every feature it
    reads (its warm-up, as backtesting.py starts a strategy after its indicators'); None
    without strategy files (the first bar)."""
    from models.signals.features import default_keys
    from models.signals.indicators import parse_feature, warmup_bars

    defaults = default_keys(settings.features)
    starts: list[int] = []
    for spec in settings.strategies:
        need = 0
        for name in spec.operand_names() - {"close"}:
            key = defaults.get(name) or parse_feature(name)
            if not isinstance(key, str):
                need = max(need, warmup_bars(key))
        for sym in spec.universe:
            bars = rows.bars.get(sym, [])
            if len(bars) > need:
                starts.append(bars[need][0])
    return min(starts) if starts else None


Curve = list[tuple[int, Decimal]]


def analyse(settings: Settings, run: BacktestRun) -> tuple[Performance, list[RoundTrip], Curve]:
    """The run's statistics, its closed round trips and its equity curve (rebuilt once here;
    the report draws the same curve)."""
    rows = run.rows
    tagged = [
        TaggedFill(f, *who_placed(rows, f.decision_id), rows.reasons.get(f.client_order_id, ""))
        for f in rows.fills
    ]
    pairing = pair_fills(tagged)
    closes = bar_closes(rows)
    cash = settings.execution.initial_cash
    equity = equity_curve(closes, rows.fills, cash)
    if not equity:
        raise ValueError("no bar reached the desk: every message was refused (see dead_letters)")
    performance = compute_statistics(
        equity,
        pairing.closed,
        {sym: [(start, c) for start, _, _, _, _, c in bars] for sym, bars in rows.bars.items()},
        sum((f.fee for f in rows.fills), Decimal(0)),
        cash,
        open_trades=pairing.open,
        trading_start_ms=trading_start_ms(settings, rows),
    )
    return performance, list(pairing.closed), equity


def _breakdowns(perf: Performance) -> list[Breakdown]:
    groups = (
        ("by symbol", perf.by_symbol),
        ("by strategy", perf.by_strategy),
        ("by controller (local engine, strategy files, GPT)", perf.by_controller),
        ("by exit", perf.by_exit_kind),
    )
    return [Breakdown(title, [g.statistics for g in rows]) for title, rows in groups if rows]


def gpt_label(settings: Settings, rows: RunRows) -> RunLabel:
    """The run's GPT decisions labelled against the model's knowledge cutoff (part 4)."""
    anonymised = settings.gpt.anonymize
    return label_run(
        (label_decision(model or settings.gpt.model, ms, anonymised=anonymised), ms)
        for model, ms in rows.gpt_answers
    )


def build_report(
    settings: Settings,
    run: BacktestRun,
    perf: Performance,
    trades: list[RoundTrip],
    equity: Curve,
    label: str,
) -> BacktestReport:
    rows = run.rows
    gpt_run = gpt_label(settings, rows)
    return BacktestReport(
        title=f"backtest {label}",
        run_id=run.run_id,
        dataset=label,
        initial_cash=settings.execution.initial_cash,
        equity=equity,
        bars={
            sym: [OhlcBar(start, o, h, lo, c) for start, _, o, h, lo, c in bars]
            for sym, bars in rows.bars.items()
        },
        trades=trades,
        statistics=perf.statistics,
        breakdowns=_breakdowns(perf),
        settings=result_settings(settings),
        gpt_calls=[
            GptCalls(
                outcome=str(r["outcome"]),
                calls=int(r["calls"]),
                cost_usd=Decimal(str(r["cost_usd"])),
                tokens=int(r["tokens"]),
                mean_latency_ms=float(r["mean_ms"]),
                max_latency_ms=float(r["max_ms"]),
            )
            for r in rows.gpt_calls
        ],
        currency=settings.execution.currency,
        in_sample=gpt_run.banner(),
        in_sample_flagged=gpt_run.flagged > 0,
    )


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    return value


def result_doc(outcome: BacktestOutcome) -> dict[str, Any]:
    perf = outcome.performance
    return {
        "run_id": outcome.run.run_id,
        "run_dir": str(outcome.run.run_dir.resolve()),
        "report": str(outcome.report.resolve()),
        "statistics": {s.key: _json_value(s.value) for s in perf.statistics},
        "by_symbol": {
            g.group: {s.key: _json_value(s.value) for s in g.statistics} for g in perf.by_symbol
        },
        "by_strategy": {
            g.group: {s.key: _json_value(s.value) for s in g.statistics} for g in perf.by_strategy
        },
        "by_controller": {
            g.group: {s.key: _json_value(s.value) for s in g.statistics} for g in perf.by_controller
        },
        "trades": len(outcome.trades),
        "messages": outcome.run.published,
        "flow_seconds": round(outcome.run.flow_seconds, 3),
    }


def finish(
    settings: Settings,
    data: MergedStreams,
    run_dir: Path,
    *,
    as_json: bool,
    say: Callable[[str], None],
    label: str | None = None,
    quiet: bool = False,
    processes: int = 1,
) -> BacktestOutcome:
    """Run, analyse, write the report and the result file (last), print the outcome (not
    when `quiet`: the caller says what it needs). `processes`: the flow's (`run_backtest`)."""
    run = run_backtest(settings, data, run_dir, say=say, processes=processes)
    perf, trades, equity = analyse(settings, run)
    name = label or ", ".join(sorted(run.rows.bars))
    report = write_backtest_report(
        [build_report(settings, run, perf, trades, equity, name)], run_dir / "report.html"
    )
    outcome = BacktestOutcome(run, perf, trades, report, run_dir / RESULT_FILE)
    doc = result_doc(outcome)
    gpt_run = gpt_label(settings, run.rows)
    if gpt_run.decisions:  # only a run with GPT decisions has a label
        doc["in_sample"] = {
            "status": str(gpt_run.status),
            "decisions": gpt_run.decisions,
            "in_sample": gpt_run.in_sample,
            "possibly_in_sample": gpt_run.possibly_in_sample,
            "anonymised": gpt_run.anonymised,
            "banner": gpt_run.banner(),
        }
    outcome.result.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    if quiet:
        pass
    elif as_json:
        emit(json.dumps(doc, default=str))
    else:
        say(f"run {run.run_id}: {run.published:,} messages, {run.flow_seconds:.1f}s in the flow")
        say(render_table(perf.statistics))
        for title, groups in (("symbol", perf.by_symbol), ("controller", perf.by_controller)):
            if len(groups) > 0:
                say(render_breakdown(title, groups))
        if gpt_run.flagged:
            say(gpt_run.banner())
        say(f"report: {report}")
    return outcome
