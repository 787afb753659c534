"""What of the desk Bytewax snapshots, and under which names.

The desk's state is a tuple of its components' fields (`TradingDesk.state`); a restore sets
them back in order (`TradingDesk.restore`). The names and their order are those of earlier
releases and only ever grow at the end, so a snapshot taken before a field was added restores
with that field at its default. Kept apart from the desk so the list is read in one place.
"""

from __future__ import annotations

__all__ = ["PERSISTED", "PERSISTED_NAMES"]

PERSISTED: tuple[tuple[str, str, str], ...] = (
    ("portfolio", "", "portfolio"),
    ("exchange", "", "exchange"),
    ("open_decisions", "decisions", "open"),
    ("decisions_made", "decisions", "made"),
    ("pending", "gpt", "pending"),
    ("strategies", "strategies", "strategies"),
    ("texts", "gpt", "texts"),
    ("latest", "", "latest"),
    ("budget", "gpt", "budget"),
    ("owners", "strategies", "owners"),
    ("last_asked", "gpt", "last_asked"),
    ("local_only", "gpt", "local_only"),
    ("seen_fills", "fills", "seen"),
    ("feature_history", "", "feature_history"),
    ("closed", "decisions", "closed"),
    ("fallen_back", "fills", "fallen_back"),
    ("given_up", "fills", "given_up"),
    ("held_fills", "fills", "held"),
    ("standing_started", "strategies", "standing_started"),
    ("bar_history", "", "bar_history"),
    ("demotion", "", "demotion"),
    ("control", "", "control"),
)
PERSISTED_NAMES = tuple(name for name, _, _ in PERSISTED)
