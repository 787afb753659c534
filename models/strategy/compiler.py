"""Compile a `StrategySpec` into plain Python objects and run it bar by bar, without `eval`.

The compiler checks what the JSON Schema cannot (feature names against the features the pipeline
computes, symbols against the configured universe, weight sums, the configured sizing cap,
comparisons that can never change, contradictory stops) and returns *every* reason at once, so one
adjust round can fix them all. What it builds is a small tree of frozen dataclasses: a comparison
node reads two values from the feature dict and applies an operator taken from a fixed table; a
group node is `all`/`any` over its children. No string from the answer is ever executed, imported
or formatted into code; it is only looked up in a dict or copied into a reason.

State is kept only where it is needed: a strategy with `crosses_*` comparisons remembers, per
symbol and compared pair, the last strict side (models/signals/crossing.py, the one definition of a
cross
that the crossover trigger uses too: equal values keep the last strict side); small ints, so the
whole compiled strategy pickles with Bytewax snapshots. A strategy without them is stateless.
`warm` replays recent bars into that memory, so a strategy compiled from an answer can see a
cross on its very first bar, as a strategy that had been running all along would.
Stops and take-profit compare the close with the entry price in `Decimal`, because they are
money; indicator comparisons stay in float, as the indicators are.
"""

from __future__ import annotations

import math
import operator
import unicodedata
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from models.config.settings import ExecutionConfig, StrategyConfig
from models.core.messages import FeatureVector, Side, TradeIntent
from models.core.money import round_to_lot
from models.core.trusted import frozen_maker
from models.signals import crossing
from models.signals.indicators import parse_feature
from models.strategy.intents import (
    MAX_REASON,
    ActionKind,
    StrategyAction,
    buy_to_fraction,
)
from models.strategy.spec import (
    OPERAND_NAMES,
    Comparison,
    ComparisonOp,
    ConditionNode,
    DecisionAction,
    GptDecision,
    Rejection,
    StrategySpec,
)

__all__ = [
    "CompareNode",
    "CompiledDecision",
    "CompiledStrategy",
    "Const",
    "FeatureRef",
    "GroupNode",
    "Node",
    "Pair",
    "Rejection",
    "StrategyLimits",
    "Term",
    "compile_decision",
    "compile_strategy",
    "one_line",
]

_ZERO: Final = Decimal(0)
_ONE: Final = Decimal(1)
_BPS: Final = Decimal(10_000)
_LISTED: Final = 20  # names quoted in one reason, so a reason stays one readable line

Values = Mapping[str, float | None]
_strategy_action = frozen_maker(StrategyAction)


@dataclass(frozen=True, slots=True)
class StrategyLimits:
    """What the configuration allows a GPT strategy; the schema alone cannot know it."""

    max_position_fraction: Decimal = Decimal("0.20")
    max_total_weight: Decimal = _ONE
    # fees + slippage of a buy and a sell, as a fraction of price: a take-profit inside it
    # closes a "winning" trade at a net loss.
    round_trip_cost: Decimal = _ZERO
    max_comparisons: int = 32  # per condition tree; the schema allows up to 8**3
    # The names a condition may read; None: the defaults and any registered `kind_period`
    # (`models.signals.indicators`), for strategies whose features the flow computes for them.
    features: frozenset[str] | None = frozenset(OPERAND_NAMES)

    @classmethod
    def from_config(cls, strategy: StrategyConfig, execution: ExecutionConfig) -> StrategyLimits:
        """GPT may size up to the local engine's biggest fraction, never beyond it."""
        cost = 2 * (execution.fee_bps + execution.slippage_bps) / _BPS
        return cls(
            max_position_fraction=max(strategy.target_fraction, strategy.strategic_fraction),
            round_trip_cost=cost,
        )


# --------------------------------------------------------------------------------- the nodes


@dataclass(frozen=True, slots=True)
class FeatureRef:
    name: str


@dataclass(frozen=True, slots=True)
class Const:
    value: float


Term = FeatureRef | Const
Pair = tuple[Term, Term]  # (left, right) of a crosses_* comparison
Sides = Mapping[Pair, crossing.Side]  # last strict side of each pair before this bar

# The only operators a strategy can reach; `operator` functions pickle by reference.
_THRESHOLDS: Final[dict[str, Callable[[float, float], bool]]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_CROSSES: Final = frozenset({"crosses_above", "crosses_below"})


def _read(term: Term, values: Values) -> float | None:
    return term.value if type(term) is Const else values.get(term.name)  # type: ignore[union-attr]


def _term_text(term: Term) -> str:
    return term.name if isinstance(term, FeatureRef) else repr(term.value)


@dataclass(frozen=True, slots=True)
class CompareNode:
    left: Term
    op: ComparisonOp
    right: Term

    def holds(self, now: Values, before: Sides | None) -> bool:
        """True when the comparison holds on this bar; a missing value (warm-up) is false.
        crosses_*: the pair's strict side changed on this bar (models/signals/crossing.py); `before`
        None (a bar not newer than the last one seen) crosses nothing."""
        lv, rv = _read(self.left, now), _read(self.right, now)
        if lv is None or rv is None:
            return False
        if self.op not in _CROSSES:
            return bool(_THRESHOLDS[self.op](lv, rv))
        if before is None:
            return False
        last = before.get((self.left, self.right), crossing.UNKNOWN)
        cross, _ = crossing.step(last, lv, rv)
        return cross == (crossing.ABOVE if self.op == "crosses_above" else crossing.BELOW)

    def text(self) -> str:
        return f"{_term_text(self.left)} {self.op} {_term_text(self.right)}"


@dataclass(frozen=True, slots=True)
class GroupNode:
    require_all: bool
    children: tuple[CompareNode | GroupNode, ...]

    def holds(self, now: Values, before: Sides | None) -> bool:
        if self.require_all:
            return all(c.holds(now, before) for c in self.children)
        return any(c.holds(now, before) for c in self.children)

    def text(self) -> str:
        inner = ", ".join(c.text() for c in self.children)
        return f"{'all' if self.require_all else 'any'}({inner})"


Node = CompareNode | GroupNode


# ------------------------------------------------------------------------------- the runtime


class CompiledStrategy:
    """A checked strategy, ready to run; built only by `compile_strategy`.

    Long-only, like the local engine: flat + entry holds (and exit does not) -> buy to the
    target fraction; long -> stop loss, then take profit, then the exit condition, each selling
    the whole position. A negative position is not this strategy's to manage: no action.
    """

    _reads_close = True  # a strategy unpickled from before `_reads_close`: the general path

    def __init__(
        self,
        spec: StrategySpec,
        entry: Node,
        exit_: Node,
        pairs: tuple[Pair, ...],
    ) -> None:
        self.spec = spec
        name = one_line(spec.name) or "strategy"
        self.strategy_id = f"{name}@v{spec.version}#{spec.fingerprint()[:12]}"
        self.universe: frozenset[str] = frozenset(spec.universe)
        self.entry = entry
        self.exit = exit_
        self.position_fraction = _dec(spec.position_fraction)
        self.stop_loss = None if spec.stop_loss_pct is None else _dec(spec.stop_loss_pct)
        self.take_profit = None if spec.take_profit_pct is None else _dec(spec.take_profit_pct)
        self.target_weights: dict[str, Decimal] = {
            w.symbol: _dec(w.weight) for w in spec.target_weights
        }
        self.horizon_bars = spec.horizon_bars
        # The (left, right) pairs of crosses_* comparisons; empty: the strategy keeps no state.
        self._pairs = pairs
        # Whether a condition reads the bar's close: if not, a bar's values are its features
        # as they are (`_values` copies them to add the close).
        self._reads_close = "close" in _names_read(entry) | _names_read(exit_)
        # symbol -> (ts_ms of the last bar seen, last strict side of each pair).
        self._last: dict[str, tuple[int, dict[Pair, crossing.Side]]] = {}

    @property
    def stateful(self) -> bool:
        return bool(self._pairs)

    @property
    def pairs(self) -> tuple[Pair, ...]:
        """The (left, right) pairs of its crosses_* comparisons, in the memory's order."""
        return self._pairs

    def memory(self, symbol: str) -> tuple[int | None, dict[Pair, crossing.Side]]:
        """The crosses_* memory of `symbol`: the last bar seen (None: none) and each pair's
        last strict side (`models.strategy.rows` reads and advances it over feature rows)."""
        last = self._last.get(symbol)
        return (None, {}) if last is None else last

    def remember(
        self,
        symbol: str,
        ts_ms: int,
        before: dict[Pair, crossing.Side],
        sides: list[crossing.Side],
    ) -> None:
        """The memory as `_advance` leaves it after bars up to `ts_ms` whose last sides are
        `sides` (in `pairs` order), starting from `before`: the same dict, keys in order."""
        now = dict(before)
        for (left, right), side in zip(self._pairs, sides, strict=True):
            now[(left, right)] = side
        self._last[symbol] = (ts_ms, now)

    def target_fraction(self, symbol: str) -> Decimal:
        """A rebalance weight for the symbol, if GPT gave one, else the per-entry fraction."""
        return self.target_weights.get(symbol, self.position_fraction)

    def _advance(self, symbol: str, ts_ms: int, now: Values) -> Sides | None:
        """Fold this bar into the crosses_* memory, return the sides as they were before it.
        A bar not newer than the last one seen (a replayed duplicate) gets None: it can
        neither fake nor repeat a cross, and it does not overwrite the state."""
        if not self._pairs:
            return None
        last = self._last.get(symbol)
        if last is not None and ts_ms <= last[0]:
            return None
        before = last[1] if last is not None else {}
        sides = dict(before)
        for pair in self._pairs:
            left, right = pair
            _, sides[pair] = crossing.step(
                before.get(pair, crossing.UNKNOWN), _read(left, now), _read(right, now)
            )
        self._last[symbol] = (ts_ms, sides)
        return before

    def warm(self, symbol: str, history: Iterable[FeatureVector]) -> None:
        """Let the strategy see bars it did not run on (oldest first, as `on_bar` would),
        without acting: a strategy compiled from an answer then knows which side each
        crosses_* pair was on, and can cross on its first bar. Other bars are ignored."""
        if symbol not in self.universe:
            return
        for fv in history:
            self._advance(symbol, fv.ts_ms, _values(fv))

    def _action(
        self, symbol: str, kind: ActionKind, why: str, *, short: bool = False
    ) -> StrategyAction:
        """An entry opens a long (a buy) or, `short`, a short (a sell); every other kind
        closes the position: a sell closes a long, a buy (`short`) covers a short."""
        opening = kind == "entry"
        buy = opening != short
        reason = f"{self.strategy_id} {kind}{' short' if short else ''}: {why}"
        return _strategy_action(  # `StrategyAction(...)`, its fields in order
            symbol,
            Side.BUY if buy else Side.SELL,
            kind,
            self.target_fraction(symbol) if opening else _ZERO,
            reason[:MAX_REASON],
        )

    def _stops(
        self, symbol: str, close: Decimal, entry_price: Decimal, short: bool
    ) -> list[StrategyAction]:
        """A stop or a take-profit of the open position, against its entry price: a long's
        stop is below it, a short's above."""
        sign = -_ONE if short else _ONE
        if (
            self.stop_loss is not None
            and (close - entry_price * (_ONE - sign * self.stop_loss)) * (sign) <= 0
        ):
            why = f"close {close} {'>=' if short else '<='} stop"
            return [self._action(symbol, "stop_loss", why, short=short)]
        if (
            self.take_profit is not None
            and (close - entry_price * (_ONE + sign * self.take_profit)) * sign >= 0
        ):
            why = f"close {close} {'<=' if short else '>='} target"
            return [self._action(symbol, "take_profit", why, short=short)]
        return []

    def on_bar(
        self, symbol: str, fv: FeatureVector, position: Decimal, entry_price: Decimal | None
    ) -> list[StrategyAction]:
        """The actions for one closed bar of one symbol. Deterministic: the same bars in the
        same order give the same actions; call it for every bar of every symbol of the
        universe, also when flat, so crosses_* see each bar's predecessor.

        `direction` long: flat + entry (and not exit) buys; long: stop, take-profit, then the
        exit condition sell it all. short: the mirror (entry sells short, exit covers).
        both: entry means long and exit means short: flat, either opens its side; long and
        exit holds, or short and entry holds, closes and opens the other side (two actions);
        a stop or a take-profit only closes."""
        if symbol not in self.universe:
            return []
        finite = math.isfinite(fv.close)
        now = _values(fv) if self._reads_close else fv.values
        before = self._advance(symbol, fv.ts_ms, now)
        direction = self.spec.direction
        if position != 0:
            short = position < 0
            if (
                entry_price is not None
                and entry_price > 0
                and finite
                and (self.stop_loss is not None or self.take_profit is not None)
            ):
                stopped = self._stops(symbol, _dec(fv.close), entry_price, short)
                if stopped:
                    return stopped
            if direction == "both":
                turn = self.entry if short else self.exit
                if turn.holds(now, before):
                    kind_text = turn.text()
                    return [
                        self._action(symbol, "exit", kind_text, short=short),
                        self._action(symbol, "entry", kind_text, short=not short),
                    ]
                return []
            if short != (direction == "short"):
                return []  # a position of the other side is not this strategy's to manage
            if self.exit.holds(now, before):
                return [self._action(symbol, "exit", self.exit.text(), short=short)]
            return []
        entry, exit_ = self.entry.holds(now, before), self.exit.holds(now, before)
        if direction == "both":
            if entry != exit_:
                why = (self.entry if entry else self.exit).text()
                return [self._action(symbol, "entry", why, short=exit_)]
            return []
        if entry and not exit_:
            return [self._action(symbol, "entry", self.entry.text(), short=direction == "short")]
        return []

    def rebalance(
        self,
        positions: Mapping[str, Decimal],
        prices: Mapping[str, Decimal],
        equity: Decimal,
        lot_sizes: Mapping[str, Decimal],
    ) -> list[TradeIntent]:
        """Orders that move each symbol of `target_weights` to its weight of equity: sells
        first (they free the cash the buys need), then buys (sized at their fills, to their
        weights), each in symbol order. Symbols
        without a weight, or without a known price, are left as they are."""
        sells: list[TradeIntent] = []
        buys: list[TradeIntent] = []
        for symbol in sorted(self.target_weights):
            price = prices.get(symbol)
            if price is None or price <= 0 or equity <= 0:
                continue
            lot = lot_sizes.get(symbol, _ONE)
            held = positions.get(symbol, _ZERO)
            target = round_to_lot(equity * self.target_weights[symbol] / price, lot)
            reason = f"{self.strategy_id} rebalance to {self.target_weights[symbol]}"[:MAX_REASON]
            if target < held:
                # Whole lots: dust (a commission taken in the base asset) is not sellable.
                if (qty := round_to_lot(held - target, lot)) > 0:
                    sells.append(
                        TradeIntent(symbol=symbol, side=Side.SELL, quantity=qty, reason=reason)
                    )
            elif (qty := round_to_lot(target - held, lot)) > 0:
                buys.append(buy_to_fraction(symbol, qty, self.target_weights[symbol], reason))
        return sells + buys


def _names_read(node: Node) -> set[str]:
    """The feature names a condition tree reads."""
    if isinstance(node, GroupNode):
        return set().union(*(_names_read(c) for c in node.children))
    return {t.name for t in (node.left, node.right) if isinstance(t, FeatureRef)}


def _values(fv: FeatureVector) -> dict[str, float | None]:
    """The names a condition may read: the features and the bar's close (None if not finite)."""
    now: dict[str, float | None] = dict(fv.values)
    now["close"] = fv.close if math.isfinite(fv.close) else None
    return now


def _dec(value: float) -> Decimal:
    """The decimal a person reads in the answer: 0.1 -> Decimal("0.1"), not 0.1000...055."""
    return Decimal(repr(value))


def one_line(text: str) -> str:
    """Free text GPT wrote, made fit for one line of a log, a table cell or an order reason:
    line breaks and other whitespace become one space; control, format (bidi overrides,
    zero-width), surrogate and private-use characters are dropped. Nothing else changes."""
    out: list[str] = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch.isspace() or cat in ("Zs", "Zl", "Zp") or cat == "Cc":
            out.append(" ")
        elif cat[0] != "C":
            out.append(ch)
    return " ".join("".join(out).split())


# ------------------------------------------------------------------------------ the compiler


def _listing(names: Collection[str]) -> str:
    ordered = sorted(names)
    more = f", ... ({len(ordered) - _LISTED} more)" if len(ordered) > _LISTED else ""
    return ", ".join(ordered[:_LISTED]) + more


@dataclass
class _Builder:
    """Builds the node tree and collects every reason on the way (no early return)."""

    limits: StrategyLimits
    reasons: list[str] = field(default_factory=list)
    pairs: dict[Pair, None] = field(default_factory=dict)  # ordered set
    comparisons: int = 0

    def term(self, value: str | float, path: str) -> Term:
        if isinstance(value, str):
            known = self.limits.features
            if known is None:
                if value not in OPERAND_NAMES and isinstance(why := parse_feature(value), str):
                    self.reasons.append(f"{path}: {why}")
            elif value not in known:
                self.reasons.append(f"{path}: unknown feature {value!r}; known: {_listing(known)}")
            return FeatureRef(value)
        return Const(float(value))

    def node(self, cond: ConditionNode, path: str) -> Node:
        if isinstance(cond, Comparison):
            self.comparisons += 1
            left = self.term(cond.left, f"{path}.left")
            right = self.term(cond.right, f"{path}.right")
            node = CompareNode(left, cond.op, right)
            if isinstance(left, Const) and isinstance(right, Const):
                why = (
                    "needs a feature that has a previous value"
                    if cond.op in _CROSSES
                    else "never changes"
                )
                self.reasons.append(f"{path}: {node.text()} compares two numbers and {why}")
            elif left == right:
                self.reasons.append(f"{path}: {node.text()} compares a feature with itself")
            if cond.op in _CROSSES:
                self.pairs[(left, right)] = None
            return node
        children = tuple(
            self.node(c, f"{path}.conditions[{i}]") for i, c in enumerate(cond.conditions)
        )
        return GroupNode(cond.match == "all", children)

    def condition(self, cond: ConditionNode, path: str) -> Node:
        before = self.comparisons
        node = self.node(cond, path)
        used = self.comparisons - before
        if used > self.limits.max_comparisons:
            self.reasons.append(
                f"{path}: {used} comparisons, more than {self.limits.max_comparisons}"
            )
        return node


def _check_symbols(
    spec: StrategySpec, allowed: Collection[str], limits: StrategyLimits, reasons: list[str]
) -> None:
    allowed_set = frozenset(allowed)
    for sym, n in Counter(spec.universe).items():
        if n > 1:
            reasons.append(f"universe: {sym} is listed {n} times")
    for i, sym in enumerate(spec.universe):
        if sym not in allowed_set:
            reasons.append(
                f"universe[{i}]: {sym} is not an allowed symbol; allowed: {_listing(allowed_set)}"
            )
    if _dec(spec.position_fraction) > limits.max_position_fraction:
        reasons.append(
            f"position_fraction: {spec.position_fraction} is above the configured cap "
            f"{limits.max_position_fraction}"
        )
    for sym, n in Counter(w.symbol for w in spec.target_weights).items():
        if n > 1:
            reasons.append(f"target_weights: {sym} is listed {n} times")
    universe = frozenset(spec.universe)
    total = _ZERO
    for i, w in enumerate(spec.target_weights):
        weight = _dec(w.weight)
        total += weight
        if w.symbol not in universe:
            reasons.append(f"target_weights[{i}].symbol: {w.symbol} is not in the universe")
        if weight > limits.max_position_fraction:
            reasons.append(
                f"target_weights[{i}].weight: {w.weight} is above the configured cap "
                f"{limits.max_position_fraction}"
            )
    if total > limits.max_total_weight:
        reasons.append(
            f"target_weights: weights sum to {total}, more than {limits.max_total_weight}"
        )


def _check_stops(spec: StrategySpec, limits: StrategyLimits, reasons: list[str]) -> None:
    if spec.take_profit_pct is not None and _dec(spec.take_profit_pct) <= limits.round_trip_cost:
        reasons.append(
            f"take_profit_pct: {spec.take_profit_pct} is within the round-trip cost "
            f"{limits.round_trip_cost}, so taking profit would lose money"
        )
    if spec.entry == spec.exit:
        reasons.append(
            "exit: the same condition as entry, so the strategy could never hold a position"
        )


def compile_strategy(
    spec: StrategySpec,
    allowed_symbols: Collection[str],
    limits: StrategyLimits | None = None,
) -> CompiledStrategy | Rejection:
    """A runnable strategy, or every reason it must not run (in spec order)."""
    lim = limits if limits is not None else StrategyLimits()
    reasons: list[str] = []
    _check_symbols(spec, allowed_symbols, lim, reasons)
    builder = _Builder(lim)
    entry = builder.condition(spec.entry, "entry")
    exit_ = builder.condition(spec.exit, "exit")
    reasons.extend(builder.reasons)
    _check_stops(spec, lim, reasons)
    if reasons:
        return Rejection(reasons)
    return CompiledStrategy(spec, entry, exit_, tuple(builder.pairs))


@dataclass(frozen=True, slots=True)
class CompiledDecision:
    """A checked GPT decision: what to do, and the strategy to run from now on (if any).
    `rationale` is GPT's, on one line (`one_line`): it goes into orders and the decision log."""

    action: DecisionAction
    strategy: CompiledStrategy | None
    rationale: str
    confidence: float


def compile_decision(
    decision: GptDecision,
    allowed_symbols: Collection[str],
    limits: StrategyLimits | None = None,
) -> CompiledDecision | Rejection:
    """Check the action against the strategy (strict mode cannot express "required when"),
    then compile the strategy; reasons are prefixed with `strategy.` where they belong."""
    reasons: list[str] = []
    spec = decision.strategy
    if decision.action == "hold" and spec is not None:
        reasons.append("strategy: must be null when action is hold")
    if decision.action in ("create", "rebalance") and spec is None:
        reasons.append(f"strategy: required when action is {decision.action}")
    if spec is not None and spec.direction != "long":
        reasons.append("strategy.direction: GPT's strategies are long-only")
    if decision.action == "rebalance" and spec is not None and not spec.target_weights:
        reasons.append("strategy.target_weights: empty, but action is rebalance")
    compiled: CompiledStrategy | None = None
    if spec is not None and decision.action != "hold":
        result = compile_strategy(spec, allowed_symbols, limits)
        if isinstance(result, Rejection):
            reasons.extend(f"strategy.{r}" for r in result.reasons)
        else:
            compiled = result
    if reasons:
        return Rejection(reasons)
    return CompiledDecision(
        action=decision.action,
        strategy=compiled,
        rationale=one_line(decision.rationale),
        confidence=decision.confidence,
    )
