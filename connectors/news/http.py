"""One conditional GET of a feed: ETag / Last-Modified sent back, a timeout, a size cap.

The bytes are read here, not by feedparser, so that every limit is ours: a `Content-Length`
above `max_bytes` is refused before reading, and a body without one is read in chunks and
refused as soon as it passes the cap (a server that streams forever costs `max_bytes`, not
memory). `304 Not Modified` means nothing new. Every failure is one line in `FetchFailed`
(never an exception out of `fetch`), so a poller can back off and go on.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Final

__all__ = ["FetchFailed", "Fetched", "NotModified", "fetch"]

USER_AGENT: Final = "stratflow-news/0.1 (+https://github.com/stratflow)"
_CHUNK: Final = 64 * 1024


@dataclass(frozen=True)
class Fetched:
    body: bytes
    etag: str | None
    last_modified: str | None


@dataclass(frozen=True)
class NotModified:
    """304: the feed is as it was at the ETag / Last-Modified sent."""


@dataclass(frozen=True)
class FetchFailed:
    reason: str
    too_large: bool = False
    """Refused for its size (a hostile or broken feed, not a passing outage)."""


def _header(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip()
    return text[:512] if text and text.isprintable() else None


def fetch(
    url: str,
    *,
    etag: str | None,
    last_modified: str | None,
    timeout_s: float,
    max_bytes: int,
) -> Fetched | NotModified | FetchFailed:
    """GET `url` with the validators of the last answer; the body, 304, or why not."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    request = urllib.request.Request(url, headers=headers, method="GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            length = response.headers.get("Content-Length")
            if length is not None and length.strip().isdigit() and int(length) > max_bytes:
                return FetchFailed(
                    f"body of {int(length):,} bytes is over the cap of {max_bytes:,}", True
                )
            chunks: list[bytes] = []
            size = 0
            while chunk := response.read(_CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    return FetchFailed(f"body is over the cap of {max_bytes:,} bytes", True)
                chunks.append(chunk)
            return Fetched(
                b"".join(chunks),
                _header(response.headers.get("ETag")),
                _header(response.headers.get("Last-Modified")),
            )
    except urllib.error.HTTPError as err:
        if err.code == 304:
            return NotModified()
        return FetchFailed(f"HTTP {err.code} {' '.join(str(err.reason).split())[:80]}")
    except urllib.error.URLError as err:
        return FetchFailed(f"cannot reach the feed: {' '.join(str(err.reason).split())[:120]}")
    except TimeoutError:
        return FetchFailed(f"no answer within {timeout_s:g} s")
    except (OSError, ValueError) as err:
        return FetchFailed(f"fetch failed: {' '.join(str(err).split())[:120]}")
