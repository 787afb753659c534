"""`stratflow tax`: a run's realised gains as Form 8949 lines (CSV and HTML), from the fills
in the decision log (models/tax: lots, holding periods, US wash sales).

    stratflow tax --year 2025 [--run RUN_ID] [--method fifo|lifo|hifo] [--out DIR]

The run defaults to the newest in the log. A sale of more than is held (a short) is one line
naming the fill: short sales are not lotted.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from connectors.store.clickhouse import Store

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML config (default: ./stratflow.yaml, else the built-in one)"
    ),
]


def tax(
    year: Annotated[int, typer.Option(help="The tax year (UTC dates)", min=1970, max=2200)],
    run: Annotated[str | None, typer.Option(help="The run (default: the newest)")] = None,
    method: Annotated[
        str, typer.Option(help="Lot method: fifo (the IRS default), lifo or hifo")
    ] = "fifo",
    out: Annotated[Path, typer.Option(help="Where to write the report")] = Path("var/tax"),
    wash_sales: Annotated[bool, typer.Option(help="Apply the US 30-day wash-sale rule")] = True,
    config: ConfigOpt = None,
) -> None:
    """Write a run's Form 8949 lines for a year (CSV and HTML) and print the totals."""
    from api.cli import UserError, _open_store, console, guarded, settings_from
    from models.tax.lots import LotMethod, ShortSale, TaxFill, realise
    from models.tax.report import form_8949, report_csv, report_html

    def go() -> None:
        try:
            lot_method = LotMethod(method)
        except ValueError:
            raise UserError(f"--method: fifo, lifo or hifo, got {method!r}") from None
        if lot_method is LotMethod.SPECIFIC:
            raise UserError("--method specific needs the lots named per sale: not on the CLI")
        settings = settings_from(config)
        with _open_store(settings) as store:
            run_id = run or _newest_run(store)
            if not run_id:
                raise UserError("the decision log holds no run")
            rows = store.query(
                "SELECT fill_id, symbol, side, quantity, price, fee, ts_ms FROM fills FINAL "
                "WHERE run_id = {run:String} ORDER BY ts_ms, fill_id",
                {"run": run_id},
            )
        if not rows:
            raise UserError(f"run {run_id} has no fills")
        fills = [
            TaxFill(
                str(r["fill_id"]),
                str(r["symbol"]),
                str(r["side"]),
                Decimal(str(r["quantity"])),
                Decimal(str(r["price"])),
                Decimal(str(r["fee"])),
                int(r["ts_ms"]),
            )
            for r in rows
        ]
        try:
            ledger = realise(fills, lot_method, wash_sales=wash_sales)
        except ShortSale as err:
            raise UserError(str(err)) from None
        lines = form_8949(ledger, year)
        out.mkdir(parents=True, exist_ok=True)
        stem = out / f"form8949-{year}-{run_id}"
        csv_path, html_path = stem.with_suffix(".csv"), stem.with_suffix(".html")
        csv_path.write_text(report_csv(lines), encoding="utf-8")
        html_path.write_text(report_html(lines, year, lot_method.value, run_id), encoding="utf-8")
        short = sum((ln.gain_or_loss for ln in lines if ln.part == "I"), Decimal(0))
        long = sum((ln.gain_or_loss for ln in lines if ln.part == "II"), Decimal(0))
        washes = sum(1 for ln in lines if ln.code == "W")
        console.print(
            f"run {run_id}, {year}: {len(lines)} lines ({washes} wash sales), short-term "
            f"{short:,.2f}, long-term {long:,.2f}; {len(fills)} fills by {lot_method.value}"
        )
        console.print(f"wrote {csv_path} and {html_path}")

    guarded(go)


def _newest_run(store: Store) -> str:
    rows = store.query("SELECT max(run_id) AS run FROM fills")
    return str(rows[0]["run"]) if rows and rows[0]["run"] else ""


__all__ = ["tax"]
