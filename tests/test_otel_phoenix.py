"""End to end against a real OTLP receiver: Arize Phoenix, started on 127.0.0.1 by a fixture
(``tests/phoenix_server``: its own virtual environment, working directory and no telemetry).

Phoenix receives spans over OTLP/HTTP from a live run (``Agent(otel=True)`` configured by the
standard ``OTEL_*`` environment) and from ``agentloop export otel``. The tests read the spans
back through Phoenix's REST API and check the tree, the attributes, that Phoenix understood the
GenAI conventions (its span kinds), and that a second export adds nothing.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agentloop import Agent, ModelResponse, ToolRetry, read_trace, replay_sync, tool
from agentloop.cli import main
from agentloop.errors import RetryBudgetExhausted
from agentloop.otel import CAPTURE_CONTENT_ENV, _setup, span_id, trace_id
from agentloop.testing import ScriptedModel
from fakes import FakeOpenAIServer, answer, tool_call, tool_calls
from fakes.runs import API_KEY, Adder, fast_model
from phoenix_server import Phoenix, PhoenixError, running_phoenix

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    try:
        with running_phoenix(tmp_path_factory.mktemp("phoenix")) as server:
            yield server
    except PhoenixError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def otel_env(monkeypatch: pytest.MonkeyPatch, phoenix: Phoenix) -> Iterator[None]:
    """The standard environment pointing at Phoenix, and a fresh agentloop provider."""
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", phoenix.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "agentloop-tests")
    monkeypatch.setattr(_setup, "_default", None)
    yield
    if _setup._default is not None:
        _setup._default.shutdown()


def hexid(value: int, width: int) -> str:
    return format(value, f"0{width}x")


@pytest.mark.usefixtures("_close_openai_models", "otel_env")
async def test_a_live_run_arrives_in_phoenix_as_a_tree(
    phoenix: Phoenix,
    openai_server: FakeOpenAIServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "openinference.project.name=live")
    monkeypatch.setenv(CAPTURE_CONTENT_ENV, "true")
    usage = {"prompt_tokens": 12, "completion_tokens": 6}
    openai_server.script(
        tool_calls(
            tool_call("add", {"a": 2, "b": 3}, id="c1"),
            tool_call("add", {"a": 4, "b": 5}, id="c2"),
            usage=usage,
        ),
        answer(f"5 and 9 (key {API_KEY})", usage=usage),
    )
    adder = Adder()
    agent = Agent(
        fast_model(openai_server.url),
        tools=[adder.tool],
        name="calculator",
        trace_dir=tmp_path,
        otel=True,
    )
    result = await agent.run("add 2+3 and 4+5")
    provider = _setup._default
    assert provider is not None and provider.force_flush()
    spans = phoenix.wait_for("live", 5)
    assert sorted(s["name"] for s in spans) == [
        "chat fake-model",
        "chat fake-model",
        "execute_tool add",
        "execute_tool add",
        "invoke_agent calculator",
    ]
    (root,) = [s for s in spans if s["parent_id"] is None]
    assert root["context"] == {
        "trace_id": hexid(trace_id(result.run_id), 32),
        "span_id": hexid(span_id(result.run_id, "run"), 16),
    }
    children = [s for s in spans if s is not root]
    assert {s["parent_id"] for s in children} == {root["context"]["span_id"]}
    # Phoenix read the GenAI conventions: its own span kinds and token counts come from them.
    kinds = {s["name"]: s["span_kind"] for s in spans}
    assert kinds == {
        "invoke_agent calculator": "AGENT",
        "chat fake-model": "LLM",
        "execute_tool add": "TOOL",
    }
    attributes = root["attributes"]
    assert attributes["gen_ai.agent.name"] == "calculator"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["agentloop.run_id"] == result.run_id
    assert attributes["agentloop.config_hash"] == result.config_hash
    assert attributes["gen_ai.usage.input_tokens"] == 24
    assert attributes["llm.token_count.prompt"] == 24
    tools = sorted(
        (s for s in spans if s["name"] == "execute_tool add"),
        key=lambda s: s["attributes"]["gen_ai.tool.call.id"],
    )
    assert [s["attributes"]["gen_ai.tool.call.id"] for s in tools] == ["c1", "c2"]
    assert [s["attributes"]["gen_ai.tool.call.result"] for s in tools] == ["5", "9"]
    assert {s["attributes"]["agentloop.step"] for s in tools} == {0}
    everything = json.dumps(spans)
    assert API_KEY not in everything and "[REDACTED]" in everything
    trace = read_trace(result.trace_path)  # type: ignore[arg-type]
    assert (
        json.loads(root["attributes"]["gen_ai.output.messages"])[0]["parts"][0]["content"]
        == trace.output
    )


@tool
def stubborn(x: int) -> int:
    """Never happy."""
    raise ToolRetry("no")


@pytest.mark.usefixtures("otel_env")
def test_exported_traces_arrive_once_with_their_own_ids_times_errors_and_parents(
    phoenix: Phoenix, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "openinference.project.name=export")
    good = Agent(
        ScriptedModel([ModelResponse.tool_call("add", {"a": 1, "b": 2}, call_id="k1"), "3"]),
        tools=[Adder().tool],
        trace_dir=tmp_path,
    ).run_sync("add 1 and 2")
    bad = Agent(
        ScriptedModel([ModelResponse.tool_call("stubborn", {"x": i}) for i in range(2)]),
        tools=[stubborn],
        trace_dir=tmp_path,
        retry_budget=1,
    )
    with pytest.raises(RetryBudgetExhausted) as failed:
        bad.run_sync("try")
    assert good.trace_path is not None
    replayed = replay_sync(good.trace_path, trace_dir=tmp_path)
    assert replayed.output == "3"
    args = ["export", "otel", str(tmp_path), "--endpoint", phoenix.url]
    assert main(args) == 0
    spans = phoenix.wait_for("export", 4 + 5 + 4)
    assert len(spans) == 13
    assert main(args) == 0  # the same ids again: Phoenix keeps one copy
    time.sleep(2)
    assert len(phoenix.spans("export")) == 13

    by_trace: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_trace.setdefault(span["context"]["trace_id"], []).append(span)
    original = read_trace(good.trace_path)
    mine = by_trace[hexid(trace_id(original.run_id), 32)]
    (chat,) = [
        s for s in mine if s["name"] == "chat scripted" and s["attributes"]["agentloop.step"] == 0
    ]
    assert chat["context"]["span_id"] == hexid(span_id(original.run_id, "chat/0"), 16)
    request = next(e for e in original.events if e.type == "model_request")
    assert abs(datetime.fromisoformat(chat["start_time"]).timestamp() - request.ts) < 2e-6

    failure = read_trace(failed.value.trace_path)  # type: ignore[arg-type]
    theirs = by_trace[hexid(trace_id(failure.run_id), 32)]
    (root,) = [s for s in theirs if s["parent_id"] is None]
    assert root["status_code"] == "ERROR"
    assert root["attributes"]["error.type"] == "RetryBudgetExhausted"
    assert root["status_message"] == failure.terminal.message  # type: ignore[union-attr]
    tool_spans = [s for s in theirs if s["name"] == "execute_tool stubborn"]
    assert [s["status_code"] for s in tool_spans] == ["ERROR", "ERROR"]
    assert {s["attributes"]["error.type"] for s in tool_spans} == {"retry"}

    assert replayed.trace_path is not None
    copy = read_trace(replayed.trace_path)
    (replay_root,) = [
        s for s in by_trace[hexid(trace_id(copy.run_id), 32)] if s["parent_id"] is None
    ]
    assert replay_root["attributes"]["agentloop.parent.run_id"] == original.run_id
    assert replay_root["attributes"]["agentloop.parent.kind"] == "replay"
    assert "gen_ai.input.messages" not in json.dumps(spans)  # content was not asked for
