"""Settings as the control API shows and changes them (pure: no store, no broker).

Shown: every value in force, secrets redacted (`redacted`): the ClickHouse URL without its
credentials, notification URLs as `scheme://***`; the API never returns a secret. Changed:
only the keys a running flow can take (`CHANGEABLE`: risk limits, position fractions, the GPT
model and budget, symbols), each a dotted key with a JSON value; the changed settings are
validated as a whole, exactly as a config file is (`Settings`), so an invalid value, an
unknown key or a combination the config refuses never reaches the flow. Secrets
(`SECRET_KEYS`) are not changeable here at all: a change travels on the control topic and
lands in the ledger, neither a place for a password.

`propose()` answers with the diff (before and after of each key, as JSON) and the values the
control command carries, or raises `SettingsRefused` with one (key, reason) per problem.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from models.config.changes import apply_values, key_path, value_at
from models.config.settings import Settings

__all__ = [
    "CHANGEABLE",
    "SECRET_KEYS",
    "SettingsProposal",
    "SettingsRefused",
    "apply_values",
    "key_path",
    "propose",
    "redacted",
]

CHANGEABLE: Final = (
    r"risk\.[a-z_]+",
    r"strategy\.(target_fraction|strategic_fraction)",
    r"gpt\.(model|daily_budget_usd|cost_estimate_usd)",
    r"symbols\.[A-Z0-9][A-Z0-9._/:-]{0,31}(\.[a-z_]+)?",
)
"""The dotted keys a settings change may name (regular expressions, matched whole)."""

SECRET_KEYS: Final = ("clickhouse.url", "notify.urls")
"""Values that may hold credentials: shown redacted, never changed through the API."""

_CHANGEABLE = tuple(re.compile(p) for p in CHANGEABLE)


class SettingsRefused(ValueError):
    """One (dotted key, reason, type) per problem of a proposed change."""

    def __init__(self, problems: Sequence[tuple[str, str, str]]) -> None:
        super().__init__("; ".join(f"{k}: {m}" for k, m, _ in problems))
        self.problems = list(problems)


@dataclass(frozen=True)
class SettingsProposal:
    settings: Settings
    diff: list[dict[str, Any]]
    """`{"key", "before", "after"}` per changed key, values as JSON."""
    values: dict[str, Any]
    """What the control command carries: each changed key's new value as JSON."""


def redacted(settings: Settings) -> dict[str, Any]:
    """Every value in force as JSON, secrets redacted."""
    from api.cli import redact_url

    doc: dict[str, Any] = settings.model_dump(mode="json")  # notify URLs redact themselves
    if settings.clickhouse.url:
        doc["clickhouse"]["url"] = redact_url(settings.clickhouse.url)
    return doc


def _refusal(key: str) -> tuple[str, str, str] | None:
    if key in SECRET_KEYS or any(key.startswith(s + ".") for s in SECRET_KEYS):
        return (key, "a secret: set it in the environment or the config file", "secret")
    if not any(p.fullmatch(key) for p in _CHANGEABLE):
        return (
            key,
            "not changeable while the flow runs: change the config and restart",
            "not_changeable",
        )
    return None


def _owner(loc: Sequence[str], keys: Sequence[str]) -> str:
    """The changed key an error at `loc` is about (the deepest one on its path)."""
    best, depth = keys[0], -1
    for key in keys:
        path = key_path(key)
        n = min(len(path), len(loc))
        if list(loc[:n]) == path[:n] and n > depth:
            best, depth = key, n
    return best


def propose(settings: Settings, values: Mapping[str, Any]) -> SettingsProposal:
    """The change `values` would make to `settings`; `SettingsRefused` if it is not allowed
    or not valid, or changes nothing."""
    keys = list(values)
    problems = [p for p in map(_refusal, keys) if p is not None]
    if problems:
        raise SettingsRefused(problems)
    try:
        after = apply_values(settings, values)
    except ValidationError as err:
        found: list[tuple[str, str, str]] = []
        for e in err.errors(include_input=False, include_url=False):
            loc = [str(p) for p in e["loc"] if not str(p).startswith("function-")]
            msg = str(e["msg"]).removeprefix("Value error, ")
            where = ".".join(loc)
            found.append((_owner(loc, keys), f"{where}: {msg}" if where else msg, e["type"]))
        raise SettingsRefused(found) from None
    old, new = settings.model_dump(mode="json"), after.model_dump(mode="json")
    diff: list[dict[str, Any]] = []
    carried: dict[str, Any] = {}
    for key in keys:
        path = key_path(key)
        before, now = value_at(old, path), value_at(new, path)
        if before != now:
            diff.append({"key": key, "before": before, "after": now})
            carried[key] = now
    if not diff:
        raise SettingsRefused([("", "changes nothing: every value is already in force", "noop")])
    return SettingsProposal(after, diff, carried)
