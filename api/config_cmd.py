"""`stratflow config check`, and the config loader's errors with the way out added.

A misspelt key gets the nearest known key (`did you mean risk.max_order_notional?`), also after
an override's `NAME='value': ` prefix; a file without `symbols` is told that a config file
replaces the built-in one. `config check` prints every value in force, naming the overrides
(and which of them add a symbol the file does not have).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.markup import escape

from models.config.settings import Settings, env_overrides

config_app = typer.Typer(no_args_is_help=True, help="Inspect the configuration.")

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML config (default: ./stratflow.yaml, else the built-in one)"
    ),
]

_UNKNOWN_KEY = ": Extra inputs are not permitted"
_NO_SYMBOLS = "symbols: Field required"


def _known_keys(path: list[str]) -> list[str]:
    """The keys the config accepts at `path` (a dotted error location split), [] if unknown."""
    import typing

    from pydantic import BaseModel

    model: Any = Settings
    parts = list(path)
    while parts:
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        field = model.model_fields.get(parts.pop(0))
        if field is None:
            return []
        model = field.annotation
        if typing.get_origin(model) is dict:  # symbols.<SYMBOL>.key
            model = typing.get_args(model)[1]
            if parts:
                parts.pop(0)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def explain_config_error(message: str) -> str:
    """The config loader's message, with the way out where pydantic's words are not enough:
    the nearest known key for a misspelt one, and what a file without `symbols` means."""
    import difflib

    out: list[str] = []
    for line in message.splitlines():
        # An override's line starts with the variable: `NAME='value': key: problem`.
        m = re.match(r"[A-Z_][A-Z0-9_]*=(?:'(?:[^']|'\\'')*'|\(value hidden\)): ", line)
        rest = line[m.end() :] if m else line
        if rest.endswith(_UNKNOWN_KEY):
            *parent, key = rest[: -len(_UNKNOWN_KEY)].split(".")
            close = difflib.get_close_matches(key, _known_keys(parent), n=1, cutoff=0.6)
            if close:
                line += f" (did you mean {'.'.join([*parent, close[0]])}?)"
        elif rest == _NO_SYMBOLS:
            line += (
                " (a config file replaces the built-in one, it is not merged with it:"
                " start from a copy of api/stratflow.yaml)"
            )
        out.append(line)
    return "\n".join(out)


# ----------------------------------------------------------------------------- config
@config_app.command("check")
def config_check(config: ConfigOpt = None) -> None:
    """Validate the config and print every value in force (naming the env overrides)."""
    from api.cli import console, default_config_path, guarded, redact_url, settings_from

    def go() -> None:
        path = config or default_config_path()
        settings = settings_from(path)
        console.print(f"[green]config OK[/green]: {escape(str(path))}")
        in_file = _file_symbols(path)
        for path_parts, _value, name in env_overrides(os.environ):
            adds = (
                f" (adds symbol {path_parts[1]})"
                if path_parts[0] == "symbols"
                and len(path_parts) == 2
                and path_parts[1] not in in_file
                else ""
            )
            console.print(
                f"  overridden by {escape(name)}: {escape('.'.join(path_parts))}{escape(adds)}"
            )
        values = json.loads(settings.model_dump_json())
        if settings.clickhouse.url:  # it may carry a password (notify URLs redact themselves)
            values["clickhouse"]["url"] = redact_url(settings.clickhouse.url)
        dumped = yaml.safe_dump(values, sort_keys=False)
        console.out(dumped.rstrip("\n"), highlight=False)

    guarded(go)


def _file_symbols(path: Path) -> set[str]:
    """The symbols the config file itself lists (those an override adds are not among them)."""
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return set()
    symbols = raw.get("symbols") if isinstance(raw, dict) else None
    return {str(s) for s in symbols} if isinstance(symbols, dict) else set()
