"""OpenAIModel streaming against the loopback fake server: what is sent, what is assembled,
and every fault: drops before and after the first delta, stalls, malformed lines, error
events; and Agent.stream on top (events, cancellation, the trace)."""

from __future__ import annotations

import asyncio
import json
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest

from agentloop import Agent, ModelResponse, read_trace
from agentloop.deltas import StreamItem, TextDelta, ToolCallDelta
from agentloop.errors import ModelConnectionError, ModelStreamError, ModelTimeoutError
from agentloop.events import StreamInterrupted
from agentloop.models.openai import OpenAIModel
from agentloop.settings import ModelSettings
from agentloop.streaming import (
    OutputProduced,
    StepFinished,
    TextGenerated,
    ToolCallFinished,
    ToolCallStarted,
)
from agentloop.tools import Toolset
from fakes import FakeOpenAIServer, Reply, answer, raw, tool_call, tool_calls
from fakes.runs import Adder, fast_model

pytestmark = pytest.mark.usefixtures("_close_openai_models")
USAGE = {"prompt_tokens": 11, "completion_tokens": 4}
SSE = "text/event-stream"


async def collect(model: OpenAIModel, tools: Toolset | None = None) -> list[StreamItem]:
    items: list[StreamItem] = []
    from agentloop.messages import UserMessage

    stream = model.request_stream([UserMessage(content="hi")], tools or Toolset(), ModelSettings())
    async with aclosing(stream):
        async for item in stream:
            items.append(item)
    return items


async def test_a_streamed_answer_is_sent_as_a_stream_and_assembled(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.script(answer("Hello there, streaming world", usage=USAGE))
    items = await collect(fast_model(openai_server.url))
    body = openai_server.bodies[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert openai_server.requests[0].headers["accept"] == SSE
    deltas, response = items[:-1], items[-1]
    assert isinstance(response, ModelResponse)
    assert len(deltas) > 3 and all(isinstance(d, TextDelta) for d in deltas)
    assert "".join(d.text for d in deltas if isinstance(d, TextDelta)) == response.text
    assert response.text == "Hello there, streaming world"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (11, 4)
    assert response.finish_reason == "stop"
    assert response.first_token_ms is not None and response.generation_ms is not None
    assert response.first_token_ms + response.generation_ms == pytest.approx(response.latency_ms)


async def test_interleaved_tool_calls_are_assembled_by_index(
    openai_server: FakeOpenAIServer,
) -> None:
    calls = [tool_call("add", {"a": 1, "b": 2}), tool_call("add", {"a": 30, "b": 40})]
    openai_server.script(tool_calls(*calls, content="Adding."))
    items = await collect(fast_model(openai_server.url), Toolset([Adder().tool]))
    response = items[-1]
    assert isinstance(response, ModelResponse)
    assert [json.loads(c.arguments) for c in response.tool_calls] == [
        {"a": 1, "b": 2},
        {"a": 30, "b": 40},
    ]
    ids = [c.call_id for c in response.tool_calls]  # minted by the server as it answered
    assert len(set(ids)) == 2 and all(i.startswith("call_") for i in ids)
    indexes = [d.index for d in items if isinstance(d, ToolCallDelta)]
    assert indexes != sorted(indexes)  # the wire interleaved them


async def test_a_drop_before_any_delta_is_retried(openai_server: FakeOpenAIServer) -> None:
    # Two events: the opening chunk (empty content) and nothing else: counts as nothing.
    dropped = Reply(body=answer("never").body, action="drop_mid_stream", after_events=1)
    openai_server.script(dropped, answer("second try"))
    items = await collect(fast_model(openai_server.url))
    response = items[-1]
    assert isinstance(response, ModelResponse) and response.text == "second try"
    assert len(response.attempts) == 1 and len(openai_server.requests) == 2


async def test_a_drop_after_text_is_a_typed_error_with_the_partial_text(
    openai_server: FakeOpenAIServer,
) -> None:
    dropped = Reply(body=answer("abcdefghijkl").body, action="drop_mid_stream", after_events=3)
    openai_server.script(dropped)
    with pytest.raises(ModelStreamError, match="broke off") as info:
        await collect(fast_model(openai_server.url))
    assert info.value.partial_text == "abcdef"  # two 3-character pieces arrived
    assert len(openai_server.requests) == 1  # no second answer after half of the first


async def test_a_stall_mid_stream_is_bounded_by_the_read_timeout(
    openai_server: FakeOpenAIServer,
) -> None:
    stalled = Reply(body=answer("abcdefghijkl").body, action="stall_mid_stream", after_events=2)
    openai_server.script(stalled)
    with pytest.raises(ModelStreamError, match="timeout") as info:
        await asyncio.wait_for(collect(fast_model(openai_server.url, timeout=0.3)), 5)
    assert info.value.partial_text == "abc"


async def test_a_stall_before_any_delta_is_retried_then_fails(
    openai_server: FakeOpenAIServer,
) -> None:
    stalled = Reply(body=answer("x").body, action="stall_mid_stream", after_events=1)
    openai_server.script(stalled, stalled)
    model = fast_model(openai_server.url, timeout=0.2, max_retries=1)
    with pytest.raises(ModelTimeoutError):
        await asyncio.wait_for(collect(model), 5)
    assert len(openai_server.requests) == 2


@pytest.mark.parametrize(
    ("stream", "problem"),
    [
        ('data: {"choices": [{"delta": {"content": "hi"}}]}\n\n<html>oops</html>\n', "not server"),
        ('data: {"choices": [{"delta": {"content": "hi"}}]}\n\ndata: {cut\n\n', "not JSON"),
        (
            'data: {"choices": [{"delta": {"content": "hi"}}]}\n\n'
            'data: {"error": {"message": "model overloaded"}}\n\n',
            "model overloaded",
        ),
        ('error: {"code": 500, "message": "slot crashed"}\n\n', "slot crashed"),
    ],
)
async def test_malformed_streams_and_error_events_are_typed_errors_not_retried(
    openai_server: FakeOpenAIServer, stream: str, problem: str
) -> None:
    openai_server.script(raw(stream, content_type=SSE))
    with pytest.raises(ModelStreamError, match=problem):
        await collect(fast_model(openai_server.url))
    assert len(openai_server.requests) == 1


async def test_a_stream_that_ends_without_finishing_is_a_connection_error(
    openai_server: FakeOpenAIServer,
) -> None:
    opening = 'data: {"choices": [{"delta": {"role": "assistant", "content": ""}}]}\n\n'
    openai_server.script(*[raw(opening, content_type=SSE)] * 2)
    with pytest.raises(ModelConnectionError, match="ended before"):
        await collect(fast_model(openai_server.url, max_retries=1))


async def test_an_error_status_on_a_stream_is_classified_as_unstreamed(
    openai_server: FakeOpenAIServer,
) -> None:
    from fakes import error

    openai_server.script(error(401, "bad key"))
    from agentloop.errors import ModelAuthError

    with pytest.raises(ModelAuthError):
        await collect(fast_model(openai_server.url))


# -- Agent.stream ----------------------------------------------------------------------------


async def test_agent_stream_yields_typed_events_and_the_trace_records_timings(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    adder = Adder()
    openai_server.script(
        tool_calls(tool_call("add", {"a": 2, "b": 3}), usage=USAGE),
        answer("The sum is 5.", usage=USAGE),
    )
    agent = Agent(fast_model(openai_server.url), tools=[adder.tool], trace_dir=tmp_path)
    async with agent.stream("add 2 and 3") as run:
        events = [event async for event in run]
    kinds = [type(e).__name__ for e in events]
    assert kinds[:3] == ["ToolCallStarted", "ToolCallFinished", "StepFinished"]
    assert kinds[-2:] == ["StepFinished", "OutputProduced"]
    started = events[0]
    assert isinstance(started, ToolCallStarted) and started.arguments == {"a": 2, "b": 3}
    assert isinstance(events[1], ToolCallFinished) and events[1].content == "5"
    text = "".join(e.text for e in events if isinstance(e, TextGenerated))
    assert text == "The sum is 5."
    assert all(e.step == 1 for e in events if isinstance(e, TextGenerated))
    last = events[-2]
    assert isinstance(last, StepFinished) and last.response.text == "The sum is 5."
    assert events[-1] == OutputProduced("The sum is 5.")
    result = run.result()
    assert result.output == "The sum is 5." and adder.calls == [(2, 3)]
    trace = read_trace(result.trace_path)  # type: ignore[arg-type]
    responses = [e.response for e in trace.events if e.type == "model_response"]
    assert all(r.first_token_ms is not None for r in responses)
    assert not any("delta" in e.type for e in trace.events)  # deltas are not journaled


async def test_leaving_a_stream_mid_answer_cancels_and_keeps_the_partial_text(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    stalled = Reply(body=answer("abcdefghijkl").body, action="stall_mid_stream", after_events=3)
    openai_server.script(stalled)
    agent = Agent(fast_model(openai_server.url), trace_dir=tmp_path)
    async with agent.stream("talk") as run:
        async for event in run:
            if isinstance(event, TextGenerated) and event.text == "def":
                break
    trace = read_trace(next(tmp_path.glob("*.jsonl")))
    assert trace.terminal is not None and trace.terminal.type == "run_cancelled"
    interrupted = [e for e in trace.events if isinstance(e, StreamInterrupted)]
    assert [(e.partial_text, e.error_type) for e in interrupted] == [("abcdef", "CancelledError")]
    with pytest.raises(asyncio.CancelledError):
        run.result()
    # The HTTP stream was closed: the server saw the connection end.
    for _ in range(50):
        if not openai_server._tasks:
            break
        await asyncio.sleep(0.02)
    assert not openai_server._tasks


async def test_a_broken_stream_fails_the_run_and_the_trace_keeps_the_partial_text(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    dropped = Reply(body=answer("abcdefghijkl").body, action="drop_mid_stream", after_events=2)
    openai_server.script(dropped)
    agent = Agent(fast_model(openai_server.url), trace_dir=tmp_path)

    async def consume() -> None:
        async with agent.stream("talk") as run:
            async for _ in run:
                pass

    with pytest.raises(ModelStreamError) as info:
        await consume()
    trace = read_trace(info.value.trace_path)  # type: ignore[arg-type]
    assert trace.terminal is not None and trace.terminal.type == "run_failed"
    interrupted = [e for e in trace.events if isinstance(e, StreamInterrupted)]
    assert [(e.partial_text, e.error_type) for e in interrupted] == [("abc", "ModelStreamError")]


def test_stream_sync_iterates_in_blocking_code(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    openai_server.script(answer("sync streaming works"))
    model = OpenAIModel("m", base_url=openai_server.url, api_key="k")
    agent = Agent(model, trace_dir=tmp_path)
    with agent.stream_sync("go") as run:
        events: list[Any] = list(run)
    assert "".join(e.text for e in events if isinstance(e, TextGenerated)) == "sync streaming works"
    assert run.result().output == "sync streaming works"


async def test_run_without_stream_asks_unstreamed(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    openai_server.script(answer("plain"))
    result = await Agent(fast_model(openai_server.url), trace_dir=tmp_path).run("go")
    assert result.output == "plain" and "stream" not in openai_server.bodies[0]


# -- replay, streamed ------------------------------------------------------------------------


async def test_a_cancelled_stream_leaves_a_trace_that_replays_to_run_cancelled(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    from agentloop.replay import replay

    adder = Adder()
    stalled = Reply(body=answer("The sum is 5.").body, action="stall_mid_stream", after_events=3)
    openai_server.script(tool_calls(tool_call("add", {"a": 2, "b": 3})), stalled)
    agent = Agent(fast_model(openai_server.url), tools=[adder.tool], trace_dir=tmp_path / "runs")
    async with agent.stream("add") as run:
        async for event in run:
            if isinstance(event, TextGenerated):
                break
    [source] = (tmp_path / "runs").glob("*.jsonl")
    assert read_trace(source).terminal.type == "run_cancelled"  # type: ignore[union-attr]
    result = await replay(source, trace_dir=tmp_path / "replays")
    assert (result.stop_reason, result.diverged) == ("cancelled", False)
    assert result.trace_path is not None
    replayed = read_trace(result.trace_path)
    assert replayed.terminal is not None and replayed.terminal.type == "run_cancelled"
    assert [e.type for e in replayed.events].count("tool_result") == 1
    assert adder.calls == [(2, 3)]  # once, live; the replay served the recorded result


async def test_replay_streams_recorded_responses_at_the_recorded_pace(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    from agentloop.replay import replay_stream

    openai_server.script(answer("one two three four"))
    source = (await Agent(fast_model(openai_server.url), trace_dir=tmp_path).run("go")).trace_path
    assert source is not None
    recorded = read_trace(source).events[1].response  # type: ignore[union-attr]
    for pace in (False, True):
        started = asyncio.get_running_loop().time()
        async with replay_stream(source, pace=pace, trace_dir=tmp_path / "r") as run:
            pieces = [e.text async for e in run if isinstance(e, TextGenerated)]
        took_ms = (asyncio.get_running_loop().time() - started) * 1000
        assert pieces == ["one ", "two ", "three ", "four"]
        assert run.result().output == "one two three four" and not run.result().diverged
        if pace:
            assert took_ms >= recorded.latency_ms * 0.9


async def test_the_json_protocol_streams_only_the_answer_text(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    adder = Adder()
    openai_server.script(
        answer('{"tool": "add", "arguments": {"a": 2, "b": 3}}'),
        answer('{"answer": "The sum is \\u0035, \\"five\\"."}'),
    )
    model = fast_model(openai_server.url, native_tools=False)
    agent = Agent(model, tools=[adder.tool], trace_dir=tmp_path)
    async with agent.stream("add 2 and 3") as run:
        events = [event async for event in run]
    pieces = [e.text for e in events if isinstance(e, TextGenerated)]
    assert "".join(pieces) == 'The sum is 5, "five".' and len(pieces) > 3
    assert all(e.step == 1 for e in events if isinstance(e, TextGenerated))  # not the tool call
    assert run.result().output == 'The sum is 5, "five".' and adder.calls == [(2, 3)]
    assert [b.get("stream") for b in openai_server.bodies] == [True, True]


def test_leaving_stream_sync_early_cancels_the_run(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    stalled = Reply(body=answer("abcdefghijkl").body, action="stall_mid_stream", after_events=3)
    openai_server.script(stalled)
    agent = Agent(OpenAIModel("m", base_url=openai_server.url, api_key="k"), trace_dir=tmp_path)
    with agent.stream_sync("talk") as run:
        for event in run:
            if isinstance(event, TextGenerated):
                break
    trace = read_trace(next(tmp_path.glob("*.jsonl")))
    assert trace.terminal is not None and trace.terminal.type == "run_cancelled"
    [partial] = [e.partial_text for e in trace.events if isinstance(e, StreamInterrupted)]
    # What had arrived when the consumer left: at least the first piece, at most what was sent
    # before the stall (how many pieces the client read first depends on the scheduler).
    assert partial and "abcdef".startswith(partial)


async def test_a_model_that_cannot_stream_streams_whole_and_typed_output_is_typed(
    tmp_path: Path,
) -> None:
    import pydantic

    from agentloop.testing import ScriptedModel

    class City(pydantic.BaseModel):
        name: str
        country: str

    answer_text = '{"name": "Lyon", "country": "France"}'
    agent = Agent(ScriptedModel([answer_text]), output_type=City, trace_dir=tmp_path)
    async with agent.stream("which city?") as run:
        events = [event async for event in run]
    assert [e.text for e in events if isinstance(e, TextGenerated)] == [answer_text]
    assert events[-1] == OutputProduced(City(name="Lyon", country="France"))
    assert run.result().output == City(name="Lyon", country="France")
    trace = read_trace(run.result().trace_path)  # type: ignore[arg-type]
    [response] = [e.response for e in trace.events if e.type == "model_response"]
    assert response.first_token_ms is not None and response.generation_ms is not None


async def test_a_stream_past_max_response_bytes_is_cut_with_a_typed_error(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.script(answer("word " * 2000))
    with pytest.raises(ModelStreamError, match="max_response_bytes=4000") as info:
        await collect(fast_model(openai_server.url, max_response_bytes=4000))
    assert 0 < len(info.value.partial_text) < 4000
