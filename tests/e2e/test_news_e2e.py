"""`stratflow news load` of an RSS file into a real broker, then a bounded run with GPT asked on
strategic triggers: the news rows carry the publication times (an undated entry and a repeated
story are not published), and no item dated after a decision's bar ever reaches that decision's
digest, while items dated before it do (the merge orders text by event time, end to end)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from email.utils import format_datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from api.demo import SAMPLE_FEED, SAMPLES_DIR, run_demo
from connectors.files.replay import replay
from connectors.news.files import read_news_file
from connectors.sim.openai_server import LocalOpenAIServer, Scenario
from connectors.sim.scenario import generate_scenario
from connectors.store.clickhouse import Store
from models.config.settings import load_settings
from models.core.messages import NewsItem, ms_to_datetime, to_ms
from models.news.tagging import SymbolTagger
from tests.e2e.test_gpt_e2e import MODEL, STRATEGY
from tests.support.cli import run_cli
from tests.support.flowkit import (
    create_topics,
    make_settings,
    query,
    run_flow_subprocess,
    write_config,
)

pytestmark = pytest.mark.kafka

MIN = 60_000
START = int(datetime(2025, 3, 3, 14, 0, tzinfo=UTC).timestamp() * 1000)
ITEM_TIMES = {f"story-{k:02d}": START + (7 * k + 3) * MIN + 30_000 for k in range(16)}
"""Mid-minute, so each item falls inside a bar and after the bars that end before it."""


def _rss(path: Path) -> Path:
    items = []
    for n, (guid, ms) in enumerate(ITEM_TIMES.items()):
        symbol = "$SIMA" if n % 2 == 0 else "Simbco"
        items.append(
            f"<item><guid>{guid}</guid><title>{symbol} headline {guid}</title>"
            f"<description>&lt;p&gt;body of {guid}&lt;script&gt;x()&lt;/script&gt;&lt;/p&gt;"
            f"</description><pubDate>{format_datetime(ms_to_datetime(ms), usegmt=True)}"
            "</pubDate></item>"
        )
    items.append("<item><guid>undated</guid><title>$SIMA undated story</title></item>")
    items.append(  # story-00 again under another id: a duplicate by content
        "<item><guid>again</guid><title>$SIMA headline story-00</title>"
        "<description>body of story-00</description>"
        f"<pubDate>{format_datetime(ms_to_datetime(START + 90 * MIN), usegmt=True)}</pubDate>"
        "</item>"
    )
    path.write_text(
        '<?xml version="1.0"?><rss version="2.0"><channel><title>E2E Wire</title>'
        + "".join(items)
        + "</channel></rss>",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def news_run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("news-e2e")
    settings = make_settings(
        tmp,
        {"SIMA": {}, "SIMB": {}},
        features={"sma_fast": 5, "sma_slow": 15, "rsi": 14, "volume_z": 10, "breakout": 10},
        gpt={"model": MODEL, "cache_dir": str(tmp / "answers"), "digest_items": 20},
        news={"names": {"SIMB": ["Simbco"]}},
    )
    create_topics(kafka_bootstrap, settings)
    replay(
        kafka_bootstrap,
        settings.kafka.topics.market,
        generate_scenario(["SIMA", "SIMB"], START, 120 * 60, 2.0, seed=7),
    )
    config = write_config(settings, tmp / "news.yaml")
    loaded = run_cli(
        "news",
        "load",
        str(_rss(tmp / "wire.rss")),
        "--config",
        str(config),
        "--bootstrap",
        kafka_bootstrap,
        cwd=tmp,
    )
    with LocalOpenAIServer(api_key="sk-e2e", default=Scenario.answer(STRATEGY)) as server:
        env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-e2e"}
        run_flow_subprocess(settings, kafka_bootstrap, tmp, env=env)
        bodies = [r.body for r in server.chat_requests]
    return {"settings": settings, "loaded": loaded, "bodies": bodies}


def test_load_reports_what_it_published_and_dropped(news_run: dict[str, Any]) -> None:
    out = news_run["loaded"]
    assert out.returncode == 0, out.stderr
    assert "published 16, duplicates 1, undated dropped 1, refused 0" in out.stdout


def test_the_news_rows_carry_the_publication_times(news_run: dict[str, Any]) -> None:
    rows = query(news_run["settings"], "SELECT id, ts_ms, symbols, headline, text FROM news FINAL")
    assert {r["id"]: r["ts_ms"] for r in rows} == ITEM_TIMES
    for row in rows:
        n = int(row["id"].split("-")[1])
        assert list(row["symbols"]) == (["SIMA"] if n % 2 == 0 else ["SIMB"])
        assert "x()" not in row["text"] and row["text"] == f"body of {row['id']}"


def _prompt(body: dict[str, Any]) -> tuple[int, set[str]]:
    """The decision's time and the ids of the stories in its digest."""
    user = body["messages"][1]["content"]
    decision_ms, stories = None, set()
    for line in user.splitlines():
        if not line.startswith("{"):
            continue
        doc = json.loads(line)
        if "decision" in doc:
            decision_ms = int(datetime.fromisoformat(doc["decision"]["time"]).timestamp() * 1000)
        elif "n" in doc and "story-" in doc["text"]:
            stories.add(doc["text"].split("headline ")[1].split(" ")[0])
    assert decision_ms is not None
    return decision_ms, stories


def test_no_decision_sees_news_dated_after_its_bar(news_run: dict[str, Any]) -> None:
    prompts = [_prompt(b) for b in news_run["bodies"]]
    assert prompts, "GPT was never asked: no digest to check"
    for decision_ms, stories in prompts:
        assert all(ITEM_TIMES[s] <= decision_ms for s in stories), (decision_ms, stories)
    # The rule was exercised both ways: items before a decision reached it, and decisions were
    # taken while later items were already on the topic.
    assert any(stories for _, stories in prompts)
    assert any(ms < max(ITEM_TIMES.values()) for ms, _ in prompts)
    for decision_ms, stories in prompts:
        earlier = {s for s, ms in ITEM_TIMES.items() if ms <= decision_ms}
        assert stories <= earlier


def test_the_demo_publishes_the_sample_rss_feed_at_its_times(tmp_path: Path) -> None:
    """`stratflow demo` (news_feed on): the shipped RSS items are stored beside the JSON-lines
    samples, each at its publication time, the repeated story once, scripts cleaned."""
    settings = load_settings(Path(str(files("api").joinpath("stratflow.yaml"))), {})
    result = run_demo(
        settings,
        run_root=tmp_path,
        datasets=[],
        scenario_minutes=5,
        seed=7,
        console=Console(file=io.StringIO()),
        news_feed=True,
    )
    tagger = SymbolTagger.of(settings.symbols, settings.news.names)
    want = {
        o.id: (to_ms(o.ts), o.symbols)
        for o in read_news_file(
            SAMPLES_DIR / SAMPLE_FEED, kind="news", tagger=tagger, max_bytes=10**6
        )
        if isinstance(o, NewsItem)
    }
    cfg = settings.clickhouse.model_copy(update={"path": str(result.run_dir / "clickhouse")})
    with Store.open(cfg) as store:
        rows = store.query("SELECT id, ts_ms, symbols, text FROM news FINAL WHERE id LIKE 'rss-%'")
    got = {r["id"]: (r["ts_ms"], list(r["symbols"])) for r in rows}
    assert got == {k: v for k, v in want.items() if k != "rss-sim-0003"}  # 0003 repeats 0001
    assert not any("script" in r["text"] or "display:none" in r["text"] for r in rows)
    assert result.samples[settings.kafka.topics.news] >= len(got)
