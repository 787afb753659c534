"""`stratflow replay` then `stratflow run` across runs, through the console script in
subprocesses.

Changed settings must not resume the old recovery state (SMA 20/50 -> 5/10 used to print the
identical result until `rm -rf var`): the run refuses with one line naming the change, `--fresh`
starts afresh and discards the old run's rows, and an unchanged rerun resumes with its run id.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from connectors.store.clickhouse import Store
from models.config.settings import ClickHouseConfig
from tests.e2e.test_cli_smoke import cli
from tests.support.cli import assert_no_traceback, assert_user_error, clean_environ

pytestmark = pytest.mark.kafka

TOPICS = ("market", "news", "social", "decisions", "orders", "fills", "alerts", "dead_letters")
RUN_LINE = re.compile(r"^run (\d{8}T\d{6}Z-[0-9a-f]{6})\b(.*)$", re.MULTILINE)


def _run_ids(store_dir: Path) -> dict[str, int]:
    with Store.open(ClickHouseConfig(path=str(store_dir))) as store:
        rows = store.query("SELECT run_id, count() AS n FROM decisions FINAL GROUP BY run_id")
    return {str(r["run_id"]): int(r["n"]) for r in rows}


def _decisions(out: str) -> int:
    m = re.search(r"^\W*decisions\W+([\d,]+)\W*$", out, re.MULTILINE)
    assert m, out
    return int(m.group(1).replace(",", ""))


def test_changed_settings_refuse_then_fresh_then_resume(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    tag = uuid.uuid4().hex[:10]
    topics = {f"STRATFLOW__KAFKA__TOPICS__{t.upper()}": f"test.rc.{t}.{tag}" for t in TOPICS}
    slow = clean_environ(
        {
            "KAFKA_BOOTSTRAP": kafka_bootstrap,
            "STRATFLOW__FEATURES__SMA_FAST": "20",
            "STRATFLOW__FEATURES__SMA_SLOW": "50",
            **topics,
        }
    )
    fast = {**slow, "STRATFLOW__FEATURES__SMA_FAST": "5", "STRATFLOW__FEATURES__SMA_SLOW": "10"}
    # A shipped dataset through a real broker, then the pipeline to the end of the topic.
    replayed = cli("replay", "goog", cwd=tmp_path, env=slow, timeout=120)
    assert replayed.returncode == 0, replayed.stderr
    assert_no_traceback(replayed)
    assert re.search(rf"published 2,148 messages to test\.rc\.market\.{tag}", replayed.stdout)

    first = cli("run", "--no-follow", cwd=tmp_path, env=slow, timeout=240)
    assert first.returncode == 0, first.stderr
    assert_no_traceback(first)
    assert (tmp_path / "var" / "clickhouse").is_dir()
    m = RUN_LINE.search(first.stdout)
    assert m and m.group(2) == "", first.stdout
    first_id = m.group(1)
    assert f"run {first_id})" in first.stdout  # the decision log line names the run too

    refused = cli("run", "--no-follow", cwd=tmp_path, env=fast, timeout=240)
    assert_user_error(
        refused,
        "the configuration changed since var/recovery was written "
        "(features.sma_fast 20 -> 5, features.sma_slow 50 -> 10); "
        "start afresh with --fresh (or rm -rf var/recovery)",
    )
    assert _run_ids(tmp_path / "var" / "clickhouse").keys() == {first_id}

    fresh = cli("run", "--no-follow", "--fresh", cwd=tmp_path, env=fast, timeout=240)
    assert fresh.returncode == 0, fresh.stderr
    m = RUN_LINE.search(fresh.stdout)
    assert m and m.group(1) != first_id
    assert m.group(2) == f" (afresh: run {first_id} and its rows discarded)"
    fresh_id = m.group(1)
    assert _decisions(fresh.stdout) != _decisions(first.stdout)  # other settings, other result
    stored = _run_ids(tmp_path / "var" / "clickhouse")
    assert stored == {fresh_id: _decisions(fresh.stdout)}  # the summary is this run's rows

    again = cli("run", "--no-follow", cwd=tmp_path, env=fast, timeout=240)
    assert again.returncode == 0, again.stderr
    assert f"run {fresh_id} (resumed from its recovery state)" in again.stdout
    assert _decisions(again.stdout) == _decisions(fresh.stdout)
