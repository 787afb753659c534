"""A child of a cluster that fails before it ever connects (here: its flow cannot be built)
fails the run with one line instead of leaving process 0 waiting for it in Timely's accept
(dataflows/cluster.py `Cluster._watch`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import dataflows.cluster as cluster
from dataflows.cluster import ClusterFailed
from dataflows.pipeline import FlowSpec
from dataflows.run import run_pipeline
from tests.support.flowkit import create_topics, make_settings

pytestmark = pytest.mark.kafka


def test_a_child_that_cannot_build_its_flow_fails_the_run(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = make_settings(tmp_path, {"SIMA": {}}, recovery={"enabled": False})
    create_topics(kafka_bootstrap, s)
    parent = os.getpid()
    build = cluster.build_flow

    def broken_in_the_child(*args: Any, **kwargs: Any) -> Any:
        if os.getpid() != parent:
            raise RuntimeError("no flow here")
        return build(*args, **kwargs)

    monkeypatch.setattr(cluster, "build_flow", broken_in_the_child)  # the fork inherits it
    with pytest.raises(ClusterFailed, match=r"^process 1 of the flow failed \(exit code 1\)$"):
        run_pipeline(s, FlowSpec(bootstrap=kafka_bootstrap, tail=False), processes=2, say=print)
