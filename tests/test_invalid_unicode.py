"""Text that is not valid Unicode never fails a run or its trace.

A lone surrogate (half of a UTF-16 pair) reaches a run in ordinary ways: a server's JSON escape
``\\ud800`` with no pair (a model cut in the middle of an emoji's escape), a tool's text from a
file read with ``errors="surrogateescape"``, a command line holding bytes that are not UTF-8.
Python holds such text; UTF-8 cannot. The trace writes each such character as U+FFFD, and the
run goes on (it failed with ``PydanticSerializationError`` when the trace line was made).
"""

from __future__ import annotations

import json
from pathlib import Path

from agentloop import Agent, replay_sync, tool
from agentloop.messages import Message, ModelResponse, ToolCallPart
from agentloop.testing import FunctionModel, ModelCall, ScriptedModel
from agentloop.trace import read_trace
from fakes import FakeOpenAIServer, Reply, completion, tool_call_raw, tool_calls
from fakes.runs import fast_model

LONE = "\ud800"
REPLACED = "\ufffd"


@tool
def echo(text: str) -> str:
    """Say the text back."""
    return f"heard {text}"


@tool
def read_latin1_file() -> str:
    """Read a file that is not UTF-8, as Python does with errors="surrogateescape"."""
    return b"caf\xe9".decode("utf-8", "surrogateescape")


def _lines_are_utf8(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_bytes().decode("utf-8").splitlines()]


async def test_a_servers_lone_surrogate_escapes_are_run_and_traced(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    arguments = json.dumps({"text": f"x{LONE}y"})  # the escape, as text, inside the arguments
    openai_server.script(
        tool_calls(tool_call_raw("echo", arguments, id="call_1")),
        Reply(body=completion(f"done {LONE} and \U0001f600")),  # json.dumps escapes both
    )
    agent = Agent(fast_model(openai_server.url), tools=[echo], trace_dir=tmp_path)
    result = await agent.run("go")
    assert result.output == f"done {LONE} and \U0001f600"  # what the server said, as Python has it

    assert result.trace_path is not None
    lines = _lines_are_utf8(result.trace_path)
    call = next(line for line in lines if line.get("type") == "tool_call")
    assert call["arguments"] == {"text": f"x{REPLACED}y"}
    outcome = next(line for line in lines if line.get("type") == "tool_result")
    assert outcome["content"] == f"heard x{REPLACED}y"
    assert lines[-1]["type"] == "run_finished"
    assert lines[-1]["output"] == f"done {REPLACED} and \U0001f600"
    trace = read_trace(result.trace_path)
    assert trace.output == f"done {REPLACED} and \U0001f600"
    # The next request carried the tool's text to the server as JSON escapes, not a failure.
    assert "x\\ud800y" in openai_server.requests[1].body.decode()


def test_a_tools_undecodable_bytes_and_a_tasks_are_traced_and_replay(tmp_path: Path) -> None:
    model = ScriptedModel(
        [
            ModelResponse(
                tool_calls=(ToolCallPart(call_id="c1", name="read_latin1_file", arguments="{}"),),
                finish_reason="tool_calls",
            ),
            ModelResponse(text="read it"),
        ]
    )
    task = "summarize " + b"\xff".decode("utf-8", "surrogateescape")  # as argv would hold it
    agent = Agent(model, tools=[read_latin1_file], trace_dir=tmp_path)
    result = agent.run_sync(task)
    assert result.output == "read it"
    assert result.trace_path is not None
    lines = _lines_are_utf8(result.trace_path)
    assert lines[0]["task"] == f"summarize {REPLACED}"
    outcome = next(line for line in lines if line.get("type") == "tool_result")
    assert outcome["content"] == f"caf{REPLACED}"

    replayed = replay_sync(read_trace(result.trace_path), trace_dir=tmp_path / "replays")
    assert not replayed.diverged
    assert replayed.output == "read it"


def test_a_split_surrogate_pair_is_joined_and_a_lone_half_replaced() -> None:
    from agentloop.events import json_line

    pair = "\ud83d\ude00"  # two characters in Python, one emoji in UTF-16
    line = json_line({"text": f"a{pair}b{LONE}", "nested": [{"k": LONE}], "n": float("nan")})
    assert json.loads(line) == {
        "text": f"a\U0001f600b{REPLACED}",
        "nested": [{"k": REPLACED}],
        "n": None,
    }
    line.encode("utf-8")  # valid UTF-8


def test_an_eval_whose_answer_holds_a_lone_surrogate_records_it(tmp_path: Path) -> None:
    from agentloop.evals import Case, Dataset, evaluate_sync
    from agentloop.evals.records import RESULTS_FILE, read_records
    from agentloop.evals.scorers import exact_match

    def answer(messages: list[Message], call: ModelCall) -> ModelResponse:
        return ModelResponse(text=f"caf{LONE}")

    cases = Dataset([Case(id="c1", input="say it", expected="cafe")], name="odd")
    agent = Agent(FunctionModel(answer))
    run = evaluate_sync(cases, agent, scorers=[exact_match()], run_dir=tmp_path / "run")
    [record] = run.records
    assert record.status == "ok" and record.output == f"caf{REPLACED}"  # read from its trace
    assert not record.scores["exact"].passed
    [written] = read_records(tmp_path / "run" / RESULTS_FILE)
    assert written.output == f"caf{REPLACED}"
    assert run.read_trace(record) is not None
