"""`stratflow broker`: the bundled Tansu broker (memory only) with the pipeline's topics, until
Ctrl-C or SIGTERM; the line it prints is the `KAFKA_BOOTSTRAP` to use."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML config (default: ./stratflow.yaml, else the built-in one)"
    ),
]


def broker(
    config: ConfigOpt = None,
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1 (0 = a free one)")
    ] = 0,
) -> None:
    """Run the bundled Tansu broker (memory only) with the pipeline's topics, until Ctrl-C."""
    from api.cli import console, guarded, settings_from
    from connectors.kafka.broker import LocalBroker, ensure_topics

    def go() -> None:
        settings = settings_from(config)
        with LocalBroker(port=port or None, log_dir=Path("var")) as b:
            ensure_topics(b.bootstrap, settings.kafka.topics.all(), settings.kafka.partitions)
            console.print(
                f"broker ready: [bold]KAFKA_BOOTSTRAP={b.bootstrap}[/bold] (Ctrl-C stops it)"
            )
            # Block the signals only now: the broker process must not inherit a blocked mask,
            # or stop() could not terminate it.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            try:
                signal.sigwait({signal.SIGINT, signal.SIGTERM})
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
        console.print("broker stopped")

    guarded(go)


__all__ = ["broker"]
