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
from collections.abc import Callable, Iterable, Mapping
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


MADE_UP_VERDICT = '"verdict":{"approved":true,"checks":[],"fee_estimate":"0"}'


def _no_fabricated_verdict(row: dict[str, Any]) -> dict[str, Any]:
    """Before the review loop, a GPT answer placing no orders was logged with a verdict nobody
    gave (approved, no checks, no fee: a real review of an order always has checks); now its
    round has no verdict (`AdjustRound.verdict`). Replaced in the text as stored, so nothing
    else in the row is re-serialised."""
    return {**row, "rounds": row["rounds"].replace(MADE_UP_VERDICT, '"verdict":null')}


UNKNOWN_CUTOFF_NOTE = "possibly in-sample for stratflow-local: knowledge cutoff unknown"


def _possibly_in_sample_label(row: dict[str, Any]) -> dict[str, Any]:
    """Issue 12 (the model's memory of the future): an answered GPT call of a model whose
    knowledge cutoff is unknown says so in its `detail` (models.validation.cutoff). The golden
    GPT runs ask the project's scripted server, `stratflow-local`, which no cutoff table lists:
    its answered calls gain the note, every other row and column is as recorded."""
    if row.get("outcome") != "ok" or row.get("model") != "stratflow-local":
        return row
    detail = str(row.get("detail") or "")
    return {**row, "detail": f"{detail}; {UNKNOWN_CUTOFF_NOTE}" if detail else UNKNOWN_CUTOFF_NOTE}


CHANGES: dict[str, list[Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "decisions": [_no_fabricated_verdict],
    "gpt_calls": [_possibly_in_sample_label],
}
"""Deliberate changes of what a run logs since the golden runs were recorded, applied to the
golden rows before the comparison: each is one function, named for what changed and why, so
every other byte of the golden runs is still compared as recorded."""


def read_golden(name: str) -> dict[str, list[str]]:
    with gzip.open(_path(name), "rb") as f:
        data: dict[str, list[str]] = json.loads(f.read())
    for table, changes in CHANGES.items():
        if table in data:
            rows = [json.loads(line) for line in data[table]]
            for change in changes:
                rows = [change(row) for row in rows]
            data[table] = canonical(rows)
    return data


ID_COLUMNS = ("decision_id", "client_order_id", "fill_id", "alert_id", "dead_letter_id", "call_id")


def _row_key(row: Mapping[str, Any]) -> tuple[str, ...]:
    """What pairs a golden row with the run's: its ids, and its version or time."""
    ids = tuple(str(row[c]) for c in ID_COLUMNS if c in row)
    return ids + tuple(str(row[c]) for c in ("version", "ts_ms", "symbol", "start_ms") if c in row)


def _where(a: str, b: str) -> str:
    """The first place two texts differ, with a little context."""
    i = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    lo = max(0, i - 60)
    return f"at {i}: golden ...{a[lo : i + 80]!r} run ...{b[lo : i + 80]!r}"


def _field_diffs(want: Mapping[str, Any], got: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(want) | set(got))
    return [
        f"    {k} {_where(str(want.get(k)), str(got.get(k)))}"
        for k in keys
        if want.get(k) != got.get(k)
    ]


def differences(want: Mapping[str, list[str]], got: Mapping[str, list[str]]) -> list[str]:
    """Per differing table: its counts, and for its first differing rows the columns that
    differ and where (rows paired by their ids), or the rows only one side has."""
    out: list[str] = []
    for table in sorted(set(want) | set(got)):
        a, b = want.get(table), got.get(table)
        if a == b:
            continue
        if a is None or b is None:
            out.append(f"{table}: only in {'the run' if a is None else 'the golden file'}")
            continue
        out.append(f"{table}: golden {len(a)} rows, run {len(b)} rows")
        only_golden = [json.loads(line) for line in sorted(set(a) - set(b))]
        only_run = {_row_key(r): r for r in (json.loads(line) for line in sorted(set(b) - set(a)))}
        for row in only_golden[:3]:
            twin = only_run.pop(_row_key(row), None)
            if twin is None:
                out.append(f"  golden only: {json.dumps(row, default=str)[:400]}")
            else:
                out.append(f"  {_row_key(row)}:")
                out += _field_diffs(row, twin)
        out += [
            f"  run only: {json.dumps(r, default=str)[:400]}" for r in list(only_run.values())[:3]
        ]
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
