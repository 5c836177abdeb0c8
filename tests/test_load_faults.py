"""Load with faults (shared/reliability.md): many runs at once while a quarter of the requests
fail in every way a real endpoint fails. Every run ends right or with a typed error, and
leaves exactly one readable trace with exactly one terminal event, the last one."""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agentloop import Agent, AgentLoopError, RunResult, read_trace
from agentloop.events import TERMINAL_TYPES, RunFailed, RunFinished
from fakes import (
    CLOSE,
    STALL,
    TRUNCATE_BODY,
    FakeOpenAIServer,
    RecordedRequest,
    Reply,
    answer,
    error,
    raw,
    tool_call,
    tool_calls,
)
from fakes.runs import API_KEY, Adder, fast_model

pytestmark = pytest.mark.usefixtures("_close_openai_models")

RUNS = 200
STREAMED = 60
"""Of the runs, how many go through ``agent.stream`` (the rest through ``agent.run``)."""
FAULT_RATE = 0.25


FAULTS = ["500", "503", "429", "close", "truncate", "not_json", "stall", "slow"]
STREAM_FAULTS = [*(f for f in FAULTS if f != "truncate"), "drop_mid_stream", "stall_mid_stream"]
"""A streamed request's faults: its half body is a stream dropped midway."""


class Chaos:
    """The fallback of a fake server: a normal reply (a call to ``add``, then an answer once the
    conversation holds its result) or, for a quarter of the requests, one fault picked at random
    with a fixed seed: 500, 503, 429 with Retry-After, a dropped connection, half a body, a body
    that is not JSON, a stall past the client's timeout, a slow but timely answer, and for a
    streamed request a stream dropped or stalled midway."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.faults: Counter[str] = Counter()
        self.turns = [0, 0]

    def normal(self, request: RecordedRequest) -> Reply:
        if any(m.get("role") == "tool" for m in request.messages):
            return answer("done")
        return tool_calls(tool_call("add", {"a": 2, "b": 3}))

    def __call__(self, request: RecordedRequest) -> Reply:
        streamed = bool(request.json().get("stream"))
        normal = self.normal(request)
        kinds = STREAM_FAULTS if streamed else FAULTS
        with self.lock:
            if self.random.random() < FAULT_RATE:  # which requests fail is random; the
                self.turns[streamed] += 1  # faults take turns, so every kind comes up
                kind = kinds[self.turns[streamed] % len(kinds)]
            else:
                kind = "none"
            self.faults[kind] += 1
        replies: dict[str, Reply] = {
            "none": normal,
            "500": error(500, "internal error"),
            "503": error(503, "overloaded"),
            "429": error(429, "slow down", headers={"Retry-After": "0.01"}),
            "close": CLOSE,
            "truncate": TRUNCATE_BODY,
            "not_json": raw("<html>Bad gateway</html>"),
            "stall": STALL,
            "slow": Reply(body=normal.body, delay=0.05),
            "drop_mid_stream": Reply(body=normal.body, action="drop_mid_stream", after_events=2),
            "stall_mid_stream": Reply(body=normal.body, action="stall_mid_stream", after_events=2),
        }
        return replies[kind]


async def _one(agent: Agent[str], index: int) -> RunResult[str] | AgentLoopError:
    try:
        if index >= STREAMED:
            return await agent.run(f"add 2 and 3 (run {index})")
        async with agent.stream(f"add 2 and 3 (run {index})") as run:
            async for _ in run:
                pass
        return run.result()
    except AgentLoopError as exc:  # typed: the point of the test; anything else fails it
        return exc


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_hundreds_of_runs_under_faults_each_end_right_and_leave_one_trace(
    tmp_path: Path,
) -> None:
    chaos = Chaos(seed=20261201)
    with FakeOpenAIServer() as server:
        server.fallback = chaos
        model = fast_model(server.url, timeout=0.5, max_retries=3)
        adder = Adder()
        agent: Agent[str] = Agent(model, tools=[adder.tool], trace_dir=tmp_path, max_steps=4)
        outcomes = await asyncio.gather(*(_one(agent, i) for i in range(RUNS)))

    # Every kind of fault happened, and some runs got through them while others did not.
    assert {*FAULTS, *STREAM_FAULTS} <= set(chaos.faults), chaos.faults
    finished = [o for o in outcomes if isinstance(o, RunResult)]
    failed = [o for o in outcomes if isinstance(o, AgentLoopError)]
    assert finished and failed, (len(finished), len(failed))
    assert len(finished) + len(failed) == RUNS

    # One trace per run, nothing else in the folder.
    paths: list[Any] = [o.trace_path for o in outcomes]
    assert None not in paths
    assert len(set(paths)) == RUNS
    assert sorted(tmp_path.glob("*.jsonl")) == sorted(paths)

    for outcome in outcomes:
        trace = read_trace(outcome.trace_path)  # type: ignore[arg-type]
        assert not trace.torn
        terminals = [e for e in trace.events if e.type in TERMINAL_TYPES]
        assert len(terminals) == 1 and trace.events[-1] is terminals[0], trace.path
        end = terminals[0]
        if isinstance(outcome, RunResult):
            assert outcome.output == "done"
            assert isinstance(end, RunFinished) and end.output == "done"
            assert [r.content for r in trace.tool_results()] == ["5"]
        else:
            assert isinstance(end, RunFailed), trace.path
            assert end.error_type == type(outcome).__name__
            assert outcome.partial is not None and outcome.partial.trace_path == trace.path
        line = trace.path.read_text() if trace.path else ""
        assert API_KEY not in line
    # A tool ran once per run that reached it: no retry of a model request re-ran a tool.
    reached = sum(len(read_trace(p).tool_results()) for p in paths)
    assert len(adder.calls) == reached
