"""RSS polling against a feed served from 127.0.0.1 (http.server on a thread): 200 then 304 on
the ETag, state kept across a restart, backoff after 500s (an injected clock and sleep), and
hostile feeds (a huge entry, a body over the cap with or without Content-Length, broken XML,
billion laughs, script tags) refused or cleaned while the poller goes on with its other feeds."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from connectors.kafka.broker import BrokerError
from connectors.news.http import FetchFailed, fetch
from connectors.news.poller import FeedPoller, backoff_ms
from connectors.news.state import StateStore
from models.config.settings import TopicsConfig
from models.core.messages import NewsItem, SocialPost
from models.news.config import FeedSpec, NewsConfig
from models.news.tagging import SymbolTagger

TOPICS = TopicsConfig()
TAGGER = SymbolTagger.of(["GOOG", "SIMA"], {"GOOG": ["Google"]})


def rss(*items: str, title: str = "Test Wire") -> bytes:
    body = "".join(items)
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>{title}</title>'
        f"{body}</channel></rss>"
    ).encode()


def item(guid: str, title: str, when: str = "Mon, 06 May 2024 13:30:00 GMT", desc: str = "") -> str:
    return (
        f"<item><guid>{guid}</guid><title>{title}</title><description>{desc}</description>"
        f"<pubDate>{when}</pubDate></item>"
    )


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    etag: str | None = None
    length: bool = True  # send Content-Length (else the body ends with the connection)


@dataclass
class FeedServer:
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    base: str = ""

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


@pytest.fixture
def server() -> Iterator[FeedServer]:
    state = FeedServer()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: Any) -> None:
            pass

        def do_GET(self) -> None:
            state.requests.append((self.path, dict(self.headers.items())))
            route = state.routes.get(self.path, Route(404, b"no"))
            if route.etag is not None and self.headers.get("If-None-Match") == route.etag:
                self.send_response(304)
                self.end_headers()
                return
            self.send_response(route.status)
            self.send_header("Content-Type", "application/rss+xml")
            if route.etag is not None:
                self.send_header("ETag", route.etag)
            if route.length:
                self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            # The client may stop reading at its cap.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(route.body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


@dataclass
class MemorySink:
    records: list[tuple[str, bytes | None, bytes, int]] = field(default_factory=list)
    pending: list[tuple[str, bytes | None, bytes, int]] = field(default_factory=list)
    down: bool = False

    def send(self, topic: str, key: bytes | None, value: bytes, ts_ms: int) -> None:
        self.pending.append((topic, key, value, ts_ms))

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        if self.down:
            raise BrokerError("broker down")
        self.records += pending

    def items(self) -> list[NewsItem | SocialPost]:
        out: list[NewsItem | SocialPost] = []
        for topic, _, value, _ in self.records:
            model = NewsItem if topic == TOPICS.news else SocialPost
            out.append(model.model_validate_json(value))
        return out


@dataclass
class FakeClock:
    now: float = 1_715_000_000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


CONFIG = NewsConfig(max_bytes=200_000, backoff="30s", backoff_max="4m", poll_interval="5m")


def poller(
    tmp: Path, feeds: list[FeedSpec], sink: MemorySink, clock: FakeClock | None = None
) -> tuple[FeedPoller, list[str]]:
    lines: list[str] = []
    clock = clock or FakeClock()
    return (
        FeedPoller(
            feeds,
            CONFIG,
            TAGGER,
            sink,
            TOPICS,
            StateStore(tmp / "state"),
            clock=clock,
            sleep=clock.sleep,
            say=lines.append,
        ),
        lines,
    )


def test_200_then_304_on_the_etag_and_a_restart_republishes_nothing(
    server: FeedServer, tmp_path: Path
) -> None:
    body = rss(item("g1", "GOOG rallies"), item("g2", "$sima slips", desc="<b>bold</b>"))
    server.routes["/feed"] = Route(body=body, etag='"v1"')
    feed = FeedSpec(url=server.url("/feed"))
    sink = MemorySink()
    first, _ = poller(tmp_path, [feed], sink)
    assert first.poll(feed).status == "new"
    items = sink.items()
    assert [(i.id, i.symbols) for i in items] == [("g1", ["GOOG"]), ("g2", ["SIMA"])]
    assert all(r[3] == 1_715_002_200_000 for r in sink.records)  # record time = publication
    assert [r[1] for r in sink.records] == [b"GOOG", b"SIMA"]  # key = first symbol
    assert first.poll(feed).status == "not modified"
    assert server.requests[-1][1].get("If-None-Match") == '"v1"'
    # A restarted poller sends the saved ETag; a server ignoring it gets nothing republished.
    server.routes["/feed"] = Route(body=body, etag=None)
    again, _ = poller(tmp_path, [feed], sink)
    result = again.poll(feed)
    assert server.requests[-1][1].get("If-None-Match") == '"v1"'
    assert result.status == "new" and result.seen == 2 and result.counts.published == 0
    assert len(sink.records) == 2


def test_backoff_doubles_after_each_500_up_to_its_cap_and_ends_on_success(
    server: FeedServer, tmp_path: Path
) -> None:
    server.routes["/flaky"] = Route(500, b"oops")
    feed = FeedSpec(url=server.url("/flaky"))
    sink = MemorySink()
    clock = FakeClock()
    p, lines = poller(tmp_path, [feed], sink, clock)
    p.run(stop=lambda: len(clock.sleeps) >= 5)
    assert clock.sleeps == [30, 60, 120, 240, 240]
    assert all("HTTP 500" in line for line in lines)
    server.routes["/flaky"] = Route(body=rss(item("ok", "GOOG back")))
    p.run(stop=lambda: len(clock.sleeps) >= 6)
    assert clock.sleeps[-1] == 300  # the poll interval again
    assert [i.id for i in sink.items()] == ["ok"] and p.states[feed.url].failures == 0
    assert [backoff_ms(n, 30_000, 240_000) for n in range(6)] == [
        0,
        30_000,
        60_000,
        120_000,
        240_000,
        240_000,
    ]


def test_items_not_delivered_are_published_by_the_next_poll(
    server: FeedServer, tmp_path: Path
) -> None:
    server.routes["/f"] = Route(body=rss(item("a", "GOOG one")), etag='"e"')
    feed = FeedSpec(url=server.url("/f"))
    sink = MemorySink(down=True)
    p, _ = poller(tmp_path, [feed], sink)
    failed = p.poll(feed)
    assert failed.status == "failed" and "broker down" in (failed.problem or "")
    sink.down = False
    assert p.poll(feed).counts.published == 1 and [i.id for i in sink.items()] == ["a"]


LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
    + b"".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">'.encode() for i in range(9)
    )
    + b']><rss version="2.0"><channel><title>&j;</title></channel></rss>'
)


def test_hostile_feeds_are_refused_or_cleaned_and_the_poller_goes_on(
    server: FeedServer, tmp_path: Path
) -> None:
    huge_text = "GOOG " + "word " * 30_000
    server.routes.update(
        {
            "/huge-entry": Route(body=rss(item("big", "Google " * 5000, desc=huge_text))),
            "/over-cap": Route(body=rss(item("x", "GOOG", desc="y" * 300_000))),
            "/over-cap-stream": Route(
                body=rss(item("x2", "GOOG", desc="y" * 300_000)), length=False
            ),
            "/broken": Route(body=rss(item("b1", "GOOG survives"))[:-30]),
            "/laughs": Route(body=LAUGHS),
            "/script": Route(
                body=rss(
                    item(
                        "s1",
                        "GOOG &lt;script&gt;alert(1)&lt;/script&gt;up",
                        desc="&lt;p&gt;fine&lt;style&gt;x{}&lt;/style&gt;&lt;/p&gt;",
                    )
                )
            ),
            "/garbage": Route(body=b"\x00\x01 not a feed"),
            "/good": Route(body=rss(item("g", "$GOOG steady"))),
        }
    )
    names = [
        "/huge-entry",
        "/over-cap",
        "/over-cap-stream",
        "/broken",
        "/laughs",
        "/script",
        "/garbage",
        "/good",
    ]
    feeds = [FeedSpec(url=server.url(n)) for n in names]
    sink = MemorySink()
    p, lines = poller(tmp_path, feeds, sink)
    results = {r.url.rsplit("/", 1)[1]: r for r in p.run(once=True)}
    assert len(lines) == len(names)
    assert results["over-cap"].status == "failed" and "over the cap" in str(
        results["over-cap"].problem
    )
    assert results["over-cap-stream"].status == "failed"
    assert "over the cap" in str(results["over-cap-stream"].problem)
    assert results["laughs"].status == "failed" and "entities" in str(results["laughs"].problem)
    assert results["garbage"].status == "failed" and "not an RSS or Atom feed" in str(
        results["garbage"].problem
    )
    assert results["broken"].status == "new" and results["broken"].problem
    by_id = {i.id: i for i in sink.items()}
    assert set(by_id) == {"big", "b1", "s1", "g"}
    big = by_id["big"]
    assert isinstance(big, NewsItem) and len(big.headline) <= 1000 and len(big.body) <= 20_000
    script = by_id["s1"]
    assert isinstance(script, NewsItem)
    assert script.headline == "GOOG up" and script.body == "fine"
    assert "alert" not in script.model_dump_json() and "x{}" not in script.body
    for failed in ("over-cap", "laughs", "garbage"):
        assert p.states[server.url("/" + failed)].failures == 1  # backs off, still polled


def test_fetch_refuses_a_declared_length_over_the_cap_unread(server: FeedServer) -> None:
    server.routes["/big"] = Route(body=b"x" * 5000)
    got = fetch(server.url("/big"), etag=None, last_modified=None, timeout_s=5, max_bytes=1000)
    assert isinstance(got, FetchFailed) and got.too_large and "5,000 bytes" in got.reason
    gone = fetch(
        "http://127.0.0.1:9/none", etag=None, last_modified=None, timeout_s=2, max_bytes=1000
    )
    assert isinstance(gone, FetchFailed) and "cannot reach" in gone.reason


def test_a_social_feed_gives_posts_on_the_social_topic(server: FeedServer, tmp_path: Path) -> None:
    server.routes["/social"] = Route(body=rss(item("p1", "", desc="long $SIMA here")))
    feed = FeedSpec(url=server.url("/social"), kind="social", source="mastodon")
    sink = MemorySink()
    p, _ = poller(tmp_path, [feed], sink)
    p.poll(feed)
    assert [r[0] for r in sink.records] == [TOPICS.social]
    post = sink.items()[0]
    assert isinstance(post, SocialPost) and post.author == "mastodon" and post.symbols == ["SIMA"]
