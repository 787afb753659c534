"""`stratflow audit`: a run's decisions over a date range, with their inputs, every review
round's verdict, the GPT calls and the resulting orders and fills, as one readable HTML page
and as CSV and Parquet tables (api/audit_report.py).

    stratflow audit --from 2025-03-03 --to 2025-03-04 [--run RUN_ID] [--out DIR]
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML config (default: ./stratflow.yaml, else the built-in one)"
    ),
]


def _ms(text: str, flag: str) -> int:
    from api.cli import UserError

    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(
            f"{flag}: a date or date-time (2025-03-03, 2025-03-03T14:00), got {text!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def audit(
    start: Annotated[str, typer.Option("--from", help="First moment (UTC unless given)")],
    end: Annotated[str, typer.Option("--to", help="End, excluded (UTC unless given)")],
    run: Annotated[str | None, typer.Option(help="The run (default: the newest)")] = None,
    out: Annotated[Path, typer.Option(help="Where to write the export")] = Path("var/audit"),
    config: ConfigOpt = None,
) -> None:
    """Export a run's decisions over a date range for a reviewer (HTML, CSV, Parquet)."""
    from api.audit_report import read_audit, write_audit
    from api.cli import UserError, _open_store, console, guarded, settings_from

    def go() -> None:
        start_ms, end_ms = _ms(start, "--from"), _ms(end, "--to")
        if end_ms <= start_ms:
            raise UserError("--to must be after --from")
        settings = settings_from(config)
        with _open_store(settings) as store:
            run_id = run
            if not run_id:
                rows = store.query("SELECT max(run_id) AS run FROM decisions")
                run_id = str(rows[0]["run"]) if rows and rows[0]["run"] else ""
            if not run_id:
                raise UserError("the decision log holds no run")
            found = read_audit(store, run_id, start_ms, end_ms)
        where = out / f"{run_id}-{start_ms}-{end_ms}"
        written = write_audit(found, where)
        console.print(
            f"run {run_id}: {len(found.decisions)} decisions, {len(found.orders)} orders, "
            f"{len(found.fills)} fills, {len(found.gpt_calls)} GPT calls; wrote {written[0]} "
            f"and {len(written) - 1} tables in {where}"
        )

    guarded(go)


__all__ = ["audit"]
