"""A reply cut off by the token limit is never run nor taken as the answer.

``finish_reason: "length"`` with no complete action (native text, or a JSON-protocol action cut
mid-object) ends the run ``run_failed`` with ``OutputTruncated`` (stop reason
``output_truncated``), the partial text in the error and in the trace, and a message naming the
setting to raise; the CLI exits 1.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agentloop import Agent, ModelSettings, read_trace
from agentloop.cli import main
from agentloop.errors import OutputTruncated
from agentloop.events import RunFailed
from fakes import FakeOpenAIServer, cut_off
from fakes.runs import Adder, fast_model

pytestmark = pytest.mark.usefixtures("_close_openai_models")

CUT_ACTION = '{"tool": "add", "arguments": {"a": 2, "b'


@pytest.mark.parametrize("form", ["chat", "completion"])
async def test_a_cut_off_json_action_is_neither_run_nor_an_answer(
    openai_server: FakeOpenAIServer, tmp_path: Path, form: str
) -> None:
    openai_server.script(cut_off(CUT_ACTION, chat=form == "chat"))
    adder = Adder()
    model = fast_model(openai_server.url, native_tools=False, prompt_form=form)
    agent = Agent(model, tools=[adder.tool], trace_dir=tmp_path)
    with pytest.raises(OutputTruncated) as caught:
        await agent.run("2 + 3?", settings=ModelSettings(max_tokens=12))
    assert adder.calls == []
    assert caught.value.text.strip() == CUT_ACTION
    assert "max_tokens (now 12" in str(caught.value)
    assert caught.value.partial is not None
    assert caught.value.partial.stop_reason == "output_truncated"
    [path] = tmp_path.glob("*.jsonl")
    trace = read_trace(path)
    assert [e.type for e in trace.events if e.type == "tool_call"] == []
    end = trace.terminal
    assert isinstance(end, RunFailed)
    assert (end.reason, end.error_type) == ("output_truncated", "OutputTruncated")
    assert end.partial_output is not None and end.partial_output.strip() == CUT_ACTION


def test_the_cli_exits_1_on_a_cut_off_answer_and_names_the_setting(
    openai_server: FakeOpenAIServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    openai_server.script(cut_off("The answer is forty"), cut_off("The answer is forty"))
    args = ["run", "What is 6 * 7?", "--model", "openai:m", "--trace-dir", str(tmp_path)]
    code = main([*args, "--no-stream"])
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""  # no answer on stdout
    assert "run failed (output_truncated)" in err and "max_tokens" in err
    code = main(args)  # streamed: the text that arrived was shown, its line ended, no answer
    out, err = capsys.readouterr()
    assert code == 1
    assert out == "The answer is \n"
    assert "run failed (output_truncated)" in err and "max_tokens" in err
