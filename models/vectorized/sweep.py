"""Parameter grids of a strategy: a strategy document with `{placeholders}` and the values each
takes, expanded into concrete, checked `StrategySpec`s.

The format (a grid file is YAML or JSON, read by `connectors.files.grid_file`):

    strategy:                     # a strategy as in a strategy file (one), placeholders inside
      name: sma-cross
      universe: [GOOG]
      entry: {left: "sma_{fast}", op: crosses_above, right: "sma_{slow}"}
      exit: {left: "sma_{fast}", op: crosses_below, right: "sma_{slow}"}
      position_fraction: 1.0
      stop_loss_pct: "{stop}"     # a whole value: replaced by the value itself (null, a number)
    params:
      fast: [5, 10, 20]
      slow: [20, 50, 100]
      stop: [null, 0.02, 0.05]
    require: ["fast < slow"]      # optional: `name op name-or-number`, op one of < <= > >= !=

A placeholder is `{name}` inside any string of the strategy: a string that is exactly one
placeholder becomes the value itself (so numbers stay numbers and `null` is null), otherwise the
value is written into the text (`sma_{fast}` -> `sma_10`). Nothing is evaluated: a requirement is
parsed into (name, operator, operand) and applied with a fixed operator table.

Expansion is the product of the parameter lists in their written order (the last one varies
fastest). Points that break a requirement are skipped and counted; points whose strategy the
schema or the compiler refuses (e.g. `sma_20 crosses_above sma_20`: a feature compared with
itself) are skipped and counted with their first reason. A grid with no point left is one
error (`GridError`), as is an unknown or unused placeholder or a grid of more than `MAX_POINTS`.
Each point's strategy is named `<name>[fast=10,slow=50,stop=0.02]` (cut to the name limit), so
a ranked row says which point it is.
"""

from __future__ import annotations

import itertools
import operator
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import Any, Final

from models.config.settings import ExecutionConfig
from models.performance.stats import compute_statistics
from models.strategy.compiler import Rejection
from models.strategy.spec import MAX_NAME_LEN, StrategySpec
from models.strategy.user_file import StrategyFileError, compile_standing, parse_specs

__all__ = [
    "MAX_POINTS",
    "Expansion",
    "Grid",
    "GridError",
    "GridPoint",
    "expand",
    "parse_grid",
    "statistic_keys",
]

MAX_POINTS: Final = 100_000
_NAME: Final = re.compile(r"^[a-z_][a-z0-9_]{0,31}$")
_PLACEHOLDER: Final = re.compile(r"\{([a-z_][a-z0-9_]{0,31})\}")
_REQUIRE: Final = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(<=|>=|!=|<|>)\s*(\S+)\s*$")
_OPS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "!=": operator.ne,
}

Value = Any  # a JSON value: number, string, bool, null, list, mapping


class GridError(ValueError):
    """A grid that cannot be swept, one line per reason."""


@dataclass(frozen=True, slots=True)
class Requirement:
    left: str
    op: str
    right: str | float

    def holds(self, point: Mapping[str, Value]) -> bool:
        lv = point[self.left]
        rv = point[self.right] if isinstance(self.right, str) else self.right
        if lv is None or rv is None:
            return True  # "no stop" is not smaller or larger than anything
        try:
            return bool(_OPS[self.op](lv, rv))
        except TypeError:
            return False

    def text(self) -> str:
        return f"{self.left} {self.op} {self.right}"


@dataclass(frozen=True, slots=True)
class Grid:
    """A parsed grid: the strategy document with placeholders, the values, the requirements."""

    strategy: Mapping[str, Value]
    params: Mapping[str, Sequence[Value]]
    require: tuple[Requirement, ...] = ()

    @property
    def size(self) -> int:
        size = 1
        for values in self.params.values():
            size *= len(values)
        return size


@dataclass(frozen=True, slots=True)
class GridPoint:
    """One point: its parameter values and the concrete strategy."""

    index: int  # position in the full product, so results can be put back in order
    params: Mapping[str, Value]
    spec: StrategySpec


@dataclass(frozen=True, slots=True)
class Expansion:
    """The points to evaluate and what was skipped, and why."""

    points: tuple[GridPoint, ...]
    total: int
    skipped_required: int = 0
    skipped_invalid: int = 0
    first_invalid: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def summary(self) -> str:
        """One line for the command: how many points run and how many were skipped."""
        parts = [f"{len(self.points)} of {self.total} points"]
        if self.skipped_required:
            parts.append(f"{self.skipped_required} skipped by the requirements")
        if self.skipped_invalid:
            parts.append(f"{self.skipped_invalid} skipped as invalid (first: {self.first_invalid})")
        return "; ".join(parts)


def _placeholders(value: Value) -> Iterator[str]:
    if isinstance(value, str):
        yield from _PLACEHOLDER.findall(value)
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _placeholders(v)
    elif isinstance(value, list):
        for v in value:
            yield from _placeholders(v)


def _text(value: Value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "null"
    return repr(value) if isinstance(value, float) else str(value)


def substitute(value: Value, point: Mapping[str, Value]) -> Value:
    """`value` with every placeholder replaced by the point's value."""
    if isinstance(value, str):
        whole = _PLACEHOLDER.fullmatch(value)
        if whole is not None:
            return point[whole.group(1)]
        return _PLACEHOLDER.sub(lambda m: _text(point[m.group(1)]), value)
    if isinstance(value, Mapping):
        return {k: substitute(v, point) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, point) for v in value]
    return value


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_grid(doc: Any) -> Grid:
    """A grid from a parsed YAML/JSON document; `GridError` with every reason at once."""
    if not isinstance(doc, Mapping):
        raise GridError("(grid): must be a mapping with `strategy` and `params`")
    reasons: list[str] = []
    extra = sorted(set(doc) - {"strategy", "params", "require"})
    if extra:
        reasons.append(f"(grid): unknown keys {', '.join(map(str, extra))}")
    strategy = doc.get("strategy")
    if not isinstance(strategy, Mapping):
        reasons.append("strategy: must be one strategy (a mapping of fields)")
        strategy = {}
    params = doc.get("params")
    if not isinstance(params, Mapping) or not params:
        reasons.append("params: must map each placeholder name to a list of values")
        params = {}
    clean: dict[str, list[Value]] = {}
    for name, values in params.items():
        if not isinstance(name, str) or not _NAME.match(name):
            reasons.append(f"params.{name}: a name is lower-case letters, digits and _")
        elif not isinstance(values, list) or not values:
            reasons.append(f"params.{name}: must be a non-empty list of values")
        else:
            clean[name] = values
    used = set(_placeholders(strategy))
    for name in sorted(used - set(clean)):
        reasons.append(f"strategy: placeholder {{{name}}} has no values in params")
    for name in sorted(set(clean) - used):
        reasons.append(f"params.{name}: not used by any {{{name}}} in the strategy")
    requirements: list[Requirement] = []
    raw = doc.get("require", [])
    if not isinstance(raw, list):
        reasons.append("require: must be a list like ['fast < slow']")
        raw = []
    for i, text in enumerate(raw):
        match = _REQUIRE.match(text) if isinstance(text, str) else None
        if match is None:
            reasons.append(f"require[{i}]: write `name op name-or-number`, e.g. 'fast < slow'")
            continue
        left, op, right = match.groups()
        number = _number(right)
        operand: str | float = right if number is None else number
        for side in (left, operand):
            if isinstance(side, str) and side not in clean:
                reasons.append(f"require[{i}]: {side!r} is not a parameter")
        requirements.append(Requirement(left, op, operand))
    grid = Grid(dict(strategy), clean, tuple(requirements))
    if not reasons and grid.size > MAX_POINTS:
        reasons.append(f"params: {grid.size} points, more than {MAX_POINTS}")
    if reasons:
        raise GridError("\n".join(reasons))
    return grid


def _point_name(name: str, point: Mapping[str, Value]) -> str:
    label = ",".join(f"{k}={_text(v)}" for k, v in point.items())
    return f"{name}[{label}]"[:MAX_NAME_LEN]


def expand(grid: Grid, execution: ExecutionConfig) -> Expansion:
    """Every point of the grid as a checked strategy; `GridError` when none is left."""
    names = list(grid.params)
    points: list[GridPoint] = []
    skipped_required = skipped_invalid = 0
    first_invalid = ""
    for index, values in enumerate(itertools.product(*(grid.params[n] for n in names))):
        point = dict(zip(names, values, strict=True))
        if not all(r.holds(point) for r in grid.require):
            skipped_required += 1
            continue
        doc = substitute(grid.strategy, point)
        if isinstance(doc, dict) and isinstance(doc.get("name"), str):
            doc["name"] = _point_name(doc["name"], point)
        try:
            (spec,) = parse_specs(doc)
        except (StrategyFileError, ValueError) as err:
            skipped_invalid += 1
            first_invalid = first_invalid or f"{_label(point)}: {str(err).splitlines()[0]}"
            continue
        result = compile_standing([spec], spec.universe, execution)
        if isinstance(result, Rejection):
            skipped_invalid += 1
            reason = result.reasons[0].removeprefix("strategies[0].")
            first_invalid = first_invalid or f"{_label(point)}: {reason}"
            continue
        points.append(GridPoint(index, point, spec))
    expansion = Expansion(
        tuple(points), grid.size, skipped_required, skipped_invalid, first_invalid
    )
    if not points:
        raise GridError(f"the grid has no point to evaluate: {expansion.summary()}")
    return expansion


def _label(point: Mapping[str, Value]) -> str:
    return ",".join(f"{k}={_text(v)}" for k, v in point.items())


@cache
def statistic_keys() -> tuple[str, ...]:
    """Every key a sweep can rank by: those `compute_statistics` gives (read off a run of two
    bars, so the list cannot drift from the statistics themselves)."""
    curve = [(0, Decimal(100)), (60_000, Decimal(101))]
    perf = compute_statistics(curve, (), {"X": curve}, Decimal(0), Decimal(100))
    return tuple(s.key for s in perf.statistics)
