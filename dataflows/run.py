"""Run the pipeline in this process, with Bytewax recovery when configured.

Crash safety = Bytewax's recovery store (source offsets + every operator's state, snapshotted
each epoch) + idempotent effects (ClickHouse rows replace by id; orders carry a client order id
derived from the decision). After a kill, the run resumes from the last completed epoch and
re-emits that epoch's outputs, which land on the same rows.

`python -m dataflows.run CONFIG BOOTSTRAP [--tail]` is the entry point the crash test kills.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta
from pathlib import Path

from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from dataflows.pipeline import FlowSpec, build_flow
from models.config import Settings, load_settings, parse_duration_ms


def recovery_config(settings: Settings) -> RecoveryConfig | None:
    if not settings.recovery.enabled:
        return None
    db_dir = Path(settings.recovery.dir)
    if not (db_dir.is_dir() and any(db_dir.glob("part-*.sqlite3"))):
        db_dir.mkdir(parents=True, exist_ok=True)
        init_db_dir(db_dir, 1)  # type: ignore[no-untyped-call]
    return RecoveryConfig(db_dir)  # type: ignore[no-untyped-call]


def run_pipeline(settings: Settings, spec: FlowSpec) -> None:
    """Blocks until the input ends (`tail=False`) or forever (`tail=True`)."""
    flow = build_flow(settings, spec)
    epoch = timedelta(milliseconds=parse_duration_ms(settings.recovery.snapshot_interval))
    cli_main(flow, epoch_interval=epoch, recovery_config=recovery_config(settings))  # type: ignore[no-untyped-call]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataflows.run")
    parser.add_argument("config")
    parser.add_argument("bootstrap")
    parser.add_argument("--tail", action="store_true")
    args = parser.parse_args(argv)
    settings = load_settings(args.config, os.environ)
    run_pipeline(settings, FlowSpec(bootstrap=args.bootstrap, tail=args.tail))
    return 0


if __name__ == "__main__":
    sys.exit(main())
