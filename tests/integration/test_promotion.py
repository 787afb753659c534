"""The promotion ledger in chdb and the commands around it (issue 12, part 5): steps recorded
and read back in order, a paper run measured from its rows, `stratflow validate --config`
recording the setup's validation step, `stratflow approve` (each missing step one `error:`
line, the confirmation, who and when), and `stratflow run --exchange` refusing an unpromoted
setup in one line, as a user sees it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from api.promotion_steps import live_refusal, measure_paper_runs, open_ledger, paper_start
from connectors.store.clickhouse import Store
from connectors.store.promotions import paper_rows, read_steps, record_step
from models.config.settings import Settings, load_settings
from models.core.messages import Side
from models.validation.promotion import Step, StepRecord, setup_doc, setup_hash
from models.validation.verdicts import Outcome
from tests.support.builders import bar, fill, order
from tests.support.cli import run_cli
from tests.support.flowkit import create_topics, make_settings, paper_config

MIN = 60_000
PAPER_RUN = "paper-run-1"


def _config(tmp: Path) -> tuple[Path, Settings]:
    cfg = paper_config(tmp, promotion={"paper_min_duration": "10m"})
    return cfg, load_settings(cfg, {})


def _write_paper_run(settings: Settings, *, minutes: int, skip_fill: bool = False) -> None:
    """A paper run's rows as the flow writes them: bars, two orders, their fills at the
    simulator's price (next bar's open, the configured slippage against the order)."""
    slip = settings.execution.slippage_bps / 10_000
    fee = settings.execution.fee_bps / 10_000
    bars = [bar("BTC/USDT", i * MIN, 100 + i, open=100 + i) for i in range(minutes)]
    orders = [
        order("o1", "d1", "BTC/USDT", side=Side.BUY, placed_ms=MIN - 1),
        order("o2", "d2", "BTC/USDT", side=Side.SELL, placed_ms=3 * MIN - 1),
    ]
    buy, sell = 101 * (1 + slip), 103 * (1 - slip)
    fills = [
        fill("f1", "o1", "d1", "BTC/USDT", quantity=1, price=buy, fee=buy * fee, ts_ms=MIN),
        fill("f2", "o2", "d2", "BTC/USDT", side=Side.SELL, quantity=1, price=sell, fee=sell * fee),
    ]
    with Store.open(settings.clickhouse, run_id=PAPER_RUN) as store:
        store.apply_schema()
        store.insert_models([*bars, *orders, *(fills[:1] if skip_fill else fills)])


def test_steps_are_recorded_and_read_back_in_order_and_survive_a_run_delete(
    tmp_path: Path,
) -> None:
    _, settings = _config(tmp_path)
    h = setup_hash(settings)
    with open_ledger(settings) as store:
        for t, step in ((3, Step.APPROVAL), (1, Step.BACKTEST), (2, Step.PAPER)):
            record_step(
                store,
                StepRecord(h, step, f"run-{t}", Outcome.PASS, t, "bob", {"x": t}, "n"),
                setup_doc(settings),
            )
        record_step(store, StepRecord("other", Step.BACKTEST, "r", Outcome.FAIL, 9))
        store.delete_run("run-1")  # `run --fresh` of a run: its promotion stays
        got = read_steps(store, h)
        (row,) = store.query("SELECT setup FROM promotions WHERE step = 'paper'")
    assert [(r.step, r.recorded_ms, r.run_id) for r in got] == [
        (Step.BACKTEST, 1, "run-1"),
        (Step.PAPER, 2, "run-2"),
        (Step.APPROVAL, 3, "run-3"),
    ]
    assert got[0].figures == {"x": 1} and got[0].who == "bob" and got[0].outcome is Outcome.PASS
    assert json.loads(row["setup"])["strategy"]["controller"] == settings.strategy.controller


def test_a_paper_run_is_measured_from_its_rows(tmp_path: Path) -> None:
    _, settings = _config(tmp_path)
    _write_paper_run(settings, minutes=12)
    with open_ledger(settings) as store:
        rows = paper_rows(store, PAPER_RUN)
        assert [o.client_order_id for o in rows.orders] == ["o1", "o2"]
        assert (rows.first_ms, rows.last_ms) == (0, 12 * MIN)
        paper_start(store, settings, PAPER_RUN, clock=lambda: 5)
        (measured,) = measure_paper_runs(store, settings, clock=lambda: 6)
        assert measure_paper_runs(store, settings, clock=lambda: 7) == []  # no bar since
    assert measured.step is Step.PAPER and measured.outcome is Outcome.PASS, measured
    assert measured.figures["duration_ms"] == 12 * MIN
    assert measured.figures["divergence"] == pytest.approx(0, abs=1e-6)
    assert measured.figures["orders"] == 2 and measured.figures["fills"] == 2


def test_a_short_or_diverging_paper_run_fails(tmp_path: Path) -> None:
    _, settings = _config(tmp_path)
    _write_paper_run(settings, minutes=5, skip_fill=True)
    with open_ledger(settings) as store:
        paper_start(store, settings, PAPER_RUN)
        (measured,) = measure_paper_runs(store, settings)
    assert measured.outcome is Outcome.FAIL
    assert "duration_ms" in measured.note and "divergence" in measured.note
    assert measured.figures["fill_mismatch"] == 0.5


def _errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def test_approve_refuses_each_missing_step_then_records_who_and_when(tmp_path: Path) -> None:
    cfg, settings = _config(tmp_path)
    h = setup_hash(settings)
    nothing = run_cli("approve", "--config", str(cfg), "--yes", cwd=tmp_path)
    assert nothing.returncode == 2
    assert _errors(nothing.stderr) == [
        f"error: cannot approve setup {h}: missing a passing backtest of this setup "
        "(stratflow backtest) (then 2 more)"
    ]
    with open_ledger(settings) as store:
        record_step(store, StepRecord(h, Step.BACKTEST, "bt-1", Outcome.PASS, 1))
    no_validation = run_cli("approve", "--config", str(cfg), "--yes", cwd=tmp_path)
    assert no_validation.returncode == 2
    assert "missing a passing validation of this setup" in no_validation.stderr
    # The GPT setup has no strategy file: `validate --config` records the gate being on.
    validated = run_cli("validate", "--config", str(cfg), "--json", cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr
    step = json.loads(validated.stdout.strip().splitlines()[-1])["promotion"]
    assert step["setup"] == h and step["outcome"] == "pass"
    assert step["figures"]["gate_enabled"] == 1 and step["figures"]["strategy_files"] == 0
    no_paper = run_cli("approve", "--config", str(cfg), "--yes", cwd=tmp_path)
    assert no_paper.returncode == 2 and "missing a passing paper run" in no_paper.stderr
    _write_paper_run(settings, minutes=12)
    with open_ledger(settings) as store:
        paper_start(store, settings, PAPER_RUN)
    # Asked, and no answer (no terminal): nothing is approved.
    declined = run_cli("approve", "--config", str(cfg), "--by", "alice", cwd=tmp_path)
    assert declined.returncode == 1, declined
    assert f"Approve setup {h}" in declined.stdout and "as alice?" in declined.stdout
    assert f"paper run {PAPER_RUN}: pass" in declined.stdout  # measured on the way
    approved = run_cli("approve", "--config", str(cfg), "--by", "alice", "-y", cwd=tmp_path)
    assert approved.returncode == 0, approved
    assert f"setup {h} approved by alice" in approved.stdout
    check = run_cli("approve", "--config", str(cfg), "--check", "--json", cwd=tmp_path)
    doc = json.loads(check.stdout)
    assert doc["stage"] == "approved" and doc["missing_for_approval"] == []
    approvals = [r for r in doc["records"] if r["step"] == "approval"]
    assert [a["who"] for a in approvals] == ["alice"] and approvals[0]["recorded_ms"] > 0
    # The configured setup is the GPT controller's default model, whose cutoff a paper run
    # is after: live may start.
    assert doc["live"] == "allowed"
    with open_ledger(settings) as store:
        assert live_refusal(store, settings) is None
        changed = settings.model_copy(
            update={"strategy": settings.strategy.model_copy(update={"controller": "local"})}
        )
        refusal = live_refusal(store, changed)  # another setup: the road starts again
    assert refusal is not None and refusal.startswith(f"setup {setup_hash(changed)} is not")


ROAD = (Step.BACKTEST, Step.VALIDATION, Step.PAPER, Step.APPROVAL)
KEYS = {"STRATFLOW_BINANCE_API_KEY": "test-key", "STRATFLOW_BINANCE_SECRET": "test-secret"}


@pytest.mark.kafka
def test_run_exchange_refuses_an_unpromoted_setup_in_one_line(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    cfg, settings = _config(tmp_path)
    create_topics(kafka_bootstrap, make_settings(tmp_path, {"BTC/USDT": {}}))
    out = run_cli(
        "run",
        "--config",
        str(cfg),
        "--bootstrap",
        kafka_bootstrap,
        "--exchange",
        "binance",
        cwd=tmp_path,
        env=KEYS,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 2, text[-2000:]
    # Validation, paper, approval and, the controller being GPT, evidence after the model's
    # cutoff follow.
    assert _errors(text) == [
        f"error: setup {setup_hash(settings)} is not promoted to live trading: missing a "
        "passing backtest of this setup (stratflow backtest) (then 4 more step(s)); see "
        "`stratflow approve --check`"
    ]
    assert "Traceback" not in text and "real orders" not in text  # refused before trading


def test_a_demotion_the_flow_raised_sends_an_approved_setup_back_to_paper(
    tmp_path: Path,
) -> None:
    from models.validation.demotion import DemotionWatch, demotion_alert

    _, settings = _config(tmp_path)
    h = setup_hash(settings)
    with open_ledger(settings) as store:
        for t, step in enumerate(ROAD, start=1):
            record_step(store, StepRecord(h, step, f"r{t}", Outcome.PASS, t))
        assert live_refusal(store, settings) is None
        watch = DemotionWatch(h, reasons=("drawdown 0.2000 past the limit 0.15",))
        other = DemotionWatch("another-setup", reasons=("x",))
    with Store.open(settings.clickhouse, run_id="live-1") as live:
        live.insert_models([demotion_alert(watch, 10), demotion_alert(other, 11)])
    with open_ledger(settings) as store:
        refusal = live_refusal(store, settings)
        assert live_refusal(store, settings) == refusal  # recorded once, not per reading
        demotions = [r for r in read_steps(store, h) if r.step is Step.DEMOTION]
    assert refusal is not None and "missing a passing paper run" in refusal
    (demotion,) = demotions
    assert demotion.run_id == "live-1" and demotion.recorded_ms == 10
    assert demotion.figures["reasons"] == "drawdown 0.2000 past the limit 0.15"


def test_a_live_run_whose_fills_diverge_demotes_its_setup_once(tmp_path: Path) -> None:
    from api.promotion_steps import sync_demotions

    _, settings = _config(tmp_path)
    h = setup_hash(settings)
    _write_paper_run(settings, minutes=12, skip_fill=True)  # one of two orders never filled
    with open_ledger(settings) as store:
        for t, step in enumerate(ROAD, start=1):
            record_step(store, StepRecord(h, step, f"r{t}", Outcome.PASS, t))
        paper_start(store, settings, PAPER_RUN, clock=lambda: 4, step=Step.LIVE_START)
        (demotion,) = sync_demotions(store, settings, clock=lambda: 5)
        assert sync_demotions(store, settings, clock=lambda: 6) == []
        refusal = live_refusal(store, settings)
    assert demotion.step is Step.DEMOTION and demotion.run_id == PAPER_RUN
    assert demotion.figures["fill_mismatch"] == 0.5
    assert str(demotion.figures["reasons"]).startswith("divergence 5.0000 past the limit 1")
    assert refusal is not None and "missing a passing paper run" in refusal


REPO = Path(__file__).resolve().parents[2]
EMA = """\
name: ema-trend
universe: [GOOG]
entry: {left: close, op: crosses_above, right: ema_50}
exit: {left: close, op: crosses_below, right: ema_50}
position_fraction: 1.0
"""


def _setup_config(tmp: Path, strategy: object) -> tuple[Path, Settings]:
    """A local setup with one strategy file on the shipped GOOG days, its ledger in `tmp`."""
    cfg = tmp / "setup.yaml"
    doc = {
        "symbols": {"GOOG": {"bar_interval": "1d"}},
        "strategy": {"controller": "local"},
        "strategies": [strategy],
        "clickhouse": {"path": str(tmp / "ledger")},
    }
    cfg.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return cfg, load_settings(cfg, {})


def test_validate_config_records_the_setups_step_that_approve_needs(tmp_path: Path) -> None:
    sma = yaml.safe_load((REPO / "api" / "strategies" / "sma_cross.yaml").read_text())
    cfg, settings = _setup_config(tmp_path, sma)
    h = setup_hash(settings)
    with open_ledger(settings) as store:
        record_step(store, StepRecord(h, Step.BACKTEST, "bt-1", Outcome.PASS, 1))
    refused = run_cli("approve", "--config", str(cfg), "--yes", cwd=tmp_path)
    assert refused.returncode == 2
    assert _errors(refused.stderr) == [
        f"error: cannot approve setup {h}: missing a passing validation of this setup "
        "(stratflow validate --config; GPT's strategies: the validation gate on, recorded by "
        "the backtest) (then 1 more)"
    ]
    result = run_cli("validate", "--config", str(cfg), "--to", "2012-01-01", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert doc["outcome"] == "pass" and {c["check"] for c in doc["checks"]} == {
        "lookahead",
        "recursive",
        "lag",
        "perturb",
    }
    step = doc["promotion"]
    assert (step["setup"], step["step"], step["outcome"]) == (h, "validation", "pass")
    assert step["figures"]["checks"] == 4 and step["figures"]["failed"] == 0
    assert step["figures"]["data_end_ms"] <= 1325376000000  # 2012-01-01: the data it ran on
    check = run_cli("approve", "--config", str(cfg), "--check", "--json", cwd=tmp_path)
    state = json.loads(check.stdout)
    assert state["stage"] == "backtested"
    # The setup's own file validated as a file: said, not recorded (only --config records).
    as_file = run_cli(
        "validate",
        str(REPO / "api" / "strategies" / "sma_cross.yaml"),
        "--config",
        str(cfg),
        "--to",
        "2008-01-01",
        cwd=tmp_path,
    )
    assert as_file.returncode == 0, as_file.stdout
    assert "promotion: not recorded; the setup's step: stratflow validate --config" in (
        as_file.stdout
    )
    with open_ledger(settings) as store:
        assert [r.step for r in read_steps(store, h)] == [Step.BACKTEST, Step.VALIDATION]
    assert [m.split(" (")[0] for m in state["missing_for_approval"]] == [
        "a passing paper run of this setup"
    ]


def test_a_failing_check_records_a_failed_validation_that_withdraws_the_step(
    tmp_path: Path,
) -> None:
    cfg, settings = _setup_config(tmp_path, yaml.safe_load(EMA))
    h = setup_hash(settings)
    with open_ledger(settings) as store:
        record_step(store, StepRecord(h, Step.BACKTEST, "bt-1", Outcome.PASS, 1))
        record_step(store, StepRecord(h, Step.VALIDATION, "", Outcome.PASS, 2))
    # The EMA's values depend on its warm-up on these few years: the recursive check fails.
    result = run_cli("validate", "--config", str(cfg), "--to", "2012-01-01", cwd=tmp_path)
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert f"promotion: setup {h} validation fail" in result.stdout
    assert "failed: ema-trend GOOG recursive" in result.stdout
    refused = run_cli("approve", "--config", str(cfg), "--yes", cwd=tmp_path)
    assert refused.returncode == 2 and "missing a passing validation" in refused.stderr


def test_a_gpt_setup_with_the_gate_off_fails_its_validation_and_live(tmp_path: Path) -> None:
    cfg = paper_config(tmp_path, validation={"enabled": False})
    settings = load_settings(cfg, {})
    result = run_cli("validate", "--config", str(cfg), cwd=tmp_path)
    assert result.returncode == 3
    assert "validation fail (the validation gate is off" in result.stdout
    with open_ledger(settings) as store:
        h = setup_hash(settings)
        for t, step in enumerate(ROAD, start=10):
            record_step(store, StepRecord(h, step, f"r{t}", Outcome.PASS, t))
        refusal = live_refusal(store, settings)
    assert refusal is not None
    assert "missing the validation gate for GPT's strategies (validation.enabled is false" in (
        refusal
    )
