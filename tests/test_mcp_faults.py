"""MCP servers that misbehave: our FastMCP-style fault server (tests/mcp_servers/fault_server.py,
the ``mcp`` SDK's own server) crashes mid-call, hangs, answers huge, fails, announces tool list
changes and serves a poisoned description; servers that never start or never answer."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agentloop import Agent, read_trace, replay
from agentloop.actions import ToolCall
from agentloop.errors import ToolDefinitionError
from agentloop.mcp import MCPServer, MCPServerError
from agentloop.messages import ModelResponse, ToolMessage
from agentloop.settings import RunLimits
from agentloop.testing import ScriptedModel
from agentloop.untrusted import undelimit
from fakes.mcp import everything_command, fault_command, fault_http

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]  # servers start slowly on a busy machine


def fault(tmp_path: Path, **options: Any) -> MCPServer:
    return MCPServer.stdio(
        fault_command(tmp_path), name="fault", stderr_log=tmp_path / "fault.log", **options
    )


def calls(*items: tuple[str, dict[str, Any]]) -> ModelResponse:
    return ModelResponse.tool_calls_of(list(items))


def tool_results(path: Path | None) -> list[Any]:
    """The run's tool results in call order (step, then the call's place in the step): the
    trace records them as they finish."""
    assert path is not None
    found = [e for e in read_trace(path).events if e.type == "tool_result"]
    return sorted(found, key=lambda e: (e.step, int(e.call_id.rsplit("_", 1)[-1])))


async def test_a_crash_mid_call_names_the_server_and_the_next_call_restarts_it(
    tmp_path: Path,
) -> None:
    model = ScriptedModel(
        [calls(("crash", {})), calls(("echo", {"text": "back again"})), "recovered"]
    )
    agent = Agent(model, tools=[fault(tmp_path)], trace_dir=tmp_path, tool_errors="observe")
    result = await agent.run("go")
    crashed, echoed = tool_results(result.trace_path)
    assert crashed.error == "tool_error"
    assert crashed.content.startswith("Error: 'crash' failed with MCPServerError.")
    assert "MCP server 'fault' closed the connection during a call to 'crash'" in (
        crashed.exception
    )
    assert str(tmp_path / "fault.log") in crashed.exception
    assert echoed.error is None and echoed.content == "echo: back again"
    log = (tmp_path / "fault.log").read_text()
    assert "crashing now" in log  # stderr went to the log file
    assert "echo called with 'back again'" in log


async def test_without_restarts_a_dead_server_stays_dead(tmp_path: Path) -> None:
    model = ScriptedModel([calls(("crash", {})), calls(("echo", {"text": "x"})), "gave up"])
    server = fault(tmp_path, restarts=0)
    agent = Agent(model, tools=[server], trace_dir=tmp_path, tool_errors="observe")
    result = await agent.run("go")
    _, echoed = tool_results(result.trace_path)
    assert echoed.error == "tool_error"
    assert "MCP server 'fault' is not running" in echoed.exception


async def test_by_default_a_crash_fails_the_run_naming_the_server(tmp_path: Path) -> None:
    from agentloop.errors import ToolExecutionError

    model = ScriptedModel([calls(("crash", {}))])
    agent = Agent(model, tools=[fault(tmp_path)], trace_dir=tmp_path)  # tool_errors="raise"
    with pytest.raises(ToolExecutionError) as caught:
        await agent.run("go")
    assert isinstance(caught.value.__cause__, MCPServerError)
    assert caught.value.__cause__.server == "fault"
    assert read_trace(caught.value.trace_path).terminal.type == "run_failed"


async def test_a_call_over_its_timeout_is_cancelled_on_the_server(tmp_path: Path) -> None:
    model = ScriptedModel([calls(("slow", {"seconds": 60})), "too slow"])
    agent = Agent(model, tools=[fault(tmp_path, timeout=0.5)], trace_dir=tmp_path)
    started = time.monotonic()
    async with agent:  # the server outlives the run, so it can note the cancellation
        result = await agent.run("go")
        (slow,) = tool_results(result.trace_path)
        assert slow.error == "timeout"
        for _ in range(400):
            if (tmp_path / "slow-cancelled").exists():
                break
            await asyncio.sleep(0.05)
    assert (tmp_path / "slow-started").exists()
    assert (tmp_path / "slow-cancelled").exists(), "the server never saw notifications/cancelled"
    assert time.monotonic() - started < 45  # far less than the 60 s the call asked for


async def test_a_huge_result_is_cut_like_any_tool_result(tmp_path: Path) -> None:
    model = ScriptedModel([calls(("huge", {"size": 300_000})), "long"])
    limits = RunLimits(max_observation_chars=1000)
    agent = Agent(model, tools=[fault(tmp_path)], trace_dir=tmp_path, limits=limits)
    (huge,) = tool_results((await agent.run("go")).trace_path)
    assert huge.truncated_from == 300_000
    assert len(huge.content) == 1000
    assert huge.content.endswith("of 300000 chars]")


async def test_is_error_reaches_the_model_as_a_retry(tmp_path: Path) -> None:
    model = ScriptedModel([calls(("fail", {"reason": "no disk"})), "noted"])
    agent = Agent(model, tools=[fault(tmp_path)], trace_dir=tmp_path)
    result = await agent.run("go")
    (failed,) = tool_results(result.trace_path)
    assert failed.error == "retry"
    assert "cannot do it: no disk" in failed.content
    (message,) = [m for m in result.messages if isinstance(m, ToolMessage)]
    assert "cannot do it: no disk" in undelimit(message.content)  # delimited: server text


async def test_poisoned_descriptions_and_names_are_escaped_and_capped(tmp_path: Path) -> None:
    model = ScriptedModel(["nothing to do"])
    agent = Agent(model, tools=[fault(tmp_path)], trace_dir=tmp_path)
    result = await agent.run("go")
    header = read_trace(result.trace_path).header
    offered = {t["name"]: t for t in header.agent["tools"]}  # what the model was told
    poisoned = offered["poisoned"]["description"]
    assert len(poisoned) == 1024
    assert "\x1b" not in poisoned and "\u202e" not in poisoned
    assert poisoned.startswith("Adds numbers.\\x1b[2J\\x1b]0;owned\\x07 IMPORTANT")
    assert poisoned.endswith(" chars]") and "[cut: " in poisoned
    assert "bad_name__" in offered  # "bad name!\u200b" made a name every endpoint accepts
    # The trace header keeps what the server really said, for the record.
    (source,) = header.agent["tool_sources"]
    served = {t["name"]: t for t in source["tools"]}
    assert served["poisoned"]["description"].startswith("Adds numbers.\x1b[2J")
    assert "bad name!\u200b" in served


def changed_tools(path: Path | None) -> list[Any]:
    assert path is not None
    return [e for e in read_trace(path).events if e.type == "tools_changed"]


def check_added_in_the_same_run(path: Path | None, local: frozenset[str] = frozenset()) -> None:
    """The run called ``change`` at step 0, took the new list before step 1 (one
    ``tools_changed`` event, before that step's request) and called ``added`` there."""
    assert path is not None
    trace = read_trace(path)
    assert "added" not in [t["name"] for t in trace.header.agent["tools"]]  # the start
    (changed,) = changed_tools(path)
    assert (changed.step, changed.source) == (1, "fault")
    assert (changed.added, changed.removed, changed.left_out) == (["added"], [], [])
    offered = {t["name"]: t for t in changed.tools}
    started_with = {t["name"] for t in trace.header.agent["tools"]} - local
    assert set(offered) == started_with | {"added"}  # all the server's tools now
    assert offered["added"]["description"] == "A tool that appeared later."
    assert offered["added"]["parameters"]["type"] == "object"
    assert set(offered["added"]) == set(trace.header.agent["tools"][0])  # the header's shape
    assert "added" in [t["name"] for t in changed.source_config["tools"]]
    request = next(e for e in trace.events if e.type == "model_request" and e.step == 1)
    assert changed.seq < request.seq  # the model was asked with the new list
    changing, added = tool_results(path)
    assert (changing.name, changing.content) == ("change", "changed")
    assert (added.name, added.step, added.error, added.content) == ("added", 1, None, "new")


async def check_offline_replay(path: Path | None, folder: Path) -> None:
    """The trace replays offline (no server) with no divergence, switching to the recorded
    tool list at the recorded step and serving the recorded ``added`` result."""
    assert path is not None
    replayed = await replay(path, trace_dir=folder)
    assert not replayed.diverged, replayed.report()
    assert replayed.output == "changed"
    (changed,) = changed_tools(replayed.trace_path)
    assert changed.step == 1 and changed.added == ["added"]
    added = [e for e in tool_results(replayed.trace_path) if e.name == "added"]
    assert [(e.error, e.content) for e in added] == [(None, "new")]


def change_then_call_added(*more: str) -> ScriptedModel:
    return ScriptedModel([calls(("change", {})), calls(("added", {})), "changed", *more])


async def test_list_changed_offers_the_new_tools_from_the_next_step_on(tmp_path: Path) -> None:
    # A connection of the run's own: the server lives as long as the run.
    agent = Agent(change_then_call_added(), tools=[fault(tmp_path)], trace_dir=tmp_path / "t")
    result = await agent.run("change your tools")
    assert result.output == "changed"
    check_added_in_the_same_run(result.trace_path)
    await check_offline_replay(result.trace_path, tmp_path / "replays")


async def test_an_announced_list_that_is_the_same_is_no_change(tmp_path: Path) -> None:
    # The second `change` adds `added` again: the server announces a list with nothing new.
    model = ScriptedModel([calls(("change", {})), calls(("change", {})), "twice"])
    agent = Agent(model, tools=[fault(tmp_path)], trace_dir=tmp_path / "t")
    result = await agent.run("change your tools twice")
    assert [(e.step, e.added) for e in changed_tools(result.trace_path)] == [(1, ["added"])]


async def test_list_changed_over_http_changes_the_running_run_too(tmp_path: Path) -> None:
    with fault_http(tmp_path, tmp_path / "http.log") as url:
        server = MCPServer.http(url, name="fault", timeout=10)
        agent = Agent(change_then_call_added(), tools=[server], trace_dir=tmp_path / "t")
        result = await agent.run("change your tools")
    check_added_in_the_same_run(result.trace_path)
    await check_offline_replay(result.trace_path, tmp_path / "replays")


async def test_a_shared_connection_changes_the_running_run_and_the_next_ones(
    tmp_path: Path,
) -> None:
    agent = Agent(
        change_then_call_added("second run"), tools=[fault(tmp_path)], trace_dir=tmp_path / "t"
    )
    async with agent:  # one connection for both runs
        first = await agent.run("change your tools")
        check_added_in_the_same_run(first.trace_path)
        second = await agent.run("again")
    assert changed_tools(second.trace_path) == []  # it started with the new list
    header = read_trace(second.trace_path).header
    assert "added" in [t["name"] for t in header.agent["tools"]]
    first_header = read_trace(first.trace_path).header
    assert header.config_hash != first_header.config_hash  # other tools: another version
    await check_offline_replay(first.trace_path, tmp_path / "replays")


async def test_concurrent_runs_on_a_shared_connection_all_take_the_new_list(
    tmp_path: Path,
) -> None:
    from agentloop import tool

    changed = asyncio.Event()

    @tool
    async def wait() -> str:
        """Wait until the other run changed the server's tools."""
        await changed.wait()
        return "waited"

    def watch(event: Any) -> None:
        if event.type == "tool_result" and event.name == "change":
            changed.set()

    other = ScriptedModel([calls(("wait", {})), calls(("added", {})), "other done"])
    agent = Agent(ScriptedModel([]), tools=[fault(tmp_path), wait], trace_dir=tmp_path / "t")
    async with agent:
        first, second = await asyncio.gather(
            agent.run("change", model=change_then_call_added(), listener=watch),
            agent.run("wait, then use the new tool", model=other),
        )
    check_added_in_the_same_run(first.trace_path, local=frozenset({"wait"}))
    (seen,) = changed_tools(second.trace_path)
    assert (seen.step, seen.added) == (1, ["added"])
    waited, added = tool_results(second.trace_path)
    assert (waited.content, added.content, added.error) == ("waited", "new", None)
    for result in (first, second):
        replayed = await replay(result.trace_path, trace_dir=tmp_path / "replays")
        assert not replayed.diverged, replayed.report()


async def test_a_command_that_does_not_exist_is_a_typed_error(tmp_path: Path) -> None:
    server = MCPServer.stdio("no-such-mcp-server --flag", stderr_log=tmp_path / "x.log")
    agent = Agent(ScriptedModel([]), tools=[server], trace_dir=tmp_path)
    with pytest.raises(MCPServerError, match=r"MCP server 'no-such-mcp-server' could not be"):
        await agent.run("go")


async def test_a_server_that_never_answers_is_a_typed_error(tmp_path: Path) -> None:
    # A process that reads stdin and never writes a line: the initialize request hangs.
    hang = [sys.executable, "-c", "import sys, time; sys.stdin.readline(); time.sleep(60)"]
    server = MCPServer.stdio(
        hang, name="mute", connect_timeout=1.0, stderr_log=tmp_path / "mute.log"
    )
    agent = Agent(ScriptedModel([]), tools=[server], trace_dir=tmp_path)
    started = time.monotonic()
    with pytest.raises(MCPServerError, match=r"MCP server 'mute' did not answer within 1 s"):
        await agent.run("go")
    assert time.monotonic() - started < 30  # the process would have hung for 60 s


async def test_a_crash_over_http_names_the_server(tmp_path: Path) -> None:
    with fault_http(tmp_path, tmp_path / "http.log") as url:
        server = MCPServer.http(url, name="fault-http", timeout=10)
        model = ScriptedModel([calls(("echo", {"text": "a"})), calls(("crash", {})), "down"])
        agent = Agent(model, tools=[server], trace_dir=tmp_path, tool_errors="observe")
        result = await agent.run("go")
    echoed, crashed = tool_results(result.trace_path)
    assert echoed.content == "echo: a"
    assert crashed.error == "tool_error"
    assert "MCP server 'fault-http'" in crashed.exception


# -- trust -------------------------------------------------------------------------------------


async def test_requires_approval_shows_each_call_to_the_approver(tmp_path: Path) -> None:
    asked: list[ToolCall] = []

    def approver(call: ToolCall) -> bool:
        asked.append(call)
        return call.arguments["text"] == "yes"

    model = ScriptedModel(
        [calls(("echo", {"text": "yes"}), ("echo", {"text": "no"}), ("huge", {"size": 1})), "ok"]
    )
    server = fault(tmp_path, requires_approval=["echo"])
    agent = Agent(model, tools=[server], trace_dir=tmp_path, approver=approver)
    yes, no, huge = tool_results((await agent.run("go")).trace_path)
    assert [c.arguments for c in asked] == [{"text": "yes"}, {"text": "no"}]
    assert (yes.approval, yes.content) == ("approved", "echo: yes")
    assert (no.approval, no.error) == ("denied", "denied")
    assert huge.approval is None  # only the tools named need approval


async def test_idempotent_is_ours_to_set_never_the_servers_hint(tmp_path: Path) -> None:
    server = MCPServer.stdio(
        everything_command(), name="everything", idempotent=["get-sum"], stderr_log=tmp_path / "l"
    )
    async with server.open_tools() as served:
        tools = {t.name: t for t in served.tools}
        hints = {t["name"]: t.get("annotations", {}) for t in served.config["tools"]}
    assert hints["echo"]["idempotent_hint"] is True
    assert tools["echo"].idempotent is False
    assert tools["get-sum"].idempotent is True


async def test_two_servers_with_the_same_tool_name_need_a_prefix(tmp_path: Path) -> None:
    everything = MCPServer.stdio(everything_command(), name="everything", stderr_log=tmp_path / "e")
    model = ScriptedModel([])
    agent = Agent(model, tools=[everything, fault(tmp_path)], trace_dir=tmp_path)
    with pytest.raises(ToolDefinitionError, match=r"two tools are named 'echo'.*prefix="):
        await agent.run("go")

    prefixed = fault(tmp_path, prefix="fault_")
    model = ScriptedModel(
        [calls(("echo", {"message": "m"}), ("fault_echo", {"text": "t"})), "both"]
    )
    agent = Agent(model, tools=[everything, prefixed], trace_dir=tmp_path)
    first, second = tool_results((await agent.run("go")).trace_path)
    assert (first.content, second.content) == ("Echo: m", "echo: t")


def test_a_server_needs_exactly_one_of_command_and_url() -> None:
    from agentloop.errors import UserError

    with pytest.raises(UserError, match="give a command"):
        MCPServer(name="x")
    with pytest.raises(UserError, match="must start with http"):
        MCPServer.http("ftp://example.invalid/mcp")
    with pytest.raises(UserError, match="name 'a b' is not allowed"):
        MCPServer.stdio("x", name="a b")


async def test_resume_runs_an_interrupted_call_again_only_if_idempotent(tmp_path: Path) -> None:
    from agentloop.replay import resume

    model = ScriptedModel([calls(("slow", {"seconds": 1.5}), ("huge", {"size": 2}))])
    agent = Agent(model, tools=[fault(tmp_path)], trace_dir=tmp_path / "traces")
    run = asyncio.ensure_future(agent.run("go"))
    for _ in range(400):  # cut the run off while the call is on the server
        if (tmp_path / "slow-started").exists():
            break
        await asyncio.sleep(0.025)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    (cut,) = (tmp_path / "traces").glob("*.jsonl")

    for idempotent, expected in ((["slow"], (None, "slept")), (False, ("interrupted", None))):
        again = Agent(
            ScriptedModel(["resumed"]),
            tools=[fault(tmp_path, idempotent=idempotent)],
            trace_dir=tmp_path / "resumed",
        )
        result = await resume(cut, again)
        assert result.output == "resumed"
        slow = [e for e in tool_results(result.trace_path) if e.name == "slow"][-1]
        error, content = expected
        assert slow.error == error
        assert content is None or slow.content == content
