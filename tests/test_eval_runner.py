"""The eval runner through the Python API: an Agent object and an agent file, both against a
FunctionModel; exact summary numbers, concurrency, timeouts, resume, rescore."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentloop import Agent, ModelResponse, Trace, tool
from agentloop.errors import ModelResponseError
from agentloop.evals import Case, Dataset, EvalRun, Score, evaluate, evaluate_sync
from agentloop.evals.records import RESULTS_FILE, EvalError, read_records
from agentloop.evals.runner import rescore_sync
from agentloop.evals.scorers import numeric, tool_called
from agentloop.evals.stats import wilson_interval
from agentloop.evals.summary import summarize
from agentloop.messages import Message, Usage
from agentloop.testing import FunctionModel, ModelCall

WRONG_WITH_TOOL = {2, 8}
WRONG_DIRECT = {17, 20}
MODEL_ERROR = 5
CRASH = 13
USAGE = Usage(input_tokens=10, output_tokens=5)


@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


def dataset() -> Dataset:
    """22 cases "add A B"; case 0 also asks for a regex scorer of its own."""
    cases = [
        Case(id=f"c{i:02d}", input=f"add {i} {i * 3}", expected=i * 4, metadata={"n": i})
        for i in range(22)
    ]
    cases[0] = cases[0].model_copy(update={"scorers": {"regex": {"pattern": "answer is"}}})
    return Dataset(cases, name="adds")


def script(messages: list[Message], call: ModelCall) -> ModelResponse:
    """Right for most cases: call add, then answer with its result. Cases 2 and 8 use the
    tool but answer wrong; 17 and 20 answer wrong at once; 5 and 13 fail."""
    task = next(m.content for m in messages if m.role == "user")
    n, m = (int(x) for x in re.findall(r"\d+", task))
    if n == MODEL_ERROR:
        raise ModelResponseError("the model said nothing useful", model="function")
    if n == CRASH:
        raise RuntimeError("backend exploded")
    if n in WRONG_DIRECT:
        return ModelResponse.answer(f"The answer is {n + m + 1}", usage=USAGE)
    last = messages[-1]
    if last.role != "tool":
        return ModelResponse.tool_call("add", {"a": n, "b": m}, usage=USAGE)
    [value] = re.findall(r"-?\d+", last.content)  # the result inside its <tool_output> tags
    result = int(value) + (1 if n in WRONG_WITH_TOOL else 0)
    return ModelResponse.answer(f"The answer is {result}", usage=USAGE)


def agent_file(tmp_path: Path, instructions: str = "Add the numbers.") -> Path:
    tools = tmp_path / "tools.py"
    tools.write_text(
        "from agentloop import tool\n\n\n@tool\ndef add(a: int, b: int) -> int:\n"
        '    """Add two integers.\n\n    Args:\n        a: The first number.\n'
        '        b: The second number.\n    """\n    return a + b\n'
    )
    file = tmp_path / "adder.toml"
    file.write_text(
        f'model = "openai:unused"\ninstructions = "{instructions}"\ntools = ["tools.py"]\n'
        "[limits]\nmax_steps = 4\n"
    )
    return file


@pytest.mark.parametrize("api", ["agent_object", "agent_file"])
def test_summary_numbers_of_a_22_case_eval(tmp_path: Path, api: str) -> None:
    data = tmp_path / "adds.jsonl"
    dataset().to_jsonl(data)
    scorers = [numeric(), tool_called("add")]
    if api == "agent_object":
        agent = Agent(FunctionModel(script), tools=[add], max_steps=4)
        run = evaluate_sync(dataset(), agent, scorers=scorers, run_dir=tmp_path / "run")
    else:
        run = evaluate_sync(
            data,
            agent_file(tmp_path),
            scorers=scorers,
            model=FunctionModel(script),
            run_dir=tmp_path / "run",
        )
    s = summarize(run)
    # 16 right (2 steps each), 2 wrong after the tool (2 steps), 2 wrong at once (1 step),
    # 2 errors before any response (0 steps).
    assert (s.attempts, s.expected_attempts, s.passed, s.errors) == (22, 22, 16, 2)
    assert s.error_reasons == {"model_error": 1, "error": 1}
    assert s.pass_rate == 16 / 22
    assert s.pass_ci == wilson_interval(16, 22)
    by_name = {c.name: c for c in s.scorers}
    assert list(by_name) == ["numeric", "tool_called", "regex"]
    assert (by_name["numeric"].n, by_name["numeric"].passed) == (22, 16)
    assert by_name["numeric"].mean == 16 / 22
    assert (by_name["tool_called"].n, by_name["tool_called"].passed) == (22, 18)
    assert (by_name["regex"].n, by_name["regex"].passed) == (1, 1)  # case c00 only
    # 16 right and 2 wrong after the tool: 2 requests; 2 wrong at once and the 2 errors: 1
    assert s.steps_mean == (16 * 2 + 2 * 2 + 2 * 1 + 2 * 1) / 22
    assert s.tool_calls_mean == 18 / 22
    assert (s.input_tokens, s.output_tokens) == (38 * 10, 38 * 5)
    assert s.tokens_mean == 38 * 15 / 22
    assert 0 < s.latency_p50 <= s.latency_p95

    records = {r.case_id: r for r in run.records}
    crashed = records["c13"]
    assert crashed.status == "error" and crashed.error == "RuntimeError: backend exploded"
    assert crashed.scores["numeric"].explanation.startswith("not scored: RuntimeError")
    assert records["c05"].reason == "model_error"
    assert records["c02"].scores["tool_called"].passed
    assert not records["c02"].scores["numeric"].passed
    assert records["c03"].output == "The answer is 12"
    # one trace per attempt, in the run directory, naming its case
    for record in run.records:
        trace = run.read_trace(record)
        assert trace is not None and trace.header.metadata["case_id"] == record.case_id
        assert trace.header.config_hash == run.meta.config_hash
    assert len(list((tmp_path / "run" / "traces").glob("*.jsonl"))) == 22


async def test_concurrency_cap_and_per_case_timeout(tmp_path: Path) -> None:
    running = 0
    most = 0

    async def slow(messages: list[Message], call: ModelCall) -> str:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            task = messages[-1].content
            await asyncio.sleep(30 if task == "hang" else 0.02)
            return f"done {task}"
        finally:
            running -= 1

    cases = [Case(id=str(i), input="hang" if i == 3 else f"t{i}") for i in range(12)]
    seen: list[int] = []
    run = await evaluate(
        Dataset(cases),
        Agent(FunctionModel(slow)),
        run_dir=tmp_path / "run",
        concurrency=3,
        case_timeout=0.5,
        progress=lambda p: seen.append(p.done),
    )
    assert most == 3
    assert seen == list(range(1, 13))
    [hung] = [r for r in run.records if r.status == "error"]
    assert (hung.case_id, hung.reason) == ("3", "run_timeout")
    assert summarize(run).passed == 11  # no scorers: passing means finishing


def counting_model(calls: list[str]) -> FunctionModel:
    def answer(messages: list[Message], call: ModelCall) -> str:
        calls.append(str(messages[-1].content))
        return str(messages[-1].content).upper()

    return FunctionModel(answer)


def test_resume_runs_only_the_missing_attempts(tmp_path: Path) -> None:
    cases = Dataset([Case(id=str(i), input=f"case {i}", expected=f"CASE {i}") for i in range(8)])
    first: list[str] = []
    run = evaluate_sync(cases, Agent(counting_model(first)), run_dir=tmp_path / "r", repeats=2)
    assert len(first) == 16 and run.complete
    results = tmp_path / "r" / RESULTS_FILE
    lines = results.read_text().splitlines()
    results.write_text("\n".join(lines[:5]) + "\n" + lines[5][:20])  # killed mid-write
    assert len(read_records(results)) == 5

    again: list[str] = []
    resumed = evaluate_sync(
        cases, Agent(counting_model(again)), run_dir=tmp_path / "r", repeats=2, resume=True
    )
    assert len(again) == 11
    assert resumed.complete and len(resumed.records) == 16
    assert sorted({r.key for r in resumed.records}) == [
        (str(i), k) for i in range(8) for k in range(2)
    ]


def test_resume_refuses_another_agent_version(tmp_path: Path) -> None:
    cases = Dataset([Case(id="a", input="x")])
    evaluate_sync(cases, Agent(counting_model([])), run_dir=tmp_path / "r")
    other = Agent(counting_model([]), instructions="be different")
    with pytest.raises(EvalError, match="agent version"):
        evaluate_sync(cases, other, run_dir=tmp_path / "r", resume=True)
    with pytest.raises(EvalError, match="already holds an eval"):
        evaluate_sync(cases, other, run_dir=tmp_path / "r")


def test_rescore_uses_the_traces_without_model_calls(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    Dataset([Case(id=str(i), input=f"say {i}", expected=f"SAY {i}") for i in range(4)]).to_jsonl(
        data
    )
    calls: list[str] = []
    run = evaluate_sync(data, Agent(counting_model(calls)), run_dir=tmp_path / "r")
    assert len(calls) == 4 and run.meta.scorers == []

    def shouts(case: Case, trace: Trace) -> Score:
        """A custom scorer: a plain function."""
        ok = (trace.output or "").isupper()
        return Score(value=1.0 if ok else 0.0, passed=ok, explanation="all caps" if ok else "")

    async def short(case: Case, trace: Trace) -> Score:
        return Score(value=0.5, passed=len(trace.output or "") < 6)

    rescored = rescore_sync(tmp_path / "r", [shouts, short])
    assert len(calls) == 4  # no model call
    assert rescored.meta.scorers == ["shouts", "short"]
    s = {c.name: c for c in summarize(rescored).scorers}
    assert (s["shouts"].passed, s["short"].passed, s["short"].mean) == (4, 4, 0.5)
    assert rescored.records[0].scores["shouts"].explanation == "all caps"


def test_a_raising_scorer_fails_its_score_only(tmp_path: Path) -> None:
    def broken(case: Case, trace: Trace) -> Score:
        raise ValueError("oops")

    def not_a_score(case: Case, trace: Trace) -> Any:
        return True

    cases = Dataset([Case(id="a", input="x"), Case(id="b", input="y")])
    run = evaluate_sync(
        cases, Agent(counting_model([])), scorers=[broken, not_a_score], run_dir=tmp_path / "r"
    )
    [first, second] = run.records
    assert first.status == "ok" and not first.passed
    assert first.scores["broken"].explanation == "scorer error: ValueError: oops"
    assert "not a Score" in second.scores["not_a_score"].explanation


def test_results_file_is_one_json_line_per_attempt(tmp_path: Path) -> None:
    cases = Dataset([Case(id=str(i), input=f"x{i}") for i in range(3)])
    evaluate_sync(cases, Agent(counting_model([])), run_dir=tmp_path / "r")
    lines = (tmp_path / "r" / RESULTS_FILE).read_text().splitlines()
    assert sorted(json.loads(line)["case_id"] for line in lines) == ["0", "1", "2"]
    meta = json.loads((tmp_path / "r" / "eval.json").read_text())
    assert meta["format"] == "agentloop.eval/1" and meta["cases"] == 3
    assert EvalRun.load(tmp_path / "r").meta.config_hash == meta["config_hash"]


def test_evaluate_checks_its_arguments(tmp_path: Path) -> None:
    cases = Dataset([Case(id="a", input="x", scorers={"nonsense": {}})])
    agent = Agent(counting_model([]))
    with pytest.raises(Exception, match="nonsense"):
        evaluate_sync(cases, agent, run_dir=tmp_path / "r")
    plain = Dataset([Case(id="a", input="x")])
    with pytest.raises(Exception, match="two scorers are named 'numeric'"):
        evaluate_sync(plain, agent, scorers=[numeric(), numeric()], run_dir=tmp_path / "r2")
    with pytest.raises(Exception, match="model= replaces"):
        evaluate_sync(plain, agent, model="openai:x", run_dir=tmp_path / "r3")
    fn: Callable[..., Any] = evaluate_sync
    with pytest.raises(Exception, match="at least 1"):
        fn(plain, agent, concurrency=0, run_dir=tmp_path / "r4")
    with pytest.raises(Exception, match="case_timeout must be a positive"):
        fn(plain, agent, case_timeout=0, run_dir=tmp_path / "r5")
