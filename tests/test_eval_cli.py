"""`agentloop eval`, `eval compare`, `eval rescore`, and `eval --resume` after a SIGKILL, against
the loopback OpenAI-compatible fake server."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentloop.cli import main
from agentloop.evals import Dataset
from agentloop.evals.records import RESULTS_FILE, EvalRun, read_records
from fakes import FakeOpenAIServer, RecordedRequest, Reply, completion

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"


def last_user_text(request: RecordedRequest) -> str:
    return str(next(m["content"] for m in reversed(request.messages) if m["role"] == "user"))


@pytest.fixture
def server(
    openai_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> FakeOpenAIServer:
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.chdir(tmp_path)
    return openai_server


def demo_answers(wrong: set[str]) -> dict[str, str]:
    """The demo dataset's questions, each answered with its expected text unless in ``wrong``."""
    data = Dataset.from_jsonl(REPO / "datasets" / "demo.jsonl")
    return {c.input: "no idea" if c.id in wrong else f"It is {c.expected}." for c in data}


def test_eval_the_example_files_and_compare_two_agents(
    server: FakeOpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = demo_answers({"sky-colour", "spider-legs"})
    server.fallback = lambda r: Reply(body=completion(answers[last_user_text(r)]))
    args = [
        "eval",
        str(REPO / "datasets" / "demo.jsonl"),
        "--agent",
        str(REPO / "agents" / "demo.toml"),
        "--agent",
        str(REPO / "agents" / "demo-explain.toml"),
        "--model",
        "openai:fake",
        "--scorer",
        "contains:ignore_case=true",
        "--out",
        "runs",
        "--json",
    ]
    assert main(args) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert len(server.bodies) == 20  # 10 cases x 2 agents, one request each
    first, second = (r["summary"] for r in data["runs"])
    assert (first["attempts"], first["passed"], first["errors"]) == (10, 8, 0)
    assert [s["name"] for s in first["scorers"]] == ["contains", "numeric"]
    numeric = first["scorers"][1]
    assert (numeric["n"], numeric["passed"]) == (3, 2)  # only the three numeric cases
    assert first["config_hash"] != second["config_hash"]  # other instructions: other version
    assert data["runs"][0]["run_dir"] == str(Path("runs") / "demo")
    [comparison] = data["comparisons"]
    assert (comparison["better"], comparison["worse"]) == (0, 0)
    assert comparison["deltas"][0]["test"]["p_value"] == 1.0
    assert "10/10" in captured.err and "pass 80%" in captured.err  # the progress bar

    # the same eval as a table
    assert main([*args[:-1], "--out", "runs2"]) == 0
    table = capsys.readouterr().out
    assert "10 attempts: 8 passed (80.0%, 95% CI 49.0-94.3%), 0 errors" in table
    assert re.search(r"contains\s+10\s+0\.800\s+\S+\s+8/10\s+80\.0%", table)
    assert "compare A demo" in table and "B demo-explain" in table


def write_eval_files(tmp_path: Path, n: int = 20) -> tuple[Path, Path]:
    dataset = tmp_path / "qa.jsonl"
    dataset.write_text(
        "".join(
            json.dumps({"id": f"q{i:02d}", "input": f"question {i}", "expected": f"answer {i}"})
            + "\n"
            for i in range(n)
        )
    )
    agent = tmp_path / "qa.toml"
    agent.write_text('model = "openai:fake"\ninstructions = "Answer."\n')
    return dataset, agent


def answering(request: RecordedRequest, wrong: set[int] = frozenset()) -> Reply:  # type: ignore[assignment]
    n = int(last_user_text(request).split()[-1])
    return Reply(body=completion("wrong" if n in wrong else f"answer {n}"))


def test_compare_and_rescore_from_the_command_line(
    server: FakeOpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset, agent = write_eval_files(tmp_path, 6)
    server.fallback = answering
    base = ["eval", str(dataset), "--agent", str(agent), "--scorer", "exact"]
    assert main([*base, "--out", "a"]) == 0
    server.fallback = lambda r: answering(r, wrong={1, 4})
    assert main([*base, "--out", "b"]) == 0
    assert len(server.bodies) == 12
    capsys.readouterr()

    assert main(["eval", "compare", "a", "b"]) == 0
    text = capsys.readouterr().out
    assert "worse (2):" in text and "better (0):" in text and "unchanged: 4" in text
    run_b = EvalRun.load("b")
    q01 = next(r for r in run_b.records if r.case_id == "q01")
    assert str(run_b.trace_file(q01)) in text
    assert re.search(r"pass rate\s+1\.000\s+0\.667\s+-0\.333\s+6\s+mcnemar_exact\s+0\.5000", text)
    assert main(["eval", "compare", "a", "b", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["worse"] == 2

    scorer_file = tmp_path / "custom.py"
    scorer_file.write_text(
        "from agentloop.evals import Score\n\ndef says_answer(case, trace):\n"
        "    ok = (trace.output or '').startswith('answer')\n"
        "    return Score(value=float(ok), passed=ok)\n"
    )
    assert main(["eval", "rescore", "b", "--scorer", str(scorer_file), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["runs"][0]["summary"]
    assert [s["name"] for s in summary["scorers"]] == ["exact", "says_answer"]
    assert summary["scorers"][1]["passed"] == 4
    assert len(server.bodies) == 12  # re-scoring made no model request
    assert main(["eval", "rescore", "b", "--scorer", "max_steps:n=1", "--replace"]) == 0
    assert EvalRun.load("b").meta.scorers == ["max_steps"]


def test_usage_errors(server: FakeOpenAIServer, tmp_path: Path) -> None:
    dataset, agent = write_eval_files(tmp_path, 2)
    assert main(["eval", str(dataset)]) == 2  # no --agent
    assert main(["eval", "compare", "a"]) == 2
    assert main(["eval", "compare", "a", "b", "--agent", str(agent)]) == 2
    assert main(["eval", "rescore", "x"]) == 2  # no --scorer
    assert main(["eval", "--resume", "nowhere"]) == 2
    assert main(["eval", str(dataset), "--agent", str(agent), "--scorer", "bogus"]) == 2
    assert server.bodies == []


@pytest.mark.slow
def test_killed_eval_resumes_only_the_unfinished_cases(
    server: FakeOpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset, agent = write_eval_files(tmp_path, 20)
    delay = {"s": 0.15}
    server.fallback = lambda r: Reply(
        body=completion(f"answer {last_user_text(r).split()[-1]}"), delay=delay["s"]
    )
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    command = [
        sys.executable, "-m", "agentloop.cli", "eval", str(dataset), "--agent", str(agent),
        "--scorer", "exact", "--concurrency", "1", "--out", str(run_dir),
    ]  # fmt: skip
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while len(read_records(run_dir / RESULTS_FILE)) < 5:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    finished = {r.case_id for r in read_records(run_dir / RESULTS_FILE)}
    assert 5 <= len(finished) < 20
    before = len(server.bodies)

    delay["s"] = 0.0
    assert main(["eval", "--resume", str(run_dir), "--json"]) == 0
    asked = [last_user_text(r) for r in server.requests[before:]]
    assert len(asked) == 20 - len(finished)  # only the unfinished cases ran
    every = {f"q{i:02d}" for i in range(20)}
    assert {f"q{int(t.split()[-1]):02d}" for t in asked} == every - finished
    summary = json.loads(capsys.readouterr().out)["runs"][0]["summary"]
    assert (summary["attempts"], summary["passed"], summary["errors"]) == (20, 20, 0)
    assert sorted(r.case_id for r in EvalRun.load(run_dir).records) == [
        f"q{i:02d}" for i in range(20)
    ]


def test_model_options_reach_the_backend_and_are_recorded_for_resume(
    server: FakeOpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--model-option native_tools=false: the agent's model speaks the JSON protocol (its
    version says so), and the options are in the run's meta for a resume."""
    dataset, agent = write_eval_files(tmp_path, n=2)
    server.fallback = lambda r: Reply(body=completion('{"answer": "answer 0"}'))
    args = ["eval", str(dataset), "--agent", str(agent), "--model", "openai:fake"]
    args += ["--model-option", "native_tools=false", "--scorer", "contains", "--out", "runs"]
    assert main(args) == 0
    capsys.readouterr()
    assert len(server.bodies) == 2
    meta = EvalRun.load("runs").meta
    assert meta.model_options == {"native_tools": False}
    assert meta.agent["model"]["protocol"] == "json"
    assert main(["eval", "compare", "runs", "runs", "--model-option", "x=1"]) == 2
    assert "--model-option does not apply" in capsys.readouterr().err
