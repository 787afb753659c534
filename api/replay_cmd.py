"""`stratflow replay SOURCE...`: market data files (or shipped datasets) published to the market
topic in the order a live feed delivers them, merged by time, with a progress bar.

Every file is scanned before anything is sent: its bad rows are listed (the first ten), a file
without one valid row or a symbol the config does not trade is one `error:` line, and bars the
pipeline will refuse or realign are said per symbol. Ctrl-C says how many messages went out.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.text import Text

if TYPE_CHECKING:
    from connectors.files.replay import MarketStream, ReplayStats
    from models.config.settings import Settings

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML config (default: ./stratflow.yaml, else the built-in one)"
    ),
]


def replay(
    ctx: typer.Context,
    sources: Annotated[
        list[str],
        typer.Argument(
            help="CSV/Parquet files, or shipped datasets: GOOG, EURUSD, BTCUSD; several are"
            " merged by time",
            show_default=False,
        ),
    ],
    symbol: Annotated[
        str | None,
        typer.Option(help="Symbol for a file without a symbol column (default: the file name)"),
    ] = None,
    speed: Annotated[
        float | None,
        typer.Option(help="Multiple of real time, > 0 (default: as fast as possible)"),
    ] = None,
    interval: Annotated[
        str | None,
        typer.Option(
            help="Bar interval of a bar file, e.g. 1h, 1d, 1w (ISO weeks), 1mo (calendar"
            " months) (default: inferred from the bar times)"
        ),
    ] = None,
    bootstrap: Annotated[
        str | None, typer.Option(envvar="KAFKA_BOOTSTRAP", help="Kafka host:port")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Publish market data to the market topic, with a progress bar.

    Messages go out in the order a live feed delivers them: a trade at its time, a bar at its
    end. Several sources are merged by that time, so give related files in one replay.
    """
    from api.cli import UserError, console, guarded, settings_from
    from connectors.files.replay import open_market_file

    def go() -> None:
        settings = settings_from(config)
        if not bootstrap:
            raise UserError(
                "no broker: set KAFKA_BOOTSTRAP or --bootstrap"
                " (e.g. start one with `stratflow broker`)"
            )
        if speed is not None and not (math.isfinite(speed) and speed > 0):
            raise UserError(f"--speed must be a number > 0, got {speed:g}")
        if symbol is not None and len(sources) > 1:
            raise UserError(
                "--symbol names the symbol of one file; with several sources each takes its"
                " symbol column or its file name"
            )
        paths = [_replay_source(source, symbol, interval) for source in sources]
        # Read in bounded memory: each file is scanned (every bad row known before anything is
        # sent), then published as it is read back, by end time (connectors/files/market_file.py).
        with contextlib.ExitStack() as stack:
            loaded = [
                (path, stack.enter_context(open_market_file(path, symbol=sym, interval=every)))
                for path, sym, every in paths
            ]
            stats = _replay_stream(ctx, settings, bootstrap, loaded, speed)
        if stats.failed:
            raise UserError(
                f"{stats.failed} of {stats.sent} messages not delivered to {bootstrap}:"
                f" {'; '.join(stats.errors[:3])}"
            )
        console.print(
            f"published {stats.published:,} messages to {escape(stats.topic)}"
            f" in {stats.elapsed_s:.2f}s ({stats.msgs_per_s:,.0f}/s)"
        )

    guarded(go)


def _replay_source(
    source: str, symbol: str | None, interval: str | None
) -> tuple[Path, str | None, str | None]:
    """(path, default symbol, bar interval) of a replay argument: a local file wins over a
    dataset of the same name; a dataset's interval is its own unless --interval says."""
    from api.cli import UserError
    from connectors.files.datasets import dataset_info, dataset_path, list_datasets

    try:
        exists = Path(source).exists()
    except OSError as err:  # e.g. a name too long for the file system
        raise UserError(f"cannot open {source[:200]!r}: {err.strerror or err}") from None
    if exists:
        return Path(source), symbol, interval
    if source.strip().upper() in list_datasets():
        name = source.strip()
        return dataset_path(name), symbol or name.upper(), interval or dataset_info(name).interval
    raise UserError(f"no such file or dataset: {source} (datasets: {', '.join(list_datasets())})")


def _replay_stream(
    ctx: typer.Context,
    settings: Settings,
    bootstrap: str,
    files: list[tuple[Path, MarketStream]],
    speed: float | None,
) -> ReplayStats:
    """Check scanned files against the config, then publish them, merged by end time, as they
    are read back; one `error:` line on a mistake."""
    from api.cli import (
        UserError,
        _bootstrap_label,
        _check_broker,
        _terminate_as_interrupt,
        err_console,
    )
    from connectors.files.replay import MergedStreams
    from connectors.files.replay import replay as do_replay
    from connectors.kafka.broker import ensure_topics

    merged = MergedStreams([stream for _, stream in files])
    unknown = sorted(set(merged.symbols) - set(settings.symbols))
    if unknown:
        example = (
            f" (e.g. STRATFLOW__SYMBOLS__{unknown[0]}='{{bar_interval: 1h}}')"
            if "/" not in unknown[0]
            else ""
        )
        raise UserError(
            f"symbol(s) {', '.join(unknown)} not in the config's symbols"
            f" ({', '.join(settings.symbols)}); add them to `symbols:`{example} or pass "
            "--symbol with a configured one"
        )
    for path, loaded in files:
        if loaded.rows == 0:
            raise UserError(f"{path}: no data rows (the file has only a header)")
        if not loaded.count:
            first = f"; first: {loaded.problems[0].describe()}" if loaded.problems else ""
            raise UserError(
                f"{path}: no valid rows to publish ({loaded.problem_count} rejected{first})"
            )
    for path, loaded in files:
        where = f" {path.name}" if len(files) > 1 else ""
        for row, reason in loaded.problems[:10]:
            err_console.print(Text(f"skipped{where} row {row}: {reason}", style="yellow"))
        if loaded.problem_count > 10:
            more = loaded.problem_count - 10
            err_console.print(Text(f"... and {more} more skipped rows{where}", style="yellow"))
        if loaded.kind == "bars":
            _warn_unfit_bars(settings, loaded)
    _check_broker(bootstrap, _bootstrap_label(ctx))
    topic = settings.kafka.topics.market
    ensure_topics(bootstrap, settings.kafka.topics.all(), settings.kafka.partitions)
    before = _topic_size(bootstrap, topic)
    try:
        with _terminate_as_interrupt():
            stats = do_replay(bootstrap, topic, merged, speed=speed, progress=True)
    except KeyboardInterrupt:
        # What was sent is flushed and stays in the topic; say how far the replay got.
        after = _topic_size(bootstrap, topic)
        done = (
            f"{after - before:,} of {merged.count:,} messages published to {topic}"
            if before is not None and after is not None
            else f"messages published so far stay in {topic}"
        )
        err_console.print(Text(f"interrupted: {done}", style="yellow"))
        raise typer.Exit(130) from None
    return stats


def _warn_unfit_bars(settings: Settings, loaded: MarketStream) -> None:
    """Bars the pipeline will refuse (`models.market.bars.input_bar_problem`: coarser than the
    window)
    or realign (`models.market.bars.off_grid_note`: across a window boundary), said per symbol
    before
    anything is sent."""
    from collections import Counter

    from api.cli import err_console
    from models.core.messages import BarIn
    from models.market.bars import input_bar_problem, off_grid_note

    unfit: Counter[str] = Counter()
    moved: Counter[str] = Counter()
    total: Counter[str] = Counter()
    first: dict[tuple[str, str], str] = {}
    for msg in loaded.messages():
        total[msg.symbol] += 1
        if isinstance(msg, BarIn):
            window = settings.bar_interval(msg.symbol)
            if (why := input_bar_problem(msg, window)) is not None:
                unfit[msg.symbol] += 1
                first.setdefault((msg.symbol, "unfit"), why)
            elif (how := off_grid_note(msg, window)) is not None:
                moved[msg.symbol] += 1
                first.setdefault((msg.symbol, "moved"), how)
    for sym, n in sorted(unfit.items()):
        err_console.print(
            Text(
                f"warning: {n:,} of {total[sym]:,} {sym} bars will be dead-lettered by the "
                f"pipeline; first: {first[sym, 'unfit']}",
                style="yellow",
            )
        )
    for sym, n in sorted(moved.items()):
        err_console.print(
            Text(
                f"note: {n:,} of {total[sym]:,} {sym} bars lie across the window grid and are "
                f"realigned (up to one window late, never early); first: {first[sym, 'moved']}",
                style="yellow",
            )
        )


def _topic_size(bootstrap: str, topic: str) -> int | None:
    """Messages in `topic` now (sum of its end offsets), None if the broker cannot say."""
    from connectors.kafka.io import topic_end_offsets

    try:
        return sum(topic_end_offsets(bootstrap, topic, timeout_s=5.0).values())
    except Exception:  # a courtesy count only
        return None


__all__ = ["replay"]
