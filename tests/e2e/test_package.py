"""stratflow as an installable package (issue 10, item 8).

A wheel built from the repository, installed into a fresh venv, must run `stratflow demo` with
nothing read from the source tree: the ClickHouse DDL, the sample feeds and the default config
are package data. backtesting.py is AGPL-3.0, so it is the optional extra `datasets` (it carries
the GOOG/EURUSD/BTCUSD histories): importing any stratflow module must work without it, and what
needs it says in one line how to get it.

The wheel test builds offline (`--no-build-isolation`: the build backend comes with the dev
extra) and makes this venv's dependencies visible to the new venv through a `.pth` path entry.
A directory added that way is not a site directory, so its `.pth` files (the editable install's
finder among them) are not run and `import api` can only find the installed wheel.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from email.parser import Parser
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from connectors.store.clickhouse import SCHEMA_PATH

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("api", "connectors", "dataflows", "models")
BUILD_INPUTS = ("pyproject.toml", "README.md", "LICENSE", *PACKAGES)
"""All a wheel build may read: the packages and the three files pyproject.toml names."""

PACKAGE_DATA = (
    "api/stratflow.yaml",
    "api/samples/README.md",
    "api/samples/bad_market.jsonl",
    "api/samples/news.jsonl",
    "api/samples/social.jsonl",
    "connectors/store/schema.sql",
)
EXTRA = "datasets"
GUARD_MARK = "source tree read:"

# Runs in the child before anything else: `backtesting` cannot be imported (nor found).
BLOCK_BACKTESTING = "import sys; sys.modules['backtesting'] = None\n"


def _env(**extra: str) -> dict[str, str]:
    """The environment of an installed user: no PYTHONPATH, no venv or stratflow settings."""
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "KAFKA_BOOTSTRAP")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in drop and not k.startswith(("STRATFLOW", "CLICKHOUSE_", "OPENAI_"))
    }
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


def _run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=env or _env(), capture_output=True, text=True, check=False
    )


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def _one_error_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert proc.returncode == 2, (proc.returncode, out)
    [line] = _lines(proc.stderr)
    assert line.startswith("error: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


# ------------------------------------------------------------------------ fast: the metadata


def test_backtesting_is_an_optional_extra_that_make_installs() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = [re.split(r"[\s<>=!~;\[]", d, maxsplit=1)[0].lower() for d in project["dependencies"]]
    assert "backtesting" not in runtime
    assert any(d.startswith("backtesting") for d in project["optional-dependencies"][EXTRA])
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    assert "Apache License" in (REPO / "LICENSE").read_text(encoding="utf-8")
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert f"pip install --quiet -e '.[dev,{EXTRA},fast]'" in makefile


def test_compose_mounts_the_package_ddl() -> None:
    """One DDL file: the ClickHouse server of deploy/ is initialised from the package's own."""
    compose_file = REPO / "deploy" / "docker-compose.yml"
    compose = yaml.safe_load(compose_file.read_text(encoding="utf-8"))
    mounts = {
        container: host
        for host, container, *_ in (
            v.split(":") for v in compose["services"]["clickhouse"]["volumes"]
        )
    }
    host = mounts["/docker-entrypoint-initdb.d/01-schema.sql"]
    assert (compose_file.parent / host).resolve() == SCHEMA_PATH.resolve()
    assert SCHEMA_PATH.is_file()
    assert not list(REPO.glob("deploy/**/*.sql")), "a second copy of the DDL"


# ------------------------------------------------------------ fast: no backtesting installed


def test_every_module_imports_without_backtesting(tmp_path: Path) -> None:
    """Each module of the four packages imports in a process where `backtesting` cannot be
    found; asking for a dataset there is a `FileNotFoundError` naming the extra."""
    code = BLOCK_BACKTESTING + (
        "import importlib, json, pkgutil\n"
        f"packages = {list(PACKAGES)!r}\n"
        "names = []\n"
        "for top in packages:\n"
        "    pkg = importlib.import_module(top)\n"
        "    names.append(top)\n"
        "    for info in pkgutil.walk_packages(pkg.__path__, top + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "        names.append(info.name)\n"
        "from connectors.files.datasets import dataset_path, list_datasets\n"
        "try:\n"
        "    dataset_path('GOOG')\n"
        "    error = None\n"
        "except FileNotFoundError as err:\n"
        "    error = str(err)\n"
        "print(json.dumps({'modules': names, 'error': error, 'datasets': list_datasets(),\n"
        "    'blocked': sys.modules['backtesting'] is None}))\n"
    )
    proc = _run([sys.executable, "-c", code], cwd=tmp_path, env=_env(PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    on_disk = {
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for top in PACKAGES
        for p in (REPO / top).rglob("*.py")
    }
    assert set(result["modules"]) == on_disk
    assert result["blocked"]  # nothing replaced the block: it really was never imported
    assert result["datasets"] == ["BTCUSD", "EURUSD", "GOOG"]
    assert "GOOG" in result["error"] and f"stratflow[{EXTRA}]" in result["error"]


@pytest.mark.parametrize(
    "args",
    [["demo", "-d", "GOOG", "--scenario-minutes", "1"], ["replay", "EURUSD"]],
    ids=["demo", "replay"],
)
def test_a_dataset_without_the_extra_is_one_error_line(tmp_path: Path, args: list[str]) -> None:
    code = BLOCK_BACKTESTING + "from api.cli import main\nmain(sys.argv[1:])\n"
    env = _env(PYTHONPATH=str(REPO), KAFKA_BOOTSTRAP="127.0.0.1:1")
    proc = _run([sys.executable, "-c", code, *args], cwd=tmp_path, env=env)
    _one_error_line(proc, "backtesting", "AGPL-3.0", f"pip install 'stratflow[{EXTRA}]'")
    assert not (tmp_path / "var").exists()  # refused before anything started


# ------------------------------------------------------------------ slow: the wheel, for real


def _build_wheel(src: Path, out: Path) -> Path:
    """The wheel of a copy of the build inputs (the checkout gets no build/ or egg-info)."""
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            shutil.copytree(
                REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            shutil.copy2(REPO / name, src / name)
    proc = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-build-isolation",
            "--no-deps",
            "--no-index",
            "--quiet",
            "-w",
            str(out),
            str(src),
        ],
        cwd=src,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [wheel] = out.glob("stratflow-*.whl")
    return wheel


def _check_wheel(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(zf.read(f"{dist_info}/METADATA").decode("utf-8"))
        licence = zf.read(f"{dist_info}/licenses/LICENSE")
    assert set(PACKAGE_DATA) <= names
    # Every data file of the packages ships, so a new one cannot be forgotten in pyproject.toml.
    data_files = {
        p.relative_to(REPO).as_posix()
        for top in PACKAGES
        for p in (REPO / top).rglob("*")
        # __pycache__ holds compiled files (numba's cache too: models/vectorized/jit.py)
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }
    assert data_files <= names, sorted(data_files - names)
    assert licence == (REPO / "LICENSE").read_bytes()
    assert metadata["License-Expression"] == "Apache-2.0"
    requires = metadata.get_all("Requires-Dist") or []
    backtesting = [r for r in requires if r.lower().startswith("backtesting")]
    assert backtesting and all(f'extra == "{EXTRA}"' in r for r in backtesting), requires


def _guard_source(roots: list[Path]) -> str:
    """A module the new venv imports at start-up (through a .pth line): it reports on stderr
    every file opened under `roots`, i.e. any read of the source tree."""
    prefixes = [os.path.join(str(r), "") for r in roots]
    return (
        "import os, sys\n"
        f"_ROOTS = tuple({prefixes!r})\n"
        "def _hook(event, args):\n"
        "    if event != 'open' or not args:\n"
        "        return\n"
        "    if not isinstance(args[0], (str, bytes, os.PathLike)):\n"
        "        return\n"
        "    path = os.path.abspath(os.fsdecode(os.fspath(args[0])))\n"
        "    if path.startswith(_ROOTS) or path + os.sep in _ROOTS:\n"
        f"        sys.stderr.write({GUARD_MARK!r} + ' ' + path + '\\n')\n"
        "sys.addaudithook(_hook)\n"
    )


def _source_roots(src: Path) -> list[Path]:
    """The checkout (less the venv that may live in it) and the copy the wheel was built from."""
    venv = Path(sys.prefix).resolve()
    roots = [p for p in REPO.iterdir() if not (venv == p.resolve() or p.resolve() in venv.parents)]
    return [*roots, src]


def _make_venv(venv: Path, guard: str) -> Path:
    """A fresh venv that sees this venv's site-packages as a plain path entry; returns its
    site-packages."""
    proc = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=venv.parent)
    assert proc.returncode == 0, proc.stderr
    python = venv / "bin" / "python"
    proc = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], venv)
    site = Path(proc.stdout.strip())
    ours = dict.fromkeys(sysconfig.get_path(k) for k in ("purelib", "platlib"))
    (site / "stratflow_test_deps.pth").write_text("".join(f"{p}\n" for p in ours), "utf-8")
    (site / "_stratflow_source_guard.py").write_text(guard, "utf-8")
    (site / "zz_stratflow_source_guard.pth").write_text("import _stratflow_source_guard\n", "utf-8")
    return site


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_the_demo(tmp_path: Path) -> None:
    assert int(version("setuptools").split(".")[0]) >= 77, (
        "the build backend comes with the dev extra: make install"
    )
    src, dist, venv, cwd = (tmp_path / d for d in ("src", "dist", "venv", "cwd"))
    for d in (src, dist, cwd):
        d.mkdir()
    wheel = _build_wheel(src, dist)
    _check_wheel(wheel)

    site = _make_venv(venv, _guard_source(_source_roots(src)))
    proc = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # The guard works (a read of the checkout is reported) ...
    probe = _run(
        [str(venv / "bin" / "python"), "-c", f"open({str(REPO / 'LICENSE')!r}).read()"], cwd
    )
    assert f"{GUARD_MARK} {REPO / 'LICENSE'}" in probe.stderr, probe.stderr
    # ... and the packages are the installed wheel's; backtesting (the extra) is this venv's.
    where = (
        "import json, sys, api, api.cli, connectors, dataflows, models, backtesting\n"
        "print(json.dumps({m: sys.modules[m].__file__ for m in"
        " ('api', 'api.cli', 'connectors', 'dataflows', 'models', 'backtesting')}))\n"
    )
    proc = _run([str(venv / "bin" / "python"), "-c", where], cwd)
    assert proc.returncode == 0, proc.stderr
    files = {k: Path(v) for k, v in json.loads(proc.stdout).items()}
    for name in ("api", "api.cli", "connectors", "dataflows", "models"):
        assert site in files[name].parents, (name, files[name])
    assert Path(sysconfig.get_path("purelib")) in files["backtesting"].parents
    assert GUARD_MARK not in proc.stderr, proc.stderr

    # Nothing installed names the source tree.
    needles = [str(REPO).encode(), str(src).encode()]
    for top in PACKAGES:
        for path in (site / top).rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert not any(n in data for n in needles), path

    stratflow = str(venv / "bin" / "stratflow")
    proc = _run([stratflow, "demo", "--dataset", "GOOG", "--scenario-minutes", "5"], cwd)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Traceback" not in out and GUARD_MARK not in out, out
    assert "published sample feeds of bad and hostile input" in proc.stdout, out
    [report] = [
        ln.removeprefix("report: ") for ln in _lines(proc.stdout) if ln.startswith("report:")
    ]
    report_path = cwd / report
    assert report_path.is_file() and report_path.stat().st_size > 0
    assert cwd.resolve() in report_path.resolve().parents

    # The developer command that needs a checkout says so instead of writing into site-packages.
    proc = _run([stratflow, "schemas", "--check"], cwd)
    _one_error_line(proc, "no source checkout", "--dir")
    proc = _run([stratflow, "schemas", "--dir", "schemas"], cwd)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (cwd / "schemas" / "config.json").is_file()
    assert not (site / "specs").exists()
