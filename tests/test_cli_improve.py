"""`agentloop critique`, `agentloop feedback` and `agentloop export` from the terminal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentloop import Agent, ModelResponse, read_trace, tool
from agentloop.cli import main
from agentloop.feedback.critique import DEFAULT_RUBRIC
from agentloop.testing import ScriptedModel
from fakes import FakeOpenAIServer, answer


@tool
def lookup(city: str) -> str:
    """Population of a city."""
    return "2.1 million"


def recorded(tmp_path: Path, text: str = "9 million") -> Path:
    model = ScriptedModel([ModelResponse.tool_call("lookup", {"city": "Paris"}), text])
    path = Agent(model, tools=[lookup], trace_dir=tmp_path).run_sync("People in Paris?").trace_path
    assert path is not None
    return path


def verdict(score: int) -> str:
    return json.dumps(
        {
            "scores": [
                {"principle": p.name, "score": score, "rationale": "-"}
                for p in DEFAULT_RUBRIC.principles
            ],
            "problems": [{"step": 1, "problem": "Invented the number.", "fix": "Use 2.1 million."}],
            "verdict": "poor",
            "summary": "Not grounded.",
        }
    )


def test_critique_with_a_judge_endpoint(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    openai_server: FakeOpenAIServer,
) -> None:
    path = recorded(tmp_path)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    openai_server.script(answer(verdict(2)))
    assert main(["critique", str(path), "--judge", "openai:judge"]) == 0
    out, err = capsys.readouterr()
    assert "verdict: poor (overall 0.25)" in out
    assert "judging run " in err and "judged run " in err  # progress on stderr, not stdout
    assert "judg" not in out
    assert "step 1: Invented the number. Fix: Use 2.1 million." in out
    body = openai_server.bodies[0]
    assert body["model"] == "judge" and body["response_format"]["type"] == "json_schema"
    assert len(read_trace(path).critiques()) == 1


def test_feedback_then_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = recorded(tmp_path)
    fix = tmp_path / "fix.txt"
    fix.write_text("About 2.1 million.")
    assert (
        main(
            ["feedback", str(path), "--rating", "down", "--correction", f"@{fix}", "--user", "ann"]
        )
        == 0
    )
    [event] = read_trace(path).feedback()
    assert (event.rating, event.correction, event.user_id, event.source) == (
        "down",
        "About 2.1 million.",
        "ann",
        "cli",
    )
    assert main(["feedback", str(path)]) == 2
    capsys.readouterr()

    out_file = tmp_path / "dpo.jsonl"
    assert main(["export", "dpo", str(tmp_path), "-o", str(out_file)]) == 0
    err = capsys.readouterr().err
    assert "wrote 1 dpo example(s)" in err
    pair = json.loads(out_file.read_text())
    assert pair["preferred_output"][0]["content"] == "About 2.1 million."

    assert main(["export", "sft", str(tmp_path), "--rating", "up"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "wrote 0 sft example(s)" in captured.err and "skipped 1: not rated up" in captured.err
    assert main(["export", "sft", str(path)]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["messages"][-1] == {"role": "assistant", "content": "About 2.1 million."}


def test_critique_revise_forks_and_records_the_preference(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    openai_server: FakeOpenAIServer,
) -> None:
    tools = tmp_path / "lookup.py"
    tools.write_text(
        "from agentloop import tool\n\n@tool\ndef lookup(city: str) -> str:\n"
        '    """Population of a city."""\n    return "2.1 million"\n'
    )
    from agentloop.loading import load_tools

    model = ScriptedModel([ModelResponse.tool_call("lookup", {"city": "Paris"}), "9 million"])
    agent = Agent(model, tools=load_tools([str(tools)]), trace_dir=tmp_path / "t")
    source = agent.run_sync("People in Paris?").trace_path
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    # in order: the judge on the original, the agent's new step 1, the judge on the revision
    openai_server.script(answer(verdict(1)), answer("About 2.1 million."), answer(verdict(5)))
    code = main(
        [
            "critique",
            str(source),
            "--judge",
            "openai:judge",
            "--revise",
            "--tools",
            str(tools),
            "--model",
            "openai:agent",
            "--trace-dir",
            str(tmp_path / "rev"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "the judge prefers the revised run" in err
    [revised] = (tmp_path / "rev").glob("*.jsonl")
    fork = read_trace(revised)
    assert fork.output == "About 2.1 million."
    assert fork.header.parent is not None and fork.header.parent["step"] == 1
    assert fork.critiques()[-1].compared_with["preferred"] == "revised"  # type: ignore[index]
    assert [b["model"] for b in openai_server.bodies] == ["judge", "agent", "judge"]
    assert main(["export", "dpo", str(tmp_path / "t"), str(tmp_path / "rev")]) == 0
    pair = json.loads(capsys.readouterr().out.splitlines()[0])
    assert pair["preferred_output"][0]["content"] == "About 2.1 million."
    assert pair["non_preferred_output"][0]["content"] == "9 million"
