"""Golden runs: the outputs of a run recorded once and compared row by row ever after.

The redesign of the decision core must change no result. A golden file holds every row a run
wrote to the tables that carry results (run ids and wall-clock latencies left out, since those
differ between two identical runs), canonicalised and sorted, gzipped. `STRATFLOW_WRITE_GOLDEN=1`
records it; otherwise the rows are compared, and a mismatch names each table that differs with
its first differing rows, so the failure says what changed rather than only that something did.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "golden"
VOLATILE_COLUMNS = frozenset({"run_id", "latency_ms", "record_ms"})
"""Columns two identical runs may disagree on: the run's own id, a measured wall-clock latency,
and a dead letter's record time (the broker's append time, i.e. when the run produced it)."""

Tables = Mapping[str, Iterable[Mapping[str, Any]]]


def canonical(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Each row as one sorted-key JSON line without volatile columns; the lines sorted."""
    lines = [
        json.dumps(
            {k: v for k, v in row.items() if k not in VOLATILE_COLUMNS},
            sort_keys=True,
            default=str,
            ensure_ascii=False,
        )
        for row in rows
    ]
    return sorted(lines)


def _path(name: str) -> Path:
    return GOLDEN_DIR / f"{name}.json.gz"


def write_golden(name: str, tables: Tables) -> Path:
    """Record `tables` as the golden run `name`."""
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    path = _path(name)
    body = {table: canonical(rows) for table, rows in sorted(tables.items())}
    # mtime=0: the same rows give the same bytes, so re-recording an unchanged run is no diff.
    with gzip.GzipFile(path, "wb", mtime=0) as out:
        out.write(json.dumps(body, indent=0, ensure_ascii=False).encode())
    return path


def read_golden(name: str) -> dict[str, list[str]]:
    with gzip.open(_path(name), "rb") as f:
        data: dict[str, list[str]] = json.loads(f.read())
    return data


def differences(want: Mapping[str, list[str]], got: Mapping[str, list[str]]) -> list[str]:
    """One line per differing table with its counts and its first few differing rows."""
    out: list[str] = []
    for table in sorted(set(want) | set(got)):
        a, b = want.get(table), got.get(table)
        if a == b:
            continue
        if a is None or b is None:
            out.append(f"{table}: only in {'the run' if a is None else 'the golden file'}")
            continue
        only_golden = sorted(set(a) - set(b))[:3]
        only_run = sorted(set(b) - set(a))[:3]
        out.append(f"{table}: golden {len(a)} rows, run {len(b)} rows")
        out += [f"  golden only: {line[:400]}" for line in only_golden]
        out += [f"  run only:    {line[:400]}" for line in only_run]
    return out


def check_golden(name: str, tables: Tables) -> None:
    """Compare `tables` with the golden run `name` (or record it under STRATFLOW_WRITE_GOLDEN)."""
    if os.environ.get("STRATFLOW_WRITE_GOLDEN") == "1":
        write_golden(name, tables)
        return
    if not _path(name).exists():
        raise AssertionError(f"no golden run {name!r}: record it with STRATFLOW_WRITE_GOLDEN=1")
    got = {table: canonical(rows) for table, rows in tables.items()}
    diff = differences(read_golden(name), got)
    assert not diff, f"run differs from golden {name!r}:\n" + "\n".join(diff)


RESULT_TABLES = (
    "bars",
    "signals",
    "decisions",
    "orders",
    "fills",
    "positions",
    "alerts",
    "strategies",
    "gpt_calls",
)
"""The tables a run's results are in (what a refactoring must leave exactly as it was)."""


def result_tables(query: Any, settings: Any) -> dict[str, list[dict[str, Any]]]:
    """Every result table of a run, read with `query(settings, sql)`
    (tests.support.flowkit.query)."""
    return {t: query(settings, f"SELECT * FROM {t} FINAL") for t in RESULT_TABLES}
