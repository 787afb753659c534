"""JSON Schemas of every topic message, the decision record and the configuration.

Pure: the schemas are generated from the pydantic models in `models.core.messages` and
`models.config.settings`, never written by hand, so `specs/schemas/*.json` can be checked against
the code
(`tests/unit/test_specs.py`) and regenerated with `stratflow schemas`.

Pydantic's own generator leaves out what it cannot see in the core schema; a schema that accepts
what the pipeline rejects (or the reverse) is worse than none, so `StratflowJsonSchema` closes
the gaps that matter for producers and consumers:
- the finite-and-positive / non-negative after-validators of `models.core.messages` (used by
  `TradeIntent.quantity`) become `exclusiveMinimum` / `minimum` on the number form and a sign
  rule on the string form;
- decimal strings get the syntax pydantic accepts (validation) or writes (serialization), and a
  `gt`/`ge` bound of zero or more also forbids a leading minus on the string form;
- a datetime on an inbound message may be an epoch number, as the parser really accepts;
- a dict whose keys have a pattern (the config's symbols) rejects other keys, as pydantic does;
- in serialization mode every field is required, because `model_dump_json` always writes it;
- the tag of a discriminated union (`type` on the market topic) is required in every member,
  because pydantic rejects a message without it even where the member model has a default.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final, cast

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from models.config.settings import Settings
from models.control.commands import ControlCommand
from models.control.plane import ControlAck
from models.core import messages
from models.core.messages import (
    Alert,
    BarIn,
    DeadLetter,
    DecisionRecord,
    Fill,
    MarketMessage,
    NewsItem,
    Order,
    PositionSnapshot,
    Proposal,
    SocialPost,
    Tick,
)
from models.strategy.spec import GptDecision

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
# `.invalid` is reserved (RFC 2606): the ids name the schemas, they are not meant to be fetched.
SCHEMA_ID_BASE: Final = "https://stratflow.invalid/specs/schemas/"

MARKET_MESSAGE: Final[TypeAdapter[Tick | BarIn]] = TypeAdapter(MarketMessage)

# Schema file name (without `.json`) -> the model it is generated from.
TOPIC_SCHEMAS: Final[dict[str, type[BaseModel] | TypeAdapter[Any]]] = {
    "market": MARKET_MESSAGE,
    "news": NewsItem,
    "social": SocialPost,
    "decisions": DecisionRecord,
    "orders": Order,
    "fills": Fill,
    "positions": PositionSnapshot,
    "alerts": Alert,
    "dead_letters": DeadLetter,
    "proposal": Proposal,
    "config": Settings,
    "gpt_decision": GptDecision,
    "control": ControlCommand,
    "control_acks": ControlAck,
}

# Which side of the model each schema describes.
# - "validation": documents the pipeline *reads* and validates with these models, so the schema
#   must say what the parser accepts (defaults optional, decimals as number or string, epoch or
#   ISO timestamps): the inbound topics, the controller's proposal (the GPT controller of a later
#   release produces it and the desk must validate it) and the YAML/env configuration.
# - "serialization": records the pipeline *writes* with `model_dump_json` (Kafka outputs and the
#   decision log), so the schema must say what a consumer receives: every field present,
#   decimals as exact strings, enums as their values.
SCHEMA_MODES: Final[dict[str, JsonSchemaMode]] = {
    "market": "validation",
    "news": "validation",
    "social": "validation",
    "proposal": "validation",
    "config": "validation",
    "gpt_decision": "validation",
    "control": "validation",
    "control_acks": "serialization",
    "decisions": "serialization",
    "orders": "serialization",
    "fills": "serialization",
    "positions": "serialization",
    "alerts": "serialization",
    "dead_letters": "serialization",
}

_ADAPTER_TITLES: Final[dict[str, str]] = {"market": "MarketMessage"}

# Bounds that `Annotated[Decimal, AfterValidator(...)]` types (e.g. `TradeIntent.quantity`)
# enforce in code but pydantic cannot show in a schema: validator -> (constraint key, bound).
# Looked up by name so a validator that is refactored away simply drops out of the map.
_AFTER_VALIDATOR_BOUNDS: Final[dict[Callable[..., Any], tuple[str, Decimal]]] = {
    func: bound
    for name, bound in (
        ("_finite_positive", ("gt", Decimal(0))),
        ("_finite_non_negative", ("ge", Decimal(0))),
    )
    if callable(func := getattr(messages, name, None))
}

_NOT_NEGATIVE: Final = "(?!-)"
_NONZERO_MANTISSA: Final = "(?=[^eE]*[1-9])"


class StratflowJsonSchema(GenerateJsonSchema):
    """Pydantic's generator plus the rules in the module docstring."""

    def get_decimal_pattern(self, schema: core_schema.DecimalSchema) -> str | None:
        pattern = self.build_decimal_pattern(schema)
        assert pattern.startswith("^")
        lower = schema.get("gt")
        at_least = schema.get("ge")
        prefix = ""
        if (lower is not None and lower >= 0) or (at_least is not None and at_least > 0):
            prefix = _NOT_NEGATIVE + _NONZERO_MANTISSA
        elif at_least is not None and at_least == 0:
            prefix = _NOT_NEGATIVE
        return "^" + prefix + pattern[1:]

    def function_after_schema(
        self, schema: core_schema.AfterValidatorFunctionSchema
    ) -> JsonSchemaValue:
        inner = schema["schema"]
        bound = _AFTER_VALIDATOR_BOUNDS.get(schema["function"]["function"])
        if bound is not None and inner["type"] == "decimal":
            key, value = bound
            return self.generate_inner(cast(CoreSchema, {**inner, key: value}))
        return self.generate_inner(inner)

    def dict_schema(self, schema: core_schema.DictSchema) -> JsonSchemaValue:
        json_schema = super().dict_schema(schema)
        # A key that misses the key pattern is an error in pydantic, not an unchecked extra.
        if "patternProperties" in json_schema and "additionalProperties" not in json_schema:
            json_schema["additionalProperties"] = False
        return json_schema

    def datetime_schema(self, schema: core_schema.DatetimeSchema) -> JsonSchemaValue:
        iso = super().datetime_schema(schema)
        if self.mode != "validation":
            return iso
        # pydantic also takes epoch seconds or milliseconds (told apart by magnitude).
        return {"anyOf": [iso, {"type": "number"}]}

    def field_is_required(
        self,
        field: core_schema.ModelField | core_schema.DataclassField | core_schema.TypedDictField,
        total: bool,
    ) -> bool:
        if self.mode == "serialization":
            return field.get("serialization_exclude_if") is None
        return super().field_is_required(field, total)


def _require_discriminators(node: Any, defs: dict[str, Any]) -> None:
    """Mark every discriminated union's tag property required in the members it maps to."""
    if isinstance(node, dict):
        disc = node.get("discriminator")
        if isinstance(disc, dict) and "oneOf" in node:
            tag = disc["propertyName"]
            for ref in disc.get("mapping", {}).values():
                member = defs[ref.removeprefix("#/$defs/")]
                required = member.setdefault("required", [])
                if tag not in required:
                    required.insert(0, tag)
        for value in node.values():
            _require_discriminators(value, defs)
    elif isinstance(node, list):
        for value in node:
            _require_discriminators(value, defs)


def schema_id(name: str) -> str:
    return f"{SCHEMA_ID_BASE}{name}.json"


def generate_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of one entry of `TOPIC_SCHEMAS`."""
    target = TOPIC_SCHEMAS[name]
    mode = SCHEMA_MODES[name]
    if isinstance(target, TypeAdapter):
        body = target.json_schema(mode=mode, schema_generator=StratflowJsonSchema)
        title = _ADAPTER_TITLES[name]
    else:
        body = target.model_json_schema(mode=mode, schema_generator=StratflowJsonSchema)
        title = target.__name__
    _require_discriminators(body, body.get("$defs", {}))
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": schema_id(name),
        "$comment": (
            f"Generated by models/core/schemas.py ({mode} mode); do not edit. "
            "Run `stratflow schemas` to regenerate."
        ),
        **body,
        "title": title,
    }


def generate_schemas() -> dict[str, dict[str, Any]]:
    """Every schema, keyed by file name without `.json`, in name order."""
    return {name: generate_schema(name) for name in sorted(TOPIC_SCHEMAS)}


def render_schema(schema: dict[str, Any]) -> str:
    """The exact text of a schema file: sorted keys, two-space indent, trailing newline."""
    return json.dumps(schema, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
