"""The strategies GPT wrote while they run: which symbol each owns, how one replaces another,
when one expires, and which fills are theirs.

A running strategy owns every symbol of its universe: it acts on its own rules on every bar of
them, and routine triggers there are its business, not the local engine's. A new strategy takes
over its universe (and the decision symbol) and retires what ran there (`REPLACED`); the same
strategy again keeps running with its track record; a `derisk` answer without one retires the
current (`RETIRED`); a strategy past its horizon ends (`EXPIRED`). Fills of its orders are
credited to it (`owners`: decision id -> strategy) for its performance figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from models.core.events import BarEvent
from models.core.messages import Fill, Side, StrategyRecord, StrategyStatus, TradeIntent
from models.core.trusted import frozen_maker
from models.portfolio.book import Portfolio
from models.strategy.active import ActiveStrategy
from models.strategy.compiler import CompiledDecision, CompiledStrategy
from models.strategy.intents import to_intent
from models.strategy.user_file import STANDING_PREFIX


@dataclass(frozen=True, slots=True)
class StrategyActions:
    """What a running strategy wants on one bar: its orders and their reasons."""

    active: ActiveStrategy
    intents: list[TradeIntent]
    rationale: str


_strategy_actions = frozen_maker(StrategyActions)  # `StrategyActions(...)`, fields in order


@dataclass(slots=True)
class StrategyBook:
    strategies: dict[str, ActiveStrategy] = field(default_factory=dict)  # by symbol
    owners: dict[str, ActiveStrategy] = field(default_factory=dict)  # decision id -> strategy
    # The configuration's own strategies (strategy files), compiled; not snapshotted: they come
    # from the settings. Each starts on the first bar of its universe and never expires.
    standing: tuple[CompiledStrategy, ...] = ()
    standing_started: set[str] = field(default_factory=set)  # their activation ids

    def is_standing(self, symbol: str) -> bool:
        """Whether a configured strategy runs (or will run) the symbol."""
        return any(symbol in s.universe for s in self.standing)

    def _start_standing(self, symbol: str, ts_ms: int, equity: Decimal) -> list[StrategyRecord]:
        """Activate the configured strategy of `symbol` on its universe's first bar (once: a
        strategy a fallback retired stays retired)."""
        for compiled in self.standing:
            activation_id = f"{STANDING_PREFIX}{compiled.spec.name}"
            if symbol not in compiled.universe or activation_id in self.standing_started:
                continue
            self.standing_started.add(activation_id)
            spec = compiled.spec
            new = ActiveStrategy(
                activation_id=activation_id,
                strategy=compiled,
                symbol=min(compiled.universe),
                started_ms=ts_ms,
                start_equity=equity,
                confidence=spec.confidence,
                rationale=spec.rationale,
            )
            for s in compiled.universe:
                self.strategies[s] = new
            return [new.record(StrategyStatus.ACTIVE)]
        return []

    def get(self, symbol: str) -> ActiveStrategy | None:
        return self.strategies.get(symbol)

    def end(self, active: ActiveStrategy, status: StrategyStatus, ts_ms: int) -> StrategyRecord:
        """Stop `active` on every symbol it owns; its final record."""
        for sym in [s for s, a in self.strategies.items() if a is active]:
            del self.strategies[sym]
        return active.record(status, ended_ms=ts_ms)

    def on_bar(
        self,
        event: BarEvent,
        portfolio: Portfolio,
        in_flight: Decimal,
        lot: Decimal,
        ended: list[StrategyRecord],
    ) -> tuple[bool, StrategyActions | None]:
        """Run the symbol's strategy on this bar (always, so `crosses_*` see every bar) and
        age it; an expired one ends, a configured one starts (their records appended to
        `ended`). Returns whether a
        strategy owns the symbol, and its actions (None when it has none)."""
        bar = event.bar
        sym = bar.symbol
        active = self.strategies.get(sym)
        if active is None and self.standing:
            ended.extend(self._start_standing(sym, bar.end_ms, portfolio.equity()))
            active = self.strategies.get(sym)
        if active is None:
            return False, None
        if sym == active.symbol:
            active.on_bar(portfolio)
            if active.expired and not active.activation_id.startswith(STANDING_PREFIX):
                ended.append(self.end(active, StrategyStatus.EXPIRED, bar.end_ms))
                return False, None
        # Orders on their way count as held: a slow exchange must not make it buy twice.
        held = portfolio.quantity(sym)
        position = held + in_flight
        entry = portfolio.positions[sym].avg_cost if held != 0 else None
        actions = active.strategy.on_bar(sym, event.features, position, entry)
        if not actions:
            return True, None
        equity = portfolio.equity()
        intents: list[TradeIntent] = []
        for action in actions:  # a turn closes, then opens from flat
            intent = to_intent(action, position, bar.close, equity, lot)
            if intent is not None:
                intents.append(intent)
                position += intent.quantity if intent.side is Side.BUY else -intent.quantity
        if not intents:
            return True, None
        rationale = "; ".join(a.reason for a in actions)[:2000]
        return True, _strategy_actions(active, intents, rationale)

    def activate(
        self, decision: CompiledDecision, decision_id: str, symbol: str, ts_ms: int, equity: Decimal
    ) -> list[StrategyRecord]:
        """A new strategy takes over its universe; derisk without one retires the current."""
        out: list[StrategyRecord] = []
        strategy = decision.strategy
        if decision.action == "hold":
            return out
        if strategy is None:  # derisk, nothing to run next
            current = self.strategies.get(symbol)
            if current is not None:
                out.append(self.end(current, StrategyStatus.RETIRED, ts_ms))
            return out
        # Its age counts in bars of the decision symbol, or of its first symbol if GPT gave
        # the decision symbol no part in it.
        clock_symbol = symbol if symbol in strategy.universe else min(strategy.universe)
        new = ActiveStrategy(
            activation_id=decision_id,
            strategy=strategy,
            symbol=clock_symbol,
            started_ms=ts_ms,
            start_equity=equity,
            confidence=decision.confidence,
            rationale=decision.rationale,
        )
        current = self.strategies.get(symbol)
        if (
            current is not None
            and current.strategy.strategy_id == strategy.strategy_id
            and current.universe == strategy.universe
        ):
            return out  # the same strategy again: it keeps running, with its track record
        for s in sorted(strategy.universe | {symbol}):
            old = self.strategies.get(s)
            if old is not None:
                out.append(self.end(old, StrategyStatus.REPLACED, ts_ms))
        for s in strategy.universe:
            self.strategies[s] = new
        out.append(new.record(StrategyStatus.ACTIVE))
        return out

    def own(self, decision_id: str, active: ActiveStrategy) -> None:
        """The decision's orders are the strategy's: their fills count towards its record."""
        self.owners[decision_id] = active

    def settled(self, decision_id: str) -> None:
        """The decision has no order out any more: nothing left to credit."""
        self.owners.pop(decision_id, None)

    def credit(self, fill: Fill, avg_cost_before: Decimal, held_before: Decimal) -> None:
        """Credit a booked fill to the strategy whose decision placed it, if any."""
        owner = self.owners.get(fill.decision_id)
        if owner is not None:
            owner.on_fill(fill, avg_cost_before, held_before)
