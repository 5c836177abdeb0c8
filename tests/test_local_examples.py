"""The embedded model never takes the JSON protocol's worked examples for facts.

Asked questions that have nothing to do with the examples, with the tool pack's calculator and
document search, no tool argument and no answer copies an example's content (its keys, numbers
or sentences): the examples teach the format only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentloop import Agent, ModelSettings, read_trace
from agentloop.errors import AgentLoopError
from agentloop.models.local import LocalModel
from agentloop.models.protocol import DEFAULT_EXAMPLES
from toolpack import load

pytestmark = pytest.mark.slow

DOCS = Path(__file__).parent / "data" / "docs"
QUESTIONS = ["What is the population of Lyon?", "Who wrote the novel Dracula?"]


def example_content() -> set[str]:
    """Every distinctive value in the examples: tasks, arguments, observations, answers."""
    found: set[str] = set()
    for example in DEFAULT_EXAMPLES:
        found.add(example.task)
        found.add(example.answer)
        for action, observation in example.steps:
            found.add(observation)
            for value in action.get("arguments", {}).values():  # type: ignore[union-attr]
                found.add(value if isinstance(value, str) else json.dumps(value))
    return {v for v in found if len(v) >= 2}


@pytest.mark.timeout(600)
def test_answers_and_arguments_never_copy_the_worked_examples(tmp_path: Path) -> None:
    tools = [load("calculator").calculator, load("retrieve").make_retrieve_tool(DOCS)]
    agent = Agent(
        LocalModel(temperature=0.0, seed=0),
        tools=tools,
        trace_dir=tmp_path,
        max_steps=2,
        settings=ModelSettings(temperature=0.0, seed=0),
    )
    copied: list[str] = []
    content = example_content()
    assert {"key-A", "425", "the quick brown fox jumps"} <= content
    for question in QUESTIONS:
        try:
            result = agent.run_sync(question)
            path = result.trace_path
        except AgentLoopError as exc:  # a limit: what it did is still checked
            path = exc.trace_path
        assert path is not None
        trace = read_trace(path)
        said = [json.dumps(c.arguments) for c in trace.tool_calls() if c.arguments]
        said += [trace.output or ""]
        for text in said:
            copied += [f"{question}: {v!r} in {text!r}" for v in content if v in text]
    assert copied == []
