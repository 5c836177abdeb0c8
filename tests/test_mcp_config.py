"""MCP servers from everywhere: ``[[mcp]]`` in agent files, ``--mcp``/``--mcp-url`` on ``run`` and
``eval``, and the rules that keep credentials out of files and traces."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentloop import read_trace
from agentloop.agentfile import AgentFileError, load_agent
from agentloop.cli import main
from agentloop.messages import ModelResponse
from agentloop.testing import ScriptedModel
from fakes import FakeOpenAIServer, answer, tool_call, tool_calls
from fakes.mcp import everything_command


def agent_file(tmp_path: Path, mcp: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(f'model = "openai:fake"\ninstructions = "Use the tools."\n{mcp}\n')
    return path


def everything_table(extra: str = "") -> str:
    return f"[[mcp]]\ncommand = {json.dumps(everything_command())}\n{extra}"


def test_import_agentloop_loads_no_mcp_sdk() -> None:
    code = (
        "import sys, agentloop, agentloop.agentfile, agentloop.mcp, agentloop.cli; "
        "print(any(m == 'mcp' or m.startswith('mcp.') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_an_agent_file_brings_its_mcp_server(tmp_path: Path) -> None:
    path = agent_file(tmp_path, everything_table('prefix = "ev_"\nrequires_approval = ["get-sum"]'))
    model = ScriptedModel([ModelResponse.tool_call("ev_echo", {"message": "from a file"}), "ok"])
    agent = load_agent(path, model=model, trace_dir=tmp_path)
    (server,) = agent.tool_sources
    assert server.prefix == "ev_"
    result = await agent.run("go")
    assert result.output == "ok"
    header = read_trace(result.trace_path).header
    tools = {t["name"]: t for t in header.agent["tools"]}
    assert tools["ev_get-sum"]["requires_approval"] is True
    assert tools["ev_echo"]["requires_approval"] is False
    (event,) = [e for e in read_trace(result.trace_path).events if e.type == "tool_result"]
    assert event.content == "Echo: from a file"


def test_a_secret_written_into_an_agent_file_is_refused(tmp_path: Path) -> None:
    path = agent_file(
        tmp_path,
        '[[mcp]]\nurl = "http://127.0.0.1:9/mcp"\nheaders = { Authorization = "Bearer x1" }',
    )
    with pytest.raises(AgentFileError, match=r"mcp\[0\]: .*headers\.Authorization: a secret"):
        load_agent(path)


def test_secrets_come_from_the_environment_and_are_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = (
        '[[mcp]]\nname = "remote"\nurl = "http://user:pw@127.0.0.1:9/mcp?key=1"\n'
        'headers = { Authorization = "Bearer ${REMOTE_TOKEN}", X-Trace = "on" }'
    )
    path = agent_file(tmp_path, table)
    with pytest.raises(AgentFileError, match="the environment variable REMOTE_TOKEN is not set"):
        load_agent(path, model=ScriptedModel([]))
    monkeypatch.setenv("REMOTE_TOKEN", "tok-9f8e7d6c")
    agent = load_agent(path, model=ScriptedModel([]))
    (server,) = agent.tool_sources
    assert server.headers["Authorization"] == "Bearer tok-9f8e7d6c"
    assert "tok-9f8e7d6c" not in agent.redact("sent tok-9f8e7d6c")
    identity = server.identity()  # what the trace header records
    assert identity == {
        "transport": "streamable_http",
        "url": "http://127.0.0.1:9/mcp",
        "headers": ["Authorization", "X-Trace"],
    }


def test_a_bad_mcp_table_names_the_field(tmp_path: Path) -> None:
    path = agent_file(tmp_path, '[[mcp]]\ncommand = "x"\ncomand = "typo"')
    with pytest.raises(AgentFileError, match=r"mcp\.0\.comand"):
        load_agent(path)
    path = agent_file(tmp_path, '[[mcp]]\nname = "neither"')
    with pytest.raises(AgentFileError, match=r"mcp\[0\]: .*give command .* or url"):
        load_agent(path)


async def test_a_server_that_cannot_start_fails_the_run_naming_it(tmp_path: Path) -> None:
    path = agent_file(tmp_path, '[[mcp]]\nname = "ghost"\ncommand = "no-such-mcp-command"')
    agent = load_agent(path, model=ScriptedModel([]), trace_dir=tmp_path)
    from agentloop.mcp import MCPServerError

    with pytest.raises(MCPServerError, match="MCP server 'ghost' could not be started"):
        await agent.run("go")


# -- the command line --------------------------------------------------------------------------


@pytest.fixture
def fake_model(
    openai_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> FakeOpenAIServer:
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.chdir(tmp_path)
    return openai_server


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_run_with_mcp_calls_the_servers_tool(
    fake_model: FakeOpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_model.script(tool_calls(tool_call("echo", {"message": "cli"})), answer("echoed"))
    command = " ".join(everything_command())
    code = main(["run", "--model", "openai:fake", "--mcp", command, "--trace-dir", "t", "go"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out == "echoed\n"
    (trace,) = (tmp_path / "t").glob("*.jsonl")
    (source,) = read_trace(trace).header.agent["tool_sources"]
    assert source["command"] == everything_command()
    assert source["name"] == "index"  # guessed from the command line
    sent = fake_model.bodies[0]["tools"]
    assert "echo" in [t["function"]["name"] for t in sent]


def test_run_with_an_unreachable_mcp_url_is_an_error_naming_it(
    fake_model: FakeOpenAIServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from fakes.mcp import free_port

    url = f"http://127.0.0.1:{free_port()}/mcp"
    code = main(["run", "--model", "openai:fake", "--mcp-url", url, "go"])
    err = capsys.readouterr().err
    assert code == 1
    assert "MCP server '127.0.0.1' could not be started or reached" in err


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_eval_with_mcp_shares_one_server_for_the_whole_eval(
    fake_model: FakeOpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = tmp_path / "cases.jsonl"
    dataset.write_text(
        '{"id": "a", "input": "say a", "expected": "a"}\n'
        '{"id": "b", "input": "say b", "expected": "b"}\n'
    )
    path = agent_file(tmp_path, "")
    fake_model.script(
        tool_calls(tool_call("echo", {"message": "a"})),
        answer("a"),
        tool_calls(tool_call("echo", {"message": "b"})),
        answer("b"),
    )
    command = " ".join(everything_command())
    args = ["eval", str(dataset), "--agent", str(path), "--mcp", command]
    code = main([*args, "--scorer", "exact", "--concurrency", "1", "--out", "runs", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (run,) = json.loads(captured.out)["runs"]
    assert run["summary"]["passed"] == 2
    traces = sorted((tmp_path / "runs" / "traces").glob("*.jsonl"))
    hashes = {read_trace(t).header.config_hash for t in traces}
    assert len(traces) == 2 and hashes == {run["summary"]["config_hash"]}
    assert all(read_trace(t).header.agent["tool_sources"] for t in traces)
