"""How items cross from one process of a cluster to another: pickled once, columns packed.

Bytewax pickles an item that goes to another process, and pickles it twice (Timely asks for
its length, then for its bytes: both run `pickle.dumps`); a bar block's columns are lists of
`Decimal`s and floats, each pickled as an object of its own. Measured on the 200k-bar run, the
child spent more on pickling than on ingest. So an item that will cross is packed first
(`packed`): one pickle, in which the column sets (`BarColumns`, `BarFloats`,
`PositionColumns`) carry each column as one value (Decimals as their text joined, ints and
floats as machine arrays), and Bytewax then pickles only those bytes. The desk's records
(pydantic models: decisions with their rounds, checks and orders) cross as their fields'
dict and their enums by name (`_reduce_model`, `_reduce_enum`), not through pydantic's
`__getstate__`/`__setstate__` and `Enum.__reduce_ex__` in Python: a decision packed in 23
instead of 35 µs of CPU. Unpickling on the other
side runs `_unpack`, so the step there receives the very items, equal field for field (a
Decimal's text gives back the same Decimal, sign, digits and exponent; floats travel as their
8 bytes). `FeatureColumns` keeps its own pickling: rows of float tuples already pickle about as
fast as packed ones, and unpickle faster.
"""

from __future__ import annotations

import copyreg
import dataclasses
import enum
import io
import pickle
from array import array
from decimal import Decimal
from typing import Any, TypeVar, cast

import numpy as np
from pydantic import BaseModel

from models.core.blocks import BarColumns, PositionColumns
from models.core.packed import BarFloats

T = TypeVar("T")


class Packed:
    """An item pickled once; pickling this pickles only its bytes, unpickling gives the item."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return _unpack, (self.data,)


def packed(item: Any) -> Packed:
    """`item` pickled once, with its column sets packed (see the module docstring)."""
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _dispatch()
    pickler.dump(item)
    return Packed(buf.getvalue())


def shipped(item: T) -> T:
    """`packed(item)`, typed as what the step in the other process receives: the item itself
    (only a step in another process may get it, since only unpickling unpacks it)."""
    return cast(T, packed(item))


def _unpack(data: bytes) -> Any:
    return pickle.loads(data)


def unpacked(item: Any) -> Any:
    """What a `Packed` stands for, or `item` itself: what the other process receives."""
    return pickle.loads(item.data) if type(item) is Packed else item


# ------------------------------------------------------------------------------- columns
_DEC, _INT, _FLOAT, _ASIS = 0, 1, 2, 3


def _column(value: Any) -> tuple[int, Any]:
    """One field: a list of Decimals as their text, of ints or floats as an array, else as is."""
    if type(value) is not list or not value:
        return _ASIS, value
    first = type(value[0])
    if first is Decimal and all(type(v) is Decimal for v in value):
        return _DEC, ",".join(map(str, value))
    if first is float and all(type(v) is float for v in value):
        return _FLOAT, array("d", value).tobytes()
    if first is int and all(type(v) is int for v in value):
        try:
            return _INT, array("q", value).tobytes()
        except OverflowError:
            return _ASIS, value
    return _ASIS, value


def _value(kind: int, data: Any) -> Any:
    if kind == _DEC:
        return list(map(Decimal, data.split(",")))
    if kind == _FLOAT:
        return array("d", data).tolist()
    if kind == _INT:
        return array("q", data).tolist()
    return data


def _reduce_columns(obj: Any) -> tuple[Any, tuple[Any, ...]]:
    fields = tuple(_column(getattr(obj, f.name)) for f in dataclasses.fields(obj))
    return _columns, (type(obj), fields)


def _columns(cls: type, fields: tuple[tuple[int, Any], ...]) -> Any:
    return cls(*(_value(kind, data) for kind, data in fields))


def _reduce_bar_columns(obj: BarColumns) -> Any:
    """The packed form pickles its Arrow and numpy buffers itself (no object per bar); the
    list form is packed column by column as above."""
    if obj.packed is not None:
        return obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    f = obj.floats
    floats = None if f is None else tuple(np.asarray(x, np.float64) for x in astuple_floats(f))
    return _bar_columns, (tuple(_column(v) for v in obj._fields()), floats)


def astuple_floats(f: BarFloats) -> tuple[Any, ...]:
    return (f.close, f.high, f.low, f.volume)


def _bar_columns(fields: tuple[tuple[int, Any], ...], floats: tuple[Any, ...] | None) -> Any:
    cols = BarColumns(*(_value(kind, data) for kind, data in fields))
    cols.floats = None if floats is None else BarFloats(*floats)
    return cols


# ------------------------------------------------------------------------------- records
def _reduce_model(obj: BaseModel) -> Any:
    """A model as its class and fields' dict (what pydantic's `__getstate__` holds, less the
    parts that are empty: no extra fields, no private attributes, every field set)."""
    if obj.__pydantic_extra__ is not None or obj.__pydantic_private__ is not None:
        return obj.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    fields = obj.__dict__
    given = obj.__pydantic_fields_set__
    return _model, (type(obj), fields, None if len(given) == len(fields) else given)


def _model(cls: type[BaseModel], fields: dict[str, Any], given: set[str] | None) -> BaseModel:
    """The model back, as pydantic's `__setstate__` restores one (no validation)."""
    model = cls.__new__(cls)
    setattr_ = object.__setattr__
    setattr_(model, "__dict__", fields)
    setattr_(model, "__pydantic_fields_set__", set(fields) if given is None else given)
    setattr_(model, "__pydantic_extra__", None)
    setattr_(model, "__pydantic_private__", None)
    return model


def _reduce_enum(member: enum.Enum) -> Any:
    """An enum member by its class and name (unpickled by `getattr`, no Python call)."""
    return getattr, (type(member), member._name_)


_DISPATCH = copyreg.dispatch_table.copy()
_DISPATCH[BarColumns] = _reduce_bar_columns
_DISPATCH[PositionColumns] = _reduce_columns
_REGISTERED: list[bool] = []  # whether `_dispatch` has registered the classes (once)


def _subclasses(cls: type) -> list[type]:
    found: list[type] = []
    todo: list[type] = [cls]
    while todo:
        subs: list[type] = todo.pop().__subclasses__()
        found.extend(subs)
        todo.extend(subs)
    return found


def _dispatch() -> dict[Any, Any]:
    """The dispatch table, with every pydantic model and enum class defined when the first item
    is packed (the flow's are by then: its steps are built). A pickler's table is looked up by
    exact type, so a class defined later pickles as it always did: the same item, slower."""
    if not _REGISTERED:
        for cls in _subclasses(BaseModel):
            _DISPATCH.setdefault(cls, _reduce_model)
        for cls in _subclasses(enum.Enum):
            if not issubclass(cls, enum.Flag):  # a combination of flags has no one name
                _DISPATCH.setdefault(cls, _reduce_enum)
        _REGISTERED.append(True)
    return _DISPATCH
