"""Whole agent runs through ``OpenAIModel`` and real HTTP, against the fake server: what odd
but real server output (bad tool-call arguments, missing or repeated ids, cut-off calls, empty
replies, calls written as text, missing usage) does to a run, what the model is told, and how
the trace ends."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from agentloop import Agent, AgentLoopError
from agentloop.errors import (
    ModelAuthError,
    ModelResponseError,
    OutputTruncated,
    RetryBudgetExhausted,
)
from agentloop.events import RunWarned, ToolCallRequested, ToolResultRecorded
from agentloop.untrusted import delimit_untrusted
from fakes import (
    FakeOpenAIServer,
    Reply,
    answer,
    completion,
    error,
    tool_call,
    tool_call_raw,
    tool_calls,
)
from fakes.runs import API_KEY, Adder, failed_trace, fast_model, finished_trace

USAGE = {"prompt_tokens": 10, "completion_tokens": 5}

pytestmark = pytest.mark.usefixtures("_close_openai_models")


@pytest.fixture
def adder() -> Adder:
    return Adder()


def agent_for(server: FakeOpenAIServer, adder: Adder, tmp_path: Path, **kw: Any) -> Agent:
    return Agent(fast_model(server.url), tools=[adder.tool], trace_dir=tmp_path, **kw)


def tool_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body["messages"] if m["role"] == "tool"]


# -- arguments -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments",
    ['{"a": 1, "b":', "{'a': 1, 'b': 2}", "add(1, 2)", '{"a": 1, "b": 2} {"a": 3}'],
    ids=["cut", "single-quotes", "python-call", "two-objects"],
)
async def test_malformed_json_arguments_are_shown_to_the_model_and_the_run_goes_on(
    openai_server: FakeOpenAIServer, adder: Adder, tmp_path: Path, arguments: str
) -> None:
    call = tool_call("add", arguments)
    openai_server.script(tool_calls(call), answer("sorry, 3"))
    result = await agent_for(openai_server, adder, tmp_path).run("1+2?")
    assert result.output == "sorry, 3"
    assert adder.calls == []
    [told] = tool_messages(openai_server.bodies[1])
    [asked] = [m for m in openai_server.bodies[1]["messages"] if m["role"] == "assistant"]
    assert told["tool_call_id"] == asked["tool_calls"][0]["id"]  # the id the server minted
    assert told["tool_call_id"].startswith("call_")
    assert "not valid JSON" in told["content"]
    trace = finished_trace(result)
    [requested] = trace.tool_calls()
    assert (requested.raw_arguments, requested.valid) == (arguments, False)
    assert [r.error for r in trace.tool_results()] == ["invalid_json"]


@pytest.mark.parametrize(
    "arguments",
    ['{"x": NaN}', '{"x": Infinity}', '{"x": 1, "x": 2}'],
    ids=["nan", "infinity", "duplicate-key"],
)
async def test_non_standard_json_arguments_are_invalid_json(
    openai_server: FakeOpenAIServer, tmp_path: Path, arguments: str
) -> None:
    seen: list[float] = []

    def scale(x: float) -> float:
        """Scale a number.

        Args:
            x: The number.
        """
        seen.append(x)
        return x * 2

    openai_server.script(tool_calls(tool_call("scale", arguments, id="c1")), answer("?"))
    agent = Agent(fast_model(openai_server.url), tools=[scale], trace_dir=tmp_path)
    result = await agent.run("scale it")
    assert seen == []
    assert [r.error for r in finished_trace(result).tool_results()] == ["invalid_json"]


async def test_arguments_sent_as_an_object_are_accepted(
    openai_server: FakeOpenAIServer, adder: Adder, tmp_path: Path
) -> None:
    openai_server.script(tool_calls(tool_call_raw("add", {"a": 2, "b": 3}, id="c1")), answer("5"))
    result = await agent_for(openai_server, adder, tmp_path).run("2+3?")
    assert (result.output, adder.calls) == ("5", [(2, 3)])
    assistant = openai_server.bodies[1]["messages"][-2]
    sent = assistant["tool_calls"][0]["function"]["arguments"]
    assert isinstance(sent, str) and json.loads(sent) == {"a": 2, "b": 3}  # back as a string
    assert tool_messages(openai_server.bodies[1]) == [
        {"role": "tool", "tool_call_id": "c1", "content": delimit_untrusted("add", "5")}
    ]
    finished_trace(result)


@pytest.mark.parametrize(
    "arguments",
    [[2, 3], 5, "[2, 3]", '"a=2"', True],
    ids=["array", "number", "array-text", "string-text", "bool"],
)
async def test_arguments_that_are_not_an_object_are_rejected(
    openai_server: FakeOpenAIServer, adder: Adder, tmp_path: Path, arguments: Any
) -> None:
    openai_server.script(tool_calls(tool_call_raw("add", arguments, id="c1")), answer("gave up"))
    result = await agent_for(openai_server, adder, tmp_path).run("2+3?")
    assert result.output == "gave up" and adder.calls == []
    [told] = tool_messages(openai_server.bodies[1])
    assert told["tool_call_id"] == "c1" and "must be a JSON object" in told["content"]
    assert [r.error for r in finished_trace(result).tool_results()] == ["invalid_arguments"]


async def test_arguments_that_miss_a_parameter_are_rejected_with_the_reason(
    openai_server: FakeOpenAIServer, adder: Adder, tmp_path: Path
) -> None:
    openai_server.script(tool_calls(tool_call("add", {"a": 1}, id="c1")), answer("?"))
    result = await agent_for(openai_server, adder, tmp_path).run("1+?")
    [told] = tool_messages(openai_server.bodies[1])
    assert "invalid arguments" in told["content"] and "b" in told["content"]
    assert adder.calls == [] and result.output == "?"


async def test_bad_arguments_every_time_exhaust_the_retry_budget(
    openai_server: FakeOpenAIServer, adder: Adder, tmp_path: Path
) -> None:
    openai_server.script(*[tool_calls(tool_call("add", "{oops"))] * 3)
    agent = agent_for(openai_server, adder, tmp_path, retry_budget=2)
    with pytest.raises(RetryBudgetExhausted) as caught:
        await agent.run("1+2?")
    trace, _ = failed_trace(caught.value, RetryBudgetExhausted, reason="retry_budget")
    assert [r.error for r in trace.tool_results()] == ["invalid_json"] * 3
    assert adder.calls == []


# -- call ids -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        ([None, None], ["call_0", "call_1"]),
        (["dup", "dup", None], ["dup", "call_1", "call_2"]),
        ([None, "call_0"], ["call_0", "call_1"]),
        (["call_1", None, None], ["call_1", "call_1_", "call_2"]),
        (["", "x"], ["call_0", "x"]),
    ],
    ids=["missing", "duplicate", "synthetic-clash", "clash-with-later", "empty"],
)
async def test_missing_and_duplicate_ids_get_stable_unique_ids_one_result_each(
    openai_server: FakeOpenAIServer,
    adder: Adder,
    tmp_path: Path,
    ids: list[str | None],
    expected: list[str],
) -> None:
    calls = [tool_call("add", {"a": i, "b": 10}, id=call_id) for i, call_id in enumerate(ids)]
    openai_server.script(tool_calls(*calls), answer("done"))
    result = await agent_for(openai_server, adder, tmp_path).run("add them")
    assert result.output == "done"
    # Distinct calls are never merged; they run concurrently, so in any order.
    assert sorted(adder.calls) == [(i, 10) for i in range(len(ids))]
    body = openai_server.bodies[1]
    assistant = body["messages"][-1 - len(ids)]
    assert [c["id"] for c in assistant["tool_calls"]] == expected
    assert [(m["tool_call_id"], m["content"]) for m in tool_messages(body)] == [
        (call_id, delimit_untrusted("add", str(i + 10))) for i, call_id in enumerate(expected)
    ]
    trace = finished_trace(result)
    assert [c.call_id for c in trace.tool_calls()] == expected
    assert sorted(r.call_id for r in trace.tool_results()) == sorted(expected)  # as they finish


# -- finish_reason="length" ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments", ['{"a": 1, "b": 2', '{"a": 1, "b": 2}'], ids=["cut", "complete-looking"]
)
async def test_a_call_cut_off_by_the_token_limit_is_never_run(
    openai_server: FakeOpenAIServer, adder: Adder, tmp_path: Path, arguments: str
) -> None:
    openai_server.script(
        tool_calls(tool_call("add", arguments, id="c1"), finish_reason="length"),
        tool_calls(tool_call("add", {"a": 1, "b": 2}, id="c2")),
        answer("3"),
    )
    result = await agent_for(openai_server, adder, tmp_path).run("1+2?")
    assert result.output == "3"
    assert adder.calls == [(1, 2)]  # only the second, complete call ran
    [told] = tool_messages(openai_server.bodies[1])
    assert told["tool_call_id"] == "c1" and "cut off" in told["content"]
    trace = finished_trace(result)
    assert [(r.call_id, r.error) for r in trace.tool_results()] == [
        ("c1", "truncated_call"),
        ("c2", None),
    ]
    assert trace.events[1].type == "model_response"
    assert trace.events[1].response.finish_reason == "length"


async def test_text_cut_off_by_the_token_limit_is_no_answer(
    openai_server: FakeOpenAIServer, adder: Adder, tmp_path: Path
) -> None:
    """finish_reason=length with no tool call: the text is partial, so the run fails with a
    typed error that carries it and names the setting to raise (a retry would be cut too)."""
    openai_server.script(Reply(body=completion("The answer is", finish_reason="length")))
    with pytest.raises(OutputTruncated) as caught:
        await agent_for(openai_server, adder, tmp_path).run("?")
    assert caught.value.text == "The answer is"
    assert "max_tokens" in str(caught.value)
    _, end = failed_trace(caught.value, OutputTruncated, "output_truncated")
    assert end.partial_output == "The answer is"
    assert adder.calls == []


# -- empty replies --------------------------------------------------------------------------------


EMPTY = [
    Reply(body=completion(None)),
    Reply(body=completion("")),
    Reply(body=completion(None, [])),
    Reply(body={"choices": [{"message": {"role": "assistant"}, "finish_reason": "stop"}]}),
    Reply(body={"choices": [{"message": None, "finish_reason": "stop"}]}),
]


@pytest.mark.parametrize("empty", EMPTY, ids=["null", "blank", "no-calls", "no-content", "none"])
async def test_an_empty_reply_twice_is_a_response_error_after_one_nudge(
    openai_server: FakeOpenAIServer, adder: Adder, tmp_path: Path, empty: Reply
) -> None:
    openai_server.script(empty, empty)
    with pytest.raises(AgentLoopError) as caught:
        await agent_for(openai_server, adder, tmp_path).run("?")
    trace, end = failed_trace(caught.value, ModelResponseError)
    assert "empty" in end.message
    assert [w.kind for w in trace.events if isinstance(w, RunWarned)] == ["empty_response"]
    assert openai_server.bodies[1]["messages"][-1]["role"] == "user"  # the nudge
    assert "empty" in openai_server.bodies[1]["messages"][-1]["content"]


async def test_an_empty_reply_once_then_an_answer_succeeds(
    openai_server: FakeOpenAIServer, adder: Adder, tmp_path: Path
) -> None:
    openai_server.script(EMPTY[0], answer("here"))
    result = await agent_for(openai_server, adder, tmp_path).run("?")
    assert result.output == "here" and result.steps == 2
    first, second = openai_server.bodies
    assert second["messages"][: len(first["messages"])] == first["messages"]
    roles = [m["role"] for m in second["messages"]]
    assert roles == ["system", "user", "user"]  # the tool-output notice; no empty assistant
    finished_trace(result)


# -- usage -----------------------------------------------------------------------------------------


async def test_missing_usage_counts_as_zero(
    openai_server: FakeOpenAIServer, adder: Adder, tmp_path: Path
) -> None:
    openai_server.script(answer("ok", usage=None))
    result = await agent_for(openai_server, adder, tmp_path).run("?")
    assert (result.usage.input_tokens, result.usage.output_tokens) == (0, 0)
    finished_trace(result)


@pytest.mark.parametrize(
    "usage",
    ["lots", {"prompt_tokens": "many"}, {"prompt_tokens": None, "completion_tokens": -1}, []],
    ids=["text", "count-text", "null-and-negative", "array"],
)
async def test_garbled_usage_counts_as_zero(
    openai_server: FakeOpenAIServer, adder: Adder, tmp_path: Path, usage: Any
) -> None:
    openai_server.script(Reply(body={**completion("ok"), "usage": usage}))
    result = await agent_for(openai_server, adder, tmp_path).run("?")
    assert (result.output, result.usage.total_tokens) == ("ok", 0)


async def test_usage_is_summed_over_the_run(
    openai_server: FakeOpenAIServer, adder: Adder, tmp_path: Path
) -> None:
    openai_server.script(
        tool_calls(tool_call("add", {"a": 1, "b": 2}), usage=USAGE),
        answer("3", usage={"prompt_tokens": 30, "completion_tokens": 2}),
    )
    result = await agent_for(openai_server, adder, tmp_path).run("1+2?")
    assert (result.usage.input_tokens, result.usage.output_tokens) == (40, 7)
    trace = finished_trace(result)
    assert trace.events[-1].usage == result.usage
    per_step = [e.response.usage.total_tokens for e in trace.events if e.type == "model_response"]
    assert per_step == [15, 32]


# -- tool calls written as text ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "add", "arguments": {"a": 1, "b": 2}}',
        '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>',
        '{"function": "add", "parameters": {"a": 1, "b": 2}}',
    ],
    ids=["json", "hermes-tags", "function-key"],
)
async def test_a_tool_call_written_as_text_is_the_answer_with_a_warning(
    openai_server: FakeOpenAIServer, adder: Adder, tmp_path: Path, text: str
) -> None:
    openai_server.script(answer(text))
    result = await agent_for(openai_server, adder, tmp_path).run("1+2?")
    assert result.output == text and adder.calls == []
    warnings = [e for e in finished_trace(result).events if isinstance(e, RunWarned)]
    assert [w.kind for w in warnings] == ["possible_unparsed_tool_call"]


async def test_text_naming_no_tool_gets_no_warning(
    openai_server: FakeOpenAIServer, adder: Adder, tmp_path: Path
) -> None:
    openai_server.script(answer('{"name": "Ada", "born": 1815}'))
    result = await agent_for(openai_server, adder, tmp_path).run("who?")
    assert not [e for e in finished_trace(result).events if isinstance(e, RunWarned)]


# -- secrets -------------------------------------------------------------------------------------


async def test_the_api_key_is_sent_but_never_logged_or_traced(
    openai_server: FakeOpenAIServer,
    adder: Adder,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    echo = f"upstream rejected Authorization: Bearer {API_KEY} (key={API_KEY})"
    openai_server.script(
        error(503, echo),  # retried: the attempt's error is logged and traced
        tool_calls(tool_call("add", {"a": 1, "b": 2})),
        answer("3"),
        error(401, f"Incorrect API key provided: {API_KEY}"),
    )
    caplog.set_level(logging.DEBUG)
    agent = agent_for(openai_server, adder, tmp_path)
    result = await agent.run("1+2?")
    with pytest.raises(ModelAuthError) as caught:
        await agent.run("again")
    assert result.output == "3"
    assert [r.headers["authorization"] for r in openai_server.requests] == [f"Bearer {API_KEY}"] * 4
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "model request retried" in logged and "upstream rejected" in logged
    assert API_KEY not in logged
    traces = list(tmp_path.glob("*.jsonl"))
    assert len(traces) == 2
    for path in traces:
        text = path.read_text()
        assert API_KEY not in text
    assert "upstream rejected" in Path(str(result.trace_path)).read_text()
    assert API_KEY not in str(caught.value)
    failed_trace(caught.value, ModelAuthError)


# -- what the tool call events record -----------------------------------------------------------


async def test_the_trace_records_each_call_with_raw_and_parsed_arguments(
    openai_server: FakeOpenAIServer, adder: Adder, tmp_path: Path
) -> None:
    openai_server.script(
        tool_calls(
            tool_call("add", '{"a": 1, "b": 2}', id="ok"),
            tool_call("nope", "{}", id="unknown"),
        ),
        answer("3"),
    )
    result = await agent_for(openai_server, adder, tmp_path).run("1+2?")
    trace = finished_trace(result)
    calls = {e.call_id: e for e in trace.events if isinstance(e, ToolCallRequested)}
    assert calls["ok"].arguments == {"a": 1, "b": 2} and calls["ok"].valid
    assert calls["unknown"].rejection == "unknown_tool"
    results = {e.call_id: e for e in trace.events if isinstance(e, ToolResultRecorded)}
    assert results["ok"].content == "3" and "Available tools: add" in results["unknown"].content
