"""`stratflow run --paper`: the whole live path on the project's exchange emulator (trades feed
the market topic through ccxt, orders go back through ccxt), stopped with Ctrl-C; and the
mistakes a user can make when asking for an exchange run, each one `error:` line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.flowkit import ROOT, create_topics, make_settings, query

pytestmark = pytest.mark.kafka

STRATFLOW = str(Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "stratflow")


def _config(tmp: Path, **sections: object) -> Path:
    settings = make_settings(
        tmp,
        {"BTC/USDT": {"lot_size": "0.0001"}, "ETH/USDT": {"lot_size": "0.001"}},
        execution={"initial_cash": "100000", "currency": "USDT", "fee_bps": "10"},
        bars={"interval": "2s", "allowed_lateness": "1s"},
        features={
            "sma_fast": 2,
            "sma_slow": 4,
            "rsi": 3,
            "volume_z": 3,
            "breakout": 3,
            "ema": 3,
            "volatility": 3,
            "vwap": 3,
        },
        **sections,
    )
    path = tmp / "paper.yaml"
    path.write_text(yaml.safe_dump(settings.model_dump(mode="json")), encoding="utf-8")
    return path


def _stratflow(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "STRATFLOW"))}
    return subprocess.run(
        [STRATFLOW, *args], cwd=ROOT, env={**env, "NO_COLOR": "1"}, capture_output=True,
        text=True, timeout=timeout,
    )  # fmt: skip


@pytest.mark.slow
def test_paper_run_trades_on_the_emulator(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    settings = make_settings(tmp_path, {"BTC/USDT": {}})  # the same store as the config's
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "STRATFLOW", "KAFKA_BOOTSTRAP"))
    }
    # No --bootstrap: a paper run starts the bundled broker itself (run state under cwd).
    proc = subprocess.Popen(
        [STRATFLOW, "run", "--config", str(cfg), "--paper"],
        cwd=tmp_path,
        env={**env, "NO_COLOR": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(30)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err[-2000:]
    assert "paper trading on the exchange emulator" in out + err
    assert "paper orders on the local emulator, no account or money" in out + err
    assert "real orders" not in out + err
    # The end-of-run line: orders placed, fills and P&L of this run, named by its id.
    end = re.search(
        r"paper orders on the local emulator: (\d+) orders? placed, (\d+) fills?, "
        r"P&L [+-][\d,]+\.\d\d USDT \(run (\S+)\)",
        err,
    )
    assert end, err[-2000:]
    assert int(end.group(1)) > 0 and int(end.group(2)) > 0
    run_id = end.group(3)
    assert "local Kafka broker (Tansu)" in out + err
    assert list((tmp_path / "var" / "paper").glob("*/feeds/feed-binance-paper.json"))
    settings = settings.model_copy(
        update={
            "clickhouse": settings.clickhouse.model_copy(
                update={"path": str(tmp_path / "clickhouse")}
            )
        }
    )
    bars = query(settings, "SELECT count() AS n FROM bars FINAL")[0]["n"]
    assert bars > 10, (out + err)[-2000:]
    orders = query(settings, "SELECT status, count() AS n FROM orders FINAL GROUP BY status")
    fills = query(settings, "SELECT count() AS n, sum(fee) AS fee FROM fills FINAL")[0]
    assert orders and fills["n"] > 0 and fills["fee"] > 0, (orders, fills)
    assert {r["status"] for r in orders} <= {"filled", "partially_filled", "pending"}
    # Every row is this run's: the next paper run's summary will not count them.
    stamped = query(settings, "SELECT DISTINCT run_id FROM decisions FINAL")
    assert [r["run_id"] for r in stamped] == [run_id]


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
    cfg = _config(tmp_path)
    create_topics(kafka_bootstrap, make_settings(tmp_path, {"BTC/USDT": {}}))
    out = _stratflow("run", "--config", str(cfg), "--bootstrap", kafka_bootstrap, *args)
    text = out.stdout + out.stderr
    assert out.returncode == 2, text[-2000:]
    assert message in text and "Traceback" not in text
    assert [line for line in text.splitlines() if line.startswith("error:")], text


def test_symbols_must_be_exchange_pairs(kafka_bootstrap: str, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({"symbols": {"GOOG": {}}}), encoding="utf-8")
    out = _stratflow("run", "--config", str(cfg), "--bootstrap", kafka_bootstrap, "--paper")
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
