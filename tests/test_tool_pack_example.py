"""examples/research_agent.py builds an agent from the tool pack (it is not run live here)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from agentloop import ModelResponse, load_agent
from agentloop.testing import ScriptedModel

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "tests" / "data" / "docs"


def load_example() -> ModuleType:
    path = ROOT / "examples" / "research_agent.py"
    spec = importlib.util.spec_from_file_location("research_agent_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_research_agent_has_search_fetch_retrieve_and_calculator(tmp_path: Path) -> None:
    example = load_example()
    agent = example.build_agent(ScriptedModel([]), DOCS, trace_dir=tmp_path)
    assert list(agent.tools) == ["web_search", "fetch_url", "search_docs", "calculator"]
    assert "[source: otters.md#2]" in agent.instructions
    assert not any(t.requires_approval for t in agent.tools.values())


async def test_the_research_agent_cites_a_local_passage(tmp_path: Path) -> None:
    example = load_example()
    model = ScriptedModel(
        [
            ModelResponse.tool_call("search_docs", {"query": "longest river"}),
            "The Nile is often named the longest river [source: rivers.txt#1].",
        ]
    )
    result = await example.build_agent(model, DOCS, trace_dir=tmp_path).run("Longest river?")
    assert result.output.endswith("[source: rivers.txt#1].")
    model.assert_consumed()
    assert example.check_grounding(result.trace_path)[0].startswith("citations: pass")


def test_the_research_agent_checks_grounding_with_both(tmp_path: Path) -> None:
    example = load_example()
    model = ScriptedModel(
        [
            ModelResponse.tool_call("search_docs", {"query": "longest river"}),
            "The Amazon is longest [source: rivers.txt#9].",
        ]
    )
    result = example.build_agent(model, DOCS, trace_dir=tmp_path).run_sync("Longest river?")
    scores = [
        {"principle": n, "score": 1, "rationale": "-"}
        for n in ("supported", "cited", "faithful", "answered")
    ]
    problem = {"step": 1, "problem": "Cites a passage never retrieved.", "fix": "Cite #1."}
    judge = ScriptedModel(
        [json.dumps({"scores": scores, "problems": [problem], "verdict": "good", "summary": "-"})]
    )
    lines = example.check_grounding(result.trace_path, judge)
    assert lines[0].startswith("citations: FAIL") and "rivers.txt#9" in lines[0]
    assert lines[1] == "grounded: poor (overall 0.00)"
    assert "RETRIEVED PASSAGES" in judge.calls[0].messages[-1].content


def test_the_research_agent_file_loads_the_tool_pack(monkeypatch: pytest.MonkeyPatch) -> None:

    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # built, never called
    agent = load_agent(ROOT / "agents" / "research.toml")
    assert sorted(agent.tools) == ["fetch_url", "search_docs", "web_search"]
    assert agent.limits.max_steps == 12 and "Cite every fact" in (agent.instructions or "")
