"""Typed output and tool choice on the wire (the loopback OpenAI-compatible server, both
native tools and the JSON action protocol), typed output on the embedded model constrained by
llama.cpp's grammar, and ``RunResult[T]`` typed for mypy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

from agentloop import Agent, ModelSettings, load_agent, read_trace, tool
from fakes.openai_server import FakeOpenAIServer, answer, completion, tool_call
from fakes.runs import fast_model

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("_close_openai_models")


class City(pydantic.BaseModel):
    name: str
    population: int


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def test_native_backends_get_a_json_schema_response_format(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    openai_server.script(answer('{"name": "Lyon", "population": 522250}'))
    agent = Agent(fast_model(openai_server.url), output_type=City, trace_dir=tmp_path)
    result = await agent.run("Lyon?")
    assert result.output == City(name="Lyon", population=522250)
    body = openai_server.bodies[0]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"]["required"] == ["name", "population"]


async def test_tool_choice_is_sent_to_a_native_backend(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    openai_server.script(completion(tool_calls=[tool_call("add", {"a": 1, "b": 2})]), answer("3"))
    agent = Agent(
        fast_model(openai_server.url),
        tools=[add],
        settings=ModelSettings(tool_choice="add"),
        trace_dir=tmp_path,
    )
    await agent.run("1+2")
    assert openai_server.bodies[0]["tool_choice"] == {
        "type": "function",
        "function": {"name": "add"},
    }


async def test_the_json_protocol_constrains_the_typed_answer(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    openai_server.script(answer('{"answer": {"result": 391}}'))
    model = fast_model(openai_server.url, native_tools=False)
    agent = Agent(model, tools=[add], output_type=int, trace_dir=tmp_path)
    result = await agent.run("What is 17 * 23?")
    assert result.output == 391 and isinstance(result.output, int)
    body = openai_server.bodies[0]
    assert "response_format" in body and "json_schema" not in body.get("response_format", {}).get(
        "json_schema", {}
    ).get("name", "")
    schema = body["response_format"]["json_schema"]["schema"]
    branch = next(b for b in schema["anyOf"] if "answer" in b["properties"])
    assert branch["properties"]["answer"]["properties"]["result"] == {"type": "integer"}


@pytest.mark.slow
@pytest.mark.timeout(600)  # two steps of the embedded model: seconds, unless the machine is busy
def test_the_embedded_model_answers_an_int_under_its_grammar(tmp_path: Path) -> None:
    agent = load_agent(ROOT / "agents" / "local-calculator.toml", trace_dir=tmp_path)
    typed = Agent(
        agent.model,
        tools=list(agent.tools.values()),
        settings=agent.settings,
        limits=agent.limits,
        output_type=int,
        trace_dir=tmp_path,
    )
    result = typed.run_sync("What is 17 * 23?")
    assert result.output == 391 and type(result.output) is int
    trace = read_trace(result.trace_path)  # type: ignore[arg-type]
    assert json.loads(trace.output or "") in (391, {"result": 391})


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_run_results_are_typed_for_mypy(tmp_path: Path) -> None:
    example = tmp_path / "typed_example.py"
    example.write_text(
        "from typing import assert_type\n"
        "import pydantic\n"
        "from agentloop import Agent, RunResult\n"
        "from agentloop.testing import ScriptedModel\n\n"
        "class City(pydantic.BaseModel):\n"
        "    name: str\n\n"
        "plain = Agent(ScriptedModel(['x']))\n"
        "assert_type(plain.run_sync('q'), RunResult[str])\n"
        "typed = Agent(ScriptedModel(['{}']), output_type=City)\n"
        "result = typed.run_sync('q')\n"
        "assert_type(result, RunResult[City])\n"
        "assert_type(result.output, City | None)\n"
        "numbers = Agent(ScriptedModel(['[]']), output_type=list[int])\n"
        "assert_type(numbers.run_sync('q').output, list[int] | None)\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(example)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
