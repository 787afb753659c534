"""Strategies of your own, in the language GPT writes: a parsed YAML/JSON document -> specs.

A strategy file holds one strategy (the `StrategySpec` GPT answers with), a list of them, or a
mapping `{strategies: [...]}`. It is judged by the same schema and the same compiler as GPT's
answers, so a file that loads is a strategy the desk can run, and a reason names the field
exactly as it does for GPT (`strategies[1].entry.conditions[0].left: unknown feature kind
'smaa'`). Three differences, because a person wrote it for a whole run rather than a model for
the next hours:
- the bookkeeping fields may be left out: `version` 1, `rationale` "", `confidence` 1,
  `target_weights` [], no stop or take-profit, and `horizon_bars` (a file strategy runs for the
  whole run and never expires, so the value is not used);
- any registered feature may be read (`sma_50`, `rsi_7`: `models.signals.indicators`); the flow
  computes what the configured strategies read, for the symbols of their universes;
- `position_fraction` may be up to 1 (all in); GPT stays capped by the configuration.
Two file strategies may not share a symbol: one strategy runs a symbol at a time.
This module is pure: reading the file is `connectors.files.strategy_file`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

from pydantic import ValidationError

from models.config.settings import ExecutionConfig
from models.strategy.compiler import (
    CompiledStrategy,
    Rejection,
    StrategyLimits,
    compile_strategy,
)
from models.strategy.spec import MAX_HORIZON_BARS, StrategySpec, validation_reasons

FILE_DEFAULTS: Final[Mapping[str, Any]] = {
    "version": 1,
    "target_weights": [],
    "horizon_bars": MAX_HORIZON_BARS,
    "rationale": "",
    "confidence": 1.0,
    "stop_loss_pct": None,
    "take_profit_pct": None,
}
MAX_FILE_STRATEGIES: Final = 64
STANDING_PREFIX: Final = "file:"
"""The activation id of a file strategy is `file:<name>`: its rows in the `strategies` table
(and the statistics' per-controller split) tell it from a strategy GPT wrote."""


class StrategyFileError(ValueError):
    """A strategy file that cannot run, with one line per reason (each naming the field)."""


def with_defaults(item: Any) -> Any:
    """The item with the bookkeeping fields a person may leave out filled in."""
    if not isinstance(item, Mapping):
        return item
    return {**FILE_DEFAULTS, **item}


def strategy_items(doc: Any) -> list[tuple[str, Any]]:
    """(path, item) of every strategy in a parsed document."""
    if isinstance(doc, Mapping) and "strategies" in doc:
        if set(doc) != {"strategies"}:
            extra = ", ".join(sorted(str(k) for k in set(doc) - {"strategies"}))
            raise StrategyFileError(f"(file): unexpected key beside strategies: {extra}")
        items = doc["strategies"]
        if not isinstance(items, list):
            raise StrategyFileError("strategies: must be a list of strategies")
        return [(f"strategies[{i}]", item) for i, item in enumerate(items)]
    if isinstance(doc, list):
        return [(f"[{i}]", item) for i, item in enumerate(doc)]
    if isinstance(doc, Mapping):
        return [("", doc)]
    raise StrategyFileError("(file): must be a strategy, a list of them or {strategies: [...]}")


def parse_specs(doc: Any) -> list[StrategySpec]:
    """The strategies of one parsed document, each validated by GPT's schema."""
    items = strategy_items(doc)
    if not items:
        raise StrategyFileError("(file): holds no strategy")
    if len(items) > MAX_FILE_STRATEGIES:
        raise StrategyFileError(f"(file): more than {MAX_FILE_STRATEGIES} strategies")
    specs: list[StrategySpec] = []
    reasons: list[str] = []
    for path, item in items:
        if not isinstance(item, Mapping):
            reasons.append(f"{path or '(file)'}: a strategy must be a mapping of fields")
            continue
        try:
            specs.append(StrategySpec.model_validate(with_defaults(item)))
        except ValidationError as err:
            prefix = f"{path}." if path else ""
            reasons.extend(prefix + r for r in validation_reasons(err))
    if reasons:
        raise StrategyFileError("\n".join(reasons))
    return specs


def file_limits(execution: ExecutionConfig) -> StrategyLimits:
    """What a person's strategy may do: any registered feature, up to all of equity."""
    cost = 2 * (execution.fee_bps + execution.slippage_bps) / Decimal(10_000)
    return StrategyLimits(max_position_fraction=Decimal(1), round_trip_cost=cost, features=None)


def compile_standing(
    specs: Sequence[StrategySpec],
    symbols: Collection[str],
    execution: ExecutionConfig,
    shortable: Collection[str] = (),
) -> list[CompiledStrategy] | Rejection:
    """Compile the configured file strategies with the compiler GPT's answers go through;
    every reason at once, each prefixed with the strategy's place (`strategies[1].`). A
    strategy that sells short needs every symbol of its universe `shortable`."""
    reasons: list[str] = []
    compiled: list[CompiledStrategy] = []
    limits = file_limits(execution)
    owner: dict[str, int] = {}
    names: dict[str, int] = {}
    for i, spec in enumerate(specs):
        result = compile_strategy(spec, symbols, limits)
        if isinstance(result, Rejection):
            reasons.extend(f"strategies[{i}].{r}" for r in result.reasons)
        else:
            compiled.append(result)
        lent = frozenset(shortable)
        if spec.direction != "long" and any(sym not in lent for sym in spec.universe):
            missing = ", ".join(sym for sym in spec.universe if sym not in lent)
            reasons.append(
                f"strategies[{i}].direction: {spec.direction} sells short, but the venue does not"
                f" lend {missing} (set symbols.<symbol>.shortable: true where it does)"
            )
        if spec.name in names:
            reasons.append(
                f"strategies[{i}].name: {spec.name!r} is also strategies[{names[spec.name]}]"
            )
        names.setdefault(spec.name, i)
        for sym in spec.universe:
            if sym in owner and owner[sym] != i:
                reasons.append(
                    f"strategies[{i}].universe: {sym} is already run by strategies[{owner[sym]}]"
                    " (one strategy per symbol)"
                )
            owner.setdefault(sym, i)
    return Rejection(reasons) if reasons else compiled


def standing_id(spec: StrategySpec) -> str:
    return f"{STANDING_PREFIX}{spec.name}"
