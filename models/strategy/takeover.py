"""How a GPT answer's strategy takes over from what runs, so that it trades as the same rules
would have traded had they been running all along.

The desk (models/desk/desk.py) asks GPT on a strategic trigger and goes on: the symbol's running
strategy acts on that bar and on every bar until the answer arrives. When it arrives:

- the same strategy again (same spec, same universe): the running one keeps running with its
  state and track record; the answer places nothing itself, because the running strategy has
  already acted on every bar so far;
- another strategy while one runs on the decision symbol: it replaces the running one from the
  next bar (the running one has acted on the latest bar), warmed with the recent bars;
- a strategy where none runs: it acts on the latest bar at once (nothing else did for this
  decision), warmed with the bars before it.

Warming is what lets a `crosses_*` condition fire on a new strategy's first bar: the desk keeps
a short feature history per symbol (`FeatureHistory`) and the compiled strategy replays it into
its crossing memory (`CompiledStrategy.warm`), acting on none of it. A tie lasting longer than
the history leaves the side unknown, as for a trigger that has not seen a strict side yet.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from models.core.blocks import BarBlock
from models.core.messages import FeatureVector, Proposal
from models.gpt.decider import GPT_CONTROLLER, clip
from models.strategy.active import ActiveStrategy
from models.strategy.compiler import CompiledDecision, CompiledStrategy

HISTORY_BARS: Final = 64  # feature vectors kept per symbol to warm a new strategy
_MAX_RATIONALE: Final = 2000  # `Proposal.rationale`


Kept = FeatureVector | tuple[BarBlock, int]  # a vector, or a block's bar made into one when read


@dataclass(slots=True)
class FeatureHistory:
    """The last `HISTORY_BARS` feature vectors of each symbol, oldest first (picklable).

    The desk's block path (`add_block`) keeps a bar of a `BarBlock` as `(block, i)` and makes
    its vector only when it is read (`of`) or pickled: most bars are pushed out unread. What
    is read or pickled is always the vectors, as the per-bar path keeps them."""

    bars: dict[str, deque[Kept]] = field(default_factory=dict)

    def add(self, fv: FeatureVector) -> None:
        kept = self.bars.get(fv.symbol)
        if kept is None:
            kept = self.bars[fv.symbol] = deque(maxlen=HISTORY_BARS)
        kept.append(fv)

    def add_block(
        self, block: BarBlock, lo: int, hi: int, last: FeatureVector | None = None
    ) -> None:
        """Bars `lo..hi-1` of `block` (`last`: bar hi-1's vector if already made)."""
        kept = self.bars.get(block.symbol)
        if kept is None:
            kept = self.bars[block.symbol] = deque(maxlen=HISTORY_BARS)
        start = max(lo, hi - HISTORY_BARS)
        if last is None:
            kept.extend([(block, i) for i in range(start, hi)])
        else:
            kept.extend([(block, i) for i in range(start, hi - 1)])
            kept.append(last)

    def of(self, symbol: str, before_ms: int | None = None) -> list[FeatureVector]:
        """The symbol's kept bars, only those ending before `before_ms` if given."""
        kept = self._made(symbol)
        return [fv for fv in kept if before_ms is None or fv.ts_ms < before_ms]

    def _made(self, symbol: str) -> list[FeatureVector]:
        """The symbol's vectors, every bar kept as `(block, i)` made (and kept made)."""
        kept = self.bars.get(symbol)
        if kept is None:
            return []
        made = [_vector(entry) for entry in kept]
        if any(type(entry) is tuple for entry in kept):
            self.bars[symbol] = deque(made, maxlen=kept.maxlen)
        return made

    def __getstate__(self) -> object:
        for symbol in list(self.bars):
            self._made(symbol)
        return object.__getstate__(self)


def _vector(entry: Kept) -> FeatureVector:
    if isinstance(entry, FeatureVector):
        return entry
    block, i = entry
    cols = block.bars
    return block.features.vector(i, cols.symbol, cols.end_ms[i], float(cols.close[i]))


def same_strategy(a: CompiledStrategy, b: CompiledStrategy) -> bool:
    """Same rules over the same symbols (the id carries the spec's fingerprint)."""
    return a.strategy_id == b.strategy_id and a.universe == b.universe


@dataclass(frozen=True, slots=True)
class Takeover:
    """What the desk does with an answer: the decision to activate (its strategy ready to
    run), and whether the answer's own orders are placed now (`to_proposal`) or a new
    strategy waits for the next bar (`note` says why)."""

    decision: CompiledDecision
    acts_now: bool
    note: str = ""


def take_over(
    decision: CompiledDecision,
    running: ActiveStrategy | None,
    history: FeatureHistory,
    symbol: str,
    latest_ms: int,
) -> Takeover:
    """Prepare an answer's strategy against what runs on the decision `symbol`, whose latest
    bar ends at `latest_ms` (see the module docstring for the rules)."""
    new = decision.strategy
    if new is None:  # hold or derisk: nothing to run, the answer's orders (if any) go now
        return Takeover(decision, acts_now=True)
    if running is not None and same_strategy(running.strategy, new):
        kept = dataclasses.replace(decision, strategy=running.strategy)
        note = f"{running.strategy.strategy_id} already runs: it keeps running"
        return Takeover(kept, acts_now=decision.action != "create", note=note)
    first_bar_now = decision.action == "create" and running is None
    for sym in sorted(new.universe):
        # The decision symbol's latest bar is the first `on_bar` of a strategy that acts now.
        before = latest_ms if first_bar_now and sym == symbol else None
        new.warm(sym, history.of(sym, before))
    if decision.action == "create" and running is not None:
        note = (
            f"{running.strategy.strategy_id} acted on this bar; "
            f"{new.strategy_id} takes over from the next bar"
        )
        return Takeover(decision, acts_now=False, note=note)
    return Takeover(decision, acts_now=True)


def waiting_proposal(decision: CompiledDecision) -> Proposal:
    """The (empty) proposal of an answer whose strategy acts from the next bar."""
    strategy = decision.strategy
    return Proposal(
        controller=GPT_CONTROLLER,
        strategy=strategy.strategy_id if strategy is not None else f"gpt-{decision.action}",
        intents=[],
        rationale=clip(decision.rationale, _MAX_RATIONALE),
        confidence=decision.confidence,
    )
