"""`specs/` must match the code: schemas, one spec per module, headings, samples, topic names."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from pydantic import BaseModel, TypeAdapter, ValidationError

from api.schemas_cmd import check_schemas, default_schema_dir, write_schemas
from models.config.settings import Settings, SymbolSpec, TopicsConfig
from models.core.messages import (
    AdjustRound,
    Alert,
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

ROOT = Path(__file__).resolve().parents[2]
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


def _modules() -> set[str]:
    return {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for pkg in PACKAGES
        for path in (ROOT / pkg).rglob("*.py")
        if path.name != "__init__.py"
    }


def _spec_files() -> dict[str, Path]:
    return {p.stem: p for p in SPECS.glob("*.md") if p.name != "README.md"}


def test_every_module_has_a_spec() -> None:
    missing = sorted(_modules() - set(_spec_files()))
    assert not missing, f"modules without a spec in specs/: {', '.join(m + '.md' for m in missing)}"


def test_every_spec_names_an_existing_module() -> None:
    orphans = sorted(set(_spec_files()) - _modules())
    assert not orphans, f"specs without a module: {', '.join(o + '.md' for o in orphans)}"


def test_readme_lists_every_spec() -> None:
    readme = (SPECS / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"\]\(([\w.]+)\.md\)", readme))
    assert listed == set(_spec_files()), "specs/README.md module table differs from specs/*.md"
    for module in listed:
        assert f"`{module.replace('.', '/')}.py`" in readme


@pytest.mark.parametrize("name", sorted(_spec_files()))
def test_spec_has_title_and_headings(name: str) -> None:
    text = _spec_files()[name].read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == f"# {name}", "the first line must be `# <package>.<module>`"
    headings = [ln[3:].strip() for ln in lines if ln.startswith("## ")]
    for heading in HEADINGS:
        assert heading in headings, f"specs/{name}.md lacks `## {heading}`"
    assert [h for h in headings if h in HEADINGS] == list(HEADINGS), "headings out of order"
    for heading in headings:
        assert heading in (*HEADINGS, "Invariants"), f"unexpected heading {heading!r}"


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
