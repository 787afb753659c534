"""`specs/` must match the code: schemas, one spec per package naming each of its modules,
headings, samples, topic names, and every backticked identifier of a spec."""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import inspect
import json
import keyword
import re
import textwrap
import threading
import types
import typing
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from jsonschema import Draft202012Validator
from pydantic import BaseModel, TypeAdapter, ValidationError

from api.schemas_cmd import check_schemas, default_schema_dir, write_schemas
from connectors.exchange.ccxt_executor import CcxtExecutor
from connectors.exchange.gateway import ExecutionGateway
from models.config.settings import Settings, SymbolSpec, TopicsConfig
from models.core.events import BarEvent
from models.core.messages import (
    AdjustRound,
    Alert,
    Bar,
    BarIn,
    Branch,
    DeadLetter,
    DecisionRecord,
    DecisionStatus,
    Direction,
    FeatureVector,
    Fill,
    NewsItem,
    Order,
    OrderStatus,
    PositionSnapshot,
    Proposal,
    RiskCheck,
    RiskVerdict,
    Severity,
    Side,
    Signal,
    SocialPost,
    Tick,
    TradeIntent,
)
from models.core.schemas import SCHEMA_MODES, TOPIC_SCHEMAS, generate_schemas, render_schema
from models.desk.desk import TradingDesk
from models.execution.reports import ExecStatus, ExecutionReport
from models.market.ingest import PartitionIngest, RawBatch, Record
from models.market.parsing import parse_market

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
SPECS = ROOT / "specs"
SCHEMA_DIR = SPECS / "schemas"
PACKAGES = ("models", "connectors", "dataflows", "api")
HEADINGS = ("Job", "Inputs", "Outputs", "Failure behaviour")
REGENERATE = "run `stratflow schemas` to regenerate"

TS = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
TS_MS = 1_709_303_400_000


# ------------------------------------------------------------------------------ (1) schemas


def test_schema_files_match_the_models() -> None:
    problems = check_schemas(SCHEMA_DIR)
    assert not problems, f"specs/schemas out of date: {', '.join(problems)}; {REGENERATE}"


def test_default_schema_dir_is_the_checkout() -> None:
    assert default_schema_dir() == SCHEMA_DIR


def test_generation_is_deterministic() -> None:
    first = {k: render_schema(v) for k, v in generate_schemas().items()}
    second = {k: render_schema(v) for k, v in generate_schemas().items()}
    assert first == second
    for name, text in first.items():
        assert text.endswith("}\n"), name
        doc = json.loads(text)
        assert doc["$id"].endswith(f"/{name}.json")
        assert doc["title"]


def test_every_schema_has_a_mode_and_is_valid_json_schema() -> None:
    assert set(SCHEMA_MODES) == set(TOPIC_SCHEMAS)
    for name, schema in generate_schemas().items():
        Draft202012Validator.check_schema(schema)
        assert SCHEMA_MODES[name] in schema["$comment"]


def test_write_and_check_roundtrip(tmp_path: Path) -> None:
    out = tmp_path / "schemas"
    assert len(check_schemas(out)) == len(TOPIC_SCHEMAS)  # all missing
    written = write_schemas(out)
    assert sorted(p.name for p in written) == sorted(f"{n}.json" for n in TOPIC_SCHEMAS)
    assert check_schemas(out) == []
    assert write_schemas(out) == []  # nothing to do the second time
    (out / "orders.json").write_text("{}\n", encoding="utf-8")
    (out / "stale.json").write_text("{}\n", encoding="utf-8")
    (out / "fills.json").unlink()
    assert check_schemas(out) == [
        "fills.json (missing)",
        "orders.json (drifted)",
        "stale.json (extra)",
    ]
    write_schemas(out)
    assert check_schemas(out) == []
    assert not (out / "stale.json").exists()


# ------------------------------------------------------------------------------ (2) + (3) specs
#
# One spec per package that holds modules (`specs/models.desk.md` for `models/desk/`), every
# module named in its spec's `## Modules` list, every spec in the README's package table.


def _modules() -> set[str]:
    return {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for pkg in PACKAGES
        for path in (ROOT / pkg).rglob("*.py")
        if path.name != "__init__.py"
    }


def _package_of(module: str) -> str:
    return module.rsplit(".", 1)[0]


def _packages() -> set[str]:
    return {_package_of(m) for m in _modules()}


def _spec_files() -> dict[str, Path]:
    return {p.stem: p for p in SPECS.glob("*.md") if p.name != "README.md"}


def _section(text: str, heading: str) -> str:
    """The body of `## heading` (up to the next `## `), empty when there is none."""
    parts = re.split(rf"^## {re.escape(heading)}[ \t]*$", text, maxsplit=1, flags=re.MULTILINE)
    return parts[1].split("\n## ", 1)[0] if len(parts) == 2 else ""


def _listed_modules(text: str) -> set[str]:
    """The modules a spec's `## Modules` list names: bullets `- `pkg.module` — ...`."""
    return set(re.findall(r"^- `([\w.]+)`", _section(text, "Modules"), flags=re.MULTILINE))


def test_every_package_has_a_spec() -> None:
    missing = sorted(_packages() - set(_spec_files()))
    names = ", ".join(f"{m}.md" for m in missing)
    assert not missing, f"packages without a spec in specs/: {names}"


def test_every_spec_names_an_existing_package() -> None:
    orphans = sorted(set(_spec_files()) - _packages())
    assert not orphans, f"specs without a package: {', '.join(o + '.md' for o in orphans)}"


@pytest.mark.parametrize("package", sorted(_packages()))
def test_every_module_is_listed_in_its_package_spec(package: str) -> None:
    path = _spec_files().get(package)
    if path is None:
        pytest.skip("no spec: test_every_package_has_a_spec says so")
    listed = _listed_modules(path.read_text(encoding="utf-8"))
    modules = {m for m in _modules() if _package_of(m) == package}
    missing, extra = sorted(modules - listed), sorted(listed - modules)
    assert not missing, f"specs/{package}.md `## Modules` lacks a line for: {', '.join(missing)}"
    assert not extra, f"specs/{package}.md `## Modules` names no such module: {', '.join(extra)}"


def test_readme_lists_every_spec() -> None:
    readme = (SPECS / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"\]\(([\w.]+)\.md\)", readme))
    assert listed == set(_spec_files()), "specs/README.md package table differs from specs/*.md"
    for package in listed:
        assert f"`{package.replace('.', '/')}/`" in readme, f"README: no row for {package}"


@pytest.mark.parametrize("name", sorted(_spec_files()))
def test_spec_has_title_and_headings(name: str) -> None:
    text = _spec_files()[name].read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == f"# {name}", "the first line must be `# <package>`"
    headings = [ln[3:].strip() for ln in lines if ln.startswith("## ")]
    required = (*HEADINGS, "Modules")
    for heading in required:
        assert heading in headings, f"specs/{name}.md lacks `## {heading}`"
    assert [h for h in headings if h in required] == list(required), "headings out of order"
    assert headings[-1] == "Modules", "`## Modules` comes last"
    for heading in headings:
        assert heading in (*required, "Invariants"), f"unexpected heading {heading!r}"


# ------------------------------------------------------------------------------ (4) samples


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


def _pydantic_accepts(name: str, doc: Any) -> bool:
    target = TOPIC_SCHEMAS[name]
    adapter: TypeAdapter[Any] = target if isinstance(target, TypeAdapter) else TypeAdapter(target)
    try:
        adapter.validate_json(json.dumps(doc))
    except ValidationError:
        return False
    return True


def _dump(model: BaseModel) -> Any:
    return json.loads(model.model_dump_json())


def _signal() -> Signal:
    return Signal(
        symbol="ABC",
        ts_ms=TS_MS,
        trigger="sma_cross",
        kind="crossover",
        direction=Direction.LONG,
        strength=0.25,
        strategic=False,
        detail={"sma_fast": 101.0, "sma_slow": 100.5, "note": None},
    )


def _proposal() -> Proposal:
    return Proposal(
        controller="local",
        strategy="local-routine",
        intents=[TradeIntent(symbol="ABC", side=Side.BUY, quantity=Decimal("12"), reason="x")],
        rationale="routine decision",
        confidence=0.25,
    )


def _order(status: OrderStatus = OrderStatus.PENDING) -> Order:
    return Order(
        client_order_id="sf-0123456789abcdef01234567",
        decision_id=f"ABC@{TS_MS}",
        symbol="ABC",
        side=Side.BUY,
        quantity=Decimal("12"),
        status=status,
        placed_ms=TS_MS,
        updated_ms=TS_MS,
    )


def _fill() -> Fill:
    return Fill(
        fill_id="sf-0123456789abcdef01234567-1",
        client_order_id="sf-0123456789abcdef01234567",
        decision_id=f"ABC@{TS_MS}",
        symbol="ABC",
        side=Side.BUY,
        quantity=Decimal("12"),
        price=Decimal("101.05050000"),
        fee=Decimal("1.21260600"),
        ts_ms=TS_MS + 60_000,
    )


def _decision() -> DecisionRecord:
    verdict = RiskVerdict(
        approved=True,
        checks=[
            RiskCheck(
                name="order_notional:ABC",
                passed=True,
                limit=Decimal("25000"),
                value=Decimal("1212.606"),
            ),
            RiskCheck(name="price_known", passed=True),
        ],
        fee_estimate=Decimal("1.212606"),
    )
    return DecisionRecord(
        decision_id=f"ABC@{TS_MS}",
        ts_ms=TS_MS,
        symbol="ABC",
        branch=Branch.ROUTINE,
        triggers=[_signal()],
        features=FeatureVector(
            symbol="ABC", ts_ms=TS_MS, close=101.0, values={"rsi": 55.5, "ema": None}
        ),
        rounds=[AdjustRound(round=0, proposal=_proposal(), verdict=verdict)],
        status=DecisionStatus.EXECUTED,
        orders=[_order(OrderStatus.FILLED)],
        fills=[_fill()],
        portfolio_before={"cash": "100000", "equity": "100000"},
        note="",
        version=2,
    )


def _settings() -> Settings:
    return Settings(symbols={"ABC": SymbolSpec(), "BTC/USD": SymbolSpec(bar_interval="1h")})


TICK = {
    "type": "tick",
    "symbol": "ABC",
    "ts": "2024-03-01T14:30:00Z",
    "price": "101.25",
    "size": "3",
}
BAR = {
    "type": "bar",
    "symbol": "ABC",
    "ts": "2024-03-01T14:30:00Z",
    "open": 100,
    "high": "102.5",
    "low": 99.5,
    "close": "101",
    "volume": "1e3",
    "interval_s": 60,
}
NEWS = {"type": "news", "id": "n1", "ts": "2024-03-01T14:30:00+00:00", "headline": "Up"}
SOCIAL = {"type": "social", "id": "s1", "ts": TS_MS / 1000, "symbols": ["ABC"], "text": "hi"}
STRATFLOW_YAML = yaml.safe_load((ROOT / "api" / "stratflow.yaml").read_text(encoding="utf-8"))


def _without(doc: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != key}


VALID: list[tuple[str, Any]] = [
    # models -> JSON, the way the pipeline and `connectors.files.replay` write them
    ("market", _dump(Tick(symbol="ABC", ts=TS, price=Decimal("101.25"), size=Decimal("3")))),
    (
        "market",
        _dump(
            BarIn(
                symbol="EURUSD",
                ts=TS,
                open=Decimal("1.0821"),
                high=Decimal("1.0830"),
                low=Decimal("1.0810"),
                close=Decimal("1.0825"),
                volume=Decimal("0"),
                interval_s=3600,
                id="EURUSD:1709303400000",
            )
        ),
    ),
    ("news", _dump(NewsItem(id="n1", ts=TS, symbols=["ABC"], headline="Up", body="b"))),
    ("social", _dump(SocialPost(id="s1", ts=TS, text="to the moon", author="a"))),
    ("proposal", _dump(_proposal())),
    ("decisions", _dump(_decision())),
    ("orders", _dump(_order())),
    ("fills", _dump(_fill())),
    (
        "positions",
        _dump(
            PositionSnapshot(
                ts_ms=TS_MS,
                symbol="ABC",
                quantity=Decimal("12"),
                avg_cost=Decimal("101.050500000000"),
                mark_price=Decimal("101.5"),
                realized_pnl=Decimal("-1.212606"),
                unrealized_pnl=Decimal("5.393999999999"),
                cash=Decimal("98786.181194"),
                equity=Decimal("100004.181194"),
            )
        ),
    ),
    (
        "alerts",
        _dump(
            Alert(
                alert_id="a" * 32,
                ts_ms=TS_MS,
                severity=Severity.WARNING,
                source="risk_gate",
                message="over limit",
                context={"decision_id": f"ABC@{TS_MS}", "round": 0},
            )
        ),
    ),
    (
        "dead_letters",
        _dump(
            DeadLetter(
                dead_letter_id="d" * 32,
                topic="market.ticks",
                partition=0,
                offset=7,
                record_ms=TS_MS,
                reason="price: must be a finite number > 0",
                payload='{"price": -1}',
            )
        ),
    ),
    ("config", _dump(_settings())),
    # what producers and users write by hand, all accepted by the code
    ("market", TICK),
    ("market", BAR),
    ("market", {**TICK, "ts": "2024-03-01T14:30:00.123+01:00", "price": 0.5, "size": 0}),
    ("market", {**TICK, "ts": TS_MS, "id": "t1"}),
    ("market", {**TICK, "ts": TS_MS // 1000, "price": "1E+2", "size": "0.000"}),
    ("news", NEWS),
    ("social", SOCIAL),
    ("config", STRATFLOW_YAML),
    ("config", {"symbols": {"ABC": {}}}),
]

INVALID: list[tuple[str, str, Any]] = [
    ("negative price (string)", "market", {**TICK, "price": "-101.25"}),
    ("negative price (number)", "market", {**TICK, "price": -101.25}),
    ("zero price", "market", {**TICK, "price": "0"}),
    ("zero price, exponent form", "market", {**TICK, "price": "0e5"}),
    ("negative size", "market", {**TICK, "size": "-1"}),
    ("price not a number", "market", {**TICK, "price": "abc"}),
    ("missing symbol", "market", _without(TICK, "symbol")),
    ("lower-case symbol", "market", {**TICK, "symbol": "abc"}),
    ("unknown field", "market", {**TICK, "venue": "XNAS"}),
    ("missing type", "market", _without(TICK, "type")),
    ("unknown type", "market", {**TICK, "type": "quote"}),
    ("bar interval 0", "market", {**BAR, "interval_s": 0}),
    ("bar negative low", "market", {**BAR, "low": "-1"}),
    ("bar missing close", "market", _without(BAR, "close")),
    ("news missing id", "news", _without(NEWS, "id")),
    ("news unknown field", "news", {**NEWS, "url": "http://x"}),
    ("news empty headline", "news", {**NEWS, "headline": ""}),
    ("social symbols not a list", "social", {**SOCIAL, "symbols": "ABC"}),
    ("proposal confidence > 1", "proposal", {**_dump(_proposal()), "confidence": 2}),
    (
        "proposal negative quantity",
        "proposal",
        {
            **_dump(_proposal()),
            "intents": [{"symbol": "ABC", "side": "buy", "quantity": "-1", "reason": ""}],
        },
    ),
    ("proposal unknown field", "proposal", {**_dump(_proposal()), "prompt": "x"}),
    ("config unknown section", "config", {"symbols": {"ABC": {}}, "llm": {}}),
    ("config no symbols", "config", {"symbols": {}}),
    ("config lower-case symbol", "config", {"symbols": {"abc": {}}}),
    ("config negative cash", "config", {"symbols": {"ABC": {}}, "risk": {"min_cash": "-5"}}),
    ("config zero lot", "config", {"symbols": {"ABC": {"lot_size": 0}}}),
    ("config bad trigger kind", "config", {"symbols": {"ABC": {}}, "triggers": [{"kind": "x"}]}),
]

# Outbound records are only written by the pipeline, never validated on read, so pydantic's
# view is not the reference there: these are rejected by the schema alone.
INVALID_OUTBOUND: list[tuple[str, str, Any]] = [
    ("order missing client_order_id", "orders", _without(_dump(_order()), "client_order_id")),
    ("order quantity as a float", "orders", {**_dump(_order()), "quantity": 12.0}),
    ("order unknown status", "orders", {**_dump(_order()), "status": "cancelled"}),
    ("fill missing price", "fills", _without(_dump(_fill()), "price")),
    ("decision missing version", "decisions", _without(_dump(_decision()), "version")),
    ("decision bad branch", "decisions", {**_dump(_decision()), "branch": "gpt"}),
    (
        "alert bad severity",
        "alerts",
        {
            **_dump(Alert(alert_id="a", ts_ms=0, severity=Severity.INFO, source="s", message="m")),
            "severity": "fatal",
        },
    ),
]


@pytest.mark.parametrize(("name", "doc"), VALID, ids=[f"{n}-{i}" for i, (n, _) in enumerate(VALID)])
def test_valid_samples_pass_schema_and_pydantic(name: str, doc: Any) -> None:
    errors = [e.message for e in _validator(name).iter_errors(doc)]
    assert not errors, f"{name}.json rejects a message the code accepts: {errors}"
    assert _pydantic_accepts(name, doc)


@pytest.mark.parametrize(("why", "name", "doc"), INVALID, ids=[w for w, _, _ in INVALID])
def test_invalid_samples_fail_schema_and_pydantic(why: str, name: str, doc: Any) -> None:
    assert not _pydantic_accepts(name, doc), f"the code accepts: {why}"
    assert not _validator(name).is_valid(doc), f"{name}.json accepts what the code rejects: {why}"


@pytest.mark.parametrize(
    ("why", "name", "doc"), INVALID_OUTBOUND, ids=[w for w, _, _ in INVALID_OUTBOUND]
)
def test_invalid_outbound_records_fail_schema(why: str, name: str, doc: Any) -> None:
    assert not _validator(name).is_valid(doc), f"{name}.json accepts: {why}"


# ------------------------------------------------------------------------------ (5) topics


def _readme_topics() -> dict[str, str]:
    readme = (SPECS / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Topics", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| `([^`]+)` \|", section, flags=re.MULTILINE)
    return dict(rows)


def test_readme_topics_match_topics_config() -> None:
    assert _readme_topics() == TopicsConfig().model_dump(), (
        "specs/README.md topic table differs from TopicsConfig defaults in "
        "models/config/settings.py"
    )


def test_readme_topic_schemas_exist() -> None:
    readme = (SPECS / "README.md").read_text(encoding="utf-8")
    for name in re.findall(r"`schemas/(\w+)\.json`", readme):
        assert name in TOPIC_SCHEMAS, f"specs/README.md names unknown schema {name}.json"
    assert set(re.findall(r"`schemas/(\w+)\.json`", readme)) == set(TOPIC_SCHEMAS)


# ------------------------------------------------------------------------------ (6) identifiers
#
# Every backticked identifier of a spec must name something that exists. The rule for which
# tokens are identifiers is written down in specs/README.md ("Which backticked tokens are
# identifiers"); `classify` implements it, `resolve` looks the identifier up.

FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)  # CommonMark code spans
IDENT_TOKEN = re.compile(r"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(\(.*\).*)?", re.DOTALL)
PATH_TOKEN = re.compile(r"[\w.\-]+(?:/[\w.\-]+)+/?")
FILE_NAME = re.compile(r"[\w.\-]+\.(?:json|jsonl|html|png|sql|md|py|yaml|yml|csv|txt|log|sqlite3)")
CAMEL = re.compile(r"_*[A-Z]\w*[a-z]\w*")
CAPS = re.compile(r"_*[A-Z][A-Z0-9_]+")
ENV_OVERRIDE = "STRATFLOW__"
BUILTIN_NAMES = frozenset(dir(builtins)) | frozenset(keyword.kwlist)


@dataclass(frozen=True)
class Unresolved:
    file: str
    line: int
    token: str
    why: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: `{self.token}` {self.why}"


@dataclass(frozen=True)
class CodeIndex:
    names: frozenset[str]  # defined, imported, or used as a name, attribute, argument, keyword
    strings: frozenset[str]  # string constants (docstrings excluded) and the words in them
    classes: dict[str, list[tuple[str, str]]]  # class name -> [(module, qualname)]


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _names_in(node: ast.AST) -> list[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, ast.arg):
        return [node.arg]
    if isinstance(node, ast.keyword) and node.arg:
        return [node.arg]
    if isinstance(node, ast.alias):
        return [node.asname or node.name.split(".")[0], node.name.rsplit(".", 1)[-1]]
    return []


@functools.cache
def code_index() -> CodeIndex:
    names: set[str] = set()
    strings: set[str] = set()
    classes: dict[str, list[tuple[str, str]]] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            module = module.removesuffix(".__init__")
            tree = ast.parse(path.read_text(encoding="utf-8"))
            docstrings = _docstrings(tree)
            for node in ast.walk(tree):
                names.update(_names_in(node))
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and id(node) not in docstrings
                ):
                    strings.add(node.value)
                    strings.update(re.findall(r"\w+", node.value))
            for top in tree.body:
                if isinstance(top, ast.ClassDef):
                    classes.setdefault(top.name, []).append((module, top.name))
                    for inner in top.body:
                        if isinstance(inner, ast.ClassDef):
                            qualname = f"{top.name}.{inner.name}"
                            classes.setdefault(inner.name, []).append((module, qualname))
    return CodeIndex(frozenset(names), frozenset(strings), classes)


def _assigned_on_self(cls: type) -> set[str]:
    """Attributes the methods of a class of ours (or its bases) assign on `self`."""
    found: set[str] = set()
    for klass in cls.__mro__:
        if klass.__module__.split(".")[0] not in PACKAGES:
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        for node in ast.walk(ast.parse(source)):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
            ):
                found.add(node.attr)
    return found


def _has_attribute(obj: Any, name: str) -> bool:
    if hasattr(obj, name):
        return True
    if not isinstance(obj, type):
        return False
    if name in getattr(obj, "model_fields", {}) or name in getattr(obj, "__dataclass_fields__", {}):
        return True
    if any(name in getattr(klass, "__annotations__", {}) for klass in obj.__mro__):
        return True
    return name in _assigned_on_self(obj)


def _attribute_problem(obj: Any, parts: list[str]) -> str | None:
    for i, part in enumerate(parts):
        if not _has_attribute(obj, part):
            return f"has no attribute {'.'.join(parts[: i + 1])!r}"
        if not hasattr(obj, part):  # a field or instance attribute: nothing to look inside
            return None if i == len(parts) - 1 else f"cannot look inside {part!r}"
        obj = getattr(obj, part)
    return None


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _dotted_problem(parts: list[str]) -> str | None:
    for cut in range(len(parts), 0, -1):
        module = _import(".".join(parts[:cut]))
        if module is not None:
            return _attribute_problem(module, parts[cut:])
    return "is no module"


def _class_problem(parts: list[str]) -> str | None:
    homes = code_index().classes.get(parts[0])
    if not homes:
        return "names no class of the code"
    problems = []
    for module, qualname in homes:
        cls: Any = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        problem = _attribute_problem(cls, parts[1:])
        if problem is None:
            return None
        problems.append(problem)
    return problems[0]


def _unwrap(annotation: Any) -> Any:
    """The model or mapping behind `Annotated[...]` and `X | None` of a settings field."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else annotation
    return annotation


def _settings_key_problem(parts: list[str]) -> str | None:
    current: Any = Settings
    for i, part in enumerate(parts):
        if isinstance(current, type) and issubclass(current, BaseModel):
            if part not in current.model_fields:
                return f"is no settings key ({'.'.join(parts[: i + 1])!r} unknown)"
            current = _unwrap(current.model_fields[part].annotation)
        elif typing.get_origin(current) is dict:
            current = _unwrap(typing.get_args(current)[1])  # `part` is any key of the mapping
        else:
            return f"is no settings key ({parts[i - 1]!r} has no keys)"
    return None


@functools.cache
def _repo_dirs() -> frozenset[str]:
    return frozenset(p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith("."))


def classify(token: str) -> tuple[str, list[str]] | None:
    """(kind, parts) of an identifier, None for literal text (the rule in specs/README.md)."""
    if PATH_TOKEN.fullmatch(token):
        return ("path", [token]) if token.split("/", 1)[0] in _repo_dirs() else None
    match = IDENT_TOKEN.fullmatch(token)
    if not match:
        return None
    head, called = match.group(1), match.group(2) is not None
    parts = head.split(".")
    if len(parts) > 1:
        if FILE_NAME.fullmatch(head):
            return None
        if parts[0] in Settings.model_fields:
            return ("setting", parts)
        if CAMEL.fullmatch(parts[0]):
            return ("class", parts)
        if parts[0] in PACKAGES or _import(parts[0]) is not None:
            return ("module", parts)
        return ("string", [head])
    name = parts[0]
    if name.startswith(ENV_OVERRIDE):
        return ("override", name.removeprefix(ENV_OVERRIDE).split("__"))
    if called or CAMEL.fullmatch(name) or CAPS.fullmatch(name) or "_" in name.strip("_"):
        return ("name", parts)
    return None


def resolve(kind: str, parts: list[str]) -> str | None:
    """None when the identifier exists, else why not."""
    index = code_index()
    if kind == "path":
        return None if (ROOT / parts[0]).exists() else "does not exist"
    if kind == "setting":
        problem = _settings_key_problem(parts)
        # A topic name can start like a section (`news.items` and the `news` section).
        return None if problem and ".".join(parts) in index.strings else problem
    if kind == "override":
        keys = [p.lower() for p in parts]
        if keys[0] == "symbols" and len(keys) > 1:
            keys[1] = parts[1]  # a symbol keeps its case
        return _settings_key_problem(keys)
    if kind == "module":
        return _dotted_problem(parts)
    if kind == "class":
        return _class_problem(parts)
    if kind == "string":
        return None if parts[0] in index.strings else "is no module, setting, class or string"
    name = parts[0]
    known = name in BUILTIN_NAMES or name in index.names or name in index.strings
    return None if known else "is not in the code"


def spans(text: str) -> list[tuple[int, str]]:
    """(line, content) of every inline code span outside fenced blocks."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return [(text.count("\n", 0, m.start()) + 1, m.group(2)) for m in SPAN.finditer(text)]


def unresolved_identifiers(file: str, text: str) -> list[Unresolved]:
    found = []
    for line, span in spans(text):
        token = span.strip()
        kind = classify(token)
        why = resolve(*kind) if kind else None
        if kind and why:
            found.append(Unresolved(file, line, token, f"({kind[0]}) {why}"))
    return found


def test_backticked_identifiers_exist() -> None:
    problems = [
        str(problem)
        for path in sorted(SPECS.glob("*.md"))
        for problem in unresolved_identifiers(
            str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")
        )
    ]
    assert not problems, "identifiers in specs that the code lacks:\n" + "\n".join(problems)


FAKE_SPEC = """\
# models.fake

`models.market.bars.BarBuilder` and `BarBuilder.add()` exist, `TradingDesk.on_execution` too,
`bars.max_jump`, `symbols.ABC.lot_size`, `STRATFLOW__RISK__MIN_CASH`, `check(proposal, x)`,
`ROW_CONVERTERS`, `FOK`, `no_action`, `ccxt.NetworkError`, `market.ticks`, `Decimal`, `None`,
`connectors/store/schema.sql` and `StrategyRecord.spec` (a pydantic field).
Literal text: `stratflow run --paper`, `hold`, `pending`, `0E-12`, `report.html`, `<symbol>`,
`resend=True`, `SELECT * FROM t FINAL`, `var/runs`, `ASSET-1..n`.

```sh
`models.nothing.here` in a fenced block is not read
```
Made up: `models.market.no_such_module`, `models.market.bars.NoSuchBuilder`,
`TradingDesk.on_frobnicate`, `NoSuchClass.method`, `frobnicate_widget()`, `NoSuchThing`,
`NO_SUCH_CONSTANT`, `bars.no_such_key`, `symbols.ABC.no_such_key`, `risk.max_order_notional.x`,
`STRATFLOW__NO__SUCH`, `deploy/no/such.sql`, `desk.on_text`, `ccxt.NoSuchError`.
"""


def test_the_identifier_check_reports_every_made_up_name_with_its_line() -> None:
    found = [(u.line, u.token) for u in unresolved_identifiers("specs/models.fake.md", FAKE_SPEC)]
    assert found == [
        (13, "models.market.no_such_module"),
        (13, "models.market.bars.NoSuchBuilder"),
        (14, "TradingDesk.on_frobnicate"),
        (14, "NoSuchClass.method"),
        (14, "frobnicate_widget()"),
        (14, "NoSuchThing"),
        (15, "NO_SUCH_CONSTANT"),
        (15, "bars.no_such_key"),
        (15, "symbols.ABC.no_such_key"),
        (15, "risk.max_order_notional.x"),
        (16, "STRATFLOW__NO__SUCH"),
        (16, "deploy/no/such.sql"),
        (16, "desk.on_text"),
        (16, "ccxt.NoSuchError"),
    ]
    message = str(unresolved_identifiers("specs/models.fake.md", FAKE_SPEC)[0])
    assert message.startswith("specs/models.fake.md:13: `models.market.no_such_module` ")


def test_the_identifier_rule_tells_identifiers_from_literal_text() -> None:
    assert classify("stratflow run") is None
    assert classify("hold") is None
    assert classify("FOK") == ("name", ["FOK"])
    assert classify("report.html") is None
    assert classify("var/runs") is None
    assert classify("a == b") is None
    assert classify("check(proposal, portfolio) -> RiskVerdict") == ("name", ["check"])
    assert classify("bars.max_jump") == ("setting", ["bars", "max_jump"])
    assert classify("TradingDesk.on_text") == ("class", ["TradingDesk", "on_text"])
    assert classify("models.desk") == ("module", ["models", "desk"])
    assert classify("api/stratflow.yaml") == ("path", ["api/stratflow.yaml"])
    assert classify("STRATFLOW__GPT__MODEL") == ("override", ["GPT", "MODEL"])


# ------------------------------------------------------------------------------ (7) rules
#
# Branch-by-branch rules the per-module specs used to spell out, each a test named after it
# (the others already have a test named after them elsewhere).
# Self-contained on purpose: these tests move with this file.


def _exchange_desk(fallback: str = "hold") -> TradingDesk:
    cfg = Settings.model_validate(
        {
            "symbols": {"BTC/USDT": {}},
            "execution": {"initial_cash": "10000", "fallback": fallback, "currency": "USDT"},
            "strategy": {"controller": "local", "target_fraction": "0.5"},
        }
    )
    return TradingDesk.create(cfg, venue="exchange")


def _bar_event(i: int, close: str, direction: Direction | None) -> BarEvent:
    c = Decimal(close)
    start = i * 60_000
    bar = Bar(
        symbol="BTC/USDT",
        start_ms=start,
        end_ms=start + 60_000,
        open=c,
        high=c,
        low=c,
        close=c,
        volume=Decimal(1),
        trades=1,
        vwap=c,
    )
    fv = FeatureVector(symbol="BTC/USDT", ts_ms=bar.end_ms, close=float(c), values={})
    signals = [
        Signal(
            symbol="BTC/USDT",
            ts_ms=bar.end_ms,
            trigger="t",
            kind="crossover",
            direction=direction,
            strength=0.5,
            strategic=False,
        )
    ]
    return BarEvent(bar, fv, signals if direction else [], Branch.ROUTINE if direction else None)


def _placed_buy(desk: TradingDesk) -> Order:
    orders = [
        x for x in desk.on_bar_event(_bar_event(0, "100", Direction.LONG)) if isinstance(x, Order)
    ]
    assert len(orders) == 1 and orders[0].status is OrderStatus.PENDING
    return orders[0]


def _report(
    order: Order, status: ExecStatus, fills: list[Fill], error: str = ""
) -> ExecutionReport:
    return ExecutionReport(
        client_order_id=order.client_order_id,
        decision_id=order.decision_id,
        symbol=order.symbol,
        side=order.side,
        quantity=order.quantity,
        status=status,
        filled=sum((f.quantity for f in fills), Decimal(0)),
        fills=fills,
        error=error,
        ts_ms=order.placed_ms + 10,
    )


def _fill_of(order: Order, qty: str, price: str) -> Fill:
    return Fill(
        fill_id=f"{order.client_order_id}:0",
        client_order_id=order.client_order_id,
        decision_id=order.decision_id,
        symbol=order.symbol,
        side=order.side,
        quantity=Decimal(qty),
        price=Decimal(price),
        fee=Decimal("0.5"),
        ts_ms=order.placed_ms + 10,
    )


def test_an_unknown_report_only_alerts_and_keeps_the_order_pending() -> None:
    desk = _exchange_desk()
    order = _placed_buy(desk)
    first = desk.on_execution(_report(order, ExecStatus.UNKNOWN, [], "lookup failed"))
    again = desk.on_execution(_report(order, ExecStatus.UNKNOWN, [], "lookup failed again"))
    alerts = []
    for out in (first, again):
        assert [type(x) for x in out] == [Alert]  # no fill, no order or decision version
        (alert,) = [x for x in out if isinstance(x, Alert)]
        assert alert.severity is Severity.CRITICAL and alert.source == "executor"
        assert "looked up again" in alert.message
        alerts.append(alert.alert_id)
    assert alerts[0] == alerts[1]  # repeats are one alert
    assert desk.unreported_orders() == [order]  # still pending: sent again to be looked up
    assert desk.portfolio.quantity("BTC/USDT") == 0


def test_a_report_of_an_order_the_desk_does_not_hold_only_moves_the_book() -> None:
    desk = _exchange_desk()
    order = _placed_buy(desk)
    foreign = order.model_copy(update={"client_order_id": "sf-foreign", "decision_id": "X@1"})
    fill = _fill_of(foreign, "5", "100")
    out = desk.on_execution(_report(foreign, ExecStatus.FILLED, [fill]))
    assert out == [fill]  # booked, but no order or decision of the desk changes
    assert desk.portfolio.quantity("BTC/USDT") == 5
    failed = foreign.model_copy(update={"client_order_id": "sf-foreign-2"})
    (alert,) = desk.on_execution(_report(failed, ExecStatus.FAILED, [], "refused"))
    assert isinstance(alert, Alert)
    assert alert.message.endswith("fallback: none, not an open order of the desk")
    assert desk.unreported_orders() == [order]


def test_the_flatten_fallback_sells_nothing_without_a_position() -> None:
    desk = _exchange_desk("flatten")
    order = _placed_buy(desk)  # the buy fails: nothing is held, nothing to flatten
    out = desk.on_execution(_report(order, ExecStatus.FAILED, [], "refused"))
    assert not [r for r in out if isinstance(r, DecisionRecord) and "/flatten" in r.decision_id]
    assert [o.status for o in out if isinstance(o, Order)] == [OrderStatus.REJECTED]
    assert not desk.unreported_orders()


class _Executor:
    """An executor stand-in: raises for an id given, blocks until released, counts calls."""

    def __init__(self, fail: str = "") -> None:
        self.fail = fail
        self.calls: list[str] = []
        self.release = threading.Event()

    def execute(self, order: Order, *, resend: bool, check_age: bool) -> ExecutionReport:
        self.calls.append(order.client_order_id)
        if order.client_order_id == self.fail:
            raise RuntimeError("bug")
        self.release.wait()
        return _report(order, ExecStatus.FILLED, [_fill_of(order, str(order.quantity), "100")])


def _numbered_order(n: int) -> Order:
    return _order().model_copy(update={"client_order_id": f"sf-{n:024d}", "updated_ms": n})


def test_an_executor_exception_becomes_an_unknown_report() -> None:
    order = _numbered_order(1)
    gateway = ExecutionGateway(cast(CcxtExecutor, _Executor(fail=order.client_order_id)))
    try:
        report = gateway.execute(order)
    finally:
        gateway.close()
    assert report.status is ExecStatus.UNKNOWN and report.attempts == 0
    assert report.error == "executor error: RuntimeError: bug" and report.ts_ms == 1


def test_submitting_an_order_already_in_flight_is_a_no_op() -> None:
    executor = _Executor()
    gateway = ExecutionGateway(cast(CcxtExecutor, executor))
    order = _numbered_order(2)
    try:
        gateway.submit(order)
        gateway.submit(order)  # a restart re-sends what had no report yet
        assert gateway.in_flight == 1
        executor.release.set()
        gateway.wait(timeout_s=30)
        reports = gateway.ready()
    finally:
        gateway.close()
    assert executor.calls == [order.client_order_id]
    assert [r.client_order_id for r in reports] == [order.client_order_id]


def test_an_exception_on_one_record_costs_that_record_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = parse_market

    def parse(value: bytes | None, *args: Any, **kwargs: Any) -> Any:
        if value == b"boom":
            raise RuntimeError("bug in parsing")
        return real(value, *args, **kwargs)

    monkeypatch.setattr("models.market.ingest.parse_market", parse)
    cfg = Settings(symbols={"ABC": SymbolSpec()})
    ingest = PartitionIngest(cfg)
    tick = json.dumps({**TICK, "ts": "2024-03-01T14:30:00Z"}).encode()
    after = json.dumps({**TICK, "ts": "2024-03-01T14:31:00Z", "id": "t2"}).encode()
    out: list[Any] = []
    records: list[Record] = [
        (0, TS_MS, tick, None),
        (1, TS_MS, b"boom", None),
        (2, TS_MS, after, None),
    ]
    ingest.process_batch(RawBatch(cfg.kafka.topics.market, 0, records, end="final"), out)
    dead = [x for x in out if isinstance(x, DeadLetter)]
    assert [(d.offset, d.reason) for d in dead] == [
        (1, "internal error: RuntimeError: bug in parsing")
    ]
    # The records before and after the failing one made their bars.
    assert [b.start_ms for b in out if isinstance(b, Bar)] == [TS_MS, TS_MS + 60_000]
