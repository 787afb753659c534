"""deploy/: the compose stack checked against the code, where Docker is not at hand.

What would break at `docker compose up` and can be known without Docker: an environment name
the settings do not know (a typo is an error at start, or worse, silently ignored), a topic the
flow reads that kafka-topics never created (auto-creation is off), a command-line option the
command does not have, a COPY of a path that is not there, the flow's partitions and processes
out of step with the topics', the API's token anywhere but a Docker secret, and Grafana's
ClickHouse user able to write or reading with the writer's password.

Compose interpolation (`${VAR:-default}`, `$$`) is done here as Compose does it, with the
variables unset: the defaults are what a plain `docker compose up` runs.
"""

from __future__ import annotations

import re
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from api.cli import app, default_config_path
from api.server.auth import TOKEN_ENV, TOKEN_FILE_ENV
from dataflows.cluster import MAX_PROCESSES
from models.config.settings import (
    ENV_PREFIX,
    ConfigError,
    KafkaConfig,
    Settings,
    TopicsConfig,
    build_settings,
    env_overrides,
)

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
GRAFANA_USER_XML = DEPLOY / "clickhouse" / "users.d" / "grafana.xml"
ACCESS_XML = DEPLOY / "clickhouse" / "config.d" / "access.xml"
DATASOURCE = DEPLOY / "grafana" / "provisioning" / "datasources" / "clickhouse.yaml"

IMAGE = "stratflow:local"
CONNECTION_ENV = {
    "KAFKA_BOOTSTRAP": ["kafka", "bootstrap"],
    "CLICKHOUSE_URL": ["clickhouse", "url"],
}
"""The two deployment-world names the settings read besides STRATFLOW__..."""


# --------------------------------------------------------------------------------------------
# Compose interpolation
# --------------------------------------------------------------------------------------------

_VAR = re.compile(r"\$\$|\$\{(\w+)(?::?-([^}]*))?\}|\$(\w+)")


def interpolate(value: str, env: Mapping[str, str] | None = None) -> str:
    """`value` as Compose interpolates it with `env` (default: nothing set)."""
    env = env or {}

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(3)
        if name in env and (env[name] or ":-" not in m.group(0)):
            return env[name]
        return m.group(2) or ""

    return _VAR.sub(sub, value)


def test_interpolate_like_compose() -> None:
    assert interpolate("${A:-3}") == "3"
    assert interpolate("${A:-3}", {"A": "5"}) == "5"
    assert interpolate("${A:-3}", {"A": ""}) == "3"
    assert interpolate("${A-3}", {"A": ""}) == ""
    assert interpolate('"$$t" ${B}x') == '"$t" x'


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return compose


def _services() -> dict[str, Any]:
    services: dict[str, Any] = _compose()["services"]
    return services


def _env(service: Mapping[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: interpolate(str(v)) for k, v in raw.items()}


def _stratflow_services() -> dict[str, Any]:
    return {n: s for n, s in _services().items() if s.get("image") == IMAGE}


# --------------------------------------------------------------------------------------------
# The pipeline's services
# --------------------------------------------------------------------------------------------


def test_the_pipeline_runs_as_flow_and_api_from_one_image() -> None:
    services = _stratflow_services()
    assert {"flow", "api"} <= set(services)
    (built,) = [s for s in services.values() if "build" in s]  # built once, shared
    assert built is services["flow"]
    assert (COMPOSE.parent / built["build"]["context"]).resolve() == REPO
    assert (REPO / built["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert services["flow"]["command"][0] == "run"
    assert services["api"]["command"][0] == "serve"


def _setting_path_exists(path: list[str]) -> bool:
    """Whether `path` names a field of `Settings` (dict-valued fields take any key)."""
    model: Any = Settings
    for i, part in enumerate(path):
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return False
        annotation = fields[part].annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            model = annotation
        else:
            return i == len(path) - 1 or str(annotation).startswith("dict[")
    return True


@pytest.mark.parametrize("name", sorted(_stratflow_services()))
def test_every_environment_name_is_a_setting_or_documented(name: str) -> None:
    env = _env(_stratflow_services()[name])
    overrides = {var: path for path, _value, var in env_overrides(env)}
    for var in env:
        if var.startswith(ENV_PREFIX):
            assert _setting_path_exists(overrides[var]), f"{name}: {var} is no setting"
        elif var in CONNECTION_ENV:
            assert overrides[var] == CONNECTION_ENV[var], var
        else:
            assert var == TOKEN_FILE_ENV, f"{name}: {var} is read by nothing"
    # And the settings the service starts with validate (the built-in config plus this env).
    try:
        settings = build_settings(yaml.safe_load(default_config_path().read_text()), env)
    except ConfigError as err:  # pragma: no cover - the failure message is the point
        pytest.fail(f"{name}: {err}")
    assert settings.kafka.bootstrap == env["KAFKA_BOOTSTRAP"]
    assert settings.clickhouse.url == env["CLICKHOUSE_URL"]


def test_the_setting_check_refuses_a_typo() -> None:
    assert _setting_path_exists(["kafka", "partitions"])
    assert _setting_path_exists(["symbols", "GOOG", "lot_size"])
    assert not _setting_path_exists(["kafka", "partition"])
    assert not _setting_path_exists(["recovery", "dir", "x"])


def test_connections_point_at_the_compose_services() -> None:
    services = _services()
    ch = _env(services["clickhouse"])
    kafka = _env(services["kafka"])
    internal = [
        a.split("://", 1)[1]
        for a in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
        if a.startswith(kafka["KAFKA_INTER_BROKER_LISTENER_NAME"] + "://")
    ]
    for name, service in _stratflow_services().items():
        env = _env(service)
        assert [env["KAFKA_BOOTSTRAP"]] == internal, name
        url = env["CLICKHOUSE_URL"]
        assert url == (
            f"http://{ch['CLICKHOUSE_USER']}:{ch['CLICKHOUSE_PASSWORD']}@clickhouse:8123/"
            f"{ch['CLICKHOUSE_DB']}"
        ), name


def test_topics_created_are_the_flows_topics() -> None:
    script = "\n".join(_services()["kafka-topics"]["command"])
    (names,) = re.findall(r"for t in ([^;]+); do", script)
    assert sorted(names.split()) == sorted(TopicsConfig().all())


def test_partitions_and_processes_agree() -> None:
    services = _services()
    topic_partitions = int(_env(services["kafka-topics"])["TOPIC_PARTITIONS"])
    flow = services["flow"]
    settings_partitions = int(_env(flow)["STRATFLOW__KAFKA__PARTITIONS"])
    assert settings_partitions == topic_partitions
    KafkaConfig(partitions=settings_partitions)  # within the setting's bounds
    command = [interpolate(c) for c in flow["command"]]
    processes = int(command[command.index("--processes") + 1])
    # Process 0 holds the desk; each other process runs ingest of at least one partition.
    assert 2 <= processes <= min(MAX_PROCESSES, topic_partitions + 1)
    # The same variable with another value reaches the command.
    other = [interpolate(c, {"STRATFLOW_PROCESSES": "3"}) for c in flow["command"]]
    assert other[other.index("--processes") + 1] == "3"


def _click_command(name: str) -> Any:
    """The click command typer builds for `stratflow <name>` (typer carries its own click)."""
    command = typer.main.get_command(app).commands.get(name)  # type: ignore[attr-defined]
    assert command is not None, f"stratflow has no command {name!r}"
    return command


def _options(command: Any) -> dict[str, Any]:
    return {opt: p for p in command.params for opt in (*p.opts, *p.secondary_opts)}


@pytest.mark.parametrize("name", sorted(_stratflow_services()))
def test_commands_name_real_options(name: str) -> None:
    argv = [interpolate(c) for c in _stratflow_services()[name]["command"]]
    command = _click_command(argv[0])
    options = _options(command)
    for word in argv[1:]:
        if word.startswith("-"):
            assert word in options, f"{name}: stratflow {argv[0]} has no option {word}"
    # The command line parses as the command would parse it (types, counts), without running.
    ctx = command.make_context(f"stratflow {argv[0]}", list(argv[1:]), resilient_parsing=False)
    assert ctx.params


def test_the_option_check_refuses_a_wrong_option() -> None:
    assert "--processes" in _options(_click_command("run"))
    assert "--process" not in _options(_click_command("run"))
    with pytest.raises(typer.BadParameter):
        _click_command("run").make_context("stratflow run", ["--processes", "two"])


def test_api_listens_where_its_port_and_healthcheck_point() -> None:
    api = _stratflow_services()["api"]
    argv = api["command"]
    host, port = argv[argv.index("--listen") + 1].rsplit(":", 1)
    assert host == "0.0.0.0"  # reachable through the published port (it has a token)
    assert any(str(p).split(":")[-1] == port for p in api["ports"])
    assert f"127.0.0.1:{port}/api/health" in " ".join(api["healthcheck"]["test"])
    assert "--no-auth" not in argv


def test_api_token_is_a_docker_secret_only() -> None:
    compose = _compose()
    api = compose["services"]["api"]
    env = _env(api)
    assert TOKEN_ENV not in env  # the token itself never sits in the environment
    (secret,) = api["secrets"]
    assert env[TOKEN_FILE_ENV] == f"/run/secrets/{secret}"
    source = compose["secrets"][secret]["file"]
    ignored = (REPO / ".gitignore").read_text().splitlines()
    relative = (COMPOSE.parent / source).resolve().relative_to(REPO)
    assert any(line.strip("/") and str(relative).startswith(line.strip("/")) for line in ignored), (
        f"{relative} is not in .gitignore"
    )
    for name, service in compose["services"].items():
        assert TOKEN_ENV not in _env(service), name


def test_flow_state_survives_a_restart() -> None:
    flow = _services()["flow"]
    recovery = _env(flow)["STRATFLOW__RECOVERY__DIR"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in flow["volumes"]}
    assert any(recovery.startswith(target + "/") for target in mounts)
    assert all(source in _compose()["volumes"] for source in mounts.values())
    needs = flow["depends_on"]
    assert needs["kafka-topics"]["condition"] == "service_completed_successfully"
    assert needs["clickhouse"]["condition"] == "service_healthy"


# --------------------------------------------------------------------------------------------
# The Dockerfile
# --------------------------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def _dockerignored() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def test_dockerfile_copies_paths_that_exist_and_are_sent() -> None:
    copies = [shlex.split(rest) for kw, rest in _dockerfile_instructions() if kw == "COPY"]
    assert copies
    ignored = _dockerignored()
    copied: set[str] = set()
    for args in copies:
        assert not any(a.startswith("--from") for a in args)
        for source in args[:-1]:
            assert (REPO / source).exists(), f"COPY {source}: no such path in the repository"
            assert source not in ignored, f"COPY {source}: excluded by .dockerignore"
            copied.add(source.rstrip("/"))
    pyproject = _pyproject()
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") for p in packages} <= copied  # every package of the wheel
    assert {"pyproject.toml", pyproject["project"]["readme"]} <= copied
    assert set(pyproject["project"]["license-files"]) <= copied


def _pyproject() -> dict[str, Any]:
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_dockerfile_installs_with_pip_and_runs_stratflow() -> None:
    instructions = _dockerfile_instructions()
    runs = " ".join(rest for kw, rest in instructions if kw == "RUN")
    assert "pip install" in runs
    (entry,) = [rest for kw, rest in instructions if kw == "ENTRYPOINT"]
    assert yaml.safe_load(entry) == ["stratflow"]
    (base,) = [rest for kw, rest in instructions if kw == "FROM"]
    version = re.search(r"python:(\d+\.\d+)", base)
    assert version is not None
    spec = _pyproject()["project"]["requires-python"]  # ">=3.11,<3.13"
    low, high = re.findall(r"(\d+\.\d+)", spec)
    as_tuple = tuple(int(x) for x in version.group(1).split("."))
    assert tuple(map(int, low.split("."))) <= as_tuple < tuple(map(int, high.split(".")))
    extras = [rest for kw, rest in instructions if kw == "ARG" and rest.startswith("EXTRAS")]
    assert extras, "the image's pip extras are a build argument"
    build_args = _services()["flow"]["build"]["args"]
    for extra in filter(None, interpolate(build_args["EXTRAS"], {}).split(",")):
        assert extra in _pyproject()["project"]["optional-dependencies"], extra


# --------------------------------------------------------------------------------------------
# Grafana's read-only ClickHouse user
# --------------------------------------------------------------------------------------------


def _xml(path: Path) -> ET.Element:
    return ET.parse(path).getroot()


def test_grafana_user_is_read_only_on_the_stratflow_database() -> None:
    root = _xml(GRAFANA_USER_XML)
    (user,) = root.findall("./users/*")
    assert user.tag == "grafana"
    profile = root.find(f"./profiles/{user.findtext('profile')}")
    assert profile is not None
    # readonly=1: no writes, no DDL and no SET (2 would allow changing every other setting).
    assert profile.findtext("readonly") == "1"
    # ... except the one setting the plugin sends with each query, bounded.
    constraints = profile.find("constraints")
    assert constraints is not None
    assert [c.tag for c in constraints] == ["max_execution_time"]
    limit = constraints.find("max_execution_time")
    assert limit is not None and limit.find("changeable_in_readonly") is not None
    low, high = int(limit.findtext("min", "")), int(limit.findtext("max", ""))
    assert 1 <= low <= int(profile.findtext("max_execution_time", "")) <= high
    timeout = int(
        yaml.safe_load(DATASOURCE.read_text())["datasources"][0]["jsonData"]["queryTimeout"]
    )
    assert low <= timeout <= high
    # changeable_in_readonly needs this server switch.
    switch = _xml(ACCESS_XML).findtext(
        "./access_control_improvements/settings_constraints_replace_previous"
    )
    assert switch == "true"
    # SELECT on the pipeline's database, nothing else; no access management.
    grants = [q.text for q in user.findall("./grants/query")]
    database = _env(_services()["clickhouse"])["CLICKHOUSE_DB"]
    assert grants == [f"GRANT SELECT ON {database}.*"]
    assert user.find("allow_databases") is None
    assert user.findtext("access_management", "0") == "0"
    assert user.find("quota") is not None and root.find(f"./quotas/{user.findtext('quota')}")


def test_grafana_password_comes_from_the_environment() -> None:
    user = _xml(GRAFANA_USER_XML).find("./users/grafana")
    assert user is not None
    password = user.find("password")
    assert password is not None and not (password.text or "").strip()
    assert password.get("from_env") == "GRAFANA_CLICKHOUSE_PASSWORD"
    assert user.find("password_sha256_hex") is None


def test_datasource_uses_the_read_only_user_never_the_writer() -> None:
    services = _services()
    ch_env = _env(services["clickhouse"])
    (ds,) = yaml.safe_load(DATASOURCE.read_text())["datasources"]
    assert ds["jsonData"]["username"] == "grafana" != ch_env["CLICKHOUSE_USER"]
    reference = ds["secureJsonData"]["password"]
    (var,) = re.fullmatch(r"\$\{?(\w+)\}?", reference).groups()  # type: ignore[union-attr]
    grafana_env = _env(services["grafana"])
    assert grafana_env[var] == ch_env[var]  # the same password on both sides
    assert grafana_env[var] != ch_env["CLICKHOUSE_PASSWORD"]
    # No secret of the data source is (or expands to) the writer's password, and Grafana's
    # container does not hold it.
    for value in ds["secureJsonData"].values():
        assert interpolate(str(value), grafana_env) != ch_env["CLICKHOUSE_PASSWORD"]
    assert ch_env["CLICKHOUSE_PASSWORD"] not in grafana_env.values()


def test_clickhouse_mounts_the_user_and_the_switch() -> None:
    mounts = {}
    for volume in _services()["clickhouse"]["volumes"]:
        source, target, *_ = volume.split(":")
        mounts[target] = source
    assert (COMPOSE.parent / mounts["/etc/clickhouse-server/users.d/grafana.xml"]).resolve() == (
        GRAFANA_USER_XML
    )
    assert (COMPOSE.parent / mounts["/etc/clickhouse-server/config.d/access.xml"]).resolve() == (
        ACCESS_XML
    )
