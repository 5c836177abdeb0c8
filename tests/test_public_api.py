"""The curated public API: ``agentloop.__all__`` (the runtime) and each subpackage's
``__all__`` are the lists below, sorted and importable; every import path the README and docs
show works; the sync doors mirror their async functions."""

from __future__ import annotations

import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import agentloop

ROOT = Path(__file__).resolve().parents[1]

EXPECTED = [
    "Agent",
    "AgentLoopError",
    "AgentRun",
    "ContextWindowExceeded",
    "Conversation",
    "CostLimitExceeded",
    "Divergence",
    "GuardrailTripped",
    "HookFailed",
    "Hooks",
    "MaxStepsExceeded",
    "MaxToolCallsExceeded",
    "Message",
    "Model",
    "ModelError",
    "ModelResponse",
    "ModelSettings",
    "Observation",
    "Price",
    "Redactor",
    "ReplayResult",
    "RetryBudgetExhausted",
    "RunContext",
    "RunError",
    "RunLimitExceeded",
    "RunLimits",
    "RunResult",
    "RunTimeout",
    "TokenLimitExceeded",
    "Tool",
    "ToolCallPart",
    "ToolExecutionError",
    "ToolRetry",
    "Toolset",
    "Trace",
    "TraceError",
    "Usage",
    "UserError",
    "__version__",
    "load_agent",
    "read_trace",
    "replay",
    "replay_sync",
    "resume",
    "resume_sync",
    "tool",
]

SUBPACKAGES = {
    "agentloop.replay": [
        "Divergence",
        "ReplayResult",
        "TraceDiff",
        "diff_traces",
        "replay",
        "replay_stream",
        "replay_sync",
        "resume",
        "resume_sync",
    ],
    "agentloop.evals": [
        "Case",
        "Comparison",
        "Dataset",
        "EvalRun",
        "JudgeScorer",
        "Score",
        "Scorer",
        "Summary",
        "cases_from_traces",
        "citations",
        "compare",
        "contains",
        "evaluate",
        "evaluate_sync",
        "exact_match",
        "json_subset",
        "max_steps",
        "no_tool_errors",
        "numeric",
        "regex",
        "rescore",
        "rescore_sync",
        "summarize",
        "tool_called",
        "tool_not_called",
    ],
    "agentloop.feedback": [
        "Critique",
        "CritiqueResult",
        "Filters",
        "Revision",
        "Rubric",
        "add_feedback",
        "critique",
        "critique_sync",
        "dpo_export",
        "revise",
        "revise_sync",
        "sft_export",
        "write_jsonl",
    ],
    "agentloop.viewer": ["RunFilters", "TraceIndex", "create_app", "serve"],
}


def test_all_is_the_curated_sorted_list() -> None:
    assert agentloop.__all__ == EXPECTED
    assert sorted(agentloop.__all__, key=str.lower) == sorted(EXPECTED, key=str.lower)
    for name in agentloop.__all__:
        assert getattr(agentloop, name) is not None


@pytest.mark.parametrize("package", sorted(SUBPACKAGES))
def test_each_subpackage_exports_its_curated_list(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__all__ == SUBPACKAGES[package]
    for name in module.__all__:
        assert getattr(module, name) is not None
    assert module.__doc__ and "layer" in module.__doc__.lower()


def test_public_names_not_in_all_are_modules_only() -> None:
    public = {n for n in vars(agentloop) if not n.startswith("_")}
    extra = {
        n
        for n in public - set(agentloop.__all__)
        if not isinstance(getattr(agentloop, n), type(agentloop))
    }
    assert extra == set()


def test_replay_is_the_function_even_after_its_subpackage_is_imported() -> None:
    code = (
        "import agentloop.replay.runner, agentloop; from agentloop import replay, load_agent; "
        "print(callable(replay), callable(agentloop.replay), callable(load_agent))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "True"]


def test_import_agentloop_imports_no_http_client_and_no_optional_dependency() -> None:
    heavy = ["openai", "httpx2", "httpx", "jsonschema", "xllamacpp", "ddgs", "bm25s", "mcp"]
    heavy += ["opentelemetry", "ray", "starlette", "jinja2", "inscriptis"]
    # Loaded on first use (import time, issue 12): logging, docstrings, agent files.
    heavy += ["structlog", "docstring_parser", "agentloop.agentfile"]
    code = f"import sys, agentloop; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def documented_imports() -> list[str]:
    """Every ``import`` line in the README's and the docs' Python code blocks."""
    found: list[str] = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"```python\n(.*?)```", doc.read_text(), re.DOTALL):
            for line in block.splitlines():
                if re.match(r"\s*(from agentloop[\w.]* import |import agentloop)", line):
                    found.append(line.strip())
    return sorted(set(found))


def documented_module_paths() -> list[str]:
    """Every ``agentloop.x.y`` named in backticks in the README and the docs."""
    found: set[str] = set()
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        found.update(re.findall(r"`(agentloop(?:\.[a-z_][\w]*)+)", doc.read_text()))
    return sorted(found)


def test_the_docs_show_imports() -> None:
    assert len(documented_imports()) >= 10
    assert len(documented_module_paths()) >= 10


@pytest.mark.parametrize("line", documented_imports())
def test_every_documented_import_works(line: str) -> None:
    exec(line, {})


@pytest.mark.parametrize("path", documented_module_paths())
def test_every_documented_module_path_resolves(path: str) -> None:
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
        try:
            value: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            value = getattr(value, attribute)
        return
    pytest.fail(f"{path} is neither a module nor an attribute of one")


SYNC_DOORS = {
    "agentloop.feedback": ["critique", "revise"],
    "agentloop.evals": ["evaluate", "rescore"],
    "agentloop.replay": ["replay", "resume"],
}


def test_each_sync_door_has_its_async_functions_parameters_and_docs() -> None:
    for package, names in SYNC_DOORS.items():
        module = importlib.import_module(package)
        for name in names:
            door, async_form = getattr(module, f"{name}_sync"), getattr(module, name)
            assert inspect.iscoroutinefunction(async_form)
            assert not inspect.iscoroutinefunction(door)
            assert door.__name__ == f"{name}_sync"
            assert inspect.signature(door) == inspect.signature(async_form)
            assert door.__doc__ == async_form.__doc__ and door.__doc__


async def test_a_sync_door_inside_an_event_loop_names_the_async_form(tmp_path: Any) -> None:
    from agentloop.evals import evaluate_sync

    with pytest.raises(agentloop.UserError, match=r"replay_sync\(\) cannot run inside a running"):
        agentloop.replay_sync(tmp_path / "never-read.jsonl")
    with pytest.raises(agentloop.UserError, match=r"use `await evaluate\(...\)` there"):
        evaluate_sync(tmp_path / "d.jsonl", tmp_path / "a.toml")
