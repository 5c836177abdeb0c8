"""Budgets, timeouts, unexpected tool errors and cancellation: each ends the run with a typed
error (or CancelledError) and a trace that ends with the right terminal event."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from agentloop import Agent, ModelResponse, read_trace, tool
from agentloop.errors import (
    AgentLoopError,
    MaxStepsExceeded,
    MaxToolCallsExceeded,
    RetryBudgetExhausted,
    RunTimeout,
    ToolExecutionError,
)
from agentloop.testing import FunctionModel, ScriptedModel


@tool
def echo(text: str) -> str:
    """Echo the text."""
    return text


def always_call(name: str, arguments: dict[str, object]) -> FunctionModel:
    return FunctionModel(lambda messages, call: ModelResponse.tool_call(name, arguments))


def terminal(exc: AgentLoopError) -> tuple[str, str]:
    assert exc.trace_path is not None
    end = read_trace(exc.trace_path).terminal
    assert end is not None
    return end.type, getattr(end, "reason", "")


async def test_max_steps_carries_partial_result_and_trace(tmp_path: Path) -> None:
    agent = Agent(always_call("echo", {"text": "x"}), tools=[echo], trace_dir=tmp_path)
    with pytest.raises(MaxStepsExceeded, match="max_steps=3") as info:
        await agent.run("loop forever", max_steps=3)
    partial = info.value.partial
    assert partial is not None
    assert (partial.steps, partial.tool_calls, partial.stop_reason) == (3, 3, "max_steps")
    assert partial.output is None
    assert terminal(info.value) == ("run_failed", "max_steps")


async def test_max_tool_calls(tmp_path: Path) -> None:
    agent = Agent(
        always_call("echo", {"text": "x"}), tools=[echo], max_tool_calls=2, trace_dir=tmp_path
    )
    with pytest.raises(MaxToolCallsExceeded) as info:
        await agent.run("go")
    assert info.value.partial is not None and info.value.partial.tool_calls == 2
    assert terminal(info.value) == ("run_failed", "max_tool_calls")


async def test_retry_budget_counts_the_models_mistakes(tmp_path: Path) -> None:
    agent = Agent(always_call("echo", {}), tools=[echo], retry_budget=2, trace_dir=tmp_path)
    with pytest.raises(RetryBudgetExhausted, match="retry_budget=2") as info:
        await agent.run("go")
    trace = read_trace(info.value.trace_path)  # type: ignore[arg-type]
    assert [r.error for r in trace.tool_results()] == ["invalid_arguments"] * 3
    assert terminal(info.value) == ("run_failed", "retry_budget")


async def test_default_retry_budget_lets_the_model_correct_itself_three_times(
    tmp_path: Path,
) -> None:
    bad = ModelResponse.tool_call("echo", {})
    model = ScriptedModel([bad, bad, bad, "ok"])
    assert (await Agent(model, tools=[echo], trace_dir=tmp_path).run("go")).output == "ok"


async def test_run_timeout(tmp_path: Path) -> None:
    @tool
    async def nap() -> str:
        """Sleep."""
        await asyncio.sleep(0.05)
        return "z"

    agent = Agent(always_call("nap", {}), tools=[nap], run_timeout=0.2, trace_dir=tmp_path)
    with pytest.raises(RunTimeout) as info:
        await agent.run("go", max_steps=None)
    assert terminal(info.value) == ("run_failed", "run_timeout")


async def test_async_tool_timeout_is_an_observation(tmp_path: Path) -> None:
    @tool(timeout=0.05)
    async def hang() -> str:
        """Never returns."""
        await asyncio.sleep(3600)
        return "never"

    model = ScriptedModel([ModelResponse.tool_call("hang"), "gave up"])
    result = await Agent(model, tools=[hang], trace_dir=tmp_path).run("go")
    [res] = read_trace(result.trace_path).tool_results()  # type: ignore[arg-type]
    assert res.error == "timeout" and "timed out after 0.05 s" in res.content


async def test_sync_tool_timeout_returns_control_to_the_loop(tmp_path: Path) -> None:
    @tool
    def block() -> str:
        """Blocks its thread."""
        time.sleep(0.5)
        return "late"

    model = ScriptedModel([ModelResponse.tool_call("block"), "moved on"])
    started = time.perf_counter()
    agent = Agent(model, tools=[block], tool_timeout=0.05, trace_dir=tmp_path)
    result = await agent.run("go")
    assert time.perf_counter() - started < 0.4
    assert result.output == "moved on"
    assert [r.error for r in read_trace(result.trace_path).tool_results()] == ["timeout"]  # type: ignore[arg-type]


@tool
def explode(path: str) -> str:
    """Fails with details the model must not see."""
    raise RuntimeError(f"cannot open {path} with password hunter2-very-secret")


async def test_unexpected_tool_error_raises_by_default(tmp_path: Path) -> None:
    model = ScriptedModel([ModelResponse.tool_call("explode", {"path": "/etc/x"})])
    agent = Agent(model, tools=[explode], trace_dir=tmp_path, secrets=["hunter2-very-secret"])
    with pytest.raises(ToolExecutionError, match="RuntimeError") as info:
        await agent.run("go")
    assert info.value.tool == "explode" and isinstance(info.value.__cause__, RuntimeError)
    assert terminal(info.value) == ("run_failed", "tool_error")
    [res] = read_trace(info.value.trace_path).tool_results()  # type: ignore[arg-type]
    assert res.exception is not None and "Traceback" in res.exception
    text = info.value.trace_path.read_text()  # type: ignore[union-attr]
    assert "hunter2-very-secret" not in text


async def test_unexpected_tool_error_observed_without_traceback(tmp_path: Path) -> None:
    model = ScriptedModel([ModelResponse.tool_call("explode", {"path": "/etc/x"}), "ok"])
    agent = Agent(model, tools=[explode], tool_errors="observe", trace_dir=tmp_path)
    result = await agent.run("go")
    seen = model.calls[1].messages[-1].content  # type: ignore[union-attr]
    assert (
        seen
        == "Error: 'explode' failed with RuntimeError. Try different arguments or another approach."
    )
    [res] = read_trace(result.trace_path).tool_results()  # type: ignore[arg-type]
    assert res.error == "tool_error" and "cannot open /etc/x" in (res.exception or "")


async def test_cancellation_during_a_tool_call_is_recorded(tmp_path: Path) -> None:
    started = asyncio.Event()

    @tool
    async def wait() -> str:
        """Waits."""
        started.set()
        await asyncio.sleep(3600)
        return "never"

    agent = Agent(
        ScriptedModel([ModelResponse.tool_call("wait")]), tools=[wait], trace_dir=tmp_path
    )
    task = asyncio.create_task(agent.run("go"))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [path] = tmp_path.glob("*.jsonl")
    end = read_trace(path).terminal
    assert end is not None and end.type == "run_cancelled"
    assert end.interrupted_calls == ["call_0"]  # type: ignore[union-attr]
    assert end.steps == 1  # type: ignore[union-attr]  # one model request was made


async def test_cancellation_during_a_model_call_is_recorded(tmp_path: Path) -> None:
    asked = asyncio.Event()

    async def slow_model(messages: object, call: object) -> str:
        asked.set()
        await asyncio.sleep(3600)
        return "never"

    task = asyncio.create_task(Agent(FunctionModel(slow_model), trace_dir=tmp_path).run("go"))
    await asked.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [path] = tmp_path.glob("*.jsonl")
    end = read_trace(path).terminal
    assert end is not None and end.type == "run_cancelled"
