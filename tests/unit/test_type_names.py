"""No type name is defined twice in the product: a reader (and an import) must never have to
guess which `Order` or `Fill` is meant. Private helpers (`_Name`) are exempt."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").exists())
PACKAGES = ("models", "connectors", "dataflows", "api")


def test_every_public_class_name_is_defined_once() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                    where[node.name].append(str(path.relative_to(ROOT)))
    twice = {name: files for name, files in where.items() if len(files) > 1}
    assert not twice, f"class names defined more than once: {twice}"
