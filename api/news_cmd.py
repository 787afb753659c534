"""`stratflow news load FILE...` and `stratflow news poll [--once] [URL...]`: news and social
items into the news and social topics.

`load` is for backtests: RSS/Atom documents or JSON lines, every item at its publication time
(the Kafka record time too), undated entries dropped; it prints what it published and what it
dropped or refused, with the reasons. `poll` is live: the feeds of `news.feeds` or the URLs
given, polled until interrupted (or once each with `--once`); an undated entry gets the fetch
time. Items are cleaned, tagged with the configured symbols and deduplicated by content
(`models.news`, `connectors.news`). A mistake (no broker, a missing file, a URL that is not
http(s)) is one `error:` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

if TYPE_CHECKING:
    from models.config.settings import Settings
    from models.news.entries import TextItem
    from models.news.tagging import SymbolTagger

news_app = typer.Typer(
    no_args_is_help=True,
    help="News and social sources into Kafka: load files for a backtest, poll feeds live.",
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML config (default: ./stratflow.yaml, else the built-in one)"
    ),
]
BootstrapOpt = Annotated[str | None, typer.Option(envvar="KAFKA_BOOTSTRAP", help="Kafka host:port")]
KindOpt = Annotated[
    str,
    typer.Option(
        "--kind", help="news | social: what entries of a feed are (a JSON record's `type` wins)"
    ),
]


def _kind(value: str) -> Literal["news", "social"]:
    from api.cli import UserError

    if value == "news":
        return "news"
    if value == "social":
        return "social"
    raise UserError(f"--kind must be news or social, got {value!r}")


def _tagger(settings: Settings) -> SymbolTagger:
    from models.news.tagging import SymbolTagger

    return SymbolTagger.of(settings.symbols, settings.news.names)


def _broker(settings: Settings, bootstrap: str | None) -> str:
    from api.cli import UserError, _check_broker
    from connectors.kafka.broker import ensure_topics

    address = bootstrap or settings.kafka.bootstrap
    if not address:
        raise UserError(
            "no broker: set KAFKA_BOOTSTRAP or --bootstrap (e.g. start one with `stratflow broker`)"
        )
    _check_broker(address, "--bootstrap")
    topics = settings.kafka.topics
    ensure_topics(address, [topics.news, topics.social], settings.kafka.partitions)
    return address


@news_app.command("load")
def load(
    files: Annotated[list[Path], typer.Argument(help="RSS/Atom documents or .jsonl files")],
    kind: KindOpt = "news",
    bootstrap: BootstrapOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Publish news files for a backtest: each item at its publication time; undated entries
    dropped; duplicates (same text) published once. Prints the counts and refusals."""
    from api.cli import UserError, console, guarded, settings_from
    from connectors.news.files import NewsFileError, read_news_file
    from connectors.news.publish import KafkaItemSink, send_items
    from models.news.dedupe import Sifter

    def go() -> None:
        settings = settings_from(config)
        which = _kind(kind)
        tagger = _tagger(settings)
        sifter = Sifter.of(settings.news.dedupe_window)
        items: list[TextItem] = []
        for path in files:
            try:
                outcomes = read_news_file(
                    path, kind=which, tagger=tagger, max_bytes=settings.news.max_bytes
                )
            except NewsFileError as err:
                raise UserError(str(err)) from None
            items += [i for i in map(sifter.take, outcomes) if i is not None]
        address = _broker(settings, bootstrap)
        send_items(KafkaItemSink(address), sorted(items, key=_time), settings.kafka.topics)
        counts = sifter.counts
        console.out(counts.line(), highlight=False)
        for reason, n in sorted(counts.refused.items()):
            console.out(f"  refused {n}: {reason}", highlight=False)

    guarded(go)


def _time(item: TextItem) -> tuple[int, str]:
    from models.core.messages import to_ms

    return to_ms(item.ts), item.id


@news_app.command("poll")
def poll(
    urls: Annotated[
        list[str] | None, typer.Argument(help="Feed URLs (default: the feeds of news.feeds)")
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Poll each feed once, then stop")] = False,
    kind: KindOpt = "news",
    bootstrap: BootstrapOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Poll RSS/Atom feeds live (conditional requests, backoff on errors) and publish their
    new items; state per feed in news.state_dir, so a restart does not republish."""
    from pydantic import ValidationError

    from api.cli import UserError, console, guarded, settings_from
    from connectors.news.poller import FeedPoller
    from connectors.news.publish import KafkaItemSink
    from connectors.news.state import StateStore
    from models.news.config import FeedSpec

    def go() -> None:
        settings = settings_from(config)
        which = _kind(kind)
        try:
            feeds = [FeedSpec(url=u, kind=which) for u in urls] if urls else settings.news.feeds
        except ValidationError as err:
            bad = next((u for u in urls or [] if not u.lower().startswith("http")), "")
            raise UserError(
                f"a feed URL starts with http:// or https://: {bad[:80]!r}"
                if bad
                else f"bad feed URL: {err.errors()[0]['msg']}"
            ) from None
        if not feeds:
            raise UserError("no feeds: give URLs or set news.feeds in the config")
        address = _broker(settings, bootstrap)
        poller = FeedPoller(
            feeds,
            settings.news,
            _tagger(settings),
            KafkaItemSink(address),
            settings.kafka.topics,
            StateStore(Path(settings.news.state_dir)),
            say=lambda line: console.out(line, highlight=False),
        )
        poller.run(once=once)

    guarded(go)
