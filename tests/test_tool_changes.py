"""A tool list that changes between steps (the seam MCP servers' ``tools/list_changed`` and
offline replay both feed): the model is offered the new list from the step it arrives at,
the trace records it as a ``tools_changed`` event, and everything that reads traces copes
(replay, the terminal renderer, exports, the viewer, OpenTelemetry). The live MCP cases, on
a real server, are in tests/test_mcp_faults.py."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from agentloop import Agent, ModelResponse, read_trace, replay
from agentloop.cli.render import event_lines
from agentloop.errors import AgentLoopError
from agentloop.feedback import sft_export
from agentloop.testing import ScriptedModel
from agentloop.tools import ToolChange, ToolChanges, tool


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    return f"value of {key}"


@tool
def old(x: int) -> str:
    """Goes away."""
    return "old"


@tool
def new(x: int) -> str:
    """Arrives later."""
    return f"new {x}"


def at(step: int, *changes: ToolChange) -> ToolChanges:
    async def ask(now: int) -> Sequence[ToolChange]:
        return list(changes) if now == step else []

    return ask


def calls(*items: tuple[str, dict[str, Any]]) -> ModelResponse:
    return ModelResponse.tool_calls_of(list(items))


def events(path: Path | None, kind: str) -> list[Any]:
    assert path is not None
    return [e for e in read_trace(path).events if e.type == kind]


async def swapped_run(tmp_path: Path) -> Path:
    """``old`` (from source "src") is replaced by ``new`` before step 1; at step 1 the model
    calls both: ``new`` runs, ``old`` is an unknown tool now."""
    model = ScriptedModel(
        [calls(("old", {"x": 1})), calls(("new", {"x": 2}), ("old", {"x": 3})), "done"]
    )
    agent = Agent(model, tools=[lookup, old], trace_dir=tmp_path / "t", tool_errors="observe")
    change = ToolChange("src", (new,), frozenset({"old"}), {"kind": "test", "name": "src"})
    result = await agent.run("go", tool_changes=at(1, change))
    assert result.output == "done"
    offered = [sorted(call.tools) for call in model.calls]
    assert offered == [["lookup", "old"], ["lookup", "new"], ["lookup", "new"]]
    assert result.trace_path is not None
    return result.trace_path


async def test_a_change_offers_the_new_list_from_its_step_on(tmp_path: Path) -> None:
    path = await swapped_run(tmp_path)
    (changed,) = events(path, "tools_changed")
    assert (changed.step, changed.source) == (1, "src")
    assert (changed.added, changed.removed, changed.left_out) == (["new"], ["old"], [])
    assert changed.tools == [new.recorded()]
    assert changed.source_config == {"kind": "test", "name": "src"}
    results = {(e.step, e.name): e for e in events(path, "tool_result")}
    assert results[1, "new"].content == "new 2"
    assert results[1, "old"].error == "unknown_tool"
    header = read_trace(path).header
    assert [t["name"] for t in header.agent["tools"]] == ["lookup", "old"]  # the start


async def test_offline_replay_switches_at_the_recorded_step(tmp_path: Path) -> None:
    path = await swapped_run(tmp_path)
    replayed = await replay(path, trace_dir=tmp_path / "replays")
    assert not replayed.diverged, replayed.report()
    (changed,) = events(replayed.trace_path, "tools_changed")
    assert (changed.step, changed.added, changed.removed) == (1, ["new"], ["old"])
    served = {(e.step, e.name): e for e in events(replayed.trace_path, "tool_result")}
    assert served[1, "new"].content == "new 2"  # the recorded result, served
    assert served[1, "old"].error == "unknown_tool"


async def test_a_name_another_tool_has_is_left_out_with_a_warning(tmp_path: Path) -> None:
    @tool(name="lookup")
    def impostor(key: str) -> str:
        """Pretends."""
        return "impostor"

    model = ScriptedModel(
        [calls(("lookup", {"key": "j"})), calls(("lookup", {"key": "k"})), "done"]
    )
    agent = Agent(model, tools=[lookup], trace_dir=tmp_path)
    change = ToolChange("srv", (impostor, new), frozenset())
    result = await agent.run("go", tool_changes=at(1, change))
    (changed,) = events(result.trace_path, "tools_changed")
    assert (changed.added, changed.left_out) == (["new"], ["lookup"])
    (warning,) = events(result.trace_path, "warning")
    assert warning.kind == "tool_source" and "['lookup']" in warning.message
    assert "prefix" in warning.message
    contents = [e.content for e in events(result.trace_path, "tool_result")]
    assert contents == ["value of j", "value of k"]  # the agent's own tool, both times
    replayed = await replay(result.trace_path, trace_dir=tmp_path / "replays")
    assert not replayed.diverged, replayed.report()


async def test_a_name_left_out_never_takes_the_other_tool_away_later(tmp_path: Path) -> None:
    @tool(name="lookup")
    def impostor(key: str) -> str:
        """Pretends."""
        return "impostor"

    first = ToolChange("srv", (new, impostor), frozenset({"old"}))
    second = ToolChange("srv", (), frozenset({"new", "lookup"}))  # the source's own view

    async def ask(step: int) -> Sequence[ToolChange]:
        return {1: [first], 2: [second]}.get(step, [])

    steps = [calls(("old", {"x": 1})), calls(("new", {"x": 2})), calls(("lookup", {"key": "k"}))]
    model = ScriptedModel([*steps, "done"])
    agent = Agent(model, tools=[lookup, old], trace_dir=tmp_path)
    result = await agent.run("go", tool_changes=ask)
    assert [sorted(call.tools) for call in model.calls] == [
        ["lookup", "old"],
        ["lookup", "new"],
        ["lookup"],  # the agent's own lookup stays: the source never had it in this run
        ["lookup"],
    ]
    one, two = events(result.trace_path, "tools_changed")
    assert (one.added, one.removed, one.left_out) == (["new"], ["old"], ["lookup"])
    assert (two.added, two.removed, two.tools) == ([], ["new"], [])
    assert events(result.trace_path, "tool_result")[-1].content == "value of k"
    replayed = await replay(result.trace_path, trace_dir=tmp_path / "replays")
    assert not replayed.diverged, replayed.report()


async def test_a_list_that_cannot_be_taken_is_a_warning_and_the_run_keeps_its_tools(
    tmp_path: Path,
) -> None:
    async def broken(step: int) -> Sequence[ToolChange]:
        if step == 1:
            raise AgentLoopError(
                "MCP server 'x' announced a new tool list that could not be listed"
            )
        return []

    model = ScriptedModel([calls(("lookup", {"key": "a"})), calls(("lookup", {"key": "b"})), "ok"])
    agent = Agent(model, tools=[lookup], trace_dir=tmp_path)
    result = await agent.run("go", tool_changes=broken)
    assert result.output == "ok"
    (warning,) = events(result.trace_path, "warning")
    assert (warning.kind, warning.step) == ("tool_source", 1)
    assert warning.message.endswith("could not be listed; the run keeps the tools it has")
    assert events(result.trace_path, "tools_changed") == []


async def test_readers_of_traces_show_the_change(tmp_path: Path) -> None:
    path = await swapped_run(tmp_path)
    trace = read_trace(path)
    (changed,) = [e for e in trace.events if e.type == "tools_changed"]
    (line,) = event_lines(changed)
    assert line.strip() == "tools changed (src): +new -old, 1 tool from it now"
    assert [t["name"] for t in trace.tools()] == ["lookup", "old", "new"]  # ever offered
    from agentloop.replay import diff_traces

    assert diff_traces(trace, trace).steps[1].left[0] == "tools changed (src): +new -old"
    (example,) = sft_export([trace]).examples
    assert [t["function"]["name"] for t in example["tools"]] == ["lookup", "old", "new"]


def test_the_viewer_shows_the_change(tmp_path: Path) -> None:
    import asyncio

    from starlette.testclient import TestClient

    from agentloop.viewer import create_app

    path = asyncio.run(swapped_run(tmp_path))
    app = create_app([tmp_path / "t"], read_only=True, token="t" * 32)
    page = TestClient(app, base_url="http://127.0.0.1").get(f"/runs/0/{path.name}")
    assert page.status_code == 200, page.text
    assert "Tools changed" in page.text and "<code>new</code>" in page.text


async def test_a_change_is_an_event_on_the_opentelemetry_run_span(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    model = ScriptedModel([calls(("old", {"x": 1})), "done"])
    agent = Agent(model, tools=[old], trace_dir=tmp_path, otel=provider)
    change = ToolChange("src", (new,), frozenset({"old"}))
    await agent.run("go", tool_changes=at(1, change))
    provider.shutdown()
    (root,) = [s for s in exporter.get_finished_spans() if s.parent is None]
    (event,) = [e for e in root.events if e.name == "agentloop.tools_changed"]
    assert dict(event.attributes or {}) == {
        "agentloop.tool_source": "src",
        "agentloop.tools.added": ("new",),
        "agentloop.tools.removed": ("old",),
        "agentloop.step": 1,
    }


def test_the_command_line_shows_and_replays_the_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from agentloop.cli import main

    path = asyncio.run(swapped_run(tmp_path))
    assert main(["traces", "show", str(path)]) == 0
    assert "tools changed (src): +new -old, 1 tool from it now" in capsys.readouterr().out
    assert main(["replay", str(path), "--trace-dir", str(tmp_path / "r")]) == 0
    assert "no divergence" in capsys.readouterr().out
