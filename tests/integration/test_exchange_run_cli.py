"""The mistakes a user can make when asking for an exchange run (`stratflow run --exchange`,
`--paper`, `--sandbox`), each one `error:` line and exit code 2, in-process against the local
broker (tests/support/cli.py); and a lot size off the exchange's amount step, said before the
flow starts, against the exchange emulator."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.cli import run_cli
from tests.support.flowkit import create_topics, make_settings, paper_config

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--paper", "--no-follow"], "an exchange run is live"),
        (["--paper", "--sandbox"], "exclude each other"),
        (["--sandbox"], "--sandbox needs --exchange"),
        (["--exchange", "nosuchexchange"], "unknown exchange"),
        (["--exchange", "kraken", "--paper"], "--paper emulates Binance"),
        (["--exchange", "binance"], "STRATFLOW_BINANCE_API_KEY"),
    ],
)
def test_exchange_run_mistakes_are_one_error_line(
    kafka_bootstrap: str, tmp_path: Path, args: list[str], message: str
) -> None:
    cfg = paper_config(tmp_path)
    create_topics(kafka_bootstrap, make_settings(tmp_path, {"BTC/USDT": {}}))
    out = run_cli("run", "--config", str(cfg), "--bootstrap", kafka_bootstrap, *args, cwd=tmp_path)
    text = out.stdout + out.stderr
    assert out.returncode == 2, text[-2000:]
    assert message in text and "Traceback" not in text
    assert [line for line in text.splitlines() if line.startswith("error:")], text


def test_symbols_must_be_exchange_pairs(kafka_bootstrap: str, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({"symbols": {"GOOG": {}}}), encoding="utf-8")
    out = run_cli(
        "run", "--config", str(cfg), "--bootstrap", kafka_bootstrap, "--paper", cwd=tmp_path
    )
    assert out.returncode == 2 and "BASE/QUOTE" in out.stdout + out.stderr


def test_a_lot_size_off_the_exchanges_amount_step_is_one_clear_error() -> None:
    from decimal import Decimal

    from api.exchange_run import exchange_minimums, lot_problems
    from connectors.exchange.ccxt_executor import CcxtExecutor
    from connectors.exchange.gateway import ExecutionGateway
    from connectors.sim.exchange_emulator import ExchangeEmulator
    from dataflows.adapters import DeskLogic
    from models.config.settings import Settings

    def settings(btc_lot: str) -> Settings:
        return Settings.model_validate(
            {
                "symbols": {"BTC/USDT": {"lot_size": btc_lot}, "ETH/USDT": {"lot_size": "0.001"}},
                "execution": {"currency": "USDT"},
            }
        )

    with ExchangeEmulator(["BTC/USDT", "ETH/USDT"]) as ex:
        client = ex.client()
        client.load_markets()
        pairs = ["BTC/USDT", "ETH/USDT"]
        assert lot_problems(client, settings("0.0001"), pairs) == []
        (problem,) = lot_problems(client, settings("0.0000015"), pairs)
        assert problem.startswith("symbols.BTC/USDT.lot_size is 0.0000015")
        assert "amount step is 0.00001" in problem
        (missing,) = lot_problems(client, settings("0.0001"), ["DOGE/USDT"])
        assert missing == "DOGE/USDT is not a market on this exchange"
        # The exchange's smallest order value reaches the desk, which leaves smaller ones out.
        minimums = exchange_minimums(client, pairs)
        assert minimums == {"BTC/USDT": Decimal(5), "ETH/USDT": Decimal(5)}
        gateway = ExecutionGateway(CcxtExecutor(client))
        gateway.min_notional = minimums
        logic = DeskLogic(settings("0.0001"), frozenset({"m#0"}), None, None, True, gateway)
        gateway.close()
    assert logic.desk.settings.symbols["ETH/USDT"].min_notional == Decimal(5)
