"""The portal reads job logs, outputs, waiting reasons and container state through read
models (projections/) and public modules (rcc, comfy_ops), never the adapter's
internals: no module under src/portal imports comfy_adapter, and the core keeps out of
the entry points except in its composition root."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
COMPOSITION_ROOT = ("rcc/bootstrap.py", "rcc/cli.py", "rcc/bench/")


def imported_packages(path: Path) -> set[str]:
    """The top-level packages a module imports (lazy imports inside functions too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def offenders(package: str, forbidden: set[str], allowed: tuple[str, ...] = ()) -> list[str]:
    modules = sorted((SRC / package).rglob("*.py"))
    assert modules, f"no modules under src/{package}"
    return [
        f"{path.relative_to(SRC)} imports {sorted(imported_packages(path) & forbidden)}"
        for path in modules
        if imported_packages(path) & forbidden
        and not str(path.relative_to(SRC)).startswith(allowed)
    ]


def test_the_portal_imports_nothing_from_the_adapter() -> None:
    assert offenders("portal", {"comfy_adapter"}) == []


def test_the_core_imports_entry_points_only_in_its_composition_root() -> None:
    forbidden = {"portal", "comfy_adapter", "comfy_ops", "projections"}
    assert offenders("rcc", forbidden, COMPOSITION_ROOT) == []


def test_the_rule_sees_an_offending_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from comfy_adapter.logs import RunLog\n    return RunLog\n")
    assert imported_packages(module) == {"comfy_adapter"}
