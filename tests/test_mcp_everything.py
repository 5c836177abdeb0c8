"""MCP tools against the protocol's reference server, ``@modelcontextprotocol/server-everything``
from npm (installed pinned by ``make mcp-servers``), over stdio and Streamable HTTP on 127.0.0.1.

The acceptance: an agent on the scripted model calls the server's tools end to end, and its trace
replays offline with no subprocess started and no socket opened.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import anyio
import pytest

from agentloop import Agent, read_trace
from agentloop.mcp import MCPServer
from agentloop.messages import ModelResponse, ToolMessage
from agentloop.replay import replay
from agentloop.testing import ScriptedModel
from agentloop.untrusted import undelimit
from fakes.mcp import everything_command, everything_http

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]  # servers start slowly on a busy machine


def everything(tmp_path: Path, **options: Any) -> MCPServer:
    return MCPServer.stdio(
        everything_command(), name="everything", stderr_log=tmp_path / "everything.log", **options
    )


def results(messages: list[Any]) -> dict[str, str]:
    return {m.call_id: undelimit(m.content) for m in messages if isinstance(m, ToolMessage)}


def calls(*items: tuple[str, dict[str, Any]]) -> ModelResponse:
    return ModelResponse.tool_calls_of(list(items))


@pytest.fixture
def no_subprocess_or_socket(monkeypatch: pytest.MonkeyPatch, no_network: None) -> None:
    """Starting any process (asyncio, anyio or subprocess) or opening an internet socket fails
    the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a process was started: {args!r}")

    monkeypatch.setattr(anyio, "open_process", refuse)
    monkeypatch.setattr(asyncio, "create_subprocess_exec", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)


async def test_agent_calls_the_reference_server_and_replays_offline(tmp_path: Path) -> None:
    model = ScriptedModel(
        [
            calls(("echo", {"message": "hi"}), ("get-sum", {"a": 2, "b": 3})),
            "2 + 3 = 5",
        ]
    )
    agent = Agent(model, tools=[everything(tmp_path)], trace_dir=tmp_path / "traces")
    result = await agent.run("add 2 and 3")

    assert result.output == "2 + 3 = 5"
    assert results(result.messages) == {
        "call_0": "Echo: hi",
        "call_1": "The sum of 2 and 3 is 5.",
    }
    offered = list(model.calls[0].tools)
    assert {"echo", "get-sum", "get-tiny-image", "trigger-long-running-operation"} <= set(offered)
    header = read_trace(result.trace_path).header
    (source,) = header.agent["tool_sources"]
    assert source["name"] == "everything"
    assert source["server"] == {"name": "mcp-servers/everything", "version": "2.0.0"}
    assert source["transport"] == "stdio"
    assert source["command"][0] == "node"
    served = {t["name"]: t for t in source["tools"]}
    assert served["echo"]["input_schema"]["required"] == ["message"]
    assert served["echo"]["annotations"]["idempotent_hint"] is True  # shown, not trusted
    tools = {t["name"]: t for t in header.agent["tools"]}
    assert tools["echo"]["idempotent"] is False
    assert header.config_hash == result.config_hash
    assert "Starting default (STDIO) server" in (tmp_path / "everything.log").read_text()


async def test_recorded_mcp_results_replay_with_no_process_and_no_socket(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    model = ScriptedModel([calls(("get-sum", {"a": 1, "b": 41})), "42"])
    agent = Agent(model, tools=[everything(tmp_path)], trace_dir=tmp_path / "traces")
    result = await agent.run("what is 1 + 41?")
    assert result.output == "42"

    request.getfixturevalue("no_subprocess_or_socket")
    replayed = await replay(result.trace_path, trace_dir=tmp_path / "replays")
    assert not replayed.diverged, replayed.report()
    assert replayed.output == "42"
    again = read_trace(replayed.trace_path)
    (served,) = [e for e in again.events if e.type == "tool_result"]
    assert served.content == "The sum of 1 and 41 is 42."


async def test_structured_image_and_resource_results(tmp_path: Path) -> None:
    model = ScriptedModel(
        [
            calls(
                ("get-structured-content", {"location": "Chicago"}),
                ("get-tiny-image", {}),
                ("get-resource-reference", {"resourceType": "Blob", "resourceId": 2}),
                ("get-resource-links", {"count": 1}),
            ),
            "seen",
        ]
    )
    agent = Agent(model, tools=[everything(tmp_path)], trace_dir=tmp_path)
    seen = results((await agent.run("look")).messages)

    import json

    weather = json.loads(seen["call_0"])
    assert set(weather) == {"temperature", "conditions", "humidity"}  # once, as JSON
    assert seen["call_1"].splitlines()[1] == "[image: image/png, 4033 bytes]"
    assert "iVBOR" not in seen["call_1"]  # never the bytes
    assert "[resource demo://resource/dynamic/blob/2: " in seen["call_2"]
    assert seen["call_2"].count("bytes]") == 1
    assert "[resource link demo://resource/dynamic/" in seen["call_3"]


async def test_server_error_is_an_observation_the_model_sees(tmp_path: Path) -> None:
    # The server checks the input itself (agentloop's own check lets this through: the
    # schema has no bounds on resourceId) and answers with isError.
    model = ScriptedModel(
        [calls(("get-resource-reference", {"resourceType": "Text", "resourceId": -5})), "ok"]
    )
    agent = Agent(model, tools=[everything(tmp_path)], trace_dir=tmp_path)
    result = await agent.run("go")
    trace = read_trace(result.trace_path)
    (outcome,) = [e for e in trace.events if e.type == "tool_result"]
    assert outcome.error == "retry"
    assert "resource" in outcome.content.lower()


async def test_long_call_is_stopped_at_its_timeout_and_the_server_stays_usable(
    tmp_path: Path,
) -> None:
    model = ScriptedModel(
        [
            calls(("trigger-long-running-operation", {"duration": 60, "steps": 3})),
            calls(("echo", {"message": "still here"})),
            "done",
        ]
    )
    agent = Agent(model, tools=[everything(tmp_path, timeout=1.0)], trace_dir=tmp_path)
    started = asyncio.get_running_loop().time()
    result = await agent.run("go")
    assert asyncio.get_running_loop().time() - started < 45  # not the 60 s it asked for
    seen = [m.content for m in result.messages if isinstance(m, ToolMessage)]
    assert seen[0].startswith("Error: 'trigger-long-running-operation' timed out after 1 s")
    assert undelimit(seen[1]) == "Echo: still here"


async def test_streamable_http_with_headers_recorded_by_name_only(tmp_path: Path) -> None:
    with everything_http(tmp_path / "http.log") as url:
        server = MCPServer.http(
            url, name="everything-http", headers={"Authorization": "Bearer s3cret-token"}
        )
        model = ScriptedModel([calls(("echo", {"message": "over http"})), "done"])
        agent = Agent(model, tools=[server], trace_dir=tmp_path)
        result = await agent.run("go")
    assert results(result.messages) == {"call_0": "Echo: over http"}
    text = result.trace_path.read_text()
    assert "s3cret-token" not in text
    (source,) = read_trace(result.trace_path).header.agent["tool_sources"]
    assert source["transport"] == "streamable_http"
    assert source["url"] == url
    assert source["headers"] == ["Authorization"]


async def test_one_connection_per_agent_is_shared_by_concurrent_runs(tmp_path: Path) -> None:
    log = tmp_path / "shared.log"
    server = MCPServer.stdio(everything_command(), name="everything", stderr_log=log)

    def agent(message: str) -> Agent:
        model = ScriptedModel([calls(("echo", {"message": message})), message])
        return Agent(model, tools=[server], trace_dir=tmp_path)

    async with server:
        one, two = await asyncio.gather(agent("one").run("a"), agent("two").run("b"))
        async with agent("three") as three:  # nested: enters the same connection
            assert (await three.run("c")).output == "three"
        assert (await agent("four").run("d")).output == "four"  # still open
    assert (one.output, two.output) == ("one", "two")
    assert results(one.messages) == {"call_0": "Echo: one"}
    assert log.read_text().count("Starting default (STDIO) server") == 1


async def test_the_server_is_stopped_when_the_run_fails(tmp_path: Path) -> None:
    log = tmp_path / "pid.log"
    # The shell writes its pid to the server's stderr log, then becomes the server.
    script = 'echo "pid $$" >&2; exec "$@"'
    server = MCPServer.stdio(["sh", "-c", script, "sh", *everything_command()], stderr_log=log)
    model = ScriptedModel([RuntimeError("the model broke")])
    agent = Agent(model, tools=[server], trace_dir=tmp_path)
    with pytest.raises(RuntimeError, match="the model broke"):
        await agent.run("go")
    pid = int(log.read_text().split("pid ")[1].split()[0])
    assert not Path(f"/proc/{pid}").exists()
    (trace,) = tmp_path.glob("*.jsonl")
    assert read_trace(trace).terminal.type == "run_failed"


async def test_live_tools_call_the_server_again_and_report_a_changed_result(
    tmp_path: Path,
) -> None:
    model = ScriptedModel([calls(("echo", {"message": "same"}), ("get-env", {})), "done"])
    agent = Agent(model, tools=[everything(tmp_path)], trace_dir=tmp_path / "traces")
    recorded = await agent.run("go")

    # The same server, started again with one more environment variable: echo answers as
    # recorded, get-env does not.
    again = Agent(
        ScriptedModel([]), tools=[everything(tmp_path, env={"AGENTLOOP_REPLAY_MARK": "1"})]
    )
    replayed = await replay(
        recorded.trace_path, again, tools="live", strict=False, trace_dir=tmp_path / "replays"
    )
    kinds = [(d.kind, d.step) for d in replayed.divergences]
    assert kinds == [("tool_result_changed", 0)], replayed.report()
    assert "AGENTLOOP_REPLAY_MARK" in str(replayed.divergences[0].actual)
