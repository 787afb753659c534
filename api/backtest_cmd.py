"""`stratflow backtest`: the command line of `api.backtest` (arguments, checks, output).

Every mistake a user can make before the run starts is one `error:` line naming what is wrong:
a strategy file (the field and the reason, or the YAML position), a data file or dataset, a
symbol the config does not have, a date range with no data, a bad amount.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from collections.abc import Callable

    from api.sweep_validation import WalkForwardOptions
    from connectors.files.market_file import MergedStreams
    from models.config.settings import Settings
    from models.vectorized.sweep import Grid

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML config (default: ./stratflow.yaml, else the built-in one)"
    ),
]


def parse_day(text: str, option: str) -> int:
    """Epoch ms of a UTC date or date-time (`2010-01-31`, `2010-01-31T12:00`)."""
    from api.cli import UserError

    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UserError(
            f"{option} {text!r} is not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM, UTC)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def with_run_settings(
    settings: Settings,
    specs: list[Any],
    cash: float | None,
    fee_bps: float | None,
    slippage_bps: float | None,
) -> Settings:
    """The configuration with this run's strategies and money settings, validated as a whole
    (so a bad amount or strategy is reported like a bad config value)."""
    from decimal import Decimal

    from api.cli import UserError
    from models.config.settings import ConfigError, build_settings

    doc = settings.model_dump(mode="json")
    execution = doc["execution"]
    for key, value in (
        ("initial_cash", cash),
        ("fee_bps", fee_bps),
        ("slippage_bps", slippage_bps),
    ):
        if value is not None:
            execution[key] = str(Decimal(repr(value)))
    if specs:  # --strategy files replace the config's strategies; without them, they run
        doc["strategies"] = [s.model_dump(mode="json") for s in specs]
    try:
        return build_settings(doc, {})
    except ConfigError as err:
        option = {
            "execution.initial_cash": "--cash",
            "execution.fee_bps": "--fee-bps",
            "execution.slippage_bps": "--slippage-bps",
        }
        text = str(err)
        for key, opt in option.items():
            text = text.replace(key, opt)
        raise UserError(text) from None


def open_data(
    settings: Settings,
    sources: list[str],
    symbol: str | None,
    interval: str | None,
    stack: contextlib.ExitStack,
) -> MergedStreams:
    """The data files (or shipped datasets) as one stream, checked against the config."""
    from api.cli import UserError
    from api.replay_cmd import _replay_source
    from connectors.files.market_file import MergedStreams, open_market_file

    if symbol is not None and len(sources) > 1:
        raise UserError("--symbol names the symbol of one file; give several files without it")
    streams = []
    for source in sources:
        path, sym, span = _replay_source(source, symbol, interval)
        stream = stack.enter_context(open_market_file(path, symbol=sym, interval=span))
        if not stream.count:
            raise UserError(f"{path}: no valid rows ({stream.problem_count} rejected)")
        streams.append(stream)
    merged = MergedStreams(streams)
    unknown = sorted(set(merged.symbols) - set(settings.symbols))
    if unknown:
        raise UserError(
            f"symbol(s) {', '.join(unknown)} of the data not in the config's symbols"
            f" ({', '.join(settings.symbols)}); add them to `symbols:` or pass --symbol"
        )
    return merged


def topic_data(
    settings: Settings,
    topic: str,
    sources: list[str] | None,
    start_ms: int | None,
    end_ms: int | None,
    say: Callable[[str], None],
) -> MergedStreams:
    """A range of a market topic on the configured broker (`KAFKA_BOOTSTRAP`)."""
    from api.cli import UserError, _check_broker
    from connectors.kafka.io import topic_partitions
    from connectors.kafka.topic_range import market_range

    if sources:
        raise UserError("--from-topic replaces the data arguments: give one or the other")
    bootstrap = settings.kafka.bootstrap
    if not bootstrap:
        raise UserError("--from-topic reads a broker's topic: set KAFKA_BOOTSTRAP")
    _check_broker(bootstrap, "KAFKA_BOOTSTRAP")
    if not topic_partitions(bootstrap, topic):
        raise UserError(f"no topic {topic!r} at {bootstrap}")
    found = market_range(bootstrap, topic, settings.symbols, start_ms, end_ms)
    say(
        f"{topic}: {found.records:,} records, {found.data.count:,} in range"
        f" ({found.outside:,} outside, {found.refused:,} not valid market messages of ours)"
    )
    return found.data


def read_grid(path: Path) -> Grid:
    from api.cli import UserError
    from connectors.files.grid_file import read_grid_file
    from models.vectorized.sweep import GridError

    try:
        return read_grid_file(path)
    except GridError as err:
        raise UserError("; ".join(str(err).splitlines())) from None


def sweep_command(
    settings: Settings,
    grid: Grid,
    data: MergedStreams,
    rank_by: str,
    top: int,
    confirm: int,
    as_json: bool,
    say: Callable[[str], None],
    walk: WalkForwardOptions | None = None,
    blocks: int | None = None,
) -> None:
    from api.backtest_sweep import sweep_and_confirm
    from api.cli import UserError
    from api.demo import default_run_root, new_run_dir
    from models.validation.walkforward import WalkForwardError
    from models.vectorized.sweep import GridError

    try:
        sweep_and_confirm(
            settings,
            grid,
            data,
            lambda: new_run_dir(default_run_root()),
            rank_by=rank_by,
            top=top,
            confirm=confirm,
            as_json=as_json,
            say=say,
            walk=walk,
            blocks=blocks,
        )
    except (GridError, WalkForwardError) as err:
        raise UserError("; ".join(str(err).splitlines())) from None


def walk_options(
    mode: str | None,
    is_bars: int | None,
    oos_bars: int | None,
    step_bars: int | None,
    swept: bool,
) -> WalkForwardOptions | None:
    """The walk-forward options as given, or one line saying what is wrong with them."""
    from api.cli import UserError
    from api.sweep_validation import WalkForwardOptions

    lengths = {"--is-bars": is_bars, "--oos-bars": oos_bars, "--step-bars": step_bars}
    if mode is None:
        given = [name for name, value in lengths.items() if value is not None]
        if given:
            raise UserError(f"{', '.join(given)} belong(s) to --walk-forward rolling|anchored")
        return None
    if not swept:
        raise UserError("--walk-forward walks a grid forward: give it with --sweep GRID")
    if mode not in ("rolling", "anchored"):
        raise UserError(f"--walk-forward: {mode!r}; one of rolling, anchored")
    if is_bars is None or oos_bars is None:
        raise UserError("--walk-forward needs --is-bars N and --oos-bars N (bars of the sweep)")
    if is_bars < 2:
        raise UserError(f"--is-bars must be at least 2, got {is_bars}")
    if oos_bars < 1:
        raise UserError(f"--oos-bars must be at least 1, got {oos_bars}")
    if step_bars is not None and step_bars < oos_bars:
        raise UserError(
            f"--step-bars {step_bars} < --oos-bars {oos_bars}: out-of-sample bars would repeat"
        )
    return WalkForwardOptions(
        "anchored" if mode == "anchored" else "rolling", is_bars, oos_bars, step_bars
    )


def default_sources(settings: Settings, grid: Grid | None = None) -> list[str]:
    """Without data arguments: the shipped datasets named by the strategies' universes."""
    from api.cli import UserError
    from connectors.files.datasets import list_datasets

    wanted = sorted({s for spec in settings.strategies for s in spec.universe})
    if grid is not None:
        universe = grid.strategy.get("universe")
        wanted = sorted(str(s) for s in universe) if isinstance(universe, list) else []
    shipped = [s for s in wanted if s in list_datasets()]
    if not wanted:
        raise UserError("give the data (files or datasets: " + ", ".join(list_datasets()) + ")")
    if len(shipped) < len(wanted):
        missing = ", ".join(s for s in wanted if s not in shipped)
        raise UserError(f"no data given for {missing}: name the files or datasets to replay")
    return shipped


def backtest(
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            help="CSV/Parquet files or shipped datasets (GOOG, EURUSD, BTCUSD); default: the"
            " datasets the strategies trade",
            show_default=False,
        ),
    ] = None,
    strategy: Annotated[
        list[Path] | None,
        typer.Option(
            "--strategy",
            "-s",
            help="Strategy file (YAML/JSON, GPT's strategy language); repeatable",
        ),
    ] = None,
    symbol: Annotated[
        str | None, typer.Option(help="Symbol of a file without a symbol column")
    ] = None,
    interval: Annotated[
        str | None, typer.Option(help="Bar length of a bar file (default: inferred)")
    ] = None,
    start: Annotated[str | None, typer.Option(help="First day (UTC), e.g. 2010-01-01")] = None,
    end: Annotated[str | None, typer.Option(help="Day after the last (UTC), exclusive")] = None,
    cash: Annotated[
        float | None, typer.Option(help="Initial cash (execution.initial_cash)")
    ] = None,
    fee_bps: Annotated[
        float | None, typer.Option(help="Fee per fill in basis points (10 = 0.1%)")
    ] = None,
    slippage_bps: Annotated[
        float | None, typer.Option(help="Slippage per fill in basis points")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON (for scripts)")
    ] = False,
    from_topic: Annotated[
        str | None,
        typer.Option(
            help="Replay this market topic of KAFKA_BOOTSTRAP's broker (cut to --start/--end)"
            " instead of files"
        ),
    ] = None,
    sweep: Annotated[
        Path | None,
        typer.Option(
            help="Parameter grid (YAML/JSON: api/grids/) ranked by the vectorised evaluator"
        ),
    ] = None,
    rank_by: Annotated[
        str, typer.Option(help="Statistic the sweep ranks by (a --json statistics key)")
    ] = "sharpe_ratio",
    top: Annotated[int, typer.Option(help="Sweep rows to show")] = 5,
    confirm: Annotated[
        int, typer.Option(help="Best sweep rows to confirm through the full flow")
    ] = 3,
    walk_forward: Annotated[
        str | None,
        typer.Option(
            "--walk-forward",
            metavar="rolling|anchored",
            help="Also walk the grid forward: choose on each in-sample window, trade the next",
        ),
    ] = None,
    is_bars: Annotated[
        int | None, typer.Option(help="Walk-forward in-sample window, in bars")
    ] = None,
    oos_bars: Annotated[
        int | None, typer.Option(help="Walk-forward out-of-sample window, in bars")
    ] = None,
    step_bars: Annotated[
        int | None,
        typer.Option(help="Bars between walk-forward windows (default: --oos-bars)"),
    ] = None,
    pbo_blocks: Annotated[
        int | None,
        typer.Option(help="CSCV blocks for the PBO (even, 2..20; default: up to 16)"),
    ] = None,
    processes: Annotated[
        int | None,
        typer.Option(
            help="Run the flow as this many processes (ingest beside the desk); "
            "default: what pays on this machine (dataflows.cluster.default_processes)"
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Backtest strategies on historical data through the live flow; statistics and a report."""
    from api.backtest_output import finish
    from api.cli import UserError, console, err_console, guarded, settings_from
    from api.demo import default_run_root, new_run_dir
    from api.promotion_steps import record_backtest
    from connectors.files.replay import TimeSlice
    from connectors.files.strategy_file import read_strategy_files
    from dataflows.cluster import MAX_PROCESSES, default_processes
    from models.strategy.user_file import StrategyFileError

    def go() -> None:
        base = settings_from(config)
        try:
            specs = read_strategy_files(list(strategy or []))
        except StrategyFileError as err:
            raise UserError("; ".join(str(err).splitlines())) from None
        if sweep is not None and specs:
            raise UserError("--sweep takes its strategy from the grid: leave out --strategy")
        if confirm < 0:
            raise UserError(f"--confirm must be >= 0, got {confirm}")
        grid = read_grid(sweep) if sweep is not None else None
        walk = walk_options(walk_forward, is_bars, oos_bars, step_bars, sweep is not None)
        if pbo_blocks is not None and (
            sweep is None or pbo_blocks < 2 or pbo_blocks % 2 or pbo_blocks > 20
        ):
            raise UserError(
                f"--pbo-blocks: an even number from 2 to 20 with --sweep, got {pbo_blocks}"
            )
        if processes is not None and not 1 <= processes <= MAX_PROCESSES:
            raise UserError(f"--processes: 1 to {MAX_PROCESSES}, got {processes}")
        settings = with_run_settings(base, specs, cash, fee_bps, slippage_bps)
        start_ms = parse_day(start, "--start") if start else None
        end_ms = parse_day(end, "--end") if end else None
        if start_ms is not None and end_ms is not None and end_ms <= start_ms:
            raise UserError(f"--end {end} is not after --start {start}")
        say = err_console.print if as_json else console.print
        with contextlib.ExitStack() as stack:
            if from_topic is not None:
                cut = topic_data(settings, from_topic, sources, start_ms, end_ms, say)
            else:
                wanted = list(sources or default_sources(settings, grid))
                data = open_data(settings, wanted, symbol, interval, stack)
                cut = TimeSlice(data, start_ms, end_ms)
            if cut.count == 0:
                raise UserError(
                    f"no data between {start or 'the start'} and {end or 'the end'}"
                    f" in {', '.join(cut.symbols) or 'the data'}"
                )
            if grid is not None:
                sweep_command(
                    settings, grid, cut, rank_by, top, confirm, as_json, say, walk, pbo_blocks
                )
                return
            run_dir = new_run_dir(default_run_root())
            say(f"backtest {run_dir.name}: {cut.count:,} messages of {', '.join(cut.symbols)}")
            outcome = finish(
                settings,
                cut,
                run_dir,
                as_json=as_json,
                say=say,
                processes=default_processes() if processes is None else processes,
            )
            record_backtest(settings, outcome, say)

    guarded(go)
