"""The curated public API: ``agentloop.__all__`` is the list below, sorted, and importable."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

import agentloop

EXPECTED = [
    "Agent",
    "AgentLoopError",
    "AgentRun",
    "Case",
    "ContextWindowExceeded",
    "Dataset",
    "Divergence",
    "EvalRun",
    "MaxStepsExceeded",
    "MaxToolCallsExceeded",
    "Message",
    "Model",
    "ModelError",
    "ModelResponse",
    "ModelSettings",
    "Observation",
    "Redactor",
    "ReplayResult",
    "RetryBudgetExhausted",
    "RunError",
    "RunLimitExceeded",
    "RunLimits",
    "RunResult",
    "RunTimeout",
    "Score",
    "Scorer",
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
    "add_feedback",
    "critique",
    "evaluate",
    "evaluate_async",
    "read_trace",
    "replay",
    "replay_async",
    "resume",
    "resume_async",
    "tool",
]


def test_all_is_the_curated_sorted_list() -> None:
    assert agentloop.__all__ == EXPECTED
    assert sorted(agentloop.__all__, key=str.lower) == sorted(EXPECTED, key=str.lower)
    for name in agentloop.__all__:
        assert getattr(agentloop, name) is not None


def test_public_names_not_in_all_are_modules_only() -> None:
    public = {n for n in vars(agentloop) if not n.startswith("_")}
    extra = {
        n
        for n in public - set(agentloop.__all__)
        if not isinstance(getattr(agentloop, n), type(agentloop))
    }
    assert extra == set()


def test_import_agentloop_does_not_import_openai() -> None:
    code = "import sys, agentloop; print('openai' in sys.modules, 'jsonschema' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


SYNC_DOORS = ["critique", "evaluate", "replay", "rescore", "resume", "revise"]


def test_each_sync_door_has_its_async_functions_parameters_and_docs() -> None:
    import importlib
    import inspect

    modules = [importlib.import_module(f"agentloop.{m}") for m in ("critique", "evals", "replay")]
    for name in SYNC_DOORS:
        module = next(m for m in modules if hasattr(m, f"{name}_async"))
        door, async_form = getattr(module, name), getattr(module, f"{name}_async")
        assert door.__name__ == name
        assert inspect.signature(door) == inspect.signature(async_form)
        assert door.__doc__ == async_form.__doc__ and door.__doc__


async def test_a_sync_door_inside_an_event_loop_names_the_async_form(tmp_path: Any) -> None:
    with pytest.raises(agentloop.UserError, match=r"replay\(\) cannot run inside a running"):
        agentloop.replay(tmp_path / "never-read.jsonl")
    with pytest.raises(agentloop.UserError, match=r"use `await evaluate_async\(...\)` there"):
        agentloop.evaluate(tmp_path / "d.jsonl", tmp_path / "a.toml")
