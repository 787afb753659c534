"""Decides whether a bar's signals need a strategic decision or a routine one.

Strategic decisions are the expensive path (later a GPT controller and regime detection hang off
this choice), so they are reserved for what the configuration marks as strategic and for bars on
which several triggers agree that something unusual is happening; a lone routine signal takes the
cheap path, and a bar without signals takes no path at all.
"""

from __future__ import annotations

from collections.abc import Sequence

from models.config.settings import RouterConfig
from models.core.messages import Branch, Signal


def route(signals: Sequence[Signal], cfg: RouterConfig) -> Branch | None:
    """The branch for one bar's signals, or None when there is nothing to decide."""
    if not signals:
        return None
    if len(signals) >= cfg.min_signals_for_strategic or any(s.strategic for s in signals):
        return Branch.STRATEGIC
    return Branch.ROUTINE
