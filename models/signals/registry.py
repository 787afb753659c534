"""The feature registry: names, periods and the classes behind them.

A feature is named `<kind>_<period>` (`sma_50`) or, for kinds without a parameter, by its kind
alone (`drawdown`); `@register` makes a class a kind (`models.signals.indicators` holds the
built-in ones, where every convention is stated). Kept apart from the classes so that the
registry, the naming rules and the warm-up probe read on their own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, Final, Protocol

from models.core.messages import Bar
from models.signals.kernels import FloatBars, Floats

MIN_PERIOD: Final = 1
MAX_PERIOD: Final = 5000
"""Longest window a strategy may ask for: bounded memory per symbol, and a warm-up a backtest
can still fill."""

_NAME: Final = re.compile(r"^([a-z][a-z_]*?)(?:_(\d{1,6}))?$")


class Indicator(Protocol):
    """One feature of one symbol: its value at each closed bar."""

    def update(self, bar: Bar) -> float | None: ...

    def buffer_len(self) -> int: ...


BlockMethod = Callable[[FloatBars], "Floats | None"]
"""`update_many(bars)`: `update` for each bar of a block, the values as floats (NaN for None)
and the state left as bar by bar; or None, having changed nothing, when the block is outside
what the method handles exactly (then the caller loops `update`)."""


def block_method(indicator: Indicator) -> BlockMethod | None:
    """The instance's `update_many`, if its class has one written for its own `update` (a
    subclass that overrides `update` but inherits `update_many` must not get the parent's)."""

    def owner(name: str) -> type | None:
        return next((k for k in type(indicator).__mro__ if name in k.__dict__), None)

    many, one = owner("update_many"), owner("update")
    if many is None or one is None or not issubclass(many, one):
        return None
    method: BlockMethod = indicator.update_many  # type: ignore[attr-defined]
    return method


@dataclass(frozen=True, slots=True)
class FeatureKind:
    """A registered kind: how to build one instance and what its parameter means."""

    kind: str
    build: Callable[[int], Indicator]
    description: str
    min_period: int | None  # None: the kind takes no parameter
    default_period: int | None = None


REGISTRY: dict[str, FeatureKind] = {}


def register(
    kind: str, description: str, min_period: int | None = 2
) -> Callable[[type[Any]], type[Any]]:
    """Class decorator: make `kind` (and `kind_N` when it takes a period) a feature name."""

    def add(cls: type[Any]) -> type[Any]:
        if kind in REGISTRY:
            raise ValueError(f"feature kind {kind!r} is registered twice")
        REGISTRY[kind] = FeatureKind(kind, cls, description, min_period)
        return cls

    return add


@dataclass(frozen=True, slots=True)
class FeatureKey:
    """What is computed: the kind and its period (0 for kinds without one). Two names with one
    key (`sma_fast` configured as 10, and `sma_10`) share one instance."""

    kind: str
    period: int


def parse_feature(name: str) -> FeatureKey | str:
    """The key of a parameterised feature name, or one line saying why it is not one."""
    match = _NAME.fullmatch(name)
    if match is None:
        return f"{name!r} is not a feature name (kind_period, e.g. sma_50)"
    kind, digits = match.group(1), match.group(2)
    spec = REGISTRY.get(kind)
    if spec is None:
        return f"unknown feature kind {kind!r}; kinds: {', '.join(sorted(REGISTRY))}"
    if spec.min_period is None:
        if digits is not None:
            return f"{kind!r} takes no period (write {kind})"
        return FeatureKey(kind, 0)
    if digits is None:
        return f"{kind!r} needs a period, e.g. {kind}_20"
    period = int(digits)
    if not spec.min_period <= period <= MAX_PERIOD:
        return f"{name!r}: period {period} is outside {spec.min_period}..{MAX_PERIOD}"
    return FeatureKey(kind, period)


def build(key: FeatureKey) -> Indicator:
    return REGISTRY[key.kind].build(key.period)


@cache
def _probe_bars() -> tuple[Bar, ...]:
    """A deterministic, always-moving series (prices and volumes vary every bar), so that no
    feature stays undefined for a reason other than its warm-up."""
    from decimal import Decimal

    out: list[Bar] = []
    price = 100.0
    for i in range(MAX_PERIOD + 8):
        step = 1.0 + 0.01 * (((i * 7919) % 13) - 6) / 6
        close, open_ = price * step, price
        price = close
        out.append(
            Bar(
                symbol="PROBE",
                start_ms=i * 60_000,
                end_ms=(i + 1) * 60_000,
                open=Decimal(f"{open_:.6f}"),
                high=Decimal(f"{max(open_, close) * 1.001:.6f}"),
                low=Decimal(f"{min(open_, close) * 0.999:.6f}"),
                close=Decimal(f"{close:.6f}"),
                volume=Decimal(100 + (i * 37) % 50),
                trades=1,
                vwap=Decimal(f"{close:.6f}"),
            )
        )
    return tuple(out)


_WARMUP: dict[FeatureKey, int] = {}


def warmup_bars(key: FeatureKey) -> int:
    """How many bars a feature needs before its first value (its index in a series): what a
    strategy reading it must wait for, e.g. where a backtest's buy and hold starts."""
    known = _WARMUP.get(key)
    if known is None:
        indicator = build(key)
        bars = _probe_bars()
        known = next(
            (i for i, bar in enumerate(bars) if indicator.update(bar) is not None), len(bars)
        )
        _WARMUP[key] = known
    return known
