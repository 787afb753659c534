"""The demo with the sample feeds of bad and hostile input, against a demo without them.

Two in-process runs of `run_demo` (each with its own local broker and chdb directory), same data
and seed, one with `hostile_samples=True`, one without. What a real feed's junk may do: become
a dead letter with a reason, or a stored news row with its text intact. What it must not do:
change a single bar, signal, decision, order, fill, position or alert, or run script in the
report.
"""

from __future__ import annotations

import io
import itertools
import json
from dataclasses import dataclass
from datetime import datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from api.demo import SAMPLE_FILES, SAMPLES_DIR, DemoResult, Sample, load_samples, run_demo
from api.report import RunSummary, write_report
from connectors.store.clickhouse import Store
from models.config.settings import Settings, load_settings
from models.core.messages import to_ms
from models.market.parsing import MAX_PAYLOAD_CHARS

SEED = 7
MINUTES = 2
DATASETS = ["GOOG", "EURUSD"]
UNCHANGED_TABLES = (
    "ticks",
    "bars",
    "signals",
    "decisions",
    "orders",
    "fills",
    "positions",
    "alerts",
)
"""Everything the strategy produces, from bars to alerts: hostile input must change none of it."""

Tables = dict[str, list[dict[str, Any]]]
Copies = dict[tuple[str, str], int]


@dataclass
class Run:
    result: DemoResult
    settings: Settings
    tables: Tables
    news_copies: Copies
    """(kind, id) -> stored rows, read without FINAL: a second copy would show here."""


def _settings() -> Settings:
    """The shipped config with an empty environment: local broker and chdb, whatever CI sets."""
    return load_settings(Path(str(files("api").joinpath("stratflow.yaml"))), {})


def _read_all(settings: Settings, run_dir: Path) -> tuple[Tables, Copies]:
    """Everything the checks need, read once, so no test holds the chdb engine open."""
    cfg = settings.clickhouse.model_copy(update={"path": str(run_dir / "clickhouse")})
    tables: Tables = {}
    with Store.open(cfg) as store:
        for table in UNCHANGED_TABLES:
            # Each run's rows carry its own run id: compare everything else.
            rows = store.query(f"SELECT * EXCEPT (run_id) FROM {table} FINAL")
            tables[table] = sorted(rows, key=lambda r: json.dumps(r, default=str, sort_keys=True))
        tables["dead_letters"] = store.query(
            "SELECT topic, `partition`, `offset`, reason, payload FROM dead_letters FINAL "
            "ORDER BY topic, `partition`, `offset`"
        )
        tables["news"] = store.query("SELECT * FROM news FINAL ORDER BY kind, id")
        copies = {
            (r["kind"], r["id"]): int(r["n"])
            for r in store.query("SELECT kind, id, count() AS n FROM news GROUP BY kind, id")
        }
    return tables, copies


def _run(root: Path, hostile: bool) -> Run:
    settings = _settings()
    result = run_demo(
        settings,
        run_root=root,
        datasets=DATASETS,
        scenario_minutes=MINUTES,
        seed=SEED,
        console=Console(file=io.StringIO()),
        hostile_samples=hostile,
    )
    tables, copies = _read_all(settings, result.run_dir)
    return Run(result, settings, tables, copies)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, Run]:
    hostile = _run(tmp_path_factory.mktemp("hostile"), hostile=True)
    clean = _run(tmp_path_factory.mktemp("clean"), hostile=False)
    return hostile, clean


def _samples(kind: str) -> list[Sample]:
    return load_samples(SAMPLES_DIR / SAMPLE_FILES[kind])


def _stored_payload(sample: Sample) -> str:
    """What the dead-letter row keeps of a payload: its text (bad UTF-8 replaced), truncated."""
    return sample.payload.decode("utf-8", "replace")[:MAX_PAYLOAD_CHARS]


def _dead_letters_of(run: Run, topic: str) -> list[dict[str, Any]]:
    return [d for d in run.tables["dead_letters"] if d["topic"] == topic]


def _check_rejected(run: Run, topic: str, samples: list[Sample]) -> None:
    """Each sample with `expect` is exactly one dead letter on `topic`, with that reason."""
    letters = _dead_letters_of(run, topic)
    for sample in samples:
        if sample.expect is None:
            continue
        matches = [d for d in letters if d["payload"] == _stored_payload(sample)]
        assert len(matches) == 1, (sample.case, len(matches))
        assert sample.expect in matches[0]["reason"], (sample.case, matches[0]["reason"])


# ------------------------------------------------------------------------------ sample files


def test_sample_files_are_what_the_brief_needs() -> None:
    market, news, social = _samples("market"), _samples("news"), _samples("social")
    assert len(market) >= 25
    assert all(s.expect for s in market), "every bad market sample names its reason"
    for feed in (news, social):
        valid = [s for s in feed if s.expect is None]
        assert len(valid) >= 25
        assert len(feed) - len(valid) >= 5
    assert any(len(s.payload) >= 100_000 for s in market)
    texts = " ".join(s.payload.decode("utf-8", "replace") for s in news + social)
    for needle in ("Ignore previous instructions", "SYSTEM:", "<script>", "\u200b", "\u202e"):
        assert needle in texts, needle


def test_load_samples_refuses_a_typo(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"case": "a", "raw": "{}", "expcet": "not valid"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"x\.jsonl:1: unknown field\(s\) expcet"):
        load_samples(path)
    path.write_text('{"case": "a", "raw": "x", "msg": {}}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="exactly one of"):
        load_samples(path)


# ------------------------------------------------------------------------------ the two runs


@pytest.mark.kafka
def test_every_bad_market_sample_is_a_dead_letter_with_its_reason(runs: tuple[Run, Run]) -> None:
    hostile, clean = runs
    topic = hostile.settings.kafka.topics.market
    samples = _samples("market")
    _check_rejected(hostile, topic, samples)
    # ... and nothing else on the market topic changed.
    assert len(_dead_letters_of(hostile, topic)) == len(_dead_letters_of(clean, topic)) + len(
        samples
    )
    assert hostile.result.samples[topic] == len(samples)


@pytest.mark.kafka
@pytest.mark.parametrize("kind", ["news", "social"])
def test_invalid_text_items_are_dead_letters(runs: tuple[Run, Run], kind: str) -> None:
    hostile, _ = runs
    topic = getattr(hostile.settings.kafka.topics, kind)
    samples = _samples(kind)
    _check_rejected(hostile, topic, samples)
    assert len(_dead_letters_of(hostile, topic)) == sum(1 for s in samples if s.expect)


@pytest.mark.kafka
@pytest.mark.parametrize("kind", ["news", "social"])
def test_valid_text_items_are_stored_once_unchanged(runs: tuple[Run, Run], kind: str) -> None:
    hostile, _ = runs
    stored = {r["id"]: r for r in hostile.tables["news"] if r["kind"] == kind}
    valid = [json.loads(s.payload) for s in _samples(kind) if s.expect is None]
    assert sorted(stored) == sorted(m["id"] for m in valid)
    for msg in valid:
        row = stored[msg["id"]]
        assert hostile.news_copies[(kind, msg["id"])] == 1, msg["id"]
        assert row["ts_ms"] == to_ms(datetime.fromisoformat(msg["ts"]))
        assert row["symbols"] == msg["symbols"]
        if kind == "news":
            assert row["headline"] == msg["headline"], msg["id"]
            assert row["text"] == msg.get("body", ""), msg["id"]
            assert row["source"] == msg.get("source", "unknown")
        else:
            assert row["headline"] == ""
            assert row["text"] == msg["text"], msg["id"]
            assert row["source"] == msg["author"]


@pytest.mark.kafka
def test_hostile_input_changes_no_decision(runs: tuple[Run, Run]) -> None:
    hostile, clean = runs
    assert clean.result.samples == {}
    assert clean.tables["news"] == [] and clean.tables["dead_letters"] == []
    assert clean.tables["decisions"], "the clean run must decide something to compare"
    for table in UNCHANGED_TABLES:
        assert hostile.tables[table] == clean.tables[table], table
    h, c = hostile.result.summary, clean.result.summary
    assert (h.cash, h.equity, h.positions) == (c.cash, c.equity, c.positions)


@pytest.mark.kafka
def test_the_decision_log_page_escapes_untrusted_text(runs: tuple[Run, Run]) -> None:
    hostile, _ = runs
    assert hostile.result.decision_log is not None
    page = hostile.result.decision_log.read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert "<img src=x" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt; SIMB beats estimates" in page
    assert "\u200b" not in page and "\u202e" not in page and "\x00" not in page
    assert "Latest 10 dead letters" in page
    summary = hostile.result.summary
    assert summary.text_counts == {
        kind: sum(1 for s in _samples(kind) if s.expect is None) for kind in ("news", "social")
    }
    assert len(summary.latest_dead_letters) == 10
    assert set(summary.closes) == set(hostile.settings.symbols) - {"BTCUSD"}


def test_each_era_is_a_backtest_of_its_own(runs: tuple[Run, Run]) -> None:
    """GOOG (2004-13), EURUSD (2017-18) and the 2026 scenario: three runs, three portfolios,
    three clocks, side by side in one report; no equity curve spans two eras."""
    hostile, _ = runs
    backtests = hostile.result.backtests
    assert [b.name for b in backtests] == [*DATASETS, "scenario"]
    assert len({b.run_id for b in backtests}) == len(backtests)
    spans = []
    for b in backtests:
        stats = {s.key: s.value for s in b.performance.statistics}
        assert isinstance(stats["start"], int) and isinstance(stats["end"], int)
        spans.append((stats["start"], stats["end"]))
        assert set(b.report.bars) <= (
            {b.name} if b.name in DATASETS else {"SIMA", "SIMB", "SIMC", "SIMD"}
        )
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end < start, "the eras do not overlap, and no curve joins them"
    page = hostile.result.report.read_text(encoding="utf-8")
    for b in backtests:
        assert b.run_id in page


def test_report_escapes_every_text_field(tmp_path: Path) -> None:
    """No demo needed: hostile text in each place the report shows text from outside."""
    evil = "<script>alert(1)</script>\u202e"
    summary = RunSummary(
        counts={"news": 1},
        decisions=[],
        positions=[],
        cash=None,
        equity=None,
        dead_letter_reasons=[{"topic": evil, "reason": evil, "n": 1}],
        alerts=[],
        latest_dead_letters=[{"reason": evil, "payload": evil}],
        text_counts={"news": 1},
        latest_texts=[{"id": evil, "source": evil, "headline or text": evil}],
    )
    page = write_report(summary, tmp_path, evil).read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert page.count("&lt;script&gt;") >= 6
    assert not (tmp_path / "prices.png").exists()  # no bars, no plot
