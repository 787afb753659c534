"""Building a frozen record from values the pipeline computed itself, without re-validating.

pydantic validates every constructor call, and `model_construct` (its way around that) is
slower still in pydantic 2 (~5 µs: it walks the fields for defaults and aliases). The per-bar
path builds a few records of its own making for every bar (`Bar`, `FeatureVector`,
`PositionSnapshot`) from values that are already of the declared types, so validation there
only costs time. `trusted` sets the instance's state directly (~1 µs); the result equals,
pickles and serialises exactly like the validated model (tests/unit/test_trusted.py).

Only for data the pipeline made: anything read from outside (topics, files, GPT, the store)
goes through the validating constructor.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

_set = object.__setattr__


def trusted(cls: type[M], fields: dict[str, Any]) -> M:
    """An instance of `cls` holding `fields` (every field of the model, of its declared type;
    not checked: the caller vouches for it)."""
    model = cls.__new__(cls)
    _set(model, "__dict__", fields)
    _set(model, "__pydantic_fields_set__", set(fields))
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model
