"""The one configuration of a run: validated at start, every value overridable by environment.

A YAML file gives the base; `STRATFLOW__SECTION__KEY=value` overrides any leaf (values are parsed
as YAML scalars, so `5000`, `true` and `[a, b]` mean what they look like), and the two names the
deployment world already uses, `KAFKA_BOOTSTRAP` and `CLICKHOUSE_URL`, override the connection
settings. Errors come back as one readable line per problem, never a traceback.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from models.config.base import (
    BarIntervalText,
    Duration,
    _duration_field,
    _Section,
    parse_bar_interval,
)
from models.config.gates import PromotionConfig, ValidationConfig
from models.config.notify import NotifyConfig
from models.core.messages import SYMBOL_PATTERN
from models.market.interval import BarInterval
from models.news.config import NewsConfig
from models.strategy.spec import StrategySpec

ENV_PREFIX = "STRATFLOW__"


class SymbolSpec(_Section):
    bar_interval: BarIntervalText | None = Field(
        default=None, description="Overrides bars.interval"
    )
    lot_size: Decimal = Field(default=Decimal("1"), gt=0, description="Order quantity step")
    min_notional: Decimal = Field(
        default=Decimal("0"),
        ge=0,
        description="Smallest order value the exchange accepts; smaller orders are not placed",
    )
    shortable: bool = Field(
        default=False,
        description="The venue lends it: a sell may open or extend a short position",
    )


class BarsConfig(_Section):
    interval: BarIntervalText = _duration_field(
        "1m",
        "Tumbling event-time window: a duration on the UTC epoch grid (1m, 1h, 1d), or 1w (ISO "
        "weeks from Monday 00:00 UTC), 1mo / 3mo / 12mo (calendar months, quarters, years)",
    )
    allowed_lateness: Duration = _duration_field(
        "0s", "A window closes once a newer event is this far past its end"
    )
    max_future_skew: Duration = _duration_field(
        "5m",
        "Events this far ahead of the broker's append time (LogAppendTime records), else of "
        "the wall clock at ingest (live) or at the run's start (bounded), are dead-lettered",
    )
    max_jump: Duration = _duration_field(
        "7d",
        "A market event this far past its partition's newest event (at least two of its "
        "symbol's bar intervals) is held until `jump_confirmations` events confirm the gap",
    )
    jump_confirmations: int = Field(
        default=3, ge=1, le=1000, description="Events past a gap that make it real, not an outlier"
    )
    guard_alert_burst: int = Field(
        default=3,
        ge=1,
        description="This many refused times or wrong partitions within guard_alert_window "
        "on one partition raise an alert",
    )
    guard_alert_window: Duration = _duration_field(
        "1m", "Window of guard_alert_burst, in broker (or ingest) time"
    )
    dedupe_window: int = Field(
        default=10_000, ge=0, description="Recent message ids remembered per symbol"
    )


class FeaturesConfig(_Section):
    sma_fast: int = Field(default=10, ge=2)
    sma_slow: int = Field(default=30, ge=3)
    ema: int = Field(default=20, ge=2)
    rsi: int = Field(default=14, ge=2)
    volatility: int = Field(default=20, ge=2, description="Bars in the log-return stdev")
    vwap: int = Field(default=20, ge=1, description="Bars in the rolling VWAP")
    volume_z: int = Field(default=20, ge=3, description="Bars in the volume z-score")
    breakout: int = Field(default=20, ge=2, description="Bars in the high/low channel")

    @model_validator(mode="after")
    def _fast_below_slow(self) -> FeaturesConfig:
        if self.sma_fast >= self.sma_slow:
            raise ValueError("sma_fast must be smaller than sma_slow")
        return self


class CrossoverTrigger(_Section):
    kind: Literal["crossover"]
    name: str
    fast: str = "sma_fast"
    slow: str = "sma_slow"
    strategic: bool = False


class BreakoutTrigger(_Section):
    kind: Literal["breakout"]
    name: str
    strategic: bool = True


class VolumeSpikeTrigger(_Section):
    kind: Literal["volume_spike"]
    name: str
    z: float = Field(default=3.0, gt=0)
    strategic: bool = True


class DrawdownTrigger(_Section):
    kind: Literal["drawdown"]
    name: str
    pct: float = Field(default=0.1, gt=0, lt=1, description="Fall from the running peak close")
    strategic: bool = True


class ThresholdTrigger(_Section):
    kind: Literal["threshold"]
    name: str
    feature: str
    above: float | None = None
    below: float | None = None
    direction: Literal["long", "short", "flat"] = "long"
    strategic: bool = False

    @model_validator(mode="after")
    def _one_bound(self) -> ThresholdTrigger:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of above / below")
        return self


TriggerSpec = Annotated[
    CrossoverTrigger | BreakoutTrigger | VolumeSpikeTrigger | DrawdownTrigger | ThresholdTrigger,
    Field(discriminator="kind"),
]


def default_triggers() -> list[TriggerSpec]:
    return [
        CrossoverTrigger(kind="crossover", name="sma_cross"),
        BreakoutTrigger(kind="breakout", name="channel_breakout"),
        VolumeSpikeTrigger(kind="volume_spike", name="volume_spike"),
        DrawdownTrigger(kind="drawdown", name="drawdown_10pct"),
        ThresholdTrigger(kind="threshold", name="rsi_oversold", feature="rsi", below=25.0),
        ThresholdTrigger(
            kind="threshold", name="rsi_overbought", feature="rsi", above=80.0, direction="flat"
        ),
    ]


class RouterConfig(_Section):
    min_signals_for_strategic: int = Field(
        default=2, ge=1, description="This many signals on one bar also need a strategic decision"
    )


class StrategyConfig(_Section):
    controller: Literal["gpt", "local"] = Field(
        default="gpt",
        description="gpt: GPT writes strategies on strategic triggers (local engine without a "
        "key); local: the local engine decides everything",
    )
    target_fraction: Decimal = Field(
        default=Decimal("0.10"), gt=0, le=1, description="Equity fraction per long position"
    )
    strategic_fraction: Decimal = Field(
        default=Decimal("0.20"), gt=0, le=1, description="Equity fraction on a strategic entry"
    )


class RiskConfig(_Section):
    max_order_notional: Decimal = Field(default=Decimal("25000"), gt=0)
    max_position_notional: Decimal = Field(default=Decimal("50000"), gt=0)
    min_cash: Decimal = Field(default=Decimal("0"), ge=0, description="Cash never spent")
    daily_loss_limit: Decimal = Field(
        default=Decimal("5000"), gt=0, description="Realised+unrealised loss per UTC day"
    )
    max_fee_per_order: Decimal = Field(default=Decimal("50"), gt=0)
    max_adjust_rounds: int = Field(default=3, ge=0, le=10)


class ExecutionConfig(_Section):
    initial_cash: Decimal = Field(default=Decimal("100000"), gt=0)
    currency: str = "USD"
    fee_bps: Decimal = Field(default=Decimal("10"), ge=0, le=1000)
    slippage_bps: Decimal = Field(default=Decimal("5"), ge=0, le=1000)
    fallback: Literal["hold", "cancel_open", "flatten", "safe_local"] = Field(
        default="hold",
        description="When an order cannot be placed on the exchange (after one retry): keep "
        "the book, cancel the symbol's open orders, sell its position, or stop its GPT strategy",
    )
    reconcile_every: Duration = _duration_field(
        "60s", "Live on an exchange: how often the book is checked against the exchange's balances"
    )
    max_order_age: Duration = _duration_field(
        "5s",
        "Live on an exchange: an order older than this (from its decision to the moment it "
        "would be sent, e.g. queued behind an outage) is re-checked at the current price or "
        "dropped as stale; 0 = never",
    )
    stale_price_tolerance_bps: Decimal = Field(
        default=Decimal("50"),
        ge=0,
        le=10_000,
        description="How far the price may have moved since a stale order's decision for it "
        "to be sent all the same (it must also fit the risk limits at the current price)",
    )


class TopicsConfig(_Section):
    market: str = "market.ticks"
    news: str = "news.items"
    social: str = "social.posts"
    decisions: str = "decisions"
    orders: str = "orders"
    fills: str = "fills"
    alerts: str = "alerts"
    dead_letters: str = "dead.letters"
    control: str = "control"  # control commands in (models.control)
    control_acks: str = "control.acks"  # their acknowledgements out (the control_log rows)

    def all(self) -> list[str]:
        return list(self.model_dump().values())


class KafkaConfig(_Section):
    bootstrap: str | None = Field(
        default=None, description="host:port list; empty = start the local Tansu broker"
    )
    partitions: int = Field(default=1, ge=1, le=256)
    topics: TopicsConfig = TopicsConfig()


class ClickHouseConfig(_Section):
    url: str | None = Field(
        default=None, description="http(s)://user:pass@host:8123/db; empty = chdb"
    )
    path: str = Field(default="var/clickhouse", description="chdb data directory")
    database: str = "stratflow"


class StorageConfig(_Section):
    ticks: bool = Field(
        default=False,
        description="Also keep every validated tick in the ticks table (bars are always kept)",
    )


class GptConfig(_Section):
    """The GPT strategy controller's settings (the endpoint and key come from OPENAI_BASE_URL and
    OPENAI_API_KEY, never from this file, so a config can be shared without secrets)."""

    model: str = Field(default="gpt-4o-mini", min_length=1, max_length=100)
    timeout_s: float = Field(default=20.0, gt=0, le=600)
    max_retries: int = Field(default=2, ge=0, le=10)
    daily_budget_usd: Decimal = Field(default=Decimal("5"), ge=0)
    cache_dir: str = Field(default="var/gpt-answers", description="Record/replay answer store")
    cache_mode: Literal["auto", "record", "replay"] = "auto"
    cache_window: Duration = _duration_field(
        "1h", "Live: an identical question inside this window is answered from the store"
    )
    anonymize: bool = Field(default=False, description="Opaque symbols, relative time, rebased")
    max_concurrency: int = Field(default=4, ge=1, le=64, description="Calls in flight (live)")
    max_wait: Duration = _duration_field(
        "15m", "Event time a decision waits for its answer before the local engine decides"
    )
    cooldown: Duration = _duration_field(
        "10m",
        "Event time after a GPT decision on a symbol during which its running GPT strategy "
        "handles new strategic triggers (no new call)",
    )
    digest_window: Duration = _duration_field("12h", "News/social age shown in the prompt")
    digest_items: int = Field(default=10, ge=0, le=100, description="News/social items shown")
    cost_estimate_usd: Decimal = Field(
        default=Decimal("0.002"), ge=0, description="Assumed cost of a call, for the budget"
    )


class RecoveryConfig(_Section):
    enabled: bool = True
    dir: str = "var/recovery"
    snapshot_interval: Duration = _duration_field("2s", "Recovery snapshot (epoch) interval")


class Settings(_Section):
    symbols: dict[Annotated[str, Field(pattern=SYMBOL_PATTERN)], SymbolSpec] = Field(
        min_length=1, description="The instruments the pipeline trades; others are dead-lettered"
    )
    bars: BarsConfig = BarsConfig()
    features: FeaturesConfig = FeaturesConfig()
    triggers: list[TriggerSpec] = Field(default_factory=default_triggers)
    router: RouterConfig = RouterConfig()
    strategy: StrategyConfig = StrategyConfig()
    risk: RiskConfig = RiskConfig()
    execution: ExecutionConfig = ExecutionConfig()
    kafka: KafkaConfig = KafkaConfig()
    clickhouse: ClickHouseConfig = ClickHouseConfig()
    storage: StorageConfig = StorageConfig()
    gpt: GptConfig = GptConfig()
    news: NewsConfig = NewsConfig()
    notify: NotifyConfig = NotifyConfig()
    recovery: RecoveryConfig = RecoveryConfig()
    validation: ValidationConfig = ValidationConfig()
    promotion: PromotionConfig = PromotionConfig()
    strategies: list[StrategySpec] = Field(
        default_factory=list,
        description="Strategies of your own (`stratflow backtest --strategy FILE`), run by the"
        " local engine on their universes: models/strategy/user_file.py",
    )

    @field_validator("strategies", mode="before")
    @classmethod
    def _file_defaults(cls, value: Any) -> Any:
        from models.strategy.user_file import with_defaults  # it imports this module

        return [with_defaults(v) for v in value] if isinstance(value, list) else value

    @model_validator(mode="after")
    def _strategies_compile(self) -> Settings:
        """The same compiler as GPT's answers: a strategy that loads is one that can run."""
        from models.strategy.compiler import Rejection
        from models.strategy.user_file import compile_standing

        result = compile_standing(self.strategies, self.symbols, self.execution, self.shortable())
        if isinstance(result, Rejection):
            raise ValueError("; ".join(result.reasons))
        return self

    def shortable(self) -> frozenset[str]:
        """The symbols a sell may take short."""
        return frozenset(s for s, spec in self.symbols.items() if spec.shortable)

    def standing_symbols(self) -> frozenset[str]:
        """The symbols a configured strategy runs (GPT is not asked about them)."""
        return frozenset(s for spec in self.strategies for s in spec.universe)

    def extra_features(self, symbol: str) -> tuple[str, ...]:
        """Feature names the configured strategies of `symbol` read beyond the defaults."""
        from models.signals.names import FEATURE_NAMES

        names = {
            n for spec in self.strategies if symbol in spec.universe for n in spec.operand_names()
        }
        return tuple(sorted(names - {"close", *FEATURE_NAMES}))

    @model_validator(mode="after")
    def _unique_trigger_names(self) -> Settings:
        names = [t.name for t in self.triggers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"trigger names must be unique, repeated: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _triggers_read_known_features(self) -> Settings:
        """Fail at start, not on the first message, when a trigger names an unknown feature."""
        from models.signals.triggers import TriggerState  # triggers import this module's types

        TriggerState(self.triggers)
        return self

    def bar_interval(self, symbol: str) -> BarInterval:
        """The symbol's bar interval (`symbols.X.bar_interval`, else `bars.interval`)."""
        spec = self.symbols.get(symbol)
        return parse_bar_interval(
            spec.bar_interval if spec and spec.bar_interval else self.bars.interval
        )


class ConfigError(ValueError):
    """A configuration problem, already phrased for the user (one line per problem)."""


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for key in path[:-1]:
        nxt = node.get(key)
        if not isinstance(nxt, dict):
            nxt = {}
            node[key] = nxt
        node = nxt
    node[path[-1]] = value


def env_overrides(environ: Mapping[str, str]) -> list[tuple[list[str], Any, str]]:
    """(path, value, env name) for every override found in `environ`."""
    found: list[tuple[list[str], Any, str]] = []
    for name, raw in sorted(environ.items()):
        if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX):
            parts = name[len(ENV_PREFIX) :].split("__")
            # Field names are lower-case; symbols are upper-case ids and keep their case.
            path = [
                p if i > 0 and parts[i - 1].lower() == "symbols" else p.lower()
                for i, p in enumerate(parts)
            ]
            try:
                value = yaml.safe_load(raw) if raw != "" else None
            except yaml.YAMLError:
                value = raw
            found.append((path, value, name))
    if environ.get("KAFKA_BOOTSTRAP"):
        found.append((["kafka", "bootstrap"], environ["KAFKA_BOOTSTRAP"], "KAFKA_BOOTSTRAP"))
    if environ.get("CLICKHOUSE_URL"):
        found.append((["clickhouse", "url"], environ["CLICKHOUSE_URL"], "CLICKHOUSE_URL"))
    return found


_SECRET_PARTS: Final = ("url", "password", "secret", "token")
"""Override values under keys with these words may hold credentials: named, never shown."""

_MAX_SHOWN_VALUE: Final = 60


def shell_quoted(raw: str) -> str:
    """`raw` as the shell would need it quoted (`'abc'`, `'it'\\''s'`), cut after 60 characters,
    so an error line shows exactly what the variable held, empty and blank values included."""
    shown = raw if len(raw) <= _MAX_SHOWN_VALUE else raw[: _MAX_SHOWN_VALUE - 3] + "..."
    shown = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in shown)
    return "'" + shown.replace("'", "'\\''") + "'"


def describe_override(path: list[str], name: str, environ: Mapping[str, str]) -> str:
    """`NAME='value'` for an error line (the value hidden where it may hold a password)."""
    if any(word in part.lower() for part in path for word in _SECRET_PARTS):
        return f"{name}=(value hidden)"
    return f"{name}={shell_quoted(environ.get(name, ''))}"


def _override_for(
    loc: tuple[str, ...], overrides: list[tuple[list[str], Any, str]]
) -> tuple[list[str], str] | None:
    """The override that set the value at `loc`, or the one below `loc` that a check of the
    whole section rejected (`features: sma_fast must be smaller ...` after SMA_FAST=50)."""
    best: tuple[list[str], str] | None = None
    for path, _value, name in overrides:
        n = min(len(path), len(loc))
        if n and list(loc[:n]) == path[:n] and (best is None or len(path) > len(best[0])):
            best = (path, name)
    return best


def _format_errors(
    err: ValidationError,
    overrides: list[tuple[list[str], Any, str]] | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    lines = []
    for e in err.errors():
        parts = tuple(str(p) for p in e["loc"] if not str(p).startswith("function-"))
        msg = e["msg"].removeprefix("Value error, ")
        where = ".".join(parts)
        bare = where or msg.startswith("strategies[")  # those name their field themselves
        line = f"{where}: {msg}" if bare else f"(top level): {msg}"
        found = _override_for(parts, overrides or []) if parts else None
        if found is not None:
            line = f"{describe_override(found[0], found[1], environ or {})}: {line}"
        lines.append(line)
    return "\n".join(lines)


def _refuse_unknown_symbol_keys(
    raw: Mapping[str, Any], overrides: list[tuple[list[str], Any, str]]
) -> None:
    """An override of a key under a symbol the config does not have is taken for a typo
    (`STRATFLOW__SYMBOLS__GOGO__LOT_SIZE`), not a new symbol: adding one is deliberate and
    whole (`STRATFLOW__SYMBOLS__SIMA={}`)."""
    file_symbols = raw.get("symbols")
    known = list(file_symbols) if isinstance(file_symbols, dict) else []
    added = [path[1] for path, _, _ in overrides if len(path) == 2 and path[0] == "symbols"]
    for path, value, _ in overrides:  # STRATFLOW__SYMBOLS='{SIMA: {}}' sets them all
        if path == ["symbols"] and isinstance(value, dict):
            added += [str(s) for s in value]
    for path, _value, name in overrides:
        if len(path) > 2 and path[0] == "symbols" and path[1] not in {*known, *added}:
            have = ", ".join(str(s) for s in known) or "none"
            raise ConfigError(
                f"{name} adds symbol {path[1]}, which is not in the config's symbols ({have});"
                f" a misspelt symbol? To add one on purpose set it whole:"
                f" STRATFLOW__SYMBOLS__{path[1]}='{{{path[2]}: ...}}'"
            )


def build_settings(raw: Mapping[str, Any] | None, environ: Mapping[str, str]) -> Settings:
    """Merge a parsed config document with environment overrides and validate the result.

    A value an override set that fails validation is reported with the variable and its
    value (`STRATFLOW__RISK__MAX_ORDER_NOTIONAL='abc': risk.max_order_notional: ...`)."""
    tree: dict[str, Any] = copy.deepcopy(dict(raw or {}))
    overrides = env_overrides(environ)
    _refuse_unknown_symbol_keys(tree, overrides)
    for path, value, _ in overrides:
        _set_path(tree, path, value)
    try:
        return Settings.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, overrides, environ)) from None


def load_settings(path: str | Path | None, environ: Mapping[str, str]) -> Settings:
    """Read a YAML config file (or none) and apply the environment."""
    raw: Any = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or "syntax error"
            raise ConfigError(f"{p}: not valid YAML{where}: {problem}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections")
    return build_settings(raw, environ)


def with_min_notional(settings: Settings, minimums: Mapping[str, Decimal]) -> Settings:
    """The settings with each symbol's `min_notional` raised to the exchange's minimum (a
    configured value above it stays: it is the user's own floor)."""
    symbols = {
        sym: spec.model_copy(update={"min_notional": max(spec.min_notional, minimums[sym])})
        if sym in minimums
        else spec
        for sym, spec in settings.symbols.items()
    }
    return settings.model_copy(update={"symbols": symbols})


# ------------------------------------------------------------------ what a run's results depend on

NOT_RESULT_SETTINGS: Final = (
    "kafka",  # where the input comes from (the recovery manifest checks the input topics)
    "clickhouse",  # where the rows go
    "storage",  # whether ticks are kept too: more rows, the same decisions
    "notify",  # who is told
    "recovery",  # where and how often state is saved
    "gpt.cache_dir",  # where answers are recorded
    "gpt.max_concurrency",  # how many calls are in flight at once
    "promotion",  # what the road to live asks of a setup, not how a run decides
)
"""Settings a run's results do not depend on: changing them leaves recovery state valid.
Every other key (symbols, bars, features, triggers, router, strategy, risk, execution, the
rest of gpt) does, including keys added later: a new key counts until declared here."""


def result_settings(settings: Settings) -> dict[str, Any]:
    """The settings a run's results depend on, as plain JSON values (what the recovery
    manifest keeps, readable, beside its hash)."""
    doc: dict[str, Any] = settings.model_dump(mode="json")
    for dotted in NOT_RESULT_SETTINGS:
        *parents, leaf = dotted.split(".")
        node = doc
        for part in parents:
            node = node.get(part, {})
        node.pop(leaf, None)
    return doc


def settings_hash(doc: Mapping[str, Any]) -> str:
    """A short, stable fingerprint of `result_settings(...)` (key order does not matter)."""
    import hashlib
    import json

    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _short(value: Any) -> str:
    import json

    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _diff(before: Any, after: Any, prefix: str, out: list[str]) -> None:
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(before.keys() | after.keys(), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in before:
                out.append(f"{path} added")
            elif key not in after:
                out.append(f"{path} removed")
            else:
                _diff(before[key], after[key], path, out)
    elif before != after:
        out.append(f"{prefix} {_short(before)} -> {_short(after)}")


def settings_changes(before: Mapping[str, Any], after: Mapping[str, Any], limit: int = 3) -> str:
    """What differs between two `result_settings` documents, readable and short:
    `features.sma_fast 20 -> 5, features.sma_slow 50 -> 10`, `symbols.SIMA added`."""
    changes: list[str] = []
    _diff(dict(before), dict(after), "", changes)
    more = f" and {len(changes) - limit} more" if len(changes) > limit else ""
    return ", ".join(changes[:limit]) + more
