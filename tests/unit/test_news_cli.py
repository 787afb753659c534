"""`stratflow news load|poll` mistakes: one `error:` line each, before any broker is asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import assert_user_error, run_cli


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("news", "load", "missing.rss"), ("missing.rss", "no such file")),
        (("news", "load", "."), ("not a file",)),
        (("news", "load", "--kind", "blog", "x.rss"), ("--kind must be news or social",)),
        (("news", "poll", "ftp://example.com/feed"), ("http:// or https://", "ftp://")),
        (("news", "poll", "--once"), ("no feeds", "news.feeds")),
    ],
)
def test_news_mistakes_are_one_line(
    args: tuple[str, ...], needles: tuple[str, ...], tmp_path: Path
) -> None:
    assert_user_error(run_cli(*args, cwd=tmp_path), *needles)


def test_load_without_a_broker_says_how_to_get_one(tmp_path: Path) -> None:
    feed = tmp_path / "f.rss"
    feed.write_text('<rss version="2.0"><channel><title>t</title></channel></rss>')
    assert_user_error(run_cli("news", "load", str(feed), cwd=tmp_path), "no broker")
