"""``OpenAIModel`` over real loopback HTTP: the request body it sends (model, messages in
OpenAI wire form, tools, settings), the cached per-message encodings that build it, how the
response is read back, and the client's life across event loops."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from agentloop import Agent, ModelSettings
from agentloop.errors import UserError
from agentloop.messages import (
    AssistantMessage,
    SystemMessage,
    ToolCallPart,
    ToolMessage,
    UserMessage,
)
from agentloop.models.openai import OpenAIModel
from agentloop.models.openai_wire import strict_allowed
from agentloop.tools import Tool, Toolset
from agentloop.untrusted import UNTRUSTED_NOTICE, delimit_untrusted
from fakes import FakeOpenAIServer, answer, completion, tool_call, tool_calls
from fakes.openai_server import Reply
from fakes.runs import API_KEY, MODEL_NAME, Adder, fast_model, finished_trace

pytestmark = pytest.mark.usefixtures("_close_openai_models")


def echo(text: str) -> str:
    """Repeat a text.

    Args:
        text: What to repeat.
    """
    return text


# -- the request body -----------------------------------------------------------------------------


async def test_the_body_carries_model_messages_tools_and_settings_and_each_step_extends_the_last(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    adder = Adder()
    openai_server.script(
        tool_calls(
            tool_call("add", {"a": 1, "b": 2}, id="call_a"),
            tool_call("echo", {"text": 'hé \u2603 "q"'}, id="call_b"),
            content="Let me compute.",
        ),
        tool_calls(tool_call("add", {"a": 3, "b": 4}, id="call_c")),
        answer("3 and 7"),
    )
    settings = ModelSettings(
        temperature=0.2,
        top_p=0.9,
        max_tokens=64,
        seed=7,
        stop=("END",),
        parallel_tool_calls=False,
        extra={"top_k": 5, "chat_template_kwargs": {"enable_thinking": False}},
    )
    agent = Agent(
        fast_model(openai_server.url),
        tools=[adder.tool, echo],
        instructions="Be exact.",
        settings=settings,
        trace_dir=tmp_path,
    )
    result = await agent.run("Add 1 and 2, echo, then add 3 and 4.")
    assert result.output == "3 and 7"
    first, second, third = openai_server.bodies

    settings_sent = {k: v for k, v in first.items() if k not in ("messages", "tools")}
    assert settings_sent == {
        "model": MODEL_NAME,
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 64,
        "seed": 7,
        "stop": ["END"],
        "parallel_tool_calls": False,
        "top_k": 5,
        "chat_template_kwargs": {"enable_thinking": False},
    }
    # Every parameter of add and echo is required and no other is allowed: strict mode.
    assert first["tools"] == [
        {"type": "function", "function": {**s, "strict": True}} for s in agent.tools.specs()
    ]
    assert [t["function"]["name"] for t in first["tools"]] == ["add", "echo"]
    assert first["tools"][0]["function"]["parameters"]["required"] == ["a", "b"]
    assert first["messages"] == [
        {"role": "system", "content": f"Be exact.\n\n{UNTRUSTED_NOTICE}"},
        {"role": "user", "content": "Add 1 and 2, echo, then add 3 and 4."},
    ]
    assert second["messages"][:2] == first["messages"]
    assert second["messages"][2:] == [
        {
            "role": "assistant",
            "content": "Let me compute.",
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {
                        "name": "echo",
                        "arguments": json.dumps({"text": 'hé \u2603 "q"'}),
                    },
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": delimit_untrusted("add", "3")},
        {
            "role": "tool",
            "tool_call_id": "call_b",
            "content": delimit_untrusted("echo", 'hé \u2603 "q"'),
        },
    ]
    assert third["messages"][:5] == second["messages"]
    assert third["messages"][5:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_c",
                    "type": "function",
                    "function": {"name": "add", "arguments": '{"a": 3, "b": 4}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_c", "content": delimit_untrusted("add", "7")},
    ]
    for body in (second, third):  # every step sends the same settings and tools
        assert {k: v for k, v in body.items() if k != "messages"} == {
            **settings_sent,
            "tools": first["tools"],
        }
    # What the trace says the model saw is exactly what went over the wire.
    trace = finished_trace(result)
    wire = [m.model_dump(exclude_none=True) for m in trace.messages()]
    assert len(wire) == len(third["messages"]) + 1  # plus the final answer
    assert trace.header.agent["model"] == {
        "kind": "OpenAIModel",
        "name": MODEL_NAME,
        "endpoint": openai_server.url,
    }


async def test_a_body_without_tools_or_settings_is_minimal(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.script(answer("hi"))
    model = fast_model(openai_server.url)
    await model.request(
        [UserMessage(content="hello")], Toolset(), ModelSettings(parallel_tool_calls=True)
    )
    [request] = openai_server.requests
    assert request.json() == {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": "hello"}],
    }
    assert request.path == "/v1/chat/completions" and request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"


async def test_the_body_is_built_from_cached_message_encodings(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.fallback = lambda request: answer("ok")
    model = fast_model(openai_server.url)
    messages: list[Any] = [SystemMessage(content="s"), UserMessage(content="u")]
    await model.request(messages, Toolset(), ModelSettings())
    assert all(m._wire for m in messages)  # encoded once, kept on the message
    messages.append(
        AssistantMessage(tool_calls=(ToolCallPart(call_id="c", name="t", arguments="{}"),))
    )
    messages.append(ToolMessage(call_id="c", name="t", content="r"))
    await model.request(messages, Toolset(), ModelSettings())
    await model.request(messages, Toolset(), ModelSettings())
    first, second, third = (r.body for r in openai_server.requests)
    assert second == third
    assert json.loads(second)["messages"][:2] == json.loads(first)["messages"]


async def test_a_copied_message_is_not_sent_with_the_originals_encoding(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.fallback = lambda request: answer("ok")
    model = fast_model(openai_server.url)
    original = UserMessage(content="old")
    await model.request([original], Toolset(), ModelSettings())
    copy = original.model_copy(update={"content": "new"})  # pydantic shares private attrs
    await model.request([copy], Toolset(), ModelSettings())
    await model.request([original, copy], Toolset(), ModelSettings())
    sent = [[m["content"] for m in body["messages"]] for body in openai_server.bodies]
    assert sent == [["old"], ["new"], ["old", "new"]]


async def test_the_tools_sent_follow_the_toolset_of_each_request(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.fallback = lambda request: answer("ok")
    model = fast_model(openai_server.url)
    with_add, with_echo = Toolset([Adder().tool]), Toolset([echo])
    for tools in (with_add, with_echo, with_add, Toolset()):
        await model.request([UserMessage(content="x")], tools, ModelSettings())
    names = [[t["function"]["name"] for t in b.get("tools", ())] for b in openai_server.bodies]
    assert names == [["add"], ["echo"], ["add"], []]


async def test_extra_settings_override_and_add_fields(openai_server: FakeOpenAIServer) -> None:
    openai_server.script(answer("ok"))
    model = fast_model(openai_server.url)
    settings = ModelSettings(temperature=1.0, extra={"temperature": 0.0, "logprobs": True})
    await model.request([UserMessage(content="x")], Toolset(), settings)
    body = openai_server.bodies[0]
    assert (body["temperature"], body["logprobs"]) == (0.0, True)


async def test_json_schema_becomes_response_format(openai_server: FakeOpenAIServer) -> None:
    openai_server.script(answer('{"ok": true}'))
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    model = fast_model(openai_server.url)
    await model.request([UserMessage(content="x")], Toolset(), ModelSettings(json_schema=schema))
    assert openai_server.bodies[0]["response_format"] == {  # other properties allowed: no strict
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema},
    }


async def test_a_schema_that_allows_it_is_sent_strict(openai_server: FakeOpenAIServer) -> None:
    openai_server.script(answer('{"ok": true}'))
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    }
    model = fast_model(openai_server.url)
    await model.request([UserMessage(content="x")], Toolset(), ModelSettings(json_schema=schema))
    assert openai_server.bodies[0]["response_format"]["json_schema"] == {
        "name": "answer",
        "schema": schema,
        "strict": True,
    }
    loose = {**schema, "required": []}  # an optional property: strict mode would refuse it
    assert not strict_allowed(loose) and strict_allowed(schema)


async def test_a_per_run_setting_overrides_the_agents(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    openai_server.script(answer("a"), answer("b"))
    agent = Agent(
        fast_model(openai_server.url),
        settings=ModelSettings(temperature=0.5, seed=1),
        trace_dir=tmp_path,
    )
    await agent.run("x")
    await agent.run("x", settings=ModelSettings(seed=2))
    assert [(b["temperature"], b["seed"]) for b in openai_server.bodies] == [(0.5, 1), (0.5, 2)]


# -- reading the response ------------------------------------------------------------------------


async def test_the_response_is_read_into_text_calls_usage_and_model_name(
    openai_server: FakeOpenAIServer,
) -> None:
    body = completion(
        "thinking",
        [tool_call("add", {"a": 1, "b": 2}, id="x1")],
        usage={"prompt_tokens": 12, "completion_tokens": 3},
        model="served-name",
    )
    openai_server.script(Reply(body=body))
    response = await fast_model(openai_server.url).request(
        [UserMessage(content="x")], Toolset(), ModelSettings()
    )
    assert response.text == "thinking"
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in response.tool_calls] == [
        ("x1", "add", {"a": 1, "b": 2})
    ]
    assert response.finish_reason == "tool_calls"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 3)
    assert response.model_name == "served-name"
    assert response.latency_ms is not None and response.latency_ms > 0
    assert response.attempts == ()


async def test_a_call_without_a_function_name_is_an_unknown_tool(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    openai_server.script(
        Reply(body=completion(None, [{"id": "c1", "type": "function", "function": {}}])),
        answer("ok"),
    )
    agent = Agent(fast_model(openai_server.url), tools=[echo], trace_dir=tmp_path)
    result = await agent.run("x")
    assert [r.error for r in finished_trace(result).tool_results()] == ["unknown_tool"]


# -- configuration ---------------------------------------------------------------------------------


def test_config_names_the_endpoint_and_secrets_hold_the_key() -> None:
    model = OpenAIModel("m", base_url="http://127.0.0.1:9/v1/", api_key=API_KEY)
    assert model.config() == {
        "kind": "OpenAIModel",
        "name": "m",
        "endpoint": "http://127.0.0.1:9/v1",
    }
    assert model.secrets() == [API_KEY]
    assert API_KEY not in json.dumps(model.config())


async def test_a_local_server_needs_no_key(
    openai_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    openai_server.script(answer("ok"))
    model = OpenAIModel("m", base_url=openai_server.url)
    assert model.secrets() == []
    await model.request([UserMessage(content="x")], Toolset(), ModelSettings())
    assert openai_server.requests[0].headers["authorization"] == "Bearer no-key"


def test_no_key_and_no_base_url_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(UserError, match="OPENAI_API_KEY"):
        OpenAIModel("m")


async def test_the_environment_supplies_base_url_and_key(
    openai_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    openai_server.script(answer("from env"))
    result = await Agent("openai:env-model", trace_dir=tmp_path).run("x")
    assert result.output == "from env"
    assert openai_server.bodies[0]["model"] == "env-model"
    assert openai_server.requests[0].headers["authorization"] == f"Bearer {API_KEY}"


async def test_default_headers_are_sent(openai_server: FakeOpenAIServer) -> None:
    openai_server.script(answer("ok"))
    model = fast_model(openai_server.url, default_headers={"X-Team": "evals"})
    await model.request([UserMessage(content="x")], Toolset(), ModelSettings())
    assert openai_server.requests[0].headers["x-team"] == "evals"


# -- connections and event loops -----------------------------------------------------------------


def test_one_model_serves_several_run_sync_calls(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    """Each ``run_sync`` has its own event loop; pooled connections from the last one must
    neither be reused (they belong to a closed loop) nor leaked (pytest fails on the
    ResourceWarning of an unclosed socket)."""
    openai_server.fallback = lambda request: answer("ok")
    agent = Agent(fast_model(openai_server.url), trace_dir=tmp_path)
    outputs = [agent.run_sync("x").output for _ in range(3)]
    assert outputs == ["ok"] * 3
    assert len(openai_server.requests) == 3


async def test_requests_reuse_one_connection(openai_server: FakeOpenAIServer) -> None:
    openai_server.fallback = lambda request: answer("ok")
    model = fast_model(openai_server.url)
    for _ in range(5):
        await model.request([UserMessage(content="x")], Toolset(), ModelSettings())
    assert openai_server.connections == 1


async def test_aclose_closes_connections_and_the_model_still_works(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.fallback = lambda request: answer("ok")
    model = fast_model(openai_server.url)
    await model.request([UserMessage(content="x")], Toolset(), ModelSettings())
    await model.aclose()
    await model.aclose()  # twice is fine
    response = await model.request([UserMessage(content="x")], Toolset(), ModelSettings())
    assert response.text == "ok"
    assert openai_server.connections == 2


async def test_concurrent_requests_on_one_model(openai_server: FakeOpenAIServer) -> None:
    def reply(request: Any) -> Reply:
        return answer("re: " + request.json()["messages"][0]["content"])

    openai_server.fallback = reply
    model = fast_model(openai_server.url)
    responses = await asyncio.gather(
        *(
            model.request([UserMessage(content=str(i))], Toolset(), ModelSettings())
            for i in range(8)
        )
    )
    assert [r.text for r in responses] == [f"re: {i}" for i in range(8)]


async def test_tools_from_schema_are_sent_as_given(openai_server: FakeOpenAIServer) -> None:
    schema = {
        "type": "object",
        "properties": {"q": {"type": "string", "description": "query"}},
        "required": ["q"],
        "additionalProperties": False,
    }
    lookup = Tool.from_schema(
        name="lookup", description="Look something up.", parameters=schema, func=echo
    )
    openai_server.script(answer("ok"))
    model = fast_model(openai_server.url)
    await model.request([UserMessage(content="x")], Toolset([lookup]), ModelSettings())
    assert openai_server.bodies[0]["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look something up.",
                "parameters": schema,
                "strict": True,
            },
        }
    ]


def test_model_strings_take_the_backends_options() -> None:
    from agentloop.models import infer_model

    model = infer_model("openai:m", base_url="http://127.0.0.1:8/v1", native_tools=False)
    assert isinstance(model, OpenAIModel)
    assert (model.name, model.endpoint, model.native_tools) == ("m", "http://127.0.0.1:8/v1", False)
    with pytest.raises(
        UserError, match=r"'openai:m' takes no option 'threads' \(options: base_url"
    ):
        infer_model("openai:m", threads=2)
    with pytest.raises(UserError, match="need a model string"):
        infer_model(model, base_url="http://127.0.0.1:8/v1")
