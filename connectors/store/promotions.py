"""The promotion ledger: each recorded step of a strategy setup's road from backtest to live.

One row per step record in the `promotions` table (schema.sql): the setup's hash, the step,
pass or fail, when, who (an approval), the run it was measured on and its figures as JSON. The
rules that read it are pure (`models.validation.promotion`); this module only writes and reads
rows, and reads back what a paper run did (`paper_rows`) for its divergence score.

Rows are never deleted or rewritten: a later record of a step supersedes an earlier one when
the rules read them in order, so the ledger is also the history of who promoted what and when.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from models.core.messages import Side
from models.validation.promotion import FillSeen, OrderSeen, Step, StepRecord
from models.validation.verdicts import Outcome

if TYPE_CHECKING:
    from connectors.store.clickhouse import Store

__all__ = ["PROMOTIONS_TABLE", "PaperRows", "paper_rows", "read_steps", "record_step"]

PROMOTIONS_TABLE: Final = "promotions"


def record_step(store: Store, record: StepRecord, setup: Mapping[str, Any] | None = None) -> None:
    """Append `record` (and the setup's canonical JSON, for a reader of the ledger)."""
    store.execute(
        f"INSERT INTO {store.table(PROMOTIONS_TABLE)} "
        "(setup_hash, step, recorded_ms, outcome, who, figures, note, setup, run_id) "
        "SELECT {h:String}, {step:String}, {ms:Int64}, {outcome:String}, {who:String}, "
        "{figures:String}, {note:String}, {setup:String}, {run:String}",
        {
            "h": record.setup_hash,
            "step": record.step.value,
            "ms": record.recorded_ms,
            "outcome": record.outcome.value,
            "who": record.who,
            "figures": json.dumps(dict(record.figures), sort_keys=True),
            "note": record.note,
            "setup": json.dumps(setup, sort_keys=True) if setup is not None else "",
            "run": record.run_id,
        },
    )


def read_steps(store: Store, setup_hash: str) -> list[StepRecord]:
    """Every record of `setup_hash`, in the order they were recorded."""
    rows = store.query(
        f"SELECT step, recorded_ms, outcome, who, figures, note, run_id "
        f"FROM {store.table(PROMOTIONS_TABLE)} FINAL WHERE setup_hash = {{h:String}} "
        "ORDER BY recorded_ms, step, run_id",
        {"h": setup_hash},
    )
    return [
        StepRecord(
            setup_hash=setup_hash,
            step=Step(str(r["step"])),
            run_id=str(r["run_id"]),
            outcome=Outcome(str(r["outcome"])),
            recorded_ms=int(r["recorded_ms"]),
            who=str(r["who"]),
            figures=json.loads(str(r["figures"]) or "{}"),
            note=str(r["note"]),
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class PaperRows:
    """What a run placed and was filled, and its bars' opens, read back for `divergence`."""

    orders: list[OrderSeen]
    fills: list[FillSeen]
    bar_opens: dict[str, list[tuple[int, Decimal]]]
    first_ms: int | None
    last_ms: int | None


def paper_rows(store: Store, run_id: str) -> PaperRows:
    """One run's orders, fills and bars from the decision log (FINAL: what it holds)."""
    params = {"run": run_id}
    orders = [
        OrderSeen(str(r["client_order_id"]), str(r["symbol"]), Side(str(r["side"])), int(r["ms"]))
        for r in store.query(
            "SELECT client_order_id, symbol, side, placed_ms AS ms FROM orders FINAL "
            "WHERE run_id = {run:String} ORDER BY placed_ms, client_order_id",
            params,
        )
    ]
    fills = [
        FillSeen(
            str(r["client_order_id"]),
            Decimal(str(r["quantity"])),
            Decimal(str(r["price"])),
            Decimal(str(r["fee"])),
        )
        for r in store.query(
            "SELECT client_order_id, quantity, price, fee FROM fills FINAL "
            "WHERE run_id = {run:String} ORDER BY ts_ms, fill_id",
            params,
        )
    ]
    opens: dict[str, list[tuple[int, Decimal]]] = {}
    first: int | None = None
    last: int | None = None
    for r in store.query(
        "SELECT symbol, start_ms, end_ms, open FROM bars FINAL WHERE run_id = {run:String} "
        "ORDER BY symbol, start_ms",
        params,
    ):
        start, end = int(r["start_ms"]), int(r["end_ms"])
        opens.setdefault(str(r["symbol"]), []).append((start, Decimal(str(r["open"]))))
        first = start if first is None else min(first, start)
        last = end if last is None else max(last, end)
    return PaperRows(orders, fills, opens, first, last)
