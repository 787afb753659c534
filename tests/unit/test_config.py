"""models/config/settings.py: YAML + environment overrides, durations, and one readable line per
problem."""

from __future__ import annotations

import shlex
import typing
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from models.config.base import parse_duration_ms
from models.config.settings import (
    BreakoutTrigger,
    ConfigError,
    Settings,
    build_settings,
    env_overrides,
    load_settings,
    shell_quoted,
)

SHIPPED = Path(str(files("api").joinpath("stratflow.yaml")))
BASE: dict[str, Any] = {"symbols": {"GOOG": {}}}


def config_error(raw: dict[str, Any], environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as exc:
        build_settings(raw, environ or {})
    return str(exc.value)


def with_base(**sections: Any) -> dict[str, Any]:
    return {**BASE, **sections}


# ------------------------------------------------------------------------------ durations


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1m", 60_000),
        ("15m", 900_000),
        ("1h", 3_600_000),
        ("1d", 86_400_000),
        ("31d", 31 * 86_400_000),
        ("500ms", 500),
        ("90s", 90_000),
        ("0s", 0),
        ("60", 60_000),  # a bare number is seconds
        (" 5 m ", 300_000),
        (60, 60_000),
        (1.5, 1_500),
    ],
)
def test_parse_duration(text: object, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("bad", ["abc", True, False, "true", "-1m", "1w", "1.5m", "", None, "1M"])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration_ms(bad)


@pytest.mark.parametrize("bad", [-1, -0.5, float("nan"), float("inf")])
def test_parse_duration_rejects_negative_numbers(bad: float) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration_ms(bad)


@pytest.mark.parametrize("bad", ["abc", "true", "-5m", "1y", True, -5])
def test_bad_bar_interval_in_config(bad: object) -> None:
    msg = config_error(with_base(bars={"interval": bad}))
    assert msg.startswith("bars.interval: ")
    assert "is not a bar interval, e.g. 15m, 1h, 1d, 1w (ISO weeks), 1mo (months)" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("bad", ["abc", "1w", "1mo"])
def test_calendar_spellings_are_bar_intervals_only(bad: str) -> None:
    """A week or month is a window, not a duration: lateness and the like stay fixed."""
    msg = config_error(with_base(bars={"allowed_lateness": bad}))
    assert msg.startswith("bars.allowed_lateness: ") and "not a duration" in msg


def test_zero_bar_interval_is_rejected() -> None:
    assert "interval must be > 0" in config_error(with_base(bars={"interval": "0s"}))


def test_bad_duration_names_its_key() -> None:
    msg = config_error(with_base(bars={"allowed_lateness": "soon"}))
    assert "allowed_lateness" in msg


def test_bare_number_duration_in_yaml_and_env() -> None:
    settings = build_settings(with_base(bars={"interval": 90}), {})
    assert settings.bar_interval("GOOG").fixed_ms == 90_000
    settings = build_settings(BASE, {"STRATFLOW__BARS__INTERVAL": "60"})  # YAML-parsed: int
    assert settings.bar_interval("GOOG").fixed_ms == 60_000


# ------------------------------------------------------------------------------ the shipped file


def test_shipped_config_validates() -> None:
    settings = load_settings(SHIPPED, {})
    assert {"GOOG", "EURUSD", "BTCUSD", "SIMA"} <= set(settings.symbols)
    assert settings.kafka.bootstrap is None
    assert settings.clickhouse.url is None
    assert settings.risk.max_order_notional == Decimal("25000")
    assert len({t.name for t in settings.triggers}) == len(settings.triggers)


def test_bar_interval_per_symbol() -> None:
    settings = load_settings(SHIPPED, {})
    assert settings.bar_interval("GOOG").fixed_ms == 86_400_000
    assert settings.bar_interval("EURUSD").fixed_ms == 3_600_000
    assert settings.bar_interval("BTCUSD").text == "1mo"  # calendar months
    assert settings.bar_interval("SIMA").fixed_ms == 60_000  # falls back to bars.interval
    assert settings.bar_interval("NOT_CONFIGURED").fixed_ms == 60_000


def test_bar_interval_follows_bars_interval() -> None:
    settings = build_settings(
        {"symbols": {"A": {}, "B": {"bar_interval": "5m"}}, "bars": {"interval": "15m"}}, {}
    )
    assert settings.bar_interval("A").fixed_ms == 15 * 60_000
    assert settings.bar_interval("B").fixed_ms == 5 * 60_000


def test_bad_symbol_bar_interval_is_a_config_error() -> None:
    msg = config_error({"symbols": {"GOOG": {"bar_interval": "abc"}}})
    assert msg.startswith("symbols.GOOG.bar_interval: ")
    assert "symbols.GOOG.bar_interval" in config_error({"symbols": {"GOOG": {"bar_interval": 0}}})


# ------------------------------------------------------------------------------ env overrides


def test_env_override_scalar() -> None:
    settings = build_settings(BASE, {"STRATFLOW__RISK__MAX_ORDER_NOTIONAL": "5000"})
    assert settings.risk.max_order_notional == Decimal("5000")
    assert settings.risk.max_position_notional == Decimal("50000")  # siblings keep defaults


def test_env_override_wins_over_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("symbols: {GOOG: {}}\nrisk: {max_order_notional: '100', min_cash: '7'}\n")
    settings = load_settings(path, {"STRATFLOW__RISK__MAX_ORDER_NOTIONAL": "5000"})
    assert settings.risk.max_order_notional == Decimal("5000")
    assert settings.risk.min_cash == Decimal("7")


def test_env_override_nested_bool_and_list() -> None:
    environ = {
        "STRATFLOW__KAFKA__TOPICS__MARKET": "ticks.v2",
        "STRATFLOW__RECOVERY__ENABLED": "false",
        "STRATFLOW__TRIGGERS": "[{kind: breakout, name: only_breakout}]",
        "STRATFLOW__BARS__INTERVAL": "5m",
    }
    settings = build_settings(BASE, environ)
    assert settings.kafka.topics.market == "ticks.v2"
    assert settings.kafka.topics.orders == "orders"
    assert settings.recovery.enabled is False
    assert settings.triggers == [
        BreakoutTrigger(kind="breakout", name="only_breakout", strategic=True)
    ]
    assert settings.bar_interval("GOOG").fixed_ms == 5 * 60_000


def test_env_override_does_not_touch_the_parsed_document() -> None:
    raw: dict[str, Any] = {"symbols": {"GOOG": {}}, "risk": {"min_cash": "1"}}
    build_settings(raw, {"STRATFLOW__RISK__MIN_CASH": "2"})
    assert raw == {"symbols": {"GOOG": {}}, "risk": {"min_cash": "1"}}


def test_kafka_bootstrap_and_clickhouse_url() -> None:
    environ = {
        "KAFKA_BOOTSTRAP": "kafka-1:9092,kafka-2:9092",
        "CLICKHOUSE_URL": "http://user:pw@ch:8123/db",
        "STRATFLOW__KAFKA__BOOTSTRAP": "ignored:1",
    }
    settings = build_settings(BASE, environ)
    assert settings.kafka.bootstrap == "kafka-1:9092,kafka-2:9092"
    assert settings.clickhouse.url == "http://user:pw@ch:8123/db"


def test_empty_kafka_bootstrap_is_no_override() -> None:
    assert build_settings(BASE, {"KAFKA_BOOTSTRAP": ""}).kafka.bootstrap is None


def test_env_overrides_lists_every_source() -> None:
    found = env_overrides(
        {
            "STRATFLOW__RISK__MIN_CASH": "10",
            "STRATFLOW__": "ignored",
            "OTHER": "ignored",
            "KAFKA_BOOTSTRAP": "h:1",
        }
    )
    assert found == [
        (["risk", "min_cash"], 10, "STRATFLOW__RISK__MIN_CASH"),
        (["kafka", "bootstrap"], "h:1", "KAFKA_BOOTSTRAP"),
    ]


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [
        ("STRATFLOW__RISK__MAX_ORDER_NOTIONAL", "-1", "risk.max_order_notional"),
        ("STRATFLOW__RISK__MAX_ORDER_NOTIONAL", "lots", "risk.max_order_notional"),
        ("STRATFLOW__RISK__MAX_ORDER_NOTIONAL", "abc", "risk.max_order_notional"),
        ("STRATFLOW__RISK__NO_SUCH_KEY", "1", "risk.no_such_key"),
        ("STRATFLOW__NOSECTION__X", "1", "nosection"),
        ("STRATFLOW__RISK", "1", "risk"),
        ("STRATFLOW__KAFKA__PARTITIONS", "0", "kafka.partitions"),
        ("STRATFLOW__FEATURES__SMA_FAST", "50", "features"),
        ("STRATFLOW__SYMBOLS__GOOG__LOT_SIZE", "", "symbols.GOOG.lot_size"),
        ("STRATFLOW__BARS__INTERVAL", "it's 5", "bars.interval"),
    ],
)
def test_invalid_env_override_names_the_variable_value_and_field(
    name: str, value: str, field: str
) -> None:
    msg = config_error(BASE, {name: value})
    assert msg.startswith(f"{name}={shell_quoted(value)}: {field}:")
    assert "\n" not in msg


def _scalar_leaves(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every scalar key of the config (sections walked, lists and mappings left out)."""
    out: list[tuple[str, ...]] = []
    for key, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _scalar_leaves(ann, (*prefix, key))
        elif typing.get_origin(ann) not in (list, dict):
            out.append((*prefix, key))
    return out


SCALAR_KEYS = [k for k in _scalar_leaves(Settings) if k[0] != "symbols"]


@pytest.mark.parametrize("key", SCALAR_KEYS, ids=".".join)
def test_every_bad_override_names_its_variable_and_value(key: tuple[str, ...]) -> None:
    """The class: a mapping is a valid value of no scalar key, so each of them must fail
    with the variable and its value quoted, followed by the key."""
    name = "STRATFLOW__" + "__".join(k.upper() for k in key)
    msg = config_error(BASE, {name: "{bad: 1}"})
    first = msg.splitlines()[0]
    shown = "(value hidden)" if any(w in "".join(key) for w in ("url", "token")) else "'{bad: 1}'"
    assert first.startswith(f"{name}={shown}: {'.'.join(key)}"), first


def test_a_url_override_is_named_but_its_value_not_shown() -> None:
    msg = config_error(BASE, {"STRATFLOW__CLICKHOUSE__URL": "[http://u:s3cret@h, x]"})
    assert msg.startswith("STRATFLOW__CLICKHOUSE__URL=(value hidden): clickhouse.url:")
    assert "s3cret" not in msg


@given(st.text(st.characters(blacklist_categories=("Cs",)).filter(str.isprintable), max_size=57))
def test_shell_quoted_is_what_the_shell_reads_back(raw: str) -> None:
    assert shlex.split(shell_quoted(raw)) == [raw]


def test_shell_quoted_shows_invisible_characters_escaped_and_cuts_long_values() -> None:
    assert shell_quoted("a\tb\u200b") == "'a\\tb\\u200b'"
    assert shell_quoted("x" * 100) == "'" + "x" * 57 + "...'"


@pytest.mark.parametrize(
    "environ",
    [
        {"STRATFLOW__SYMBOLS__GOGO__LOT_SIZE": "10"},
        {"STRATFLOW__SYMBOLS__goog__BAR_INTERVAL": "1h"},
        {"STRATFLOW__SYMBOLS__MSFT__MIN_NOTIONAL": "5", "STRATFLOW__SYMBOLS__GOOG": "{}"},
    ],
)
def test_an_override_under_an_unknown_symbol_says_it_adds_one(environ: dict[str, str]) -> None:
    (name,) = [n for n in environ if n.count("__") > 2]
    symbol = name.split("__")[2]
    msg = config_error(BASE, environ)
    assert msg.startswith(f"{name} adds symbol {symbol}, which is not in the config's symbols")
    assert "(GOOG)" in msg
    assert f"STRATFLOW__SYMBOLS__{symbol}=" in msg


def test_the_suggested_way_to_add_a_symbol_works() -> None:
    """What the refusal (and replay's unknown-symbol error) suggest is accepted as it is."""
    msg = config_error(BASE, {"STRATFLOW__SYMBOLS__XYZ__BAR_INTERVAL": "1h"})
    suggested = msg.rsplit(" set it whole: ", 1)[1]
    name, _, value = suggested.partition("=")
    value = shlex.split(value.replace("...", "1h"))[0]
    settings = build_settings(BASE, {name: value})
    assert settings.symbols["XYZ"].bar_interval == "1h"


@pytest.mark.parametrize(
    "added", [{"STRATFLOW__SYMBOLS__SIMA": "{}"}, {"STRATFLOW__SYMBOLS": "{GOOG: {}, SIMA: {}}"}]
)
def test_a_symbol_added_whole_may_then_be_overridden(added: dict[str, str]) -> None:
    settings = build_settings(BASE, {**added, "STRATFLOW__SYMBOLS__SIMA__LOT_SIZE": "5"})
    assert settings.symbols["SIMA"].lot_size == Decimal("5")


def test_env_override_of_a_symbol() -> None:
    settings = build_settings(
        BASE, {"STRATFLOW__SYMBOLS__GOOG__LOT_SIZE": "10", "STRATFLOW__SYMBOLS__SIMA": "{}"}
    )
    assert settings.symbols["GOOG"].lot_size == Decimal("10")
    assert set(settings.symbols) == {"GOOG", "SIMA"}


# ------------------------------------------------------------------------------ validation rules


def test_lower_case_symbol() -> None:
    msg = config_error({"symbols": {"goog": {}}})
    assert msg.startswith("symbols.goog")


def test_sma_fast_must_be_below_sma_slow() -> None:
    msg = config_error(with_base(features={"sma_fast": 30, "sma_slow": 30}))
    assert msg == "features: sma_fast must be smaller than sma_slow"


def test_duplicate_trigger_names() -> None:
    triggers = [
        {"kind": "breakout", "name": "twice"},
        {"kind": "volume_spike", "name": "twice"},
    ]
    msg = config_error(with_base(triggers=triggers))
    assert "trigger names must be unique" in msg
    assert "twice" in msg


def test_unknown_trigger_kind() -> None:
    msg = config_error(with_base(triggers=[{"kind": "moon_phase", "name": "x"}]))
    assert msg.startswith("triggers.0:")
    assert "moon_phase" in msg
    assert "crossover" in msg  # lists what is accepted


@pytest.mark.parametrize("bounds", [{"above": 70, "below": 30}, {}])
def test_threshold_needs_exactly_one_bound(bounds: dict[str, float]) -> None:
    trigger = {"kind": "threshold", "name": "rsi", "feature": "rsi", **bounds}
    msg = config_error(with_base(triggers=[trigger]))
    assert msg == "triggers.0.threshold: give exactly one of above / below"


def test_trigger_on_an_unknown_feature() -> None:
    trigger = {"kind": "threshold", "name": "odd", "feature": "moon", "above": 1}
    msg = config_error(with_base(triggers=[trigger]))
    assert "'odd'" in msg
    assert "unknown feature 'moon'" in msg


def test_unknown_section() -> None:
    assert config_error(with_base(riks={})) == "riks: Extra inputs are not permitted"


def test_unknown_key() -> None:
    msg = config_error(with_base(risk={"max_order": 1}))
    assert msg == "risk.max_order: Extra inputs are not permitted"


def test_unknown_key_in_a_trigger() -> None:
    msg = config_error(with_base(triggers=[{"kind": "breakout", "name": "b", "window": 3}]))
    assert msg.startswith("triggers.0.breakout.window:")


def test_out_of_range_value() -> None:
    msg = config_error(with_base(features={"sma_fast": 1}))
    assert msg == "features.sma_fast: Input should be greater than or equal to 2"


def test_every_problem_gets_its_own_line() -> None:
    msg = config_error(with_base(risk={"min_cash": -1, "max_fee_per_order": 0}, riks={}))
    lines = msg.splitlines()
    assert len(lines) == 3
    assert {ln.split(":")[0] for ln in lines} == {
        "risk.min_cash",
        "risk.max_fee_per_order",
        "riks",
    }


def test_symbols_must_be_a_mapping() -> None:
    assert config_error({"symbols": ["GOOG"]}).startswith("symbols:")


def test_config_without_symbols_is_rejected() -> None:
    assert config_error({}) == "symbols: Field required"
    assert config_error({"symbols": {}}).startswith("symbols: ")


# ------------------------------------------------------------------------------ files


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^config file not found: .*nope\.yaml$"):
        load_settings(tmp_path / "nope.yaml", {})


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("symbols: {GOOG: {}\nrisk: [\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(path, {})
    msg = str(exc.value)
    assert msg.startswith(f"{path}: not valid YAML")
    assert "\n" not in msg


def test_invalid_yaml_message_is_tidy(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("symbols: {GOOG: {}\nrisk: [\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(path, {})
    assert "<unicode string>" not in str(exc.value)
    assert "line 2" in str(exc.value)


@pytest.mark.parametrize("text", ["- GOOG\n- EURUSD\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    path = tmp_path / "list.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_settings(path, {})


def test_empty_file_gets_defaults_plus_env(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing\n")
    with pytest.raises(ConfigError, match=r"^symbols: Field required$"):
        load_settings(path, {})
    settings = load_settings(
        path, {"STRATFLOW__SYMBOLS__GOOG": "{}", "STRATFLOW__RISK__MIN_CASH": "5"}
    )
    assert settings.risk.min_cash == Decimal("5")
    assert settings.bars.interval == "1m"


def test_no_file_at_all() -> None:
    settings = load_settings(None, {"STRATFLOW__SYMBOLS__GOOG": "{}"})
    assert isinstance(settings, Settings)
    assert list(settings.symbols) == ["GOOG"]


def test_file_errors_are_config_errors_not_tracebacks(tmp_path: Path) -> None:
    path = tmp_path / "bad_value.yaml"
    path.write_text("symbols: {GOOG: {}}\nexecution: {initial_cash: '-5'}\n")
    with pytest.raises(ConfigError, match=r"^execution\.initial_cash: .*greater than 0$"):
        load_settings(path, {})
