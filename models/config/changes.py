"""Settings changed while a flow runs: dotted keys with JSON values over a `Settings` (pure).

The control API validates a change against the settings it shows (`api.server.settings_edit`)
and sends the changed values as one `ChangeSettings` command; the desk applies the same values
over its own settings at the command's place in the stream (`models.desk.control`), so the one
function here decides what a change means on both sides, and a replay of the control topic
rebuilds the same settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from models.config.settings import Settings, SymbolSpec

__all__ = ["apply_values", "key_path", "value_at"]


def key_path(key: str) -> list[str]:
    """The path of a dotted key in the settings document. A symbol may hold dots
    (`symbols.BRK.B`), so under `symbols` the last part is a field only when `SymbolSpec` has
    it (`symbols.BRK.B.lot_size`)."""
    section, _, rest = key.partition(".")
    if section != "symbols":
        return key.split(".")
    head, _, last = rest.rpartition(".")
    if head and last in SymbolSpec.model_fields:
        return [section, head, last]
    return [section, rest]


def value_at(doc: Mapping[str, Any], path: Sequence[str]) -> Any:
    """The value at `path` in a settings document; None where the path leads nowhere."""
    node: Any = doc
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _set(doc: dict[str, Any], path: Sequence[str], value: Any) -> None:
    node = doc
    for part in path[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[path[-1]] = value


def apply_values(settings: Settings, values: Mapping[str, Any]) -> Settings:
    """`settings` with `values` (dotted key -> JSON) set and validated as a whole, exactly as a
    config file is; `pydantic.ValidationError` when the result is not a valid configuration."""
    doc: dict[str, Any] = settings.model_dump()  # Python values: secrets stay whole
    for key, value in values.items():
        _set(doc, key_path(key), value)
    return Settings.model_validate(doc)
