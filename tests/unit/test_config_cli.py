"""`stratflow config check` and every command's config errors, in-process as the console script
runs them: an override's mistake names the variable and its value; an added symbol is said to be
added."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import assert_user_error
from tests.support.cli import run_cli as cli


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        ("STRATFLOW__RISK__MAX_ORDER_NOTIONAL", "abc", "risk.max_order_notional"),
        ("STRATFLOW__BARS__INTERVAL", "soon", "bars.interval"),
        ("STRATFLOW__GPT__CACHE_MODE", "sometimes", "gpt.cache_mode"),
        ("STRATFLOW__KAFKA__PARTITIONS", "-1", "kafka.partitions"),
    ],
)
@pytest.mark.parametrize("command", [["config", "check"], ["run"], ["replay", "GOOG"]])
def test_a_bad_override_names_the_variable_and_its_value(
    tmp_path: Path, command: list[str], name: str, value: str, key: str
) -> None:
    proc = cli(*command, cwd=tmp_path, env={name: value})
    assert_user_error(proc, f"{name}='{value}': {key}: ")


def test_a_misspelt_override_key_still_gets_the_nearest_one(tmp_path: Path) -> None:
    env = dict(STRATFLOW__RISK__MAX_ORDER_NOTIONL="5")
    assert_user_error(
        cli("config", "check", cwd=tmp_path, env=env),
        "STRATFLOW__RISK__MAX_ORDER_NOTIONL='5': risk.max_order_notionl: ",
        "(did you mean risk.max_order_notional?)",
    )


def test_an_override_under_an_unknown_symbol_is_refused(tmp_path: Path) -> None:
    env = dict(STRATFLOW__SYMBOLS__GOGO__LOT_SIZE="10")
    assert_user_error(
        cli("config", "check", cwd=tmp_path, env=env),
        "STRATFLOW__SYMBOLS__GOGO__LOT_SIZE adds symbol GOGO",
        "(GOOG, ",
    )


def test_config_check_says_which_override_adds_a_symbol(tmp_path: Path) -> None:
    env = dict(STRATFLOW__SYMBOLS__NEWX="{lot_size: 1}")
    proc = cli("config", "check", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "overridden by STRATFLOW__SYMBOLS__NEWX: symbols.NEWX (adds symbol NEWX)" in proc.stdout
