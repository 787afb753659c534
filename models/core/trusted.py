"""Building a frozen record from values the pipeline computed itself, without re-validating.

pydantic validates every constructor call, and `model_construct` (its way around that) is
slower still in pydantic 2 (~5 µs: it walks the fields for defaults and aliases). The per-bar
path builds a few records of its own making for every bar (`Bar`, `FeatureVector`,
`PositionSnapshot`) from values that are already of the declared types, so validation there
only costs time. `trusted` sets the instance's state directly (~0.5 µs); the result equals,
pickles and serialises exactly like the validated model (tests/unit/test_trusted.py).
`replaced` is `model_copy(update=...)` without its generic machinery (a frozen record's next
version: an order filled, a decision's new version).

The fields set (`model_fields_set`) of a frozen model is one set shared by every instance
built with the same fields (and by every `replaced` copy with the same update), made once:
a set per record was a fair part of the cost (the acting path builds ~20 records a decision).
Nothing changes a frozen model's fields set in place (pydantic only adds to it when a field is
assigned, which a frozen model refuses; its copies take a copy), and an unpickled record gets
its own. A model that is not frozen gets a set of its own, as before.

Only for data the pipeline made: anything read from outside (topics, files, GPT, the store)
goes through the validating constructor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
D = TypeVar("D")

_set = object.__setattr__
_new = object.__new__  # a model has no `__new__` of its own
# BaseModel's slots, set through their descriptors (no lookup on the model's class).
_set_fields_set = BaseModel.__dict__["__pydantic_fields_set__"].__set__
_set_extra = BaseModel.__dict__["__pydantic_extra__"].__set__
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__

# Shared fields sets of frozen models: by class (every field given) or (class, given); and
# the union a `replaced` update makes, by (id of a shared set, the update's keys).
_SHARED: dict[Hashable, set[str]] = {}
_KEPT: set[int] = set()  # ids of the shared sets (kept alive in `_SHARED` / `_UNIONS`)
_UNIONS: dict[tuple[int, tuple[str, ...]], set[str]] = {}
_MOST = 10_000  # shared sets kept at most (a few dozen in practice)


def trusted(cls: type[M], fields: dict[str, Any], given: Iterable[str] | None = None) -> M:
    """An instance of `cls` holding `fields` (every field of the model, of its declared type;
    not checked: the caller vouches for it). `given`: the fields the validating call would
    have been passed (`model_fields_set`), when some were left at their defaults (a frozenset
    or tuple fixed per call site: its set is then shared); every field when None."""
    model = _new(cls)
    _set(model, "__dict__", fields)
    try:
        shared = _SHARED.get(cls if given is None else (cls, given))
    except TypeError:  # `given` not hashable (a list): a set of its own
        shared = set(given)  # type: ignore[arg-type]
    _set_fields_set(model, shared if shared is not None else _share(cls, fields, given))
    _set_extra(model, None)
    _set_private(model, None)
    return model


def _share(cls: type[BaseModel], fields: dict[str, Any], given: Iterable[str] | None) -> set[str]:
    """The fields set of a record: made once and shared for a frozen model."""
    made = set(fields if given is None else given)
    if cls.model_config.get("frozen") and len(_SHARED) < _MOST:
        _SHARED[cls if given is None else (cls, given)] = made
        _KEPT.add(id(made))
    return made


def replaced(model: M, update: dict[str, Any]) -> M:
    """`model.model_copy(update=update)` for a model without extra or private attributes:
    the same fields, fields set and state, several times cheaper."""
    copy = _new(type(model))
    values = model.__dict__.copy()
    values.update(update)
    _set(copy, "__dict__", values)
    before = model.__pydantic_fields_set__
    if id(before) in _KEPT:  # a shared set: its union with these keys is shared too
        key = (id(before), tuple(update))
        after = _UNIONS.get(key)
        if after is None:
            after = before | update.keys()
            if len(_UNIONS) < _MOST:
                _UNIONS[key] = after
                _KEPT.add(id(after))
    else:
        after = before | update.keys()
    _set_fields_set(copy, after)
    _set_extra(copy, None)
    _set_private(copy, None)
    return copy


def frozen_maker(cls: type[D]) -> Callable[..., D]:
    """A constructor of the frozen, slotted dataclass `cls` taking every field positionally, in
    field order: the instance `cls(*values)` makes (no `__post_init__`, no defaults applied),
    without the frozen `__init__`'s `object.__setattr__` per field (~0.1 µs a field; the acting
    path makes a few such records a bar). Each field is set through its slot's descriptor."""
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    if not dataclasses.is_dataclass(cls) or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a slotted dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__")
    space: dict[str, Any] = {"new": _new, "cls": cls}
    lines = [f"def make({', '.join(names)}):", "    made = new(cls)"]
    for k, name in enumerate(names):
        space[f"set{k}"] = cls.__dict__[name].__set__
        lines.append(f"    set{k}(made, {name})")
    lines.append("    return made")
    exec("\n".join(lines), space)  # code made here from the field names only
    return space["make"]  # type: ignore[no-any-return]
