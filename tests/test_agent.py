"""The loop: answers, tool calls, observations for the model's mistakes, and run results."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from agentloop import Agent, ModelResponse, RunLimits, ToolRetry, UserError, read_trace, tool
from agentloop.errors import ModelResponseError, ScriptError, ToolDefinitionError
from agentloop.messages import SystemMessage, ToolMessage, UserMessage
from agentloop.testing import FunctionModel, ScriptedModel, capture_events
from agentloop.untrusted import UNTRUSTED_NOTICE, delimit_untrusted


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first.
        b: The second.
    """
    return a + b


def tool_results(path: Path | None) -> list[tuple[str, str | None, str]]:
    assert path is not None
    return [(e.name, e.error, e.content) for e in read_trace(path).tool_results()]


async def test_final_answer_without_tools(tmp_path: Path) -> None:
    model = ScriptedModel(["hello"])
    result = await Agent(model, trace_dir=tmp_path).run("say hello")
    assert result.output == "hello"
    assert result.stop_reason == "final_answer"
    assert result.steps == 1
    assert result.trace_path is not None and result.trace_path.parent == tmp_path
    model.assert_consumed()


async def test_tool_call_round_trip_builds_the_conversation(tmp_path: Path) -> None:
    model = ScriptedModel([ModelResponse.tool_call("add", {"a": 2, "b": 3}), "5"])
    agent = Agent(model, tools=[add], instructions="Be exact.", trace_dir=tmp_path)
    result = await agent.run("2+3?")
    assert result.output == "5"
    assert result.tool_calls == 1
    second = model.calls[1].messages
    assert isinstance(second[0], SystemMessage)
    assert second[0].content == f"Be exact.\n\n{UNTRUSTED_NOTICE}"
    assert isinstance(second[1], UserMessage) and second[1].content == "2+3?"
    assert isinstance(second[3], ToolMessage)
    assert (second[3].call_id, second[3].content) == ("call_0", delimit_untrusted("add", "5"))
    assert model.calls[0].tools == ["add"]
    assert [m.role for m in result.messages] == ["system", "user", "assistant", "tool", "assistant"]


async def test_parallel_calls_each_get_one_result_in_order(tmp_path: Path) -> None:
    order: list[str] = []

    @tool
    async def slow(label: str, delay: float) -> str:
        """Wait, then return the label."""
        await asyncio.sleep(delay)
        order.append(label)
        return label

    response = ModelResponse.tool_calls_of(
        [("slow", {"label": "first", "delay": 0.05}), ("slow", {"label": "second", "delay": 0})],
        call_ids=["a", "b"],
    )
    model = ScriptedModel([response, "done"])
    await Agent(model, tools=[slow], trace_dir=tmp_path).run("go")
    assert order == ["second", "first"]  # they ran concurrently
    results = [m for m in model.calls[1].messages if isinstance(m, ToolMessage)]
    assert [(m.call_id, m.content) for m in results] == [
        ("a", delimit_untrusted("slow", "first")),
        ("b", delimit_untrusted("slow", "second")),
    ]


async def test_sync_tools_run_in_worker_threads(tmp_path: Path) -> None:
    threads: list[str] = []

    @tool
    def where() -> str:
        """Report the thread."""
        threads.append(threading.current_thread().name)
        return "ok"

    model = ScriptedModel([ModelResponse.tool_call("where"), "done"])
    await Agent(model, tools=[where], trace_dir=tmp_path).run("go")
    assert threads and threads[0] != threading.main_thread().name


async def test_tool_concurrency_cap(tmp_path: Path) -> None:
    running = peak = 0

    @tool
    async def work(n: int) -> int:
        """Work."""
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return n

    calls = ModelResponse.tool_calls_of([("work", {"n": i}) for i in range(6)])
    agent = Agent(
        ScriptedModel([calls, "done"]),
        tools=[work],
        limits=RunLimits(tool_concurrency=2),
        trace_dir=tmp_path,
    )
    await agent.run("go")
    assert peak == 2


@pytest.mark.parametrize(
    ("response", "kind", "needle"),
    [
        (ModelResponse.tool_call("add", "{not json"), "invalid_json", "not valid JSON"),
        (ModelResponse.tool_call("add", {"a": 1}), "invalid_arguments", "b: Field required"),
        (ModelResponse.tool_call("add", {"a": "x", "b": 1}), "invalid_arguments", "a:"),
        (ModelResponse.tool_call("add", "[1, 2]"), "invalid_arguments", "must be a JSON object"),
        (ModelResponse.tool_call("mul", {"a": 1}), "unknown_tool", "Available tools: add"),
    ],
)
async def test_model_mistakes_become_observations(
    tmp_path: Path, response: ModelResponse, kind: str, needle: str
) -> None:
    model = ScriptedModel([response, "sorry"])
    result = await Agent(model, tools=[add], trace_dir=tmp_path).run("go")
    assert result.output == "sorry"
    [(_, error, content)] = tool_results(result.trace_path)
    assert error == kind
    assert needle in content
    tool_message = model.calls[1].messages[-1]
    assert isinstance(tool_message, ToolMessage) and tool_message.content == content
    call_event = read_trace(result.trace_path).tool_calls()[0]  # type: ignore[arg-type]
    assert call_event.valid is False and call_event.rejection == kind


async def test_tool_retry_message_goes_to_the_model(tmp_path: Path) -> None:
    @tool
    def lookup(key: str) -> str:
        """Look a key up."""
        raise ToolRetry(f"no key {key!r}; try 'b'")

    model = ScriptedModel([ModelResponse.tool_call("lookup", {"key": "a"}), "gave up"])
    result = await Agent(model, tools=[lookup], trace_dir=tmp_path).run("go")
    assert tool_results(result.trace_path) == [("lookup", "retry", "no key 'a'; try 'b'")]


async def test_truncated_call_is_never_executed(tmp_path: Path) -> None:
    ran: list[int] = []

    @tool
    def record(n: int) -> int:
        """Record n."""
        ran.append(n)
        return n

    cut = ModelResponse.tool_call("record", {"n": 1}).model_copy(update={"finish_reason": "length"})
    model = ScriptedModel([cut, "ok"])
    result = await Agent(model, tools=[record], trace_dir=tmp_path).run("go")
    assert ran == []
    [(_, error, content)] = tool_results(result.trace_path)
    assert error == "truncated_call" and "cut off" in content


async def test_empty_response_is_nudged_once_then_fails(tmp_path: Path) -> None:
    model = ScriptedModel([ModelResponse(), "fine"])
    result = await Agent(model, trace_dir=tmp_path).run("go")
    assert result.output == "fine"
    assert "empty" in model.calls[1].messages[-1].content  # type: ignore[union-attr]

    model = ScriptedModel([ModelResponse(), ModelResponse()])
    with pytest.raises(ModelResponseError, match="empty response twice") as info:
        await Agent(model, trace_dir=tmp_path).run("go")
    trace = read_trace(info.value.trace_path)  # type: ignore[arg-type]
    assert trace.terminal is not None and trace.terminal.type == "run_failed"
    assert trace.terminal.reason == "model_error"  # type: ignore[union-attr]


async def test_unparsed_tool_call_in_text_is_a_warning(tmp_path: Path) -> None:
    text = '{"name": "add", "arguments": {"a": 1, "b": 2}}'
    result = await Agent(ScriptedModel([text]), tools=[add], trace_dir=tmp_path).run("go")
    assert result.output == text
    warnings = [e for e in read_trace(result.trace_path).events if e.type == "warning"]  # type: ignore[arg-type]
    assert [w.kind for w in warnings] == ["possible_unparsed_tool_call"]  # type: ignore[union-attr]


async def test_iter_yields_events_as_they_happen(tmp_path: Path) -> None:
    model = ScriptedModel([ModelResponse.tool_call("add", {"a": 1, "b": 1}), "2"])
    agent = Agent(model, tools=[add], trace_dir=tmp_path)
    async with agent.iter("go") as run:
        types = [event.type async for event in run]
    assert types == [
        "model_request",
        "model_response",
        "tool_call",
        "tool_result",
        "model_request",
        "model_response",
        "run_finished",
    ]
    assert run.result.output == "2"
    written = [e.type for e in read_trace(run.result.trace_path).events]  # type: ignore[arg-type]
    assert written == types


async def test_leaving_iter_early_cancels_and_records_it(tmp_path: Path) -> None:
    @tool
    async def wait() -> str:
        """Wait a long time."""
        await asyncio.sleep(30)
        return "late"

    agent = Agent(
        ScriptedModel([ModelResponse.tool_call("wait")]), tools=[wait], trace_dir=tmp_path
    )
    async with agent.iter("go") as run:
        async for event in run:
            if event.type == "tool_call":
                break
    [path] = tmp_path.glob("*.jsonl")
    trace = read_trace(path)
    assert trace.terminal is not None and trace.terminal.type == "run_cancelled"
    assert trace.terminal.interrupted_calls == ["call_0"]  # type: ignore[union-attr]


def test_run_sync_works_outside_an_event_loop(tmp_path: Path) -> None:
    result = Agent(ScriptedModel(["hi"]), trace_dir=tmp_path).run_sync("go")
    assert result.output == "hi"


async def test_run_sync_inside_an_event_loop_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"await agent\.run"):
        Agent(ScriptedModel(["hi"]), trace_dir=tmp_path).run_sync("go")


def test_duplicate_tool_names_name_both_functions() -> None:
    @tool(name="add")
    def other_add(x: int) -> int:
        """Another add."""
        return x

    with pytest.raises(ToolDefinitionError, match=r"two tools are named 'add'.*add.*other_add"):
        Agent(ScriptedModel([]), tools=[add, other_add])


def test_plain_functions_become_tools() -> None:
    def shout(text: str) -> str:
        """Shout it."""
        return text.upper()

    agent = Agent(ScriptedModel([]), tools=[shout], trace_dir=None)
    assert agent.tools["shout"].description == "Shout it."


async def test_scripted_model_fails_loudly(tmp_path: Path) -> None:
    model = ScriptedModel([ModelResponse.tool_call("add", {"a": 1, "b": 1})])
    with pytest.raises(ScriptError, match="unexpected model call #2"):
        await Agent(model, tools=[add], trace_dir=tmp_path).run("go")
    leftover = ScriptedModel(["a", "b"])
    await Agent(leftover, trace_dir=tmp_path).run("go")
    with pytest.raises(ScriptError, match="1 of 2 scripted steps were never requested"):
        leftover.assert_consumed()


async def test_function_model_and_capture_events(tmp_path: Path) -> None:
    def reply(messages: list[object], call: object) -> ModelResponse | str:
        last = messages[-1]
        return ModelResponse.tool_call("add", {"a": 4, "b": 5}) if last.role == "user" else "9"  # type: ignore[attr-defined]

    with capture_events() as captured:
        result = await Agent(FunctionModel(reply), tools=[add], trace_dir=None).run("go")
    assert result.output == "9" and result.trace_path is None
    assert [e.content for e in captured.of_type("tool_result")] == ["9"]
    assert captured.of_type("run_finished")[0].output == "9"


async def test_history_is_prepended(tmp_path: Path) -> None:
    model = ScriptedModel(["again"])
    history = [UserMessage(content="earlier"), ModelResponse.answer("ok").to_message()]
    await Agent(model, trace_dir=tmp_path).run("now", history=history)
    assert [m.role for m in model.calls[0].messages] == ["user", "assistant", "user"]


def test_config_hash_tracks_prompts_settings_and_tool_source() -> None:
    def make(instructions: str) -> Agent:
        return Agent(ScriptedModel([]), tools=[add], instructions=instructions)

    assert make("a").config_hash == make("a").config_hash
    assert make("a").config_hash != make("b").config_hash

    @tool(name="add")
    def add_v2(a: int, b: int) -> int:
        """Add two integers.

        Args:
            a: The first.
            b: The second.
        """
        return b + a

    changed_code = Agent(ScriptedModel([]), tools=[add_v2], instructions="a")
    assert changed_code.config_hash != make("a").config_hash
    assert Agent(ScriptedModel([]), tools=[add], instructions="a", max_steps=3).config_hash != (
        make("a").config_hash
    )
