"""Read strategy files (YAML or JSON) into strategy specs; the checks are pure
(`models.strategy.user_file`), this module only reads and parses text.

Every problem is one line that names the file and, where there is one, the field
(`sma.yaml: entry.conditions[0].left: unknown feature kind 'smaa'`) or the YAML position
(`sma.yaml: not valid YAML at line 4, column 7: ...`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import yaml

from models.strategy.spec import StrategySpec
from models.strategy.user_file import StrategyFileError, parse_specs

MAX_FILE_BYTES: Final = 1024 * 1024


def _parse(path: Path, text: str) -> Any:
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise StrategyFileError(
                f"{path}: not valid JSON at line {err.lineno}, column {err.colno}: {err.msg}"
            ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "syntax error"
        raise StrategyFileError(f"{path}: not valid YAML{where}: {problem}") from None


def read_strategy_file(path: Path) -> list[StrategySpec]:
    """The strategies of one file; `StrategyFileError` with every reason, each on one line
    prefixed by the file name."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise StrategyFileError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StrategyFileError(f"strategy file not found: {path}") from None
    except UnicodeDecodeError:
        raise StrategyFileError(f"{path}: not UTF-8 text") from None
    except OSError as err:
        raise StrategyFileError(f"{path}: cannot read: {err.strerror or err}") from None
    doc = _parse(path, text)
    try:
        return parse_specs(doc)
    except StrategyFileError as err:
        lines = str(err).splitlines()
        raise StrategyFileError("\n".join(f"{path}: {line}" for line in lines)) from None


def read_strategy_files(paths: list[Path]) -> list[StrategySpec]:
    """Every strategy of every file, in order; all files' problems at once."""
    specs: list[StrategySpec] = []
    problems: list[str] = []
    for path in paths:
        try:
            specs.extend(read_strategy_file(path))
        except StrategyFileError as err:
            problems.append(str(err))
    if problems:
        raise StrategyFileError("\n".join(problems))
    return specs
