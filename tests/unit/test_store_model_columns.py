"""The decisions table as the engine keeps it (connectors/store/model_columns.py
`decisions_table(..., as_merged=True)`, `merged_rows`) against the general table of every row,
on generated batches with several versions of a decision: the rows sent are exactly those a
`ReplacingMergeTree(version)` keeps of the batch, with the same values, and a batch refused as
a whole is refused all the same. The engine's own merge: tests/integration/test_store_lines.py."""

from __future__ import annotations

from typing import Any, cast

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.store import rows as store_rows
from connectors.store.model_columns import decisions_table, merged_rows
from models.core.messages import DecisionRecord
from tests.support import row_strategies as rs


class _Version:
    def __init__(self, decision_id: str, version: int) -> None:
        self.decision_id, self.version = decision_id, version


def _kept(rows: list[tuple[str, int]]) -> list[int]:
    """What the engine keeps of one inserted block, written as it says: per key the row with
    the highest version, the last of those."""
    keep: list[int] = []
    for key in dict.fromkeys(k for k, _ in rows):
        top = max(v for k, v in rows if k == key)
        keep.append(max(i for i, (k, v) in enumerate(rows) if k == key and v == top))
    return sorted(keep)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 3)), min_size=1, max_size=12))
def test_merged_rows_are_the_engines_choice(rows: list[tuple[str, int]]) -> None:
    models = cast(list[DecisionRecord], [_Version(k, v) for k, v in rows])
    got = merged_rows(models)
    expected = _kept(rows)
    assert got == (None if len(expected) == len(rows) else expected)


@st.composite
def versioned(draw: st.DrawFn) -> list[DecisionRecord]:
    """Decisions and later (or equal, or earlier) versions of some, sharing their parts as the
    desk's versions do, in any order."""
    firsts = draw(st.lists(rs.decisions, min_size=1, max_size=3))
    out = list(firsts)
    for d in firsts:
        for v in draw(st.lists(st.integers(0, 2**40), max_size=2)):
            out.append(d.model_copy(update={"version": v, "orders": list(d.orders)}))
    return draw(st.permutations(out))


@settings(derandomize=True, max_examples=60, deadline=None)
@given(versioned())
def test_decisions_as_merged_are_the_kept_rows_of_every_row(models: list[DecisionRecord]) -> None:
    store_rows.forget_json()
    full = decisions_table(models, "run")
    merged = decisions_table(models, "run", as_merged=True)
    if full is None:  # a value no row can hold: refused either way
        assert merged is None
        return
    assert merged is not None
    kept = merged_rows(models)
    expected: Any = full if kept is None else full.take(pa.array(kept, pa.int64()))
    assert merged.schema == full.schema
    assert merged.equals(expected)
    store_rows.forget_json()
