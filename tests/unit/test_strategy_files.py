"""Strategies of your own: files in GPT's language, checked by its compiler, run by the desk."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.files.strategy_file import read_strategy_file, read_strategy_files
from models.config.settings import ConfigError, Settings, build_settings
from models.core.messages import Fill, Order, Side, StrategyRecord, StrategyStatus
from models.desk.desk import TradingDesk
from models.signals.features import FeatureState
from models.strategy.user_file import (
    FILE_DEFAULTS,
    StrategyFileError,
    compile_standing,
    parse_specs,
)
from tests.support.builders import MIN, bar, of

SHIPPED = Path("api/strategies")

CROSS: dict[str, Any] = {
    "name": "cross",
    "universe": ["AAA"],
    "entry": {"left": "sma_3", "op": "crosses_above", "right": "sma_5"},
    "exit": {"left": "sma_3", "op": "crosses_below", "right": "sma_5"},
    "position_fraction": 1.0,
}


def settings_with(*strategies: dict[str, Any], **extra: Any) -> Settings:
    return build_settings(
        {
            "symbols": {"AAA": {}, "BBB": {}},
            "strategies": list(strategies),
            "execution": {"fee_bps": 0, "slippage_bps": 0, "initial_cash": 10_000},
            **extra,
        },
        {},
    )


def test_the_bookkeeping_fields_may_be_left_out() -> None:
    (spec,) = parse_specs(CROSS)
    assert spec.version == FILE_DEFAULTS["version"]
    assert spec.stop_loss_pct is None and spec.take_profit_pct is None
    assert spec.target_weights == []


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ({**CROSS, "position_fraction": 0}, "position_fraction: Input should be greater than 0"),
        ({**CROSS, "entry": {"left": "sma_3", "op": "~", "right": 1}}, "entry.op"),
        ({**CROSS, "colour": "red"}, "colour: Extra inputs are not permitted"),
        ({"strategies": [CROSS, {**CROSS, "universe": []}]}, "strategies[1].universe"),
        ({"strategies": {"a": 1}}, "strategies: must be a list"),
        ([CROSS, "text"], "[1]: a strategy must be a mapping"),
        ("just text", "must be a strategy, a list of them"),
        ([], "holds no strategy"),
    ],
)
def test_a_bad_document_names_the_field(doc: Any, says: str) -> None:
    with pytest.raises(StrategyFileError) as err:
        parse_specs(doc)
    assert says in str(err.value)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"universe": ["ZZZ"]}, "strategies[0].universe[0]: ZZZ is not an allowed symbol"),
        (
            {"entry": {"left": "smaa_3", "op": ">", "right": 1}},
            "strategies[0].entry.left: unknown feature kind 'smaa'",
        ),
        (
            {"entry": {"left": "sma_9000", "op": ">", "right": 1}},
            "strategies[0].entry.left: 'sma_9000': period 9000 is outside 2..5000",
        ),
        ({"take_profit_pct": 0.0001}, "take_profit_pct: 0.0001 is within the round-trip cost"),
    ],
)
def test_the_compiler_judges_a_file_as_it_judges_gpt(change: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_settings(
            {
                "symbols": {"AAA": {}},
                "strategies": [{**CROSS, **change}],
                "execution": {"fee_bps": 10},
            },
            {},
        )
    assert says in str(err.value)
    assert "(top level)" not in str(err.value)


def test_two_strategies_may_not_share_a_symbol() -> None:
    specs = parse_specs([CROSS, {**CROSS, "name": "other"}])
    result = compile_standing(specs, ["AAA"], settings_with().execution)
    assert not isinstance(result, list)
    assert any("AAA is already run by strategies[0]" in r for r in result.reasons)


def test_a_file_may_go_all_in_where_gpt_is_capped() -> None:
    cfg = settings_with(CROSS)
    assert cfg.strategies[0].position_fraction == 1.0
    assert cfg.extra_features("AAA") == ("sma_3", "sma_5")
    assert cfg.extra_features("BBB") == ()
    assert cfg.standing_symbols() == {"AAA"}


def test_yaml_and_json_errors_say_where(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "s.yaml"
    bad_yaml.write_text("name: x\nuniverse: [AAA\n")
    with pytest.raises(StrategyFileError, match=r"s.yaml: not valid YAML at line \d+, column"):
        read_strategy_file(bad_yaml)
    bad_json = tmp_path / "s.json"
    bad_json.write_text('{"name": "x",}')
    with pytest.raises(StrategyFileError, match=r"s\.json: not valid JSON at line 1, column"):
        read_strategy_file(bad_json)
    with pytest.raises(StrategyFileError, match="strategy file not found"):
        read_strategy_file(tmp_path / "missing.yaml")


def test_every_problem_of_every_file_is_reported_with_its_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("name: a\n")
    b.write_text("[1, 2]\n")
    with pytest.raises(StrategyFileError) as err:
        read_strategy_files([a, b])
    lines = str(err.value).splitlines()
    assert any(line.startswith(f"{a}: universe: Field required") for line in lines)
    assert any(line.startswith(f"{b}: [0]: a strategy must be a mapping") for line in lines)


def test_the_shipped_examples_load_and_compile() -> None:
    paths = sorted(SHIPPED.glob("*.yaml"))
    assert len(paths) >= 3
    for path in paths:
        specs = read_strategy_file(path)
        symbols = {s for spec in specs for s in spec.universe}
        cfg = build_settings(
            {
                "symbols": {s: {} for s in symbols},
                "strategies": [s.model_dump(mode="json") for s in specs],
            },
            {},
        )
        assert len(cfg.strategies) == len(specs)


def _run(desk: TradingDesk, closes: list[str], symbol: str = "AAA") -> list[object]:
    """Feed `closes` (open = previous close) through the features and the desk."""
    features = FeatureState(desk.settings.features, desk.settings.extra_features(symbol))
    out: list[object] = []
    prev = closes[0]
    for i, close in enumerate(closes):
        b = bar(symbol, i * MIN, close, open=prev)
        prev = close
        from models.core.events import BarEvent

        out.extend(desk.on_bar_event(BarEvent(b, features.update(b), [], None)))
    return out


def test_the_desk_runs_a_file_strategy_from_the_first_bar_and_never_expires_it() -> None:
    cfg = settings_with({**CROSS, "horizon_bars": 1})
    desk = TradingDesk.create(cfg)
    closes = ["10", "9", "8", "7", "6", "7", "9", "11", "13", "12", "10", "8", "6", "5"]
    out = _run(desk, closes)
    records = of(StrategyRecord, out)
    assert [r.status for r in records] == [StrategyStatus.ACTIVE]
    assert records[0].activation_id == "file:cross"
    fills = of(Fill, out)
    assert [f.side for f in fills] == [Side.BUY, Side.SELL]
    orders = [o for o in of(Order, out) if o.version == 1]
    assert all("cross@v1" in o.reason for o in orders)
    # All in at the next open from the cash then available, out when the SMAs cross back.
    assert desk.portfolio.quantity("AAA") == 0
    assert desk.portfolio.cash != Decimal(10_000)


def test_gpt_may_not_trade_a_symbol_a_file_strategy_runs() -> None:
    from models.gpt.decider import GptDecider

    cfg = settings_with(CROSS)
    assert GptDecider(cfg).allowed == {"BBB"}
