"""What "A crosses B" means, once, for everything that asks: the configured crossover trigger
and a GPT strategy's `crosses_above` / `crosses_below`.

A cross is a change of *strict* side. Each observation of (left, right) is above (left > right),
below (left < right), or neither: equal, or not evaluable (a value is None: still warming up;
or NaN). Neither keeps the last strict side, because touching is not crossing and an unknown
is not evidence of anything. So

    below -> equal -> above    is one cross above (on the "above" bar),
    above -> equal -> above    is no cross at all,
    below -> None  -> above    is one cross above,

and the first strict side ever seen is no cross (there is no side it came from). The same rule
in the trigger and in the strategy compiler is what lets a GPT strategy written as "sma_fast
crosses_above sma_slow" trade exactly as the local engine does on the crossover trigger.

Pure functions over an int (`Side`), so the state a caller keeps is one small int per pair,
cheap to pickle with Bytewax snapshots.
"""

from __future__ import annotations

import math
from typing import Final

Side = int  # ABOVE, BELOW or UNKNOWN

ABOVE: Final[Side] = 1
BELOW: Final[Side] = -1
UNKNOWN: Final[Side] = 0  # no strict side seen yet


def strict_side(left: float | None, right: float | None) -> Side:
    """ABOVE or BELOW when the two values differ, UNKNOWN when equal or not evaluable."""
    if left is None or right is None or math.isnan(left) or math.isnan(right):
        return UNKNOWN
    if left > right:
        return ABOVE
    if left < right:
        return BELOW
    return UNKNOWN


def step(last: Side, left: float | None, right: float | None) -> tuple[Side, Side]:
    """One observation: (the cross it makes, the last strict side afterwards). The cross is
    ABOVE (crossed above), BELOW (crossed below) or UNKNOWN (no cross)."""
    now = strict_side(left, right)
    if now == UNKNOWN:
        return UNKNOWN, last
    if last != UNKNOWN and last != now:
        return now, now
    return UNKNOWN, now
