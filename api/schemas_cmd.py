"""`stratflow schemas [--check]`: write the generated JSON Schemas to `specs/schemas/`, or check.

The files are generated from the pydantic models by `models.core.schemas`; this module only does the
file I/O, so the CLI and the tests share one definition of "up to date".
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final

import typer
from rich.markup import escape

from models.core.schemas import generate_schemas, render_schema

SCHEMA_SUFFIX: Final = ".json"


class NoCheckoutError(ValueError):
    """The package runs from an install (a wheel), not from a source checkout: there is no
    `specs/schemas` to default to, and writing one into site-packages would be wrong."""


def default_schema_dir() -> Path:
    """`specs/schemas` of the source checkout this package runs from (an editable install or
    PYTHONPATH on the checkout); `NoCheckoutError` when there is none, so an installed wheel
    never writes into site-packages. A checkout is the folder above `api/` holding
    `pyproject.toml` and `specs/`."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file() or not (root / "specs").is_dir():
        raise NoCheckoutError(
            f"no source checkout around {root} (stratflow is installed as a package):"
            " give the output directory with --dir DIR"
        )
    return root / "specs" / "schemas"


def rendered_schemas() -> dict[str, str]:
    """File name -> exact file text, for every generated schema."""
    return {name + SCHEMA_SUFFIX: render_schema(s) for name, s in generate_schemas().items()}


def write_schemas(out_dir: Path) -> list[Path]:
    """Write every schema file (only those whose text changed) and delete stale `.json` files.

    Returns the paths written or deleted, so a caller can say what changed; an empty list means
    the directory was already up to date.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = rendered_schemas()
    changed: list[Path] = []
    for name, text in wanted.items():
        path = out_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    for path in sorted(out_dir.glob("*" + SCHEMA_SUFFIX)):
        if path.name not in wanted:
            path.unlink()
            changed.append(path)
    return changed


def check_schemas(out_dir: Path) -> list[str]:
    """File names in `out_dir` that differ from the generated schemas, are missing or are extra.

    Empty when the committed files match the code.
    """
    wanted = rendered_schemas()
    present = {p.name for p in out_dir.glob("*" + SCHEMA_SUFFIX)} if out_dir.is_dir() else set()
    problems: list[str] = []
    for name in sorted(wanted.keys() | present):
        if name not in present:
            problems.append(f"{name} (missing)")
        elif name not in wanted:
            problems.append(f"{name} (extra)")
        elif (out_dir / name).read_text(encoding="utf-8") != wanted[name]:
            problems.append(f"{name} (drifted)")
    return problems


def schemas(
    check: Annotated[
        bool, typer.Option("--check", help="Only list drifted, missing or extra files (exit 1)")
    ] = False,
    schema_dir: Annotated[
        Path | None,
        typer.Option("--dir", help="Schema directory (default: specs/schemas of the checkout)"),
    ] = None,
) -> None:
    """Regenerate specs/schemas/*.json from the pydantic models, or check them."""
    from api.cli import UserError, console, guarded, print_error

    def go() -> None:
        try:
            out_dir = schema_dir or default_schema_dir()
        except NoCheckoutError as err:
            raise UserError(str(err)) from None
        try:
            if check:
                problems = check_schemas(out_dir)
                if problems:
                    print_error(
                        f"{len(problems)} schema file(s) out of date in {out_dir}:"
                        f" {', '.join(problems)}; run `stratflow schemas`"
                    )
                    raise typer.Exit(1)
                console.print(f"schemas up to date: {escape(str(out_dir))}")
                return
            changed = write_schemas(out_dir)
        except OSError as err:
            raise UserError(f"{out_dir}: {err.strerror or err}") from None
        for path in changed:
            console.print(f"{'wrote' if path.exists() else 'deleted'} {escape(str(path))}")
        if not changed:
            console.print(f"schemas up to date: {escape(str(out_dir))}")

    guarded(go)
