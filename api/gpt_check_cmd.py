"""`stratflow gpt-check`: one tiny structured question to the configured GPT endpoint, with its
latency, tokens and cost, so a key or a base URL is checked before a run depends on it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="YAML config (default: ./stratflow.yaml, else the built-in one)"
    ),
]


def gpt_check(config: ConfigOpt = None) -> None:
    """Ask the configured GPT endpoint one tiny structured question; print latency, tokens, cost."""
    from pydantic import BaseModel, ConfigDict

    from connectors.gpt.client import GptClient
    from models.core.messages import ChatTurn
    from models.gpt.cost import call_cost

    class Pong(BaseModel):
        model_config = ConfigDict(extra="forbid")
        ok: bool

    from api.cli import UserError, console, guarded, settings_from

    def go() -> None:
        gpt = settings_from(config).gpt
        client = GptClient.from_env(gpt.model, timeout_s=gpt.timeout_s, max_retries=gpt.max_retries)
        if not client.enabled:
            console.print(
                "no GPT endpoint configured (OPENAI_API_KEY / OPENAI_BASE_URL): "
                "the pipeline runs on the local strategy engine"
            )
            return
        console.print(escape(client.describe()))
        with client:
            result = client.ask(
                [
                    ChatTurn(role="system", content="Answer with the JSON schema only."),
                    ChatTurn(role="user", content='Reply {"ok": true}.'),
                ],
                Pong,
            )
        if not result.ok:
            kind = result.failure.value if result.failure else "no answer"
            raise UserError(f"gpt endpoint: {kind}: {result.detail or 'no detail'}")
        cost = call_cost(result.model, result.usage.prompt_tokens, result.usage.completion_tokens)
        console.print(
            f"gpt OK: model {escape(result.model)}, {result.latency_s * 1000:.0f} ms, "
            f"{result.usage.prompt_tokens}+{result.usage.completion_tokens} tokens, "
            f"cost ${cost:.6f}"
        )

    guarded(go)


__all__ = ["gpt_check"]
