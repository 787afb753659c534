"""`stratflow validate [STRATEGY_FILE|RUN_ID]`: look-ahead and fragility checks, a table and a page.

Without an argument it validates the configured setup (`--config`): every strategy file of it
on the given data (default: the datasets they trade), and records the outcome as the setup's
`validation` step in the promotion ledger (`api.promotion_steps.record_validation`: it passes
when no check fails; warnings are allowed and listed). Only this form records: a strategy file
or a run is checked, never promoted, so what is recorded is always the configured setup.

For a strategy file the bars come as a backtest's do (`api.backtest_cmd`: shipped datasets or
CSV/Parquet files, cut to --from/--to, through the flow's bar builder); for the id of a finished
backtest run they are the run's own bars and strategies, read back from its ClickHouse store
(the run's directory under STRATFLOW_RUNS, found by its `backtest.json`, or the server
CLICKHOUSE_URL names). Each strategy is checked on each symbol of its universe that has bars
(`models.validation.fragility.run_checks`); money and features settings come from the config.

A mistake (a bad file, an unknown run id, a date range without data) is one `error:` line and
exit code 2; a check that fails gives exit code 3 after the table and the report, so a script
can gate on it.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from api.backtest_cmd import ConfigOpt

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from models.config.settings import Settings
    from models.strategy.spec import StrategySpec
    from models.validation.fragility import CheckOptions, Fragility
    from models.validation.verdicts import CheckResult, Figure
    from models.vectorized.bars import BarArrays

RUN_ID: Final = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
FAILED_EXIT: Final = 3
REPORT_FILE: Final = "validate.html"


@dataclass(frozen=True)
class Target:
    """What is validated: its label, the strategies, their bars per symbol, where the page
    goes by default."""

    label: str
    specs: list[StrategySpec]
    bars: dict[str, BarArrays]
    report_dir: Path | None  # None: a new directory under the runs root


def _file_target(
    settings: Settings,
    path: Path,
    sources: list[str] | None,
    symbol: str | None,
    interval: str | None,
    start_ms: int | None,
    end_ms: int | None,
    span: str,
) -> tuple[Target, Settings]:
    from api.backtest_cmd import with_run_settings
    from api.cli import UserError
    from connectors.files.strategy_file import read_strategy_files
    from models.strategy.user_file import StrategyFileError

    try:
        specs = read_strategy_files([path])
    except StrategyFileError as err:
        raise UserError("; ".join(str(err).splitlines())) from None
    settings = with_run_settings(settings, specs, None, None, None)
    return _target_bars(
        settings, specs, str(path), sources, symbol, interval, start_ms, end_ms, span
    )


def _target_bars(
    settings: Settings,
    specs: list[StrategySpec],
    label: str,
    sources: list[str] | None,
    symbol: str | None,
    interval: str | None,
    start_ms: int | None,
    end_ms: int | None,
    span: str,
) -> tuple[Target, Settings]:
    from api.backtest_cmd import default_sources, open_data
    from api.backtest_sweep import flow_bars
    from api.cli import UserError
    from connectors.files.replay import TimeSlice

    wanted = sorted({s for spec in specs for s in spec.universe})
    with contextlib.ExitStack() as stack:
        data = open_data(
            settings, list(sources or default_sources(settings)), symbol, interval, stack
        )
        cut = TimeSlice(data, start_ms, end_ms)
        if cut.count == 0:
            raise UserError(f"no data {span} in {', '.join(cut.symbols) or 'the data'}")
        bars = {s: flow_bars(settings, s, cut.messages()) for s in wanted if s in cut.symbols}
    if not any(len(b) for b in bars.values()):
        raise UserError(
            f"no bars {span} for {', '.join(wanted)} (the data has {', '.join(cut.symbols)})"
        )
    return Target(label, specs, bars, None), settings


def find_run_dir(root: Path, run_id: str) -> Path | None:
    """The directory under `root` of the finished backtest run `run_id` (its `backtest.json`
    names it), or None."""
    from api.backtest_output import RESULT_FILE

    if not root.is_dir():
        return None
    for result in sorted(root.glob(f"*/{RESULT_FILE}")):
        try:
            doc = json.loads(result.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("run_id") == run_id:
            return result.parent
    return None


def _run_target(
    settings: Settings,
    run_id: str,
    start_ms: int | None,
    end_ms: int | None,
    span: str,
    say: Callable[[str], None],
) -> Target:
    from rich.markup import escape

    from api.backtest import with_backtest_dirs
    from api.cli import UserError
    from api.demo import default_run_root
    from connectors.store.clickhouse import Store

    run_dir: Path | None = None
    if not settings.clickhouse.url:
        root = default_run_root()
        run_dir = find_run_dir(root, run_id)
        if run_dir is None:
            raise UserError(
                f"no finished backtest run {run_id} under {root} (set STRATFLOW_RUNS to the runs"
                " directory, or CLICKHOUSE_URL to the server that holds it)"
            )
        settings = with_backtest_dirs(settings, run_dir)
    unreadable: list[str] = []
    with Store.open(settings.clickhouse) as store:
        specs, bars = read_run_for_checks(store, run_id, start_ms, end_ms, unreadable)
    for text in unreadable:
        say(escape(f"run {run_id}: a stored strategy no longer parses, not checked: {text}"))
    if not specs and not bars:
        raise UserError(f"unknown run id {run_id}: the store holds no rows of it")
    if not specs:
        raise UserError(f"run {run_id} ran no strategy (only the local engine): nothing to check")
    if not any(len(b) for b in bars.values()):
        raise UserError(f"run {run_id} has no bars {span}")
    return Target(f"run {run_id}", specs, bars, run_dir)


def read_run_for_checks(
    store: Any,
    run_id: str,
    start_ms: int | None,
    end_ms: int | None,
    unreadable: list[str] | None = None,
) -> tuple[list[StrategySpec], dict[str, BarArrays]]:
    """A run's distinct strategies (strategy files' and GPT's, first seen first) and its bars
    per symbol (those starting in [start_ms, end_ms)), from the store; a stored strategy the
    schema now refuses goes to `unreadable` (the start of its JSON) instead."""
    if unreadable is None:
        unreadable = []
    import numpy as np
    from pydantic import ValidationError

    from models.strategy.spec import StrategySpec
    from models.vectorized.bars import BarArrays

    specs: dict[str, StrategySpec] = {}
    for row in store.query(
        "SELECT spec, min(started_ms) AS first FROM strategies FINAL "
        "WHERE run_id = {run:String} GROUP BY spec ORDER BY first, spec",
        {"run": run_id},
    ):
        try:
            spec = StrategySpec.model_validate_json(str(row["spec"]))
        except ValidationError:  # a stored strategy today's schema refuses: not checkable
            unreadable.append(str(row["spec"])[:80])
            continue
        specs.setdefault(spec.fingerprint(), spec)
    cols = store.query_columns(
        "SELECT symbol, start_ms, end_ms, open, high, low, close, volume, vwap FROM bars FINAL "
        "WHERE run_id = {run:String} AND start_ms >= {lo:Int64} AND start_ms < {hi:Int64} "
        "ORDER BY symbol, start_ms",
        {"run": run_id, "lo": start_ms or -(2**62), "hi": end_ms or 2**62},
    )
    bars: dict[str, BarArrays] = {}
    symbols = [str(s) for s in cols["symbol"]]
    for sym in dict.fromkeys(symbols):
        lo, hi = symbols.index(sym), len(symbols) - symbols[::-1].index(sym)

        def col(name: str, a: int = lo, b: int = hi) -> list[float]:
            return [float(v) for v in cols[name][a:b]]  # the desk's float() of each Decimal

        bars[sym] = BarArrays(
            symbol=sym,
            start_ms=np.array(cols["start_ms"][lo:hi], dtype=np.int64),
            end_ms=np.array(cols["end_ms"][lo:hi], dtype=np.int64),
            open=np.array(col("open")),
            high=np.array(col("high")),
            low=np.array(col("low")),
            close=np.array(col("close")),
            volume=np.array(col("volume")),
            vwap=np.array(col("vwap")),
        )
    return list(specs.values()), bars


def check_all(
    settings: Settings,
    target: Target,
    options: CheckOptions,
    *,
    progress: bool,
    say: Callable[[str], None],
) -> list[Fragility]:
    """Every strategy on every symbol of its universe that has bars, with a progress bar."""
    from rich.markup import escape
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from api.cli import err_console
    from models.validation.fragility import STEPS, run_checks
    from models.vectorized.evaluate import Costs

    pairs = []
    for spec in target.specs:
        symbols = [s for s in spec.universe if len(target.bars.get(s, ())) > 0]
        missing = [s for s in spec.universe if s not in symbols]
        if missing:
            rest = "; checked on " + ", ".join(symbols) if symbols else "; not checked"
            say(escape(f"{spec.name}: no bars for {', '.join(missing)}{rest}"))
        pairs += [(spec, s) for s in symbols]
    out: list[Fragility] = []
    steps = len(STEPS)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=not progress,
        transient=True,
    )
    with bar:
        task = bar.add_task("validate", total=len(pairs) * steps)
        for k, (spec, sym) in enumerate(pairs):
            base = k * steps

            def on_step(name: str, base: int = base, label: str = f"{spec.name} {sym}") -> None:
                bar.update(
                    task, completed=base + STEPS.index(name), description=escape(f"{label}: {name}")
                )

            def on_neighbour(done: int, total: int, base: int = base) -> None:
                bar.update(task, completed=base + steps - 1 + done / max(total, 1))

            out.append(
                run_checks(
                    spec,
                    target.bars[sym],
                    Costs.from_settings(settings, sym),
                    settings.features,
                    settings.execution,
                    options,
                    on_step=on_step,
                    on_neighbour=on_neighbour,
                )
            )
            bar.update(task, completed=base + steps)
    return out


def _num(x: float | int | None) -> str:
    if x is None:
        return "-"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:.4g}"


def key_numbers(result: CheckResult) -> str:
    """The judged figures (value and limit), else the first two figures: one table cell."""
    judged = [f for f in result.figures if f.limit is not None]
    shown = judged or list(result.figures[:2])
    return "; ".join(
        f"{f.name} {_num(f.value)}" + ("" if f.limit is None else f" (limit {_num(f.limit)})")
        for f in shown
    )


def _figure_doc(f: Figure) -> dict[str, Any]:
    return {
        "name": f.name,
        "value": f.value,
        "limit": f.limit,
        "passed": f.passed,
        "message": f.message,
    }


def result_doc(target: Target, checked: Sequence[Fragility], report: Path) -> dict[str, Any]:
    from models.validation.verdicts import worst

    return {
        "target": target.label,
        "outcome": str(worst(c.outcome for c in checked)),
        "report": str(report.resolve()),
        "checks": [
            {
                "strategy": c.strategy,
                "symbol": c.symbol,
                "bars": c.bars,
                "check": r.check,
                "outcome": str(r.outcome),
                "summary": r.summary,
                "figures": [_figure_doc(f) for f in r.figures],
            }
            for c in checked
            for r in c.results
        ],
    }


WIDE: Final = 120
"""Columns from which the table also shows the judged numbers (they are in the report and in
`--json` whatever the width); on a narrow terminal they made every row a dozen lines."""


def print_table(checked: Sequence[Fragility]) -> None:
    """One table per strategy and symbol: each check's outcome and its one-line summary."""
    from rich.table import Table
    from rich.text import Text

    from api.cli import console

    colour = {"pass": "green", "warn": "yellow", "fail": "bold red"}
    wide = console.width >= WIDE
    for c in checked:
        table = Table(title=Text(f"{c.strategy} · {c.symbol} · {c.bars:,} bars"))
        columns = (
            ("check", "outcome", "numbers", "summary") if wide else ("check", "outcome", "summary")
        )
        for name in columns:
            table.add_column(name, overflow="fold")
        for r in c.results:
            cells: list[str | Text] = [r.check, Text(str(r.outcome), style=colour[str(r.outcome)])]
            if wide:
                cells.append(Text(key_numbers(r)))
            table.add_row(*cells, Text(r.summary))
        console.print(table)


def validate(
    target: Annotated[
        str | None,
        typer.Argument(
            help="A strategy file (YAML/JSON) or the run id of a finished backtest; without it,"
            " the configured setup's strategy files, recorded as its promotion step",
            metavar="[STRATEGY_FILE|RUN_ID]",
            show_default=False,
        ),
    ] = None,
    data: Annotated[
        list[str] | None,
        typer.Option(
            "--data",
            "-d",
            help="CSV/Parquet files or shipped datasets for a strategy file (repeatable);"
            " default: the datasets the strategies trade",
        ),
    ] = None,
    symbol: Annotated[
        str | None, typer.Option(help="Symbol of a file without a symbol column")
    ] = None,
    interval: Annotated[
        str | None, typer.Option(help="Bar length of a bar file (default: inferred)")
    ] = None,
    start: Annotated[
        str | None, typer.Option("--from", "--start", help="First day (UTC), e.g. 2010-01-01")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", "--end", help="Day after the last (UTC), exclusive")
    ] = None,
    warmup: Annotated[
        int | None,
        typer.Option(
            help="Bars of history a strategy has before it trades (recursive check; default: until"
            " every feature it reads has a value)"
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            help="Where to write the HTML report (default: validate.html in the run's directory,"
            " or a new one under STRATFLOW_RUNS)"
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON (for scripts)")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Look-ahead and fragility checks of a strategy file, a finished backtest run, or the
    configured setup (no argument: its `validation` step is recorded for `stratflow approve`).

    Checks: look-ahead (features and signals on cut histories equal the full run's), recursive
    (indicator values' dependence on the warm-up), one-bar lag (the edge with execution one bar
    later) and parameter perturbation (neighbouring periods and thresholds). Prints a table,
    writes an offline HTML report and prints its path. Costs and feature settings come from
    the config.

    Exit code: 0 when no check fails (warnings allowed), 3 when a check fails, 2 on a mistake
    (bad file, unknown run id, no data in the date range).
    """
    from api.backtest_cmd import parse_day
    from api.backtest_output import emit
    from api.cli import UserError, console, err_console, guarded, settings_from
    from api.demo import default_run_root, new_run_dir
    from api.validate_report import write_validate_report
    from models.validation.fragility import CheckOptions
    from models.validation.verdicts import Outcome, worst

    def go() -> int:
        if warmup is not None and warmup < 1:
            raise UserError(f"--warmup must be at least 1, got {warmup}")
        base = settings_from(config)
        start_ms = parse_day(start, "--from") if start else None
        end_ms = parse_day(end, "--to") if end else None
        if start_ms is not None and end_ms is not None and end_ms <= start_ms:
            raise UserError(f"--to {end} is not after --from {start}")
        span = f"between {start or 'the start'} and {end or 'the end'}"
        say = err_console.print if as_json else console.print
        if target is None:
            return _setup(base, start_ms, end_ms, span, say)
        path = Path(target)
        if path.exists():
            found, settings = _file_target(
                base, path, data, symbol, interval, start_ms, end_ms, span
            )
            mine = sorted(s.fingerprint() for s in base.strategies)
            if mine and sorted(s.fingerprint() for s in found.specs) == mine:
                say("promotion: not recorded; the setup's step: stratflow validate --config CFG")
        elif RUN_ID.match(target.strip()):
            if data or symbol or interval:
                raise UserError(
                    "a run is checked on its own bars: leave out --data/--symbol/--interval"
                )
            settings = base
            found = _run_target(base, target.strip(), start_ms, end_ms, span, say)
        else:
            raise UserError(
                f"no such strategy file or run id: {target} (a run id looks like"
                " 20261207T101500Z-a1b2c3)"
            )
        checked = check_all(
            settings, found, CheckOptions(warmup=warmup), progress=not as_json, say=say
        )
        if report is not None:
            page = report
        else:
            page = (found.report_dir or new_run_dir(default_run_root())) / REPORT_FILE
        times = [found.bars[c.symbol].start_ms.tolist() for c in checked]
        write_validate_report(found.label, checked, page, times)
        outcome = worst(c.outcome for c in checked)
        if as_json:
            emit(json.dumps(result_doc(found, checked, page), default=str))
        else:
            print_table(checked)
            failed = sum(r.outcome is Outcome.FAIL for c in checked for r in c.results)
            say(f"{outcome}: {failed} check(s) failed")
            say(f"report: {page}")
        return FAILED_EXIT if outcome is Outcome.FAIL else 0

    def _setup(
        settings: Settings,
        start_ms: int | None,
        end_ms: int | None,
        span: str,
        say: Callable[[str], None],
    ) -> int:
        from rich.markup import escape

        from api.validate_setup import validate_setup

        found, checked, record = validate_setup(
            settings,
            data,
            symbol,
            interval,
            start_ms,
            end_ms,
            span,
            CheckOptions(warmup=warmup),
            progress=not as_json,
            say=say,
        )
        step = {
            "setup": record.setup_hash,
            "step": record.step.value,
            "outcome": record.outcome.value,
            "figures": dict(record.figures),
            "note": record.note,
        }
        page: Path | None = None
        if found is not None:
            page = report or new_run_dir(default_run_root()) / REPORT_FILE
            times = [found.bars[c.symbol].start_ms.tolist() for c in checked]
            write_validate_report(found.label, checked, page, times)
        if as_json:
            doc = result_doc(found, checked, page) if found is not None and page else {}
            emit(json.dumps({**doc, "promotion": step}, default=str))
        else:
            if checked:
                print_table(checked)
            if page is not None:
                say(f"report: {page}")
            say(
                escape(
                    f"promotion: setup {record.setup_hash} validation {record.outcome.value}"
                    f" ({record.note})"
                )
            )
        return FAILED_EXIT if record.outcome is Outcome.FAIL else 0

    code = guarded(go)
    if code:
        raise typer.Exit(code)
