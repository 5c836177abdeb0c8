"""Imports point one way, down the layers of design.md.

A module may import from its own layer or lower ones, never from a higher one. Imports under
``if TYPE_CHECKING:`` are annotations only and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "agentloop"

LAYERS: dict[str, int] = {
    "_sync": 1,
    "errors": 1,
    "types": 1,
    "settings": 1,
    "redaction": 1,
    "terminal": 1,
    "messages": 2,
    "tools": 2,
    "tool_schemas": 2,
    "observations": 2,
    "safety": 2,
    "actions": 3,
    "models": 3,
    "events": 4,
    "dispatch": 4,
    "approval": 4,
    "trace": 5,
    "agent": 6,
    "loop": 6,
    "agentfile": 6,
    "mcp": 6,
    "result": 6,
    "replay": 7,
    "evals": 7,
    "datasets": 7,
    "scorers": 7,
    "stats": 7,
    "summary": 7,
    "comparison": 7,
    "critique": 7,
    "feedback": 7,
    "export": 7,
    "testing": 7,
    "divergence": 7,
    "recording": 7,
    "loading": 6,
    "render": 7,
    "cli": 8,
    "viewer": 8,
}


def module_name(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def runtime_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(n) for child in node.body for n in ast.walk(child))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("agentloop.")
        ):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(
                a.name.split(".")[1] for a in node.names if a.name.startswith("agentloop.")
            )
    return found


SOURCES = sorted(p for p in SRC.rglob("*.py") if p.name != "__init__.py" or p.parent != SRC)


def test_every_module_has_a_layer() -> None:
    assert {module_name(p) for p in SOURCES} <= LAYERS.keys()


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path: Path) -> None:
    own = module_name(path)
    upward = {m for m in runtime_imports(path) if LAYERS.get(m, 0) > LAYERS[own]}
    assert upward == set(), f"{own} (layer {LAYERS[own]}) imports higher layers: {upward}"
