"""The eval runner near the wire: it scores from the events it holds (no trace read back), appends
all of an attempt's scores in one write after the run's last event, keeps as many connections
open as cases run at once, and says plainly when a model serves fewer requests than that."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from agentloop import Agent, ModelResponse, read_trace, tool
from agentloop import trace as trace_module
from agentloop.evals import Case, Dataset, evaluate
from agentloop.evals.specs import parse_scorer
from agentloop.messages import Message
from agentloop.models.base import Model
from agentloop.settings import ModelSettings
from agentloop.testing import FunctionModel, ModelCall
from agentloop.tools import Toolset
from fakes import FakeOpenAIServer, Reply, answer, tool_call, tool_calls
from fakes.runs import fast_model


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def adder(messages: list[Message], call: ModelCall) -> ModelResponse:
    if messages[-1].role != "tool":
        return ModelResponse.tool_call("add", {"a": 2, "b": 3})
    return ModelResponse.answer("5 (api_key=sk-abcdefghijklmnopqrstuv)")


def cases(n: int) -> Dataset:
    return Dataset([Case(id=f"c{i}", input="add 2 and 3", expected="5") for i in range(n)])


async def test_scores_come_from_memory_and_land_after_the_last_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_read_back(path: object) -> None:
        raise AssertionError(f"the runner read {path} back")

    monkeypatch.setattr(trace_module, "read_trace", no_read_back)
    agent = Agent(FunctionModel(adder), tools=[add], secrets=["sk-abcdefghijklmnopqrstuv"])
    scorers = [*parse_scorer("contains"), *parse_scorer("tool_called:tool=add")]
    run = await evaluate(cases(3), agent, scorers=scorers, run_dir=tmp_path / "run")
    monkeypatch.undo()
    assert [r.passed for r in run.records] == [True, True, True]
    for record in run.records:
        trace = read_trace(tmp_path / "run" / str(record.trace))
        scores = trace.scores()
        assert [s.scorer for s in scores] == ["contains", "tool_called"]
        assert [e.seq for e in trace.events] == list(range(len(trace.events)))
        assert all(s.step == trace.events[-3].step for s in scores)
        assert {s.scorer: s.value for s in scores} == {k: v.value for k, v in record.scores.items()}
        assert trace.terminal is not None and trace.terminal.type == "run_finished"
        text = (tmp_path / "run" / str(record.trace)).read_text()
        assert "sk-abcdefghijklmnopqrstuv" not in text  # the agent's own redactor wrote it


@pytest.mark.usefixtures("_close_openai_models")
async def test_connections_match_the_concurrency(
    tmp_path: Path, openai_server: FakeOpenAIServer
) -> None:
    """50 cases of 2 requests, 50 at once: 50 connections, where httpx2's default pool of 20
    idle connections would close 30 after each round and open them again."""

    def reply(request: object) -> Reply:
        messages = request.messages  # type: ignore[attr-defined]
        if messages[-1]["role"] == "tool":
            return answer("5", delay=0.05)
        return replace(tool_calls(tool_call("add", {"a": 2, "b": 3})), delay=0.05)

    openai_server.fallback = reply
    agent = Agent(fast_model(openai_server.url), tools=[add])
    run = await evaluate(
        cases(50), agent, scorers=parse_scorer("contains"), concurrency=50, run_dir=tmp_path / "r"
    )
    assert all(r.passed for r in run.records)
    assert len(openai_server.requests) == 100
    assert openai_server.connections == 50


class OneAtATime(Model):
    name = "one-at-a-time"

    async def request(
        self, messages: object, tools: Toolset, settings: ModelSettings
    ) -> ModelResponse:
        return ModelResponse.answer("5")

    def expect_concurrency(self, requests: int) -> int:
        return 1


async def test_a_model_that_serves_fewer_says_requests_queue(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agentloop")
    await evaluate(cases(2), Agent(OneAtATime()), concurrency=4, run_dir=tmp_path / "r")
    [warning] = [r for r in caplog.records if "queue" in r.getMessage()]
    assert "serves 1 request(s) at once; with concurrency 4" in warning.getMessage()


def test_results_line_carries_no_retry_unless_one_happened(tmp_path: Path) -> None:
    import asyncio

    agent = Agent(FunctionModel(adder), tools=[add])
    run = asyncio.run(evaluate(cases(1), agent, run_dir=tmp_path / "r"))
    [line] = (run.path / "results.jsonl").read_text().splitlines()
    assert json.loads(line)["retries"] == []


def test_backend_arguments_are_checked_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    from agentloop.cli import main
    from agentloop.errors import UserError

    agent = Agent(FunctionModel(adder), tools=[add])
    wrong: list[tuple[dict[str, object], str]] = [
        ({"backend": "ray"}, "needs an agent file"),
        ({"backend": "spark"}, "backend must be 'local' or 'ray'"),
        ({"workers": 2}, "need backend='ray'"),
        ({"collect_traces": True}, "need backend='ray'"),
    ]
    for options, message in wrong:
        with pytest.raises(UserError, match=message):
            asyncio.run(evaluate(cases(1), agent, run_dir=tmp_path / "r", **options))  # type: ignore[arg-type]
    file = tmp_path / "a.toml"
    file.write_text('model = "openai:m"\n[model_options]\nbase_url = "http://127.0.0.1:9/v1"\n')
    with pytest.raises(UserError, match="model string"):
        asyncio.run(evaluate(cases(1), file, backend="ray", model=FunctionModel(adder)))
    data = tmp_path / "cases.jsonl"
    cases(1).to_jsonl(data)
    assert main(["eval", str(data), "--agent", str(file), "--workers", "2"]) == 2
    assert "--workers does not apply to --backend local" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
