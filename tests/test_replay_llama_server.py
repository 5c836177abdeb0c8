"""Replay and resume against the real thing: llama.cpp's own HTTP server with the bundled model.

The server (started by a fixture on 127.0.0.1, in a subprocess so it can be killed) mints fresh
ids and answers with its own protocol quirks. A run recorded through it replays with
``--live-model`` with no divergence at temperature 0 and a fixed seed, in both prompt forms of
the JSON action protocol; a run whose server died during a tool call is resumed with
``agentloop resume`` once the server is back, with the recorded protocol.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentloop import Agent, ModelSettings, read_trace, tool
from agentloop.cli import main
from agentloop.errors import ModelConnectionError
from agentloop.models.openai import OpenAIModel
from llama_server import LlamaServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SLOW = ["--model-option", "timeout=600"]  # a busy 2-core machine needs minutes per request
AGENT = """
name = "llama-server-{form}"
model = "openai:gemma"
tools = ["agentloop.toolpack.calculator"]

[model_options]
native_tools = false
prompt_form = "{form}"
timeout = 600

[settings]
temperature = 0.0
seed = 0
max_tokens = 64

[limits]
max_steps = {steps}
"""


@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaServer]:
    with LlamaServer() as server:
        yield server


@pytest.fixture
def configured(llama: LlamaServer, monkeypatch: pytest.MonkeyPatch) -> LlamaServer:
    """The user's endpoint is the llama.cpp server (no key: a local server needs none)."""
    monkeypatch.setenv("OPENAI_BASE_URL", llama.url)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return llama


@pytest.mark.parametrize("form", ["completion", "chat"])
def test_live_model_replay_of_a_recorded_run_does_not_diverge(
    configured: LlamaServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], form: str
) -> None:
    agent_file = tmp_path / "agent.toml"
    # The chat form of this base model repeats its tool call instead of answering: the run ends
    # at max_steps, and that failure replays too.
    agent_file.write_text(AGENT.format(form=form, steps=2 if form == "chat" else 3))
    code = main(
        ["run", "What is 17 * 23?", "--agent", str(agent_file), "--trace-dir", str(tmp_path / "t")]
    )
    _, err = capsys.readouterr()
    assert code == (0 if form == "completion" else 1), err
    [recorded] = (tmp_path / "t").glob("*.jsonl")
    trace = read_trace(recorded)
    assert trace.header.agent["model"]["prompt_form"] == form
    assert [c.arguments for c in trace.tool_calls()][:1] == [{"expression": "17 * 23"}]

    replayed_dir = str(tmp_path / "r")
    code = main(["replay", str(recorded), "--live-model", "--trace-dir", replayed_dir, *SLOW])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "no divergence" in out
    [replayed] = (tmp_path / "r").glob("*.jsonl")
    again = read_trace(replayed)
    assert again.header.config_hash == trace.header.config_hash
    assert [c.call_id for c in again.tool_calls()] == [c.call_id for c in trace.tool_calls()]
    assert [r.content for r in again.tool_results()] == [r.content for r in trace.tool_results()]


def test_resume_finishes_a_run_whose_server_died_during_a_tool_call(
    configured: LlamaServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    @tool(name="calculator")
    def crashing_calculator(expression: str) -> str:
        """Evaluate an arithmetic expression."""
        configured.kill()  # the model server dies while the tool runs
        return "391" if expression.replace(" ", "") == "17*23" else "unknown"

    model = OpenAIModel(
        "gemma",
        native_tools=False,
        prompt_form="completion",
        max_retries=1,
        backoff=0.01,
        timeout=600,
    )
    agent = Agent(
        model,
        tools=[crashing_calculator],
        settings=ModelSettings(temperature=0.0, seed=0, max_tokens=64),
        trace_dir=tmp_path / "t",
    )
    with pytest.raises(ModelConnectionError) as caught:
        agent.run_sync("What is 17 * 23?")
    source = caught.value.trace_path
    assert source is not None
    crashed = read_trace(source)
    assert [r.content for r in crashed.tool_results()] == ["391"]

    configured.start()
    tools = tmp_path / "calc.py"
    tools.write_text(
        "from agentloop import tool\n\n"
        "@tool\ndef calculator(expression: str) -> str:\n"
        '    """Evaluate an arithmetic expression."""\n'
        "    raise AssertionError('the recorded result is served, the tool is not run')\n"
    )
    resumed_dir = str(tmp_path / "r")
    code = main(["resume", str(source), "--tools", str(tools), "--trace-dir", resumed_dir, *SLOW])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "391" in out
    [resumed] = (tmp_path / "r").glob("*.jsonl")
    trace = read_trace(resumed)
    assert trace.header.agent["model"] == crashed.header.agent["model"]  # completion form kept
    assert trace.output is not None and "391" in trace.output
