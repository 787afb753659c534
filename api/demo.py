"""The demo / backtest job: local broker + embedded ClickHouse + shipped data, end to end.

It is the same code path as a live run: messages go through a real Kafka-protocol broker and the
same Bytewax flow; only `tail=False` makes the flow stop at the end of the replayed topics.

A real feed is not clean, so by default the demo also publishes the sample feeds in
`api/samples/` (package data) after the market replay: malformed and hostile market messages,
and news and social posts (ordinary, hostile-but-valid, invalid). The report then shows the
dead letters and the stored news next to results that those samples cannot have changed.
"""

from __future__ import annotations

import base64
import json
import os
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from api.backtest_report import BacktestReport, write_backtest_report
from api.report import RunSummary, summarize, write_report
from connectors.files.datasets import dataset_info, dataset_path
from connectors.files.replay import load_market_file, replay
from connectors.kafka.broker import BrokerError, LocalBroker, ensure_topics
from connectors.kafka.io import DeliveryCounter, make_producer, publish
from connectors.sim.scenario import generate_scenario
from connectors.store.clickhouse import Store
from dataflows.pipeline import FlowSpec
from dataflows.run import run_pipeline
from models.config.settings import Settings, TopicsConfig
from models.core.messages import BarIn, Tick
from models.performance.types import Performance

SAMPLES_DIR = Path(str(files("api").joinpath("samples")))
"""The shipped sample feeds (see their README.md): package data, so a wheel install has them."""

SAMPLE_FILES: dict[str, str] = {
    "market": "bad_market.jsonl",
    "news": "news.jsonl",
    "social": "social.jsonl",
}
"""Topic attribute of `TopicsConfig` -> sample file, in publishing order."""

SAMPLE_FEED = "news.rss"
"""The sample RSS feed (dated items about the demo's symbols), published by `stratflow news
load`'s code path after the JSON-lines samples when the demo runs with `news_feed`."""

_PAYLOAD_FIELDS = ("raw", "raw_b64", "msg")
_SAMPLE_FIELDS = frozenset({"case", "what", "key", "expect", *_PAYLOAD_FIELDS})


@dataclass
class DemoResult:
    run_dir: Path
    report: Path
    summary: RunSummary
    published: int
    flow_seconds: float
    samples: dict[str, int] = field(default_factory=dict)
    """Sample messages published per topic (empty without hostile samples)."""
    backtests: list[DemoBacktest] = field(default_factory=list)
    """Each time-coherent part of the demo, a backtest of its own."""
    decision_log: Path | None = None
    """The decision log's page (dead letters, news, GPT calls of every part)."""


@dataclass(frozen=True)
class Sample:
    """One record of a sample feed, as the bytes a producer would send.

    `expect` is a substring of the dead-letter reason the pipeline must give it; None means the
    message is valid and must be stored. Tests read the same files through this loader, so the
    demo and its checks can never disagree about what was sent.
    """

    case: str
    payload: bytes
    key: bytes | None
    expect: str | None
    what: str = ""


def _sample_payload(entry: dict[str, Any], where: str) -> bytes:
    given = [f for f in _PAYLOAD_FIELDS if f in entry]
    if len(given) != 1:
        raise ValueError(f"{where}: need exactly one of raw, raw_b64, msg (got {given or 'none'})")
    name = given[0]
    value = entry[name]
    if name == "raw":
        if not isinstance(value, str):
            raise ValueError(f"{where}: raw must be a string")
        # surrogatepass: a sample may carry a lone surrogate on purpose, byte for byte.
        return value.encode("utf-8", "surrogatepass")
    if name == "raw_b64":
        if not isinstance(value, str):
            raise ValueError(f"{where}: raw_b64 must be a string")
        return base64.b64decode(value, validate=True)
    if not isinstance(value, dict):
        raise ValueError(f"{where}: msg must be a JSON object")
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def load_samples(path: Path) -> list[Sample]:
    """Read a sample file (format in api/samples/README.md); a bad line fails with its number.

    Strict on purpose: a typo in a sample (say `expcet`) would otherwise turn an invalid
    message into one nobody checks.
    """
    samples: list[Sample] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path.name}:{lineno}"
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: not JSON: {err}") from None
            if not isinstance(entry, dict):
                raise ValueError(f"{where}: not a JSON object")
            unknown = sorted(set(entry) - _SAMPLE_FIELDS)
            if unknown:
                raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}")
            case, key, expect, what = (
                entry.get("case"),
                entry.get("key"),
                entry.get("expect"),
                entry.get("what", ""),
            )
            if not isinstance(case, str) or not case or case in seen:
                raise ValueError(f"{where}: case must be a unique non-empty string")
            if key is not None and not isinstance(key, str):
                raise ValueError(f"{where}: key must be a string")
            if expect is not None and (not isinstance(expect, str) or not expect):
                raise ValueError(f"{where}: expect must be a non-empty string")
            if not isinstance(what, str):
                raise ValueError(f"{where}: what must be a string")
            seen.add(case)
            samples.append(
                Sample(
                    case=case,
                    payload=_sample_payload(entry, where),
                    key=None if key is None else key.encode("utf-8"),
                    expect=expect,
                    what=what,
                )
            )
    return samples


def publish_samples(
    bootstrap: str, topics: TopicsConfig, samples_dir: Path = SAMPLES_DIR
) -> dict[str, int]:
    """Publish every sample file to its topic, raw bytes as they are; returns count per topic.

    The record timestamp is the wall clock, as `replay` stamps market data, so the future-skew
    check judges samples exactly as it judges a live producer's messages.
    """
    counter = DeliveryCounter()
    producer = make_producer(bootstrap, **{"linger.ms": 5})
    sent: dict[str, int] = {}
    try:
        for attr, filename in SAMPLE_FILES.items():
            topic = str(getattr(topics, attr))
            for sample in load_samples(samples_dir / filename):
                publish(
                    producer,
                    topic,
                    sample.key,
                    sample.payload,
                    int(time.time() * 1000),
                    on_delivery=counter,
                )
                sent[topic] = sent.get(topic, 0) + 1
    finally:
        remaining = producer.flush(30.0)
    if counter.failed or remaining:
        detail = "; ".join(counter.errors) or f"{remaining} not delivered within 30 s"
        raise BrokerError(f"could not publish the sample feeds: {detail}")
    return sent


def publish_sample_feed(
    bootstrap: str, settings: Settings, samples_dir: Path = SAMPLES_DIR
) -> dict[str, int]:
    """Publish the sample RSS feed as `stratflow news load` does (cleaned, tagged with the
    configured symbols and names, deduplicated, each item at its publication time); returns
    the items published per topic."""
    from connectors.news.files import read_news_file
    from connectors.news.publish import KafkaItemSink, send_items
    from models.news.dedupe import Sifter
    from models.news.tagging import SymbolTagger

    tagger = SymbolTagger.of(settings.symbols, settings.news.names)
    sifter = Sifter.of(settings.news.dedupe_window)
    outcomes = read_news_file(
        samples_dir / SAMPLE_FEED, kind="news", tagger=tagger, max_bytes=settings.news.max_bytes
    )
    items = [i for i in map(sifter.take, outcomes) if i is not None]
    send_items(KafkaItemSink(bootstrap), items, settings.kafka.topics)
    sent: dict[str, int] = {}
    for item in items:
        topic = settings.kafka.topics.news if item.type == "news" else settings.kafka.topics.social
        sent[topic] = sent.get(topic, 0) + 1
    return sent


def with_run_dir(settings: Settings, run_dir: Path) -> Settings:
    """Point the store and the recovery state into this run's directory (unless a server is set)."""
    clickhouse = settings.clickhouse.model_copy(update={"path": str(run_dir / "clickhouse")})
    recovery = settings.recovery.model_copy(update={"dir": str(run_dir / "recovery")})
    storage = settings.storage.model_copy(update={"ticks": True})  # the demo keeps everything
    return settings.model_copy(
        update={"clickhouse": clickhouse, "recovery": recovery, "storage": storage}
    )


@dataclass(frozen=True)
class DemoPart:
    """One time-coherent backtest of the demo: a dataset of its own era, or the generated
    scenario (with the sample feeds of bad and hostile input), on topics of its own."""

    name: str
    messages: list[Tick | BarIn]
    samples: bool = False


def demo_parts(
    settings: Settings, datasets: list[str], scenario_minutes: int, seed: int, samples: bool
) -> list[DemoPart]:
    """Each dataset alone, then the generated scenario: GOOG (2004-13), EURUSD (2017-18) and
    2026 ticks are different eras, so chaining them into one portfolio and one equity curve
    would read as one history that never happened. The sample feeds go with the scenario (or
    alone when there is none). In memory: the shipped files are small."""
    parts: list[DemoPart] = []
    for name in datasets:
        interval = dataset_info(name).interval
        loaded = load_market_file(dataset_path(name), symbol=name, interval=interval)
        parts.append(DemoPart(name, list(loaded.messages)))
    sim = [s for s in settings.symbols if s.startswith("SIM")]
    scenario: list[Tick | BarIn] = []
    if scenario_minutes > 0 and sim:
        start = int(datetime(2026, 1, 5, 14, 30, tzinfo=UTC).timestamp() * 1000)
        scenario.extend(
            generate_scenario(
                sim,
                start_ms=start,
                duration_s=scenario_minutes * 60,
                ticks_per_second_per_symbol=2.0,
                seed=seed,
            )
        )
    if scenario or samples:
        parts.append(DemoPart("scenario" if scenario else "samples", scenario, samples))
    return parts


def demo_messages(
    settings: Settings, datasets: list[str], scenario_minutes: int, seed: int
) -> list[Tick | BarIn]:
    """Every market message of the demo's parts (for benchmarks that want one stream)."""
    parts = demo_parts(settings, datasets, scenario_minutes, seed, samples=False)
    return [m for part in parts for m in part.messages]


def _part_settings(settings: Settings, part: DemoPart, shared: bool, run_dir: Path) -> Settings:
    """The part's topics: the configured names for the part with the samples (so the dead
    letters name the topics a user configured), `<topic>.<part>` for the others; on a shared
    broker every topic also gets the run directory's name, so two demos never mix."""
    topics = settings.kafka.topics
    suffix = "" if part.samples else f".{part.name.lower()}"
    if shared:
        suffix += f".{run_dir.name.lower()}"
    if suffix:
        topics = topics.model_copy(update={k: v + suffix for k, v in topics.model_dump().items()})
    recovery = settings.recovery.model_copy(
        update={"dir": str(run_dir / "recovery" / part.name.lower())}
    )
    return settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"topics": topics}),
            "recovery": recovery,
        }
    )


class RunDirError(ValueError):
    """The run root cannot hold a new run directory (missing parent, not a directory, read-only
    file system, no permission); phrased for the user, naming `STRATFLOW_RUNS`."""


def new_run_dir(run_root: Path) -> Path:
    """A directory of its own per run, even for two runs started in the same second."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        run_root.mkdir(parents=True, exist_ok=True)
        for n in range(1, 1000):
            candidate = run_root / (stamp if n == 1 else f"{stamp}-{n}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            return candidate
    except OSError as err:
        raise RunDirError(
            f"cannot create a run directory under {run_root}: {err.strerror or err}"
            " (set STRATFLOW_RUNS to a writable directory)"
        ) from None
    raise RuntimeError(f"could not create a run directory under {run_root}")


def run_demo(
    settings: Settings,
    *,
    run_root: Path,
    datasets: list[str],
    scenario_minutes: int,
    seed: int,
    console: Console,
    hostile_samples: bool = True,
    news_feed: bool = False,
) -> DemoResult:
    """Each part (`demo_parts`) replayed and run through the flow to the end of its input as a
    backtest of its own (a run id and a portfolio each, one store), then one report with the
    backtests side by side and the decision log's page.

    With `hostile_samples` (the default) the sample feeds of bad and hostile input follow the
    scenario's market replay; False gives the clean run. Both give the same decisions and
    portfolio, since every bad market sample is refused by parsing alone and the local engine
    ignores text.

    With `news_feed` the sample RSS feed (`SAMPLE_FEED`) follows the JSON-lines samples into
    the same part. `stratflow demo` turns it on; it is off here by default so the golden demo
    (tests/e2e/test_golden_demo.py, recorded before the feed existed) stays the run it recorded:
    its items only add news rows, the local engine ignores text.
    """
    run_dir = new_run_dir(run_root)
    settings = with_run_dir(settings, run_dir)
    parts = demo_parts(settings, datasets, scenario_minutes, seed, hostile_samples)
    runs: list[tuple[DemoPart, str, Settings]] = []
    published = 0
    samples: dict[str, int] = {}
    flow_seconds = 0.0
    with ExitStack() as stack:
        bootstrap = settings.kafka.bootstrap
        if bootstrap is None:
            broker = stack.enter_context(LocalBroker(log_dir=run_dir))
            bootstrap = broker.bootstrap
            console.print(f"[dim]local Kafka broker (Tansu) at {bootstrap}[/dim]")
        for part in parts:
            part_settings = _part_settings(
                settings, part, settings.kafka.bootstrap is not None, run_dir
            )
            topics = part_settings.kafka.topics
            ensure_topics(bootstrap, topics.all(), settings.kafka.partitions)
            stats = replay(bootstrap, topics.market, part.messages, speed=None, progress=True)
            published += stats.published
            console.print(
                f"[bold]{part.name}[/bold]: published {stats.published:,} market messages to"
                f" [bold]{topics.market}[/bold]"
            )
            if part.samples:
                samples = publish_samples(bootstrap, topics, SAMPLES_DIR)
                console.print(
                    "published sample feeds of bad and hostile input: "
                    + ", ".join(f"{n} to [bold]{t}[/bold]" for t, n in samples.items())
                )
                if news_feed:
                    fed = publish_sample_feed(bootstrap, part_settings, SAMPLES_DIR)
                    for topic, n in fed.items():
                        samples[topic] = samples.get(topic, 0) + n
                    console.print(
                        f"published the sample RSS feed {SAMPLE_FEED}: "
                        + ", ".join(f"{n} to [bold]{t}[/bold]" for t, n in fed.items())
                    )
            console.print(f"running the dataflow on {part.name}")
            t0 = time.perf_counter()
            state = run_pipeline(
                part_settings,
                FlowSpec(bootstrap=bootstrap, tail=False),
                progress=True,
                say=lambda line: console.print(escape(line)),
                # Every demo starts afresh (new run directory, new topics): nothing resumes.
                stop_note=f"no report; the partial decision log is in {run_dir / 'clickhouse'}",
            )
            flow_seconds += time.perf_counter() - t0
            runs.append((part, state.run_id, part_settings))
    with Store.open(settings.clickhouse) as store:
        summary = summarize(store, [run_id for _, run_id, _ in runs])
        backtests = [
            backtest_of(store, part.name, run_id, part_settings)
            for part, run_id, part_settings in runs
        ]
    log = write_report(
        summary,
        run_dir,
        f"stratflow demo {run_dir.name}: decision log",
        name="decision_log.html",
        portfolio=False,
        note="<p>Rows of every backtest of the demo; each backtest's portfolio, equity and "
        "trades are in <a href='report.html'>report.html</a>.</p>",
    )
    report = write_backtest_report(
        [b.report for b in backtests],
        run_dir / "report.html",
        title=f"stratflow demo {run_dir.name}",
    )
    return DemoResult(run_dir, report, summary, published, flow_seconds, samples, backtests, log)


@dataclass
class DemoBacktest:
    """One part of the demo as a backtest: its statistics and its report section."""

    name: str
    run_id: str
    performance: Performance
    report: BacktestReport


def backtest_of(store: Store, name: str, run_id: str, settings: Settings) -> DemoBacktest:
    from api.backtest import BacktestRun, read_run
    from api.backtest_output import analyse, build_report

    run = BacktestRun(run_id, Path(), 0, 0.0, read_run(store, run_id))
    perf, trades, equity = analyse(settings, run)
    report = build_report(settings, run, perf, trades, equity, name)
    return DemoBacktest(name, run_id, perf, report)


def default_run_root() -> Path:
    return Path(os.environ.get("STRATFLOW_RUNS", "var/runs"))
