"""`agentloop replay`, `agentloop resume` and `agentloop traces diff` from the terminal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentloop import Agent, ModelResponse, read_trace
from agentloop.cli import main
from agentloop.loading import load_tools
from agentloop.testing import ScriptedModel
from agentloop.untrusted import UNTRUSTED_NOTICE
from fakes import FakeOpenAIServer, answer

TOOLS = '''
from agentloop import tool

@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b
'''


def tools_file(folder: Path, body: str = TOOLS) -> Path:
    path = folder / "calc.py"
    path.write_text(body)
    return path


def record(tmp_path: Path, tools: Path) -> Path:
    script = [
        ModelResponse.tool_call("add", {"a": 2, "b": 3}),
        ModelResponse.tool_call("add", {"a": 5, "b": 5}),
        "10",
    ]
    agent = Agent(ScriptedModel(script), tools=load_tools([str(tools)]), trace_dir=tmp_path / "t")
    path = agent.run_sync("add things").trace_path
    assert path is not None
    return path


def test_offline_replay_needs_only_the_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = record(tmp_path, tools_file(tmp_path))
    code = main(["replay", str(source), "--trace-dir", str(tmp_path / "r")])
    out, err = capsys.readouterr()
    assert code == 0
    assert "no divergence; output: '10'" in out
    assert "replay trace:" in err
    [replayed] = (tmp_path / "r").glob("*.jsonl")
    assert read_trace(replayed).header.parent["kind"] == "replay"  # type: ignore[index]
    assert main(["traces", "list", str(tmp_path / "r")]) == 0
    assert f"[replay of {read_trace(source).run_id}] add things" in capsys.readouterr().out


def test_live_tools_report_a_changed_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = record(tmp_path, tools_file(tmp_path))
    (tmp_path / "v2").mkdir()
    changed = tools_file(tmp_path / "v2", TOOLS.replace("a + b", "a + b + 1"))
    code = main(
        [
            "replay",
            str(source),
            "--tools",
            str(changed),
            "--live-tools",
            "--trace-dir",
            str(tmp_path / "r"),
        ]
    )
    out, _ = capsys.readouterr()
    assert code == 1
    assert "tool_code_changed" in out
    assert "step 0: tool_result_changed" in out
    assert "expected: 5" in out and "actual:   6" in out


def test_replay_json_and_lenient(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = record(tmp_path, tools_file(tmp_path))
    (tmp_path / "v2").mkdir()
    changed = tools_file(tmp_path / "v2", TOOLS.replace("a + b", "a * b"))
    code = main(
        [
            "replay",
            str(source),
            "--tools",
            str(changed),
            "--live-tools",
            "--lenient",
            "--json",
            "--trace-dir",
            str(tmp_path / "r"),
        ]
    )
    data = json.loads(capsys.readouterr().out)
    assert code == 1
    assert data["diverged"] is True and data["output"] == "10"
    steps = [(d["step"], d["kind"]) for d in data["divergences"] if d["step"] is not None]
    assert steps == [(0, "tool_result_changed"), (1, "tool_result_changed")]


def test_step_walks_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = record(tmp_path, tools_file(tmp_path))
    assert main(["replay", str(source), "--step", "--trace-dir", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    for step in range(3):
        assert f"== step {step}: the model sees" in out
    assert out.index("== step 0") < out.index("call add") < out.index("== step 1")


def test_live_replay_without_tools_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = record(tmp_path, tools_file(tmp_path))
    assert main(["replay", str(source), "--live-tools"]) == 2
    assert "pass --tools PATH" in capsys.readouterr().err


def test_fork_continues_with_another_model(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    openai_server: FakeOpenAIServer,
) -> None:
    tools = tools_file(tmp_path)
    source = record(tmp_path, tools)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    openai_server.script(answer("forked: 5"))
    code = main(
        [
            "replay",
            str(source),
            "--fork-at",
            "1",
            "--model",
            "openai:other",
            "--tools",
            str(tools),
            "--instructions",
            "Answer at once.",
            "--trace-dir",
            str(tmp_path / "r"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    [fork] = (tmp_path / "r").glob("*.jsonl")
    trace = read_trace(fork)
    assert trace.output == "forked: 5"
    assert trace.header.parent is not None and trace.header.parent["step"] == 1
    sent = openai_server.bodies[0]
    assert sent["model"] == "other"
    assert sent["messages"][0] == {
        "role": "system",
        "content": f"Answer at once.\n\n{UNTRUSTED_NOTICE}",
    }
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "tool"]


def test_resume_a_crashed_run(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    openai_server: FakeOpenAIServer,
) -> None:
    tools = tools_file(tmp_path)
    source = record(tmp_path, tools)
    lines = source.read_text().splitlines(keepends=True)
    crash = next(
        i for i, line in enumerate(lines) if '"type":"tool_result"' in line and '"step":1' in line
    )
    source.write_text("".join(lines[:crash]))  # killed while the second call ran
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    openai_server.script(answer("resumed: 10"))
    code = main(
        [
            "resume",
            str(source),
            "--tools",
            str(tools),
            "--model",
            "openai:m",
            "--trace-dir",
            str(tmp_path / "r"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.strip() == "resumed: 10"
    assert "interrupted call call_0 to add is reported to the model as interrupted" in err
    told = openai_server.bodies[0]["messages"][-1]
    assert told["role"] == "tool" and "interrupted" in told["content"]


def test_resume_without_tools_or_of_a_finished_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = record(tmp_path, tools_file(tmp_path))
    assert main(["resume", str(source)]) == 2
    assert "already finished" in capsys.readouterr().err
    source.write_text("".join(source.read_text().splitlines(keepends=True)[:3]))
    assert main(["resume", str(source), "--model", "openai:m"]) == 2
    assert "pass --tools PATH for add" in capsys.readouterr().err


def test_traces_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tools = tools_file(tmp_path)
    a = record(tmp_path, tools)
    b = record(tmp_path, tools)
    assert main(["traces", "diff", str(a), str(b)]) == 0
    assert "same steps" in capsys.readouterr().out

    other = Agent(
        ScriptedModel([ModelResponse.tool_call("add", {"a": 2, "b": 3}), "5"]),
        tools=load_tools([str(tools)]),
        trace_dir=tmp_path / "t",
    )
    c = other.run_sync("add things").trace_path
    assert main(["traces", "diff", str(a), str(c), "--width", "30"]) == 1
    out = capsys.readouterr().out
    assert "first difference at step 1" in out
    assert "* step 1" in out and "answer: 5" in out
    assert main(["traces", "diff", str(a), str(c), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["first_difference"] == 1
