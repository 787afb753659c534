"""`stratflow run --paper`: the whole live path on the project's exchange emulator (trades feed
the market topic through ccxt, orders go back through ccxt), stopped with Ctrl-C, in a real
process. The mistakes a user can make when asking for an exchange run, each one `error:` line,
are tests/integration/test_exchange_run_cli.py."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from connectors.kafka.io import topic_end_offsets
from models.config.settings import load_settings
from tests.e2e.test_cli_smoke import STRATFLOW
from tests.support.cli import run_cli
from tests.support.flowkit import make_settings, paper_config, query

pytestmark = pytest.mark.kafka


class Lines:
    """A pipe of a running process read in a thread, so the test can watch what it says."""

    def __init__(self, pipe: IO[str] | None) -> None:
        assert pipe is not None
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[str]) -> None:
        for line in pipe:
            with self._lock:
                self._lines.append(line)

    def text(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def close(self) -> str:
        """Everything, once the process has ended."""
        self._thread.join(30)
        return self.text()


def _has_traded(out: str, err: str, fills_topic: str) -> bool:
    """A fill on the run's fills topic and more than 10 bars in its last status line."""
    broker = re.search(r"local Kafka broker \(Tansu\) at (\S+);", out)
    status = re.findall(r"stratflow: [\d,]+ messages, ([\d,]+) bars", err)
    if broker is None or not status or int(status[-1].replace(",", "")) <= 10:
        return False
    try:
        return sum(topic_end_offsets(broker.group(1), fills_topic, timeout_s=5.0).values()) > 0
    except Exception:  # the topic is not there yet
        return False


@pytest.mark.slow
def test_paper_run_trades_on_the_emulator(tmp_path: Path) -> None:
    cfg = paper_config(tmp_path)
    settings = make_settings(tmp_path, {"BTC/USDT": {}})  # the same store as the config's
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "STRATFLOW", "KAFKA_BOOTSTRAP"))
    }
    # No --bootstrap: a paper run starts the bundled broker itself (run state under cwd).
    assert STRATFLOW is not None
    proc = subprocess.Popen(
        [STRATFLOW, "run", "--config", str(cfg), "--paper"],
        cwd=tmp_path,
        env={**env, "NO_COLOR": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = Lines(proc.stdout), Lines(proc.stderr)
    fills_topic = load_settings(cfg, {}).kafka.topics.fills
    # Stopped once it has traded (a fill on its topic) and built more than 10 bars (its status
    # line), not after a fixed time a loaded machine may spend starting up.
    deadline = time.monotonic() + 240  # a hang guard, not a bound
    while not _has_traded(stdout.text(), stderr.text(), fills_topic):
        assert proc.poll() is None, (stdout.text() + stderr.text())[-2000:]
        assert time.monotonic() < deadline, (stdout.text() + stderr.text())[-2000:]
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    out, err = stdout.close(), stderr.close()
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
    # Issue 12: the run marked itself as a paper run of its setup; `approve` measures it
    # (far shorter than promotion.paper_min_duration, so it does not pass yet).
    assert "promotion: paper run of setup " in out + err
    check = run_cli("approve", "--config", str(cfg), "--check", "--json", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    doc = json.loads(check.stdout)
    (paper,) = [r for r in doc["records"] if r["step"] == "paper"]
    assert paper["run_id"] == run_id and paper["outcome"] == "fail"
    assert "duration_ms" in paper["note"] and paper["figures"]["fills"] > 0
    assert paper["figures"]["divergence"] is not None
    print("paper run vs simulator:", {k: paper["figures"][k] for k in sorted(paper["figures"])})
