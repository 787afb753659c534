"""What the report reads from the decision log (chdb): dead-letter groups cut to the ones shown,
with the rest said, and each kind of time or partition refusal in a group of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.report import summarize, write_report
from connectors.store.clickhouse import Store
from models.config.settings import ClickHouseConfig
from models.core.messages import DeadLetter


def test_report_says_when_dead_letter_groups_are_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import api.report

    monkeypatch.setattr(api.report, "REASON_GROUPS", 3)
    cfg = ClickHouseConfig(path=str(tmp_path / "ch"), database="walk")
    rows = [
        DeadLetter(
            dead_letter_id=f"{topic}-{i}",
            topic=topic,
            partition=0,
            offset=i,
            record_ms=1_700_000_000_000 + i,
            reason=f"reason {i % 3}: detail",
            payload="{}",
        )
        for topic in ("market.ticks", "social.posts")
        for i in range(3 if topic == "market.ticks" else 2)
    ]
    with Store.open(cfg) as store:
        store.apply_schema()
        store.insert("dead_letters", rows)
        summary = summarize(store)
    shown = summary.dead_letter_reasons
    assert len(shown) == 3
    assert [r["topic"] for r in shown] == ["market.ticks"] * 3  # grouped by topic
    assert summary.dead_letter_reasons_cut == 2  # social.posts' two groups, one letter each
    html = write_report(summary, tmp_path, "t").read_text(encoding="utf-8")
    assert "... and 2 more dead letters in further groups" in html


def test_report_groups_each_guard_refusal_by_its_kind(tmp_path: Path) -> None:
    """Every kind of time or partition refusal ingest writes (models.market.parsing,
    models.market.time_guard,
    models.market.ingest) gets a group of its own, whatever times and symbols its reason names."""
    from models.market.parsing import clock_problem, event_time_problem
    from models.market.time_guard import JumpGuard

    day = 86_400_000
    t0 = 1_767_623_400_000
    clock = [clock_problem(t0 + k * day, t0, 300_000, "the ingest clock") for k in (1, 9000)]
    jumped: JumpGuard[int] = JumpGuard(confirm=3, clock_ms=t0)
    jumped.admit(t0 + 30 * day, 7 * day, 0)
    jump = [r for _, r in jumped.admit(t0 + 1000, 7 * day, 1).refuse]
    first: JumpGuard[int] = JumpGuard(confirm=3)
    first.admit(t0, 7 * day, 0)
    first.admit(t0 + 90 * day, 7 * day, 1)
    start = [r for _, r in first.finish().refuse]
    odd = [f"{event_time_problem(ms)}: x" for ms in (0, 8_000_000_000_000)]
    home = [f"symbol {s} belongs to partition 2 of m (...), arrived on 0: key" for s in "AB"]
    kinds = {"clock": clock, "jump": jump, "start": start, "odd": odd, "home": home}
    rows = [
        DeadLetter(
            dead_letter_id=f"{kind}-{i}",
            topic="market.ticks",
            partition=0,
            offset=i,
            record_ms=t0,
            reason=str(reason),
            payload="{}",
        )
        for kind, reasons in kinds.items()
        for i, reason in enumerate(reasons)
    ]
    assert all(r.reason and r.reason != "None" for r in rows)
    cfg = ClickHouseConfig(path=str(tmp_path / "ch"), database="guards")
    with Store.open(cfg) as store:
        store.apply_schema()
        store.insert("dead_letters", rows)
        shown = summarize(store).dead_letter_reasons
    groups = {r["reason"]: r["n"] for r in shown}
    assert len(groups) == len(kinds), groups
    assert sorted(groups.values()) == sorted(len(v) for v in kinds.values())
