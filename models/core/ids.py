"""Deterministic ids: the same input gives the same id, so a replay rewrites a row instead of
adding a second one, and an exchange never sees the same order created twice.

The digests come from Python's own SHA-256 (`_sha256`, `_sha2` from 3.12) where there is one:
the same digest as `hashlib.sha256` (OpenSSL's), without an OpenSSL digest context made and
freed per call, which in the flow cost several µs an id (two ids a decision at least)."""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from typing import Any


def _builtin_sha256() -> Callable[[bytes], Any]:
    """The builtin SHA-256 constructor; hashlib's (OpenSSL's) where there is none."""
    for module in ("_sha256", "_sha2"):
        try:
            return importlib.import_module(module).sha256  # type: ignore[no-any-return]
        except (ImportError, AttributeError):
            continue
    return hashlib.sha256


_sha256 = _builtin_sha256()


def alert_id(*parts: object) -> str:
    """An alert's id from what it is about: one alert per cause, however often it is raised."""
    digest: str = _sha256("|".join(map(str, parts)).encode()).hexdigest()
    return digest[:32]


def client_order_id(decision_id: str, index: int) -> str:
    """Deterministic per decision and intent: the same decision can never make a second order."""
    digest: str = _sha256(f"{decision_id}#{index}".encode()).hexdigest()
    return f"sf-{digest[:24]}"
