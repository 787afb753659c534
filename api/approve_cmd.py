"""`stratflow approve`: a person's approval of the configured strategy setup for live trading.

The third step of the road (`models.validation.promotion`): the setup needs a passing backtest
and a passing validation (`stratflow validate --config`), then a passing paper run, recorded
in that order, before a person may approve it; the
approval is recorded with who (`--by`, else the OS user) and when, after a confirmation
(`--yes` skips it, for scripts). Paper runs of the setup are measured first, from their rows
(duration and divergence from the simulator on the same bars). `--check` only shows where the
setup stands and what is missing; a missing step is one `error:` line (exit 2).
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Annotated, Any

import typer

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML config (default: ./stratflow.yaml, else the built-in one)"
    ),
]


def _who(by: str | None) -> str:
    from api.cli import UserError

    if by is not None:
        name = by.strip()
        if not name or any(not ch.isprintable() for ch in name) or len(name) > 100:
            raise UserError("--by needs a name (printable, up to 100 characters)")
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        raise UserError("cannot tell who you are: give --by NAME") from None


def _stage_doc(store: Any, settings: Any, h: str) -> dict[str, Any]:
    from api.promotion_steps import live_refusal
    from connectors.store.promotions import read_steps
    from models.validation.promotion import Step, missing_for, stage_of

    records = read_steps(store, h)
    return {
        "setup": h,
        "stage": stage_of(records, h).name.lower(),
        "missing_for_approval": missing_for(records, h, Step.APPROVAL),
        "live": live_refusal(store, settings) or "allowed",
        "records": [
            {
                "step": r.step.value,
                "outcome": r.outcome.value,
                "run_id": r.run_id,
                "who": r.who,
                "recorded_ms": r.recorded_ms,
                "figures": dict(r.figures),
                "note": r.note,
            }
            for r in records
        ],
    }


def approve(
    config: ConfigOpt = None,
    by: Annotated[
        str | None, typer.Option("--by", help="Who approves (default: the OS user)")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Approve without asking")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Only show where the setup stands; record nothing")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON")] = False,
) -> None:
    """Approve the configured strategy setup for live trading (after backtest, validation and
    paper)."""
    from rich.markup import escape

    from api.cli import UserError, console, guarded, settings_from
    from api.promotion_steps import measure_paper_runs, open_ledger, sync_demotions, wall_ms
    from connectors.store.promotions import read_steps, record_step
    from models.validation.promotion import Step, StepRecord, missing_for, setup_doc, setup_hash
    from models.validation.verdicts import Outcome

    def say(line: str) -> None:
        if not as_json:
            console.print(escape(line))

    def go() -> None:
        settings = settings_from(config)
        h = setup_hash(settings)
        with open_ledger(settings) as store:
            for r in sync_demotions(store, settings):
                say(f"run {r.run_id} demoted the setup: {r.figures.get('reasons', '')}")
            for r in measure_paper_runs(store, settings):
                figures = ", ".join(f"{k} {v}" for k, v in sorted(r.figures.items()))
                say(f"paper run {r.run_id}: {r.outcome.value} ({figures})")
            if check:
                doc = _stage_doc(store, settings, h)
                if as_json:
                    console.out(json.dumps(doc, default=str), highlight=False)
                    return
                say(f"setup {h}: {doc['stage']}")
                for line in doc["missing_for_approval"]:
                    say(f"  missing: {line}")
                say(f"  live: {doc['live']}")
                return
            missing = missing_for(read_steps(store, h), h, Step.APPROVAL)
            if missing:
                more = f" (then {len(missing) - 1} more)" if len(missing) > 1 else ""
                raise UserError(f"cannot approve setup {h}: missing {missing[0]}{more}")
            who = _who(by)
            if not yes and not typer.confirm(
                f"Approve setup {h} ({settings.strategy.controller} controller, "
                f"{len(settings.strategies)} strategy file(s)) for live trading as {who}?"
            ):
                raise UserError("not approved")
            record = StepRecord(h, Step.APPROVAL, "", Outcome.PASS, wall_ms(), who)
            record_step(store, record, setup_doc(settings))
            doc = _stage_doc(store, settings, h)
        if as_json:
            console.out(json.dumps({**doc, "approved_by": who}, default=str), highlight=False)
            return
        say(f"setup {h} approved by {who}; live: {doc['live']}")

    guarded(go)


__all__ = ["approve"]
