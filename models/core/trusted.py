"""Building a frozen record from values the pipeline computed itself, without re-validating.

pydantic validates every constructor call, and `model_construct` (its way around that) is
slower still in pydantic 2 (~5 µs: it walks the fields for defaults and aliases). The per-bar
path builds a few records of its own making for every bar (`Bar`, `FeatureVector`,
`PositionSnapshot`) from values that are already of the declared types, so validation there
only costs time. `trusted` sets the instance's state directly (~1 µs); the result equals,
pickles and serialises exactly like the validated model (tests/unit/test_trusted.py).
`replaced` is `model_copy(update=...)` without its generic machinery (a frozen record's next
version: an order filled, a decision's new version).

Only for data the pipeline made: anything read from outside (topics, files, GPT, the store)
goes through the validating constructor.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

_set = object.__setattr__
_new = object.__new__  # a model has no `__new__` of its own
# BaseModel's slots, set through their descriptors (no lookup on the model's class).
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def trusted(cls: type[M], fields: dict[str, Any], given: Iterable[str] | None = None) -> M:
    """An instance of `cls` holding `fields` (every field of the model, of its declared type;
    not checked: the caller vouches for it). `given`: the fields the validating call would
    have been passed (`model_fields_set`), when some were left at their defaults; every field
    when None."""
    model = _new(cls)
    _set(model, "__dict__", fields)
    _set_fields_set(model, set(fields if given is None else given))
    _set_extra(model, None)
    _set_private(model, None)
    return model


def replaced(model: M, update: dict[str, Any]) -> M:
    """`model.model_copy(update=update)` for a model without extra or private attributes:
    the same fields, fields set and state, several times cheaper."""
    copy = _new(type(model))
    values = model.__dict__.copy()
    values.update(update)
    _set(copy, "__dict__", values)
    _set_fields_set(copy, model.__pydantic_fields_set__ | update.keys())
    _set_extra(copy, None)
    _set_private(copy, None)
    return copy
