"""The package's shape: imports point one way, down the layers, with no cycles.

The layers, lowest first (docs/architecture.md draws them): the runtime core, ``models``, the
agent and its loop (with the integrations the agent composes: ``mcp``, ``otel``), ``replay``,
``feedback``, ``evals``, the ``viewer``, the ``toolpack`` (written against the public API, as a
user's tools are), the ``cli``. A module may import its own layer and
lower ones. No module imports itself back through any chain, lazy imports (inside functions)
included; only imports under ``if TYPE_CHECKING:`` are exempt (annotations only).
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentloop import Agent, ModelResponse, tool
from agentloop.models.base import Model
from agentloop.testing import ScriptedModel
from agentloop.trace import TraceWriter

SRC = Path(__file__).resolve().parents[1] / "src" / "agentloop"

LAYERS = ["core", "models", "agent", "replay", "feedback", "evals", "viewer", "toolpack", "cli"]
AGENT_LAYER = {
    "agent",
    "loop",
    "steered",
    "streaming",
    "spec",
    "agentfile",
    "testing",
    "conversation",
    "mcp",
    "otel",
}


def module_of(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_of(p): p for p in SRC.rglob("*.py")}


def layer(module: str) -> int:
    """The layer of ``agentloop.<first>...``: a subpackage's own name, or the agent layer, or
    the core. The top-level facade re-exports the runtime and replay, so it sits with replay."""
    if module == "agentloop":
        return LAYERS.index("replay")
    first = module.split(".")[1]
    if first in LAYERS:
        return LAYERS.index(first)
    return LAYERS.index("agent") if first in AGENT_LAYER else LAYERS.index("core")


def imports(path: Path) -> set[str]:
    """The agentloop modules ``path`` imports when it runs, lazy imports included."""
    tree = ast.parse(path.read_text())
    type_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for child in node.body
        for n in ast.walk(child)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "agentloop":
                continue
            for alias in node.names:  # `from package import submodule` imports the submodule
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "agentloop")
    own = module_of(path)
    return {m for m in found if m in MODULES and m != own}


GRAPH = {name: imports(path) for name, path in MODULES.items()}


def test_every_module_is_in_a_known_place() -> None:
    firsts = {m.split(".")[1] for m in GRAPH if m.count(".") >= 1}
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(LAYERS) | AGENT_LAYER, "a new subpackage needs a layer here"
    assert firsts


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down(module: str) -> None:
    upward = {m for m in GRAPH[module] if layer(m) > layer(module)}
    assert upward == set(), (
        f"{module} ({LAYERS[layer(module)]}) imports higher layers: {sorted(upward)}"
    )


def cycles() -> Iterator[list[str]]:
    """Every cycle found by depth-first search (each reported once, from its first node)."""
    done: set[str] = set()
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> Iterator[list[str]]:
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(GRAPH[node]):
            if nxt in on_stack:
                yield [*stack[stack.index(nxt) :], nxt]
            elif nxt not in done:
                yield from visit(nxt)
        stack.pop()
        on_stack.discard(node)
        done.add(node)

    for start in sorted(GRAPH):
        if start not in done:
            yield from visit(start)


def test_no_import_cycles_lazy_imports_included() -> None:
    found = [" -> ".join(c) for c in cycles()]
    assert found == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    GRAPH["agentloop.errors"].add("agentloop.trace")  # trace -> errors already exists
    try:
        assert any("agentloop.errors" in c and "agentloop.trace" in c for c in cycles())
    finally:
        GRAPH["agentloop.errors"].discard("agentloop.trace")


def agentloop_frames() -> list[str]:
    """The agentloop modules on the current call stack, outermost first, repeats collapsed."""
    names = [f.frame.f_globals.get("__name__", "") for f in reversed(inspect.stack(context=0))]
    path: list[str] = []
    for name in names:
        if name.startswith("agentloop") and (not path or path[-1] != name):
            path.append(name)
    return path


async def test_a_request_goes_down_the_layers_and_visits_no_module_twice(tmp_path: Path) -> None:
    seen: dict[str, list[str]] = {}

    class Watching(ScriptedModel):
        async def request(self, *args: object, **kwargs: object) -> ModelResponse:
            seen.setdefault("model", agentloop_frames())
            return await super().request(*args, **kwargs)  # type: ignore[arg-type]

    original = TraceWriter.write

    def write(self: TraceWriter, event: object) -> None:
        seen.setdefault("trace", agentloop_frames())
        original(self, event)  # type: ignore[arg-type]

    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    model: Model = Watching([ModelResponse.tool_call("add", {"a": 1, "b": 2}), "3"])
    TraceWriter.write = write  # type: ignore[method-assign]
    try:
        await Agent(model, tools=[add], trace_dir=tmp_path).run("1+2")
    finally:
        TraceWriter.write = original  # type: ignore[method-assign]
    for path in seen.values():
        assert len(path) == len(set(path)), f"a module is visited twice: {path}"
        assert path[:2] == ["agentloop.agent", "agentloop.loop"], path
    assert "agentloop.agent" not in seen["model"][1:]
