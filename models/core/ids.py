"""Deterministic ids: the same input gives the same id, so a replay rewrites a row instead of
adding a second one, and an exchange never sees the same order created twice."""

from __future__ import annotations

import hashlib


def alert_id(*parts: object) -> str:
    """An alert's id from what it is about: one alert per cause, however often it is raised."""
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32]


def client_order_id(decision_id: str, index: int) -> str:
    """Deterministic per decision and intent: the same decision can never make a second order."""
    digest = hashlib.sha256(f"{decision_id}#{index}".encode()).hexdigest()[:24]
    return f"sf-{digest}"
