"""One bounded run of the flow with the control API served from its own process, for
`bench_stream.py` (what `stratflow run --api` does, with a start line in between).

    python bench/stream_child.py CONFIG BOOTSTRAP

Prints `{"url": ...}` once the API answers, waits for `go` on stdin (the bench attaches its
WebSocket clients first), runs the flow to the end of its input, prints `{"elapsed_s",
"cpu_s", "records", "decisions", "stream": {...}}` (`cpu_s`: the process's, every thread, the
flow's and the API's), then waits for `quit` (so the clients can drain).
The token is STRATFLOW_API_TOKEN.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.cli import settings_from  # noqa: E402
from api.server.app import create_app  # noqa: E402
from api.server.context import RunInfo  # noqa: E402
from api.server.launch import build, check_listen, close_context  # noqa: E402
from api.server.serve import ApiServer  # noqa: E402
from connectors.kafka.broker import ensure_topics  # noqa: E402
from connectors.store.clickhouse import Store  # noqa: E402
from dataflows.pipeline import FlowSpec  # noqa: E402
from dataflows.progress import FlowCounters  # noqa: E402
from dataflows.run import open_run_state, run_pipeline  # noqa: E402


def main() -> None:
    config, bootstrap = Path(sys.argv[1]), sys.argv[2]
    settings = settings_from(config)
    store = Store.open(settings.clickhouse)
    store.apply_schema()
    ensure_topics(bootstrap, settings.kafka.topics.all(), settings.kafka.partitions)
    state = open_run_state(settings, fresh=True)
    counters = FlowCounters()
    listen = check_listen("127.0.0.1:0", no_auth=False)
    ctx = build(
        settings, store, listen, bootstrap, RunInfo(state.run_id, "simulated", False, counters)
    )
    server = ApiServer(create_app(ctx), listen.host, listen.port)
    server.start()
    print(json.dumps({"url": server.url}), flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    t0, c0 = time.perf_counter(), time.process_time()
    run_pipeline(
        settings, FlowSpec(bootstrap=bootstrap, tail=False), run_state=state, counters=counters,
        say=lambda _line: None,
    )  # fmt: skip
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    hub = ctx.stream.started if ctx.stream is not None else None
    stats = {
        "clients": hub.clients if hub else 0,
        "published": hub.stats.published if hub else 0,
        "dropped": hub.stats.dropped if hub else 0,
    }
    out = {
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "records": counters.records,
        "decisions": counters.decisions,
    }
    print(json.dumps({**out, "stream": stats}), flush=True)
    sys.stdin.readline()  # quit
    server.stop()
    close_context(ctx)
    store.close()


if __name__ == "__main__":
    main()
