"""How items cross from one process of a cluster to another: pickled once.

Bytewax pickles an item that goes to another process, and pickles it twice: Timely asks for
its length, then for its bytes, and both run `pickle.dumps` (measured on the 200k-bar run:
the child spent a third of its time in the two pickles of its output). So an item that will
cross is pickled first (`packed`), and Bytewax then pickles only those bytes, twice, which is
a copy. Unpickling on the other side runs `_unpack`, so the step there receives the very
items. What the items themselves cost to pickle is theirs to keep small: bar blocks and their
columns pickle as buffers (models/core/blocks.py, models/core/packed.py).
"""

from __future__ import annotations

import pickle
from typing import Any, TypeVar, cast

T = TypeVar("T")


class Packed:
    """An item pickled once; pickling this pickles only its bytes, unpickling gives the item."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return _unpack, (self.data,)


def packed(item: Any) -> Packed:
    """`item` pickled once (objects it holds twice stay one object)."""
    return Packed(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))


def shipped(item: T) -> T:
    """`packed(item)`, typed as what the step in the other process receives: the item itself
    (only a step in another process may get it, since only unpickling unpacks it)."""
    return cast(T, packed(item))


def _unpack(data: bytes) -> Any:
    return pickle.loads(data)


def unpacked(item: Any) -> Any:
    """What a `Packed` stands for, or `item` itself: what the other process receives."""
    return pickle.loads(item.data) if type(item) is Packed else item
