"""`stratflow gpt-check` against the project's own OpenAI-compatible server (real SDK path),
in-process as the console script runs it (tests/support/cli.py)."""

from __future__ import annotations

from pathlib import Path

from connectors.sim.openai_server import LocalOpenAIServer, Scenario
from tests.support.cli import CliResult, run_cli


def run(tmp_path: Path, env: dict[str, str]) -> CliResult:
    return run_cli("gpt-check", cwd=tmp_path, env=env)


def test_without_endpoint_says_local_engine(tmp_path: Path) -> None:
    out = run(tmp_path, {})
    assert out.returncode == 0 and "local strategy engine" in out.stdout


def test_good_endpoint_reports_latency_tokens_and_cost(
    tmp_path: Path, openai_server: LocalOpenAIServer
) -> None:
    openai_server.script(Scenario.answer({"ok": True}, usage=(120, 7)))
    env = {"OPENAI_BASE_URL": openai_server.base_url, "OPENAI_API_KEY": openai_server.api_key}
    out = run(tmp_path, env)
    assert out.returncode == 0, out.stderr
    assert "gpt OK" in out.stdout and "120+7 tokens" in out.stdout
    assert openai_server.api_key not in out.stdout + out.stderr
    (request,) = openai_server.chat_requests
    assert request.body["response_format"]["type"] == "json_schema"


def test_failing_endpoint_is_one_clear_line(
    tmp_path: Path, openai_server: LocalOpenAIServer
) -> None:
    openai_server.script(*[Scenario.server_error(503)] * 5)
    env = {
        "OPENAI_BASE_URL": openai_server.base_url,
        "OPENAI_API_KEY": openai_server.api_key,
        "STRATFLOW__GPT__MAX_RETRIES": "1",
    }
    out = run(tmp_path, env)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: gpt endpoint: server_error")
    assert "Traceback" not in out.stderr
