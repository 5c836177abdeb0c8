"""Replay against a server that mints fresh ids, as real ones do.

OpenAI, vLLM, Ollama and llama.cpp give every response new tool-call ids. Replay matches
recorded and live actions by their position in the step, the tool name and the arguments
parsed as JSON, so a live model that repeats the recorded run is no divergence, and a live call
gets the result recorded for the same call whatever its id.
"""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

from agentloop import Agent, read_trace
from agentloop.replay import replay
from fakes import FakeOpenAIServer, Reply, answer, completion, tool_call, tool_calls
from fakes.runs import Adder, fast_model

pytestmark = pytest.mark.usefixtures("_close_openai_models")


def two_adds(spacing: str = "") -> list[Reply]:
    """A parallel step of two calls, then the answer; ``spacing`` changes only the argument
    text's whitespace."""
    sep = "," + spacing
    colon = ":" + spacing
    return [
        tool_calls(
            tool_call("add", f'{{"a"{colon}1{sep}"b"{colon}2}}'),
            tool_call("add", f'{{"a"{colon}3{sep}"b"{colon}4}}'),
        ),
        answer("3 and 7"),
    ]


async def record(server: FakeOpenAIServer, adder: Adder, folder: Path) -> Path:
    server.script(*two_adds())
    agent = Agent(fast_model(server.url), tools=[adder.tool], trace_dir=folder)
    result = await agent.run("add 1+2 and 3+4")
    assert result.trace_path is not None
    return result.trace_path


def call_ids(path: Path) -> list[str]:
    return [e.call_id for e in read_trace(path).events if e.type == "tool_call"]


async def test_the_fake_server_mints_fresh_ids_on_every_response(
    openai_server: FakeOpenAIServer,
) -> None:
    same = tool_calls(tool_call("add", {"a": 1, "b": 2}))
    openai_server.script(same, same)
    async with httpx2.AsyncClient() as client:
        bodies = [
            (await client.post(f"{openai_server.url}/chat/completions", json={})).json()
            for _ in range(2)
        ]
    ids = [b["choices"][0]["message"]["tool_calls"][0]["id"] for b in bodies]
    assert len(set(ids)) == 2 and all(i.startswith("call_") for i in ids)
    assert len({b["id"] for b in bodies}) == 2


async def test_live_model_replay_with_fresh_ids_and_respaced_arguments_does_not_diverge(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    adder = Adder()
    source = await record(openai_server, adder, tmp_path / "runs")
    assert sorted(adder.calls) == [(1, 2), (3, 4)]  # run concurrently: in either order

    openai_server.script(*two_adds(spacing=" "))  # same calls, new ids, other whitespace
    live = Agent(fast_model(openai_server.url), tools=[adder.tool], trace_dir=tmp_path / "r")
    result = await replay(source, live, model="live")

    assert result.divergences == [], result.report()
    assert result.output == "3 and 7"
    assert sorted(adder.calls) == [(1, 2), (3, 4)]  # recorded results served: the tool did not run
    assert result.trace_path is not None
    replayed = read_trace(result.trace_path)
    assert set(call_ids(result.trace_path)).isdisjoint(call_ids(source))
    results = [e for e in replayed.events if e.type == "tool_result"]
    assert sorted(r.content for r in results) == ["3", "7"]
    assert all(r.error is None for r in results)
    # The second request carried the served results under the live ids.
    second = openai_server.bodies[-1]["messages"]
    asked = [c["id"] for m in second if m["role"] == "assistant" for c in m["tool_calls"]]
    answered = [m["tool_call_id"] for m in second if m["role"] == "tool"]
    assert asked == answered and set(asked) == set(call_ids(result.trace_path))


async def test_live_tools_replay_compares_results_by_position_not_id(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    adder = Adder()
    source = await record(openai_server, adder, tmp_path / "runs")
    openai_server.script(*two_adds())
    live = Agent(fast_model(openai_server.url), tools=[adder.tool], trace_dir=tmp_path / "r")
    result = await replay(source, live, model="live", tools="live")
    assert result.divergences == [], result.report()
    assert sorted(adder.calls) == [(1, 2), (1, 2), (3, 4), (3, 4)]


async def test_a_changed_argument_is_an_action_change_and_gets_no_recorded_result(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    adder = Adder()
    source = await record(openai_server, adder, tmp_path / "runs")
    openai_server.script(
        tool_calls(tool_call("add", {"a": 1, "b": 2}), tool_call("add", {"a": 3, "b": 5})),
        answer("3 and 8"),
    )
    live = Agent(fast_model(openai_server.url), tools=[adder.tool], trace_dir=tmp_path / "r")
    result = await replay(source, live, model="live", strict=False)
    kinds = [d.kind for d in result.divergences]
    assert kinds[0] == "action_changed" and result.divergences[0].step == 0
    assert result.trace_path is not None
    results = {
        e.content: e.error for e in read_trace(result.trace_path).events if e.type == "tool_result"
    }
    assert results["3"] is None  # the unchanged call got its recorded result
    assert list(results.values()).count("not_run") == 1  # the changed one none
    assert sorted(adder.calls) == [(1, 2), (3, 4)]


async def test_an_answer_reply_with_a_response_id_replays_against_the_recording(
    openai_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    openai_server.script(Reply(body=completion("hello")))
    agent = Agent(fast_model(openai_server.url), trace_dir=tmp_path)
    result = await agent.run("say hello")
    assert result.trace_path is not None
    openai_server.script(Reply(body=completion("hello")))
    replayed = await replay(result.trace_path, agent, model="live")
    assert not replayed.diverged, replayed.report()
