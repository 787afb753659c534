"""`stratflow demo`: the end-to-end job on embedded defaults (the bundled broker, chdb, the
shipped datasets, generated SIM* ticks and hostile sample feeds), then its report and one line
per backtest side by side (`print_backtests`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML config (default: ./stratflow.yaml, else the built-in one)"
    ),
]


def demo(
    config: ConfigOpt = None,
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            "--dataset",
            "-d",
            help="Shipped dataset(s) to replay: repeat the option or separate names by commas"
            " (default: GOOG,EURUSD)",
        ),
    ] = None,
    scenario_minutes: Annotated[
        int, typer.Option(help="Minutes of generated ticks for the SIM* symbols (0 = none)")
    ] = 240,
    seed: Annotated[int, typer.Option(help="Scenario seed")] = 7,
    clean_input: Annotated[
        bool,
        typer.Option(
            "--clean-input",
            help="Skip the sample feeds of malformed market messages and hostile news/posts"
            " and the sample RSS feed",
        ),
    ] = False,
) -> None:
    """The end-to-end job on embedded defaults (local broker, chdb, shipped data) with a report."""
    from api.cli import UserError, _open_store, console, guarded, print_summary, settings_from
    from api.demo import default_run_root, run_demo
    from connectors.files.datasets import dataset_path, list_datasets

    def go() -> None:
        settings = settings_from(config)
        # `-d GOOG -d EURUSD` or `-d GOOG,EURUSD`; each dataset once (a second copy would
        # only be dead-lettered as duplicates).
        given = [p.strip().upper() for d in (dataset or ["GOOG,EURUSD"]) for p in d.split(",")]
        names = list(dict.fromkeys(p for p in given if p))
        if not names:
            raise UserError("--dataset is empty; give one of " + ", ".join(list_datasets()))
        bad = [d for d in names if d not in list_datasets()]
        if bad:
            raise UserError(
                f"unknown dataset {', '.join(bad)} (available: {', '.join(list_datasets())})"
            )
        if scenario_minutes < 0:
            raise UserError(f"--scenario-minutes must be >= 0, got {scenario_minutes}")
        for name in names:
            # Before anything starts: without the optional extra, one line on how to get it.
            dataset_path(name)
        missing = [d for d in names if d not in settings.symbols]
        if missing:
            raise UserError(f"dataset symbol(s) {', '.join(missing)} not in the config's symbols")
        if settings.clickhouse.url:
            # A server is checked up front (a chdb directory is new for every demo run).
            with _open_store(settings):
                pass
        result = run_demo(
            settings,
            run_root=default_run_root(),
            datasets=names,
            scenario_minutes=scenario_minutes,
            seed=seed,
            hostile_samples=not clean_input,
            news_feed=not clean_input,
            console=console,
        )
        print_summary(result.summary.counts, result.summary, result.flow_seconds, portfolio=False)
        print_backtests(result.backtests)
        console.print(f"report: [bold]{escape(str(result.report))}[/bold]")
        if result.decision_log is not None:
            console.print(f"decision log: {escape(str(result.decision_log))}")

    guarded(go)


def print_backtests(backtests: list[Any]) -> None:
    """One line per backtest of the demo: its key figures side by side."""
    from api.cli import console
    from models.performance.stats import format_value

    keys = ("return", "buy_and_hold_return", "sharpe_ratio", "max_drawdown", "trades")
    t = Table(title="backtests (each its own era, portfolio and clock)", min_width=30)
    t.add_column("backtest")
    t.add_column("period (UTC)", no_wrap=True)
    rows = [{s.key: s for s in b.performance.statistics} for b in backtests]
    for key in keys:
        label = next((r[key].label for r in rows if key in r), key)
        t.add_column(label.replace(" Return", "").replace("Ratio", "").strip(), justify="right")
    for b, stats in zip(backtests, rows, strict=True):
        period = "-".join(format_value(stats[k])[:10] for k in ("start", "end") if k in stats)
        t.add_row(
            escape(b.name),
            period,
            *(format_value(stats[k]) if k in stats else "n/a" for k in keys),
        )
    console.print(t)


__all__ = ["demo", "print_backtests"]
