"""The building blocks of the configuration's sections: durations and bar intervals as they
are written in YAML (validated where they are written, so an error names its key), and the
base every section derives from (unknown keys refused, values frozen). Kept apart from
`models.config.settings` so each group of sections can live in a module of its own."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from models.market.interval import BarInterval, parse_calendar, span_text

__all__ = [
    "BarIntervalText",
    "Duration",
    "parse_bar_interval",
    "parse_duration_ms",
]

_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1000}


def parse_duration_ms(value: object) -> int:
    """`"1h"`, `"15m"`, `"500ms"`, `"1d"` or a bare number of seconds -> milliseconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0 or value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} is not a duration (must be >= 0)")
        return int(value * 1000)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return int(m.group(1)) * _UNIT_MS[m.group(2)]
    raise ValueError(f"{value!r} is not a duration, e.g. 60s, 15m, 1h, 1d")


def _canonical_duration(value: object) -> str:
    """Validate a duration where it is written, so the error names its key; keep it readable."""
    return span_text(parse_duration_ms(value))


Duration = Annotated[
    str,
    BeforeValidator(_canonical_duration, json_schema_input_type=str | int | float),
]


def parse_bar_interval(value: object) -> BarInterval:
    """A bar interval: a duration (`1m`, `4h`, `1d`, `31d`: fixed, on the epoch grid) or a
    calendar interval (`1w`: ISO weeks from Monday 00:00 UTC; `1mo`, `3mo`, `12mo`: calendar
    months, quarters, years in UTC); models/market/interval.py has the rules."""
    calendar = parse_calendar(value) if isinstance(value, str) else None
    if calendar is not None:
        return calendar
    try:
        return BarInterval.fixed(parse_duration_ms(value))
    except ValueError as err:
        if "interval must be > 0" in str(err):
            raise
        raise ValueError(
            f"{value!r} is not a bar interval, e.g. 15m, 1h, 1d, 1w (ISO weeks), 1mo (months)"
        ) from None


BarIntervalText = Annotated[
    str,
    BeforeValidator(
        lambda value: parse_bar_interval(value).text, json_schema_input_type=str | int | float
    ),
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _duration_field(default: str, description: str) -> Any:
    return Field(default=default, description=description, validate_default=True)
