"""Read a sweep's grid file (YAML or JSON) into a `models.vectorized.sweep.Grid`; the checks
are pure (`parse_grid`), this module only reads and parses text, as `strategy_file` does for
strategy files (whose YAML/JSON parsing and error lines it shares). The strategy is written
inline in the grid: with its `{placeholders}` it is not a strategy file of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from connectors.files.strategy_file import MAX_FILE_BYTES, _parse
from models.strategy.user_file import StrategyFileError
from models.vectorized.sweep import Grid, GridError, parse_grid

__all__ = ["read_grid_file"]


def _read(path: Path) -> Any:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise GridError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GridError(f"grid file not found: {path}") from None
    except UnicodeDecodeError:
        raise GridError(f"{path}: not UTF-8 text") from None
    except OSError as err:
        raise GridError(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        return _parse(path, text)
    except StrategyFileError as err:
        raise GridError(str(err)) from None


def read_grid_file(path: Path) -> Grid:
    """The grid of one file; `GridError` with every reason, each line prefixed by the file."""
    doc = _read(path)
    try:
        return parse_grid(doc)
    except GridError as err:
        raise GridError("\n".join(f"{path}: {line}" for line in str(err).splitlines())) from None
