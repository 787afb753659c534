"""The flow's garbage-collection policy (dataflows/run.py `fewer_collections`)."""

from __future__ import annotations

import gc

from dataflows.run import GC_GEN0_THRESHOLD, fewer_collections


def test_a_bounded_run_collects_no_cycles_and_a_live_one_collects_less_often() -> None:
    before = gc.get_threshold()
    assert gc.isenabled()
    with fewer_collections(bounded=True):
        assert not gc.isenabled()
    assert gc.isenabled() and gc.get_threshold() == before
    with fewer_collections(bounded=False):
        assert gc.isenabled()
        assert gc.get_threshold()[0] == max(before[0], GC_GEN0_THRESHOLD)
    assert gc.isenabled() and gc.get_threshold() == before


def test_a_caller_that_disabled_collection_keeps_it_disabled() -> None:
    gc.disable()
    try:
        with fewer_collections(bounded=True):
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
