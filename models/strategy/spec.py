"""Strategy as data: the declarative strategy GPT answers with, and the decision around it.

GPT never writes code. It answers a `GptDecision` through OpenAI structured outputs in strict
mode, and `models.strategy.compiler` turns the `StrategySpec` inside it into plain Python objects
that the local engine runs bar by bar. Nothing in here is ever evaluated: a feature name is looked
up in a dict, an operator is picked from a fixed table, free text is only stored and logged.

Why the models look the way they do:
- Strict mode needs every property required and `additionalProperties: false`, so there are no
  defaults: an optional value is `X | None` and must be written as `null`. `extra="forbid"` and
  `strict=True` make pydantic accept what the schema accepts (no `"30"` -> 30 coercion), so a
  sample is judged the same by both.
- Strict mode cannot say "map of symbol -> weight" (`additionalProperties` must be false), so
  target weights are a list of `{symbol, weight}` pairs; duplicates are a compiler reason.
- Condition nesting is bounded by the *types* (three group levels, the innermost holds only
  comparisons), not by a recursive `$ref` plus a validator: constrained decoding then cannot even
  produce a tree too deep, and the schema stays well inside OpenAI's 10-level limit.
- What a schema cannot say (unknown features, symbols outside the allowed universe, weight sums,
  caps from the config, contradictions) is checked by the compiler, which returns every reason at
  once so one adjust round can fix them all. The model keeps feature names as a pattern, not an
  enum, so a stored strategy that names a retired feature still parses and is rejected with a
  reason; `strict_json_schema` narrows names to the known set for decoding.
- Bounds are everywhere (lengths, item counts, ranges) so a runaway answer is refused, never
  truncated into something that trades.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    Tag,
    ValidationError,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from models.core.messages import SYMBOL_PATTERN
from models.signals.names import FEATURE_NAMES

# Names an operand may use: the bar's close plus the computed features.
OPERAND_NAMES: Final[tuple[str, ...]] = ("close", *FEATURE_NAMES)
FEATURE_NAME_PATTERN: Final = r"^[a-z][a-z0-9_]{0,31}$"
# No control characters in a name: a newline would forge lines in logs and prompts; C1 controls
# (NEL, 8-bit CSI) and the Unicode line/paragraph separators break lines or drive terminals too.
TEXT_PATTERN: Final = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$"

MAX_GROUP_DEPTH: Final = 3  # structural: Group > SubGroup > LeafGroup; change the classes with it
MAX_GROUP_ITEMS: Final = 8
MAX_UNIVERSE: Final = 16
MAX_NUMBER: Final = 1e15  # the ceiling of prices and sizes in `models.core.messages`
MAX_ANSWER_BYTES: Final = 64 * 1024
MAX_NAME_LEN: Final = 80
MAX_SPEC_RATIONALE: Final = 1000
MAX_DECISION_RATIONALE: Final = 2000  # `Proposal.rationale` carries the same text
MAX_STOP_LOSS: Final = 0.5
MAX_TAKE_PROFIT: Final = 1.0
MAX_HORIZON_BARS: Final = 10_000

ComparisonOp = Literal[">", ">=", "<", "<=", "crosses_above", "crosses_below"]
DecisionAction = Literal["create", "rebalance", "derisk", "hold"]


class _Spec(BaseModel):
    """Frozen, closed and strict: the schema and pydantic must judge an answer the same way."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


FeatureName = Annotated[
    str,
    Field(
        pattern=FEATURE_NAME_PATTERN,
        description="A computed value of the bar: " + ", ".join(OPERAND_NAMES),
    ),
]
Number = Annotated[float, Field(ge=-MAX_NUMBER, le=MAX_NUMBER, allow_inf_nan=False)]
SpecSymbol = Annotated[str, Field(pattern=SYMBOL_PATTERN, description="Instrument id")]


def _operand_kind(value: Any) -> str:
    """A string is a feature name, anything else must be a number (strict: no "30" -> 30)."""
    return "feature" if isinstance(value, str) else "number"


Operand = Annotated[
    Annotated[FeatureName, Tag("feature")] | Annotated[Number, Tag("number")],
    Discriminator(_operand_kind),
]


class Comparison(_Spec):
    """Compares two operands on the current bar. crosses_above: left is > right now and was
    < right the last time they differed (bars where they are equal do not count);
    crosses_below mirrors it. A missing value makes it false."""

    left: Operand
    op: ComparisonOp
    right: Operand


def _condition_kind(value: Any) -> str:
    """Pick the union member by shape, so an error names the member that was meant."""
    if isinstance(value, dict):
        return "group" if "conditions" in value or "match" in value else "comparison"
    return "comparison" if isinstance(value, Comparison) else "group"


def _looks_like_group(value: Any) -> bool:
    return _condition_kind(value) == "group"


class LeafGroup(_Spec):
    """Innermost group (third level): comparisons only."""

    match: Literal["all", "any"]
    conditions: list[Comparison] = Field(min_length=1, max_length=MAX_GROUP_ITEMS)

    @model_validator(mode="before")
    @classmethod
    def _too_deep(cls, data: Any) -> Any:
        """Say "too deep" rather than a wall of comparison errors for a fourth group level."""
        items = data.get("conditions") if isinstance(data, dict) else None
        if isinstance(items, list) and any(_looks_like_group(i) for i in items):
            raise ValueError(f"conditions nest deeper than {MAX_GROUP_DEPTH} groups")
        return data


class SubGroup(_Spec):
    """Second-level group: comparisons or innermost groups."""

    match: Literal["all", "any"]
    conditions: list[
        Annotated[
            Annotated[Comparison, Tag("comparison")] | Annotated[LeafGroup, Tag("group")],
            Discriminator(_condition_kind),
        ]
    ] = Field(min_length=1, max_length=MAX_GROUP_ITEMS)


class Group(_Spec):
    """Top-level group: all = every condition holds, any = at least one holds."""

    match: Literal["all", "any"]
    conditions: list[
        Annotated[
            Annotated[Comparison, Tag("comparison")] | Annotated[SubGroup, Tag("group")],
            Discriminator(_condition_kind),
        ]
    ] = Field(min_length=1, max_length=MAX_GROUP_ITEMS)


Condition = Annotated[
    Annotated[Comparison, Tag("comparison")] | Annotated[Group, Tag("group")],
    Discriminator(_condition_kind),
]
ConditionNode = Comparison | Group | SubGroup | LeafGroup


class TargetWeight(_Spec):
    """Fraction of equity one symbol should hold after a rebalance."""

    symbol: SpecSymbol
    weight: float = Field(ge=0, le=1, allow_inf_nan=False)


StrategyDirection = Literal["long", "short", "both"]


# `direction` is for strategy files only: it is left out of every JSON schema (GPT's strict
# schema, specs/schemas) and the compiler refuses anything but long from GPT, so the docstring
# below (GPT reads it as the schema's description) still says long-only. long buys on entry
# and sells on exit; short sells short on entry and buys back on exit; both goes long on entry
# and short on exit, turning from one to the other. It is left out of the serialised form when
# long, so a strategy's stored JSON and fingerprint are what they were before the field existed.
class StrategySpec(_Spec):
    """A long-only strategy run bar by bar on every symbol of its universe."""

    name: str = Field(min_length=1, max_length=MAX_NAME_LEN, pattern=TEXT_PATTERN)
    version: int = Field(ge=1, le=1_000_000)
    universe: list[SpecSymbol] = Field(min_length=1, max_length=MAX_UNIVERSE)
    entry: Condition = Field(description="Buy when flat and this holds")
    exit: Condition = Field(description="Sell the whole position when this holds")
    position_fraction: float = Field(
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="Fraction of equity one entry buys, e.g. 0.1 (capped by the configuration)",
    )
    stop_loss_pct: float | None = Field(
        gt=0,
        le=MAX_STOP_LOSS,
        allow_inf_nan=False,
        description="Sell when close <= entry price * (1 - this); 0.05 means 5%; null = none",
    )
    take_profit_pct: float | None = Field(
        gt=0,
        le=MAX_TAKE_PROFIT,
        allow_inf_nan=False,
        description="Sell when close >= entry price * (1 + this); 0.1 means 10%; null = none",
    )
    target_weights: list[TargetWeight] = Field(
        max_length=MAX_UNIVERSE,
        description="Rebalance targets for universe symbols (sum <= 1); unlisted ones are kept",
    )
    horizon_bars: int = Field(ge=1, le=MAX_HORIZON_BARS, description="Intended life in bars")
    rationale: str = Field(max_length=MAX_SPEC_RATIONALE)
    confidence: float = Field(ge=0, le=1, allow_inf_nan=False)
    direction: SkipJsonSchema[StrategyDirection] = Field(
        default="long",
        description="long, short (sell on entry, buy back on exit) or both (entry: long, "
        "exit: short); short needs a symbol the venue lends (symbols.<S>.shortable)",
    )

    @model_serializer(mode="wrap")
    def _long_is_implicit(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("direction") == "long":
            del data["direction"]
        return data

    def operand_names(self) -> frozenset[str]:
        """Every feature name the entry and exit conditions read (`close` included)."""
        names: set[str] = set()
        stack: list[ConditionNode] = [self.entry, self.exit]
        while stack:
            node = stack.pop()
            if isinstance(node, Comparison):
                names.update(v for v in (node.left, node.right) if isinstance(v, str))
            else:
                stack.extend(node.conditions)
        return frozenset(names)

    def fingerprint(self) -> str:
        """Content hash (sha256 of the canonical JSON): the identity of a stored strategy, so
        a replay can tell "the same strategy again" from "a new version with the same name"."""
        return hashlib.sha256(self.model_dump_json().encode("utf-8")).hexdigest()


class GptDecision(_Spec):
    """The whole answer. create: start a new strategy; rebalance: move to target_weights;
    derisk: cut exposure (optionally with a safer strategy); hold: keep the current one (strategy
    null)."""

    action: DecisionAction
    strategy: StrategySpec | None
    rationale: str = Field(max_length=MAX_DECISION_RATIONALE)
    confidence: float = Field(ge=0, le=1, allow_inf_nan=False)


@dataclass(frozen=True, slots=True)
class Rejection:
    """An answer or strategy that must not trade, with one readable reason per problem (fed
    back to GPT in the adjust loop and written to the decision log)."""

    reasons: list[str]


def _where(loc: tuple[int | str, ...]) -> str:
    """`strategy.entry.conditions[0].left` from a pydantic location, without union tags."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("feature", "number", "comparison", "group") or part.startswith("function-"):
            continue
        else:
            out += f".{part}" if out else part
    return out or "(answer)"


def validation_reasons(err: ValidationError) -> list[str]:
    """One line per pydantic error, with a short excerpt of the offending value."""
    reasons: list[str] = []
    for e in err.errors(include_url=False):
        msg = e["msg"].removeprefix("Value error, ")
        got = ""
        if e["type"] not in ("missing", "json_invalid") and not isinstance(e.get("input"), dict):
            shown = repr(e.get("input"))
            got = f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
        reasons.append(f"{_where(tuple(e['loc']))}: {msg}{got}")
    return reasons


def duplicate_key(raw: str | bytes) -> str | None:
    """The first key written twice inside one JSON object of `raw` (None when there is none, or
    when `raw` is not JSON at all: the parser says why). Parsers disagree on which copy wins, so
    `{"action": "hold", ..., "action": "create"}` could be logged as one and traded as the
    other; strict structured outputs never write one."""
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and not found:
                found.append(key)
            seen.add(key)
        return dict(items)

    try:
        json.loads(raw, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return None
    return found[0] if found else None


def parse_decision(raw: str | bytes) -> GptDecision | Rejection:
    """Validate GPT's raw answer; malformed JSON, schema violations and out-of-bounds values all
    come back as a `Rejection`, never as an exception, so the caller has one failure path."""
    size = len(raw.encode("utf-8", "replace")) if isinstance(raw, str) else len(raw)
    if size > MAX_ANSWER_BYTES:
        return Rejection([f"(answer): longer than {MAX_ANSWER_BYTES} bytes"])
    try:
        decision = GptDecision.model_validate_json(raw)
    except ValidationError as err:
        return Rejection(validation_reasons(err))
    repeated = duplicate_key(raw)
    if repeated is not None:
        return Rejection([f"(answer): key {repeated[:40]!r} is written twice in one object"])
    return decision


# ------------------------------------------------------------------------- strict JSON Schema

STRICT_SCHEMA_NAME: Final = "gpt_decision"
# Keywords OpenAI structured outputs accept in strict mode (annotations included). Everything
# else (default, minLength/maxLength, oneOf, allOf, not, if/then, patternProperties, ...) is
# either rewritten below or refused, so a model change cannot silently break the first call.
_STRICT_KEYWORDS: Final = frozenset(
    {
        "$defs",
        "$ref",
        "additionalProperties",
        "anyOf",
        "const",
        "description",
        "enum",
        "exclusiveMaximum",
        "exclusiveMinimum",
        "format",
        "items",
        "maxItems",
        "maximum",
        "minItems",
        "minimum",
        "multipleOf",
        "pattern",
        "properties",
        "required",
        "type",
    }
)
# OpenAI's documented limits for one strict schema.
STRICT_MAX_PROPERTIES: Final = 5000
STRICT_MAX_OBJECT_DEPTH: Final = 10
STRICT_MAX_ENUM_VALUES: Final = 1000
STRICT_MAX_STRING_CHARS: Final = 120_000


class StrictSchemaError(ValueError):
    """The models (or the narrowing asked for) cannot be expressed as a strict schema."""


def _strict_node(
    node: Any, path: str, features: tuple[str, ...] | None, symbols: tuple[str, ...] | None
) -> Any:
    if isinstance(node, list):
        return [_strict_node(v, f"{path}[{i}]", features, symbols) for i, v in enumerate(node)]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    notes: list[str] = []
    for key, value in node.items():
        if key == "title":
            continue  # tokens without meaning to the model
        if key == "oneOf":
            key = "anyOf"  # our unions are exclusive by shape, so anyOf means the same
        elif key == "minLength":
            continue  # not in strict mode's keyword set; pydantic still enforces it
        elif key == "maxLength":
            notes.append(f"at most {value} characters")
            continue
        elif key in ("properties", "$defs"):
            out[key] = {
                k: _strict_node(v, f"{path}.{k}", features, symbols) for k, v in value.items()
            }
            continue
        elif key not in _STRICT_KEYWORDS:
            raise StrictSchemaError(f"{path or '(root)'}: keyword {key!r} has no strict form")
        out[key] = _strict_node(value, f"{path}.{key}", features, symbols)
    if notes:
        out["description"] = "; ".join(filter(None, [out.get("description", ""), *notes]))
    if "$ref" in out and len(out) > 1:
        raise StrictSchemaError(f"{path}: $ref with sibling keywords is not accepted")
    if out.get("type") == "object":
        props = out.get("properties", {})
        if out.get("additionalProperties") is not False:
            raise StrictSchemaError(f"{path}: object without additionalProperties: false")
        if out.get("required", []) != list(props):
            raise StrictSchemaError(f"{path}: every property must be required")
    if out.get("type") == "string":
        pattern = out.get("pattern")
        if pattern == FEATURE_NAME_PATTERN and features is not None:
            out = {"type": "string", "enum": list(features)}  # the enum says it all
        elif pattern == SYMBOL_PATTERN and symbols is not None:
            out = {"type": "string", "enum": list(symbols)}
        elif pattern == TEXT_PATTERN:
            # Control-character classes are not in every strict-mode regex dialect; pydantic
            # still enforces the pattern, the model is told in words.
            del out["pattern"]
            out["description"] = "; ".join(
                filter(None, [out.get("description", ""), "one line, no control characters"])
            )
    return out


def _object_depth(node: Any, defs: dict[str, Any], seen: tuple[str, ...] = ()) -> int:
    """Deepest chain of nested objects, following `$ref`s (the models are not recursive)."""
    if isinstance(node, list):
        return max((_object_depth(v, defs, seen) for v in node), default=0)
    if not isinstance(node, dict):
        return 0
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.removeprefix("#/$defs/")
        if name in seen:
            raise StrictSchemaError(f"recursive $ref {ref}: depth is unbounded")
        return _object_depth(defs[name], defs, (*seen, name))
    inner = max((_object_depth(v, defs, seen) for k, v in node.items() if k != "$defs"), default=0)
    return inner + (1 if node.get("type") == "object" else 0)


def strict_schema_stats(schema: dict[str, Any]) -> dict[str, int]:
    """Size figures OpenAI limits (and that cost prompt tokens on every call)."""
    defs = schema.get("$defs", {})
    properties = enums = chars = 0
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            for key, value in node.items():
                if key in ("properties", "$defs") and isinstance(value, dict):
                    chars += sum(len(k) for k in value)
                    if key == "properties":
                        properties += len(value)
                elif key == "enum":
                    enums += len(value)
                    chars += sum(len(str(v)) for v in value)
                elif key == "const":
                    chars += len(str(value))
                stack.append(value)
    return {
        "properties": properties,
        "object_depth": _object_depth(schema, defs),
        "enum_values": enums,
        "string_chars": chars,
    }


def strict_json_schema(
    features: Iterable[str] | None = OPERAND_NAMES, symbols: Iterable[str] | None = None
) -> dict[str, Any]:
    """The `GptDecision` schema in the form OpenAI strict structured outputs accept.

    `features` (default: every known operand) and `symbols` (default: any well-formed id) narrow
    feature names and instrument ids to enums, so constrained decoding cannot produce a name the
    compiler would reject; `None` keeps the pattern. Pass it as `response_format={"type":
    "json_schema", "json_schema": {"name": STRICT_SCHEMA_NAME, "strict": True, "schema": ...}}`.
    Raises `StrictSchemaError` when the result breaks a strict-mode rule or limit.
    """
    feats = None if features is None else tuple(dict.fromkeys(features))
    syms = None if symbols is None else tuple(sorted(set(symbols)))
    if feats is not None and not all(re.fullmatch(FEATURE_NAME_PATTERN, f) for f in feats):
        raise StrictSchemaError("a feature name does not match " + FEATURE_NAME_PATTERN)
    if syms is not None and not all(re.fullmatch(SYMBOL_PATTERN, s) for s in syms):
        raise StrictSchemaError("a symbol does not match " + SYMBOL_PATTERN)
    if (feats is not None and not feats) or (syms is not None and not syms):
        raise StrictSchemaError("an empty enum accepts nothing")
    raw = GptDecision.model_json_schema(mode="validation")
    schema: dict[str, Any] = _strict_node(raw, "", feats, syms)
    if schema.get("type") != "object" or "anyOf" in schema:
        raise StrictSchemaError("the root must be an object, not a union")
    stats = strict_schema_stats(schema)
    for key, limit in (
        ("properties", STRICT_MAX_PROPERTIES),
        ("object_depth", STRICT_MAX_OBJECT_DEPTH),
        ("enum_values", STRICT_MAX_ENUM_VALUES),
        ("string_chars", STRICT_MAX_STRING_CHARS),
    ):
        if stats[key] > limit:
            raise StrictSchemaError(f"strict schema {key} = {stats[key]} exceeds {limit}")
    return schema
