"""``OpenAIModel(native_tools=False)``: the JSON action protocol over real HTTP, against the fake
server, in both forms: chat messages with the action schema as ``response_format``, and one
prompt sent to ``/v1/completions`` (base models) that stops after one action."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from agentloop import Agent, ModelSettings, read_trace
from agentloop.errors import ModelResponseError, UserError
from agentloop.models.openai import OpenAIModel
from agentloop.models.protocol import ACTION_STOP, FORMAT_REMINDER
from fakes import FakeOpenAIServer, Reply, answer, error, text_completion
from fakes.openai_server import CHAT_PATH, COMPLETIONS_PATH
from fakes.runs import Adder, fast_model

pytestmark = pytest.mark.usefixtures("_close_openai_models")

USAGE = {"prompt_tokens": 700, "completion_tokens": 20}
CALL = '{"tool": "add", "arguments": {"a": 2, "b": 3}}'


def run(model: OpenAIModel, tmp_path: Path) -> tuple[str | None, Path]:
    agent = Agent(model, tools=[Adder().tool], trace_dir=tmp_path)
    result = agent.run_sync("What is 2 + 3?")
    assert result.trace_path is not None
    return result.output, result.trace_path


def test_the_chat_form_sends_the_action_schema_and_no_tools(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    openai_server.script(answer(CALL, usage=USAGE), answer('{"answer": "2 + 3 = 5"}'))
    model = fast_model(openai_server.url, native_tools=False)
    output, path = run(model, tmp_path)

    assert output == "2 + 3 = 5"
    assert [r.path for r in openai_server.requests] == [CHAT_PATH, CHAT_PATH]
    first, second = openai_server.bodies
    assert "tools" not in first
    schema = first["response_format"]["json_schema"]["schema"]
    jsonschema.validate(json.loads(CALL), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"tool": "add", "arguments": {"a": "two"}}, schema)
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant", "user"]
    assert second["messages"][2]["content"] == CALL
    assert second["messages"][3]["content"] == "Observation: 5"

    trace = read_trace(path)
    assert trace.header.agent["model"]["prompt_form"] == "chat"
    responses = [e.response for e in trace.events if e.type == "model_response"]
    assert [r.protocol for r in responses] == ["json", "json"]
    assert responses[0].usage.input_tokens == 700
    [call] = [e for e in trace.events if e.type == "tool_call"]
    assert call.valid and call.arguments == {"a": 2, "b": 3}


def test_the_completion_form_sends_one_prompt_that_stops_after_one_action(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    openai_server.script(
        text_completion(" " + CALL, usage=USAGE), text_completion(' {"answer": "5"}')
    )
    model = fast_model(openai_server.url, native_tools=False, prompt_form="completion")
    output, path = run(model, tmp_path)

    assert output == "5"
    assert [r.path for r in openai_server.requests] == [COMPLETIONS_PATH, COMPLETIONS_PATH]
    first, second = openai_server.bodies
    assert first["model"] == model.name
    assert first["prompt"].endswith("Task: What is 2 + 3?\nAction:")
    assert first["stop"] == list(ACTION_STOP)
    assert "response_format" not in first and "messages" not in first and "tools" not in first
    assert second["prompt"].endswith(f"Action: {CALL}\nObservation: 5\nAction:")
    assert second["prompt"].startswith(first["prompt"].removesuffix("Action:"))  # cacheable

    trace = read_trace(path)
    assert trace.header.agent["model"]["prompt_form"] == "completion"
    responses = [e.response for e in trace.events if e.type == "model_response"]
    assert [r.protocol for r in responses] == ["json", "json"]
    assert responses[0].usage.input_tokens == 700
    assert [e.content for e in trace.events if e.type == "tool_result"] == ["5"]


def test_the_completion_form_keeps_the_runs_own_stop_sequences(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    openai_server.script(text_completion(' {"answer": "5"}'))
    model = fast_model(openai_server.url, native_tools=False, prompt_form="completion")
    agent = Agent(model, tools=[Adder().tool], trace_dir=tmp_path)
    agent.run_sync("What is 2 + 3?", settings=ModelSettings(stop=("END",), temperature=0))
    [body] = openai_server.bodies
    assert body["stop"] == ["END", *ACTION_STOP]
    assert body["temperature"] == 0


def test_a_completion_that_is_no_action_goes_back_with_the_format(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    """No schema reaches /completions, so a reply is read leniently; one that holds no action
    is rejected like a bad native call, and the next prompt says why and shows the format."""
    openai_server.script(
        text_completion(" I think the answer is five."),
        text_completion(" " + CALL),
        text_completion(' {"answer": "5"}'),
    )
    model = fast_model(openai_server.url, native_tools=False, prompt_form="completion")
    output, path = run(model, tmp_path)

    assert output == "5"
    second = openai_server.bodies[1]["prompt"]
    assert "Action: I think the answer is five." in second
    assert second.endswith(FORMAT_REMINDER + "\nAction:")
    calls = [e for e in read_trace(path).events if e.type == "tool_call"]
    assert [c.valid for c in calls] == [False, True]


def test_completions_are_retried_like_chat_requests(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    openai_server.script(
        error(503, "busy"), text_completion(" " + CALL), text_completion(' {"answer": "5"}')
    )
    model = fast_model(openai_server.url, native_tools=False, prompt_form="completion")
    output, path = run(model, tmp_path)
    assert output == "5"
    first = next(e.response for e in read_trace(path).events if e.type == "model_response")
    assert [a.status for a in first.attempts] == [503]


def test_prompt_form_is_checked() -> None:
    with pytest.raises(UserError, match="native_tools=False"):
        OpenAIModel("m", base_url="http://127.0.0.1:9/v1", prompt_form="completion")
    with pytest.raises(UserError, match="'chat' or 'completion'"):
        OpenAIModel("m", base_url="http://127.0.0.1:9/v1", native_tools=False, prompt_form="text")  # type: ignore[arg-type]


def test_a_body_that_is_no_text_completion_is_a_clear_error_and_the_trace_says_so(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    openai_server.script(Reply(body={"choices": [{"index": 0, "message": {"content": "hi"}}]}))
    model = fast_model(openai_server.url, native_tools=False, prompt_form="completion")
    agent = Agent(model, tools=[Adder().tool], trace_dir=tmp_path)
    with pytest.raises(ModelResponseError, match="not a completion: no 'text' field") as caught:
        agent.run_sync("What is 2 + 3?")
    assert caught.value.trace_path is not None
    assert read_trace(caught.value.trace_path).events[-1].type == "run_failed"
