"""Whole runs with ingest's bar events sent as blocks (`tests.support.blocks`): the desk's
block path must give the golden rows and the parity results unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e import test_backtest_parity, test_golden_demo
from tests.support.blocks import blocks_on

pytestmark = pytest.mark.kafka


def test_the_demo_gives_the_golden_rows_with_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = blocks_on(monkeypatch)
    test_golden_demo.test_the_demo_gives_the_golden_rows(tmp_path)
    assert sum(sizes) > 1000  # most bars went as blocks


def test_sma_cross_parity_with_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = blocks_on(monkeypatch)
    test_backtest_parity.test_sma_cross_on_goog_equals_backtesting_py(tmp_path)
    assert sum(sizes) > 1000
