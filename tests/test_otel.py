"""OpenTelemetry spans from runs, checked with the SDK's in-memory exporter: names, attributes,
parentage, error status, content capture (off by default, redacted as the trace is when on),
links from replays, and the same spans whether made live or exported from the trace."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from agentloop import Agent, ModelResponse, ToolRetry, read_trace, replay_sync, tool
from agentloop.agentfile import load_agent
from agentloop.cli import main
from agentloop.errors import MaxStepsExceeded, ModelHTTPError
from agentloop.messages import Usage
from agentloop.otel import (
    CAPTURE_CONTENT_ENV,
    CONTENT_ATTRIBUTES,
    RunIdGenerator,
    _setup,
    _spans,
    export_traces,
    span_id,
    trace_id,
    trace_spans,
)
from agentloop.testing import ScriptedModel
from agentloop.untrusted import delimit_untrusted
from fakes import FakeOpenAIServer, answer

SECRET = "hunter2-SECRET-value"


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def lookup(key: str) -> str:
    """Look a key up; the answer holds a secret."""
    return f"value for {key}: {SECRET}"


@tool
def flaky(x: int) -> int:
    """Always asks to be called again."""
    raise ToolRetry("try a bigger x")


@pytest.fixture
def memory() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(id_generator=RunIdGenerator())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def by_name(spans: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        found.setdefault(span.name, []).append(span)
    return found


def root_of(spans: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> ReadableSpan:
    (root,) = [s for s in spans if s.parent is None]
    return root


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def parallel_script() -> list[ModelResponse | str]:
    usage = Usage(input_tokens=11, output_tokens=7)
    return [
        ModelResponse.tool_calls_of(
            [("add", {"a": 1, "b": 2}), ("add", {"a": 3, "b": 4})],
            call_ids=["c1", "c2"],
            usage=usage,
            model_name="scripted-2026",
        ),
        ModelResponse.answer("3 and 7", usage=Usage(input_tokens=20, output_tokens=3)),
    ]


def test_a_run_is_an_invoke_agent_span_over_chat_and_sibling_tool_spans(
    tmp_path: Path, memory: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = memory
    agent = Agent(
        ScriptedModel(parallel_script()),
        tools=[add],
        name="adder",
        trace_dir=tmp_path,
        otel=provider,
    )
    result = agent.run_sync("add two pairs")
    spans = exporter.get_finished_spans()
    names = by_name(spans)
    assert sorted(names) == ["chat scripted", "execute_tool add", "invoke_agent adder"]
    root = root_of(spans)
    assert root.name == "invoke_agent adder" and root.kind is SpanKind.INTERNAL
    assert root.context.trace_id == trace_id(result.run_id)
    assert root.context.span_id == span_id(result.run_id, "run")
    assert attrs(root) | {"agentloop.duration_s": 0} == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "adder",
        "gen_ai.provider.name": "ScriptedModel",
        "gen_ai.request.model": "scripted",
        "gen_ai.conversation.id": result.run_id,
        "gen_ai.usage.input_tokens": 31,
        "gen_ai.usage.output_tokens": 10,
        "agentloop.run_id": result.run_id,
        "agentloop.config_hash": result.config_hash,
        "agentloop.steps": 2,
        "agentloop.tool_calls": 2,
        "agentloop.stop_reason": "final_answer",
        "agentloop.duration_s": 0,
    }
    assert root.status.status_code is StatusCode.UNSET
    # Every other span is a child of the root: the two tool calls are siblings of each other
    # and of the chat span that asked for them.
    assert all(
        s.parent is not None and s.parent.span_id == root.context.span_id
        for s in spans
        if s is not root
    )
    assert {s.context.trace_id for s in spans} == {root.context.trace_id}
    first, second = sorted(names["chat scripted"], key=lambda s: s.start_time or 0)
    assert first.kind is SpanKind.CLIENT
    assert attrs(first) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "ScriptedModel",
        "gen_ai.request.model": "scripted",
        "gen_ai.response.model": "scripted-2026",
        "gen_ai.response.finish_reasons": ("tool_calls",),
        "gen_ai.usage.input_tokens": 11,
        "gen_ai.usage.output_tokens": 7,
        "gen_ai.conversation.id": result.run_id,
        "agentloop.step": 0,
    }
    assert attrs(second)["agentloop.step"] == 1
    assert attrs(second)["gen_ai.response.finish_reasons"] == ("stop",)
    tools = sorted(names["execute_tool add"], key=lambda s: attrs(s)["gen_ai.tool.call.id"])
    assert [attrs(s)["gen_ai.tool.call.id"] for s in tools] == ["c1", "c2"]
    for span in tools:
        assert attrs(span)["gen_ai.operation.name"] == "execute_tool"
        assert attrs(span)["gen_ai.tool.name"] == "add"
        assert attrs(span)["gen_ai.tool.type"] == "function"
        assert attrs(span)["agentloop.step"] == 0
        assert span.status.status_code is StatusCode.UNSET
        # The tools ran after the model asked and before it was asked again.
        assert first.end_time <= span.start_time <= span.end_time <= second.start_time  # type: ignore[operator]
    assert root.start_time <= first.start_time and second.end_time <= root.end_time  # type: ignore[operator]
    assert not any(CONTENT_ATTRIBUTES & set(attrs(s)) for s in spans)


def test_tool_errors_and_a_failed_run_are_error_status_with_error_type(
    tmp_path: Path, memory: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = memory
    calls = [ModelResponse.tool_call("flaky", {"x": i}) for i in range(2)]
    agent = Agent(
        ScriptedModel(calls), tools=[flaky], trace_dir=tmp_path, otel=provider, max_steps=2
    )
    with pytest.raises(MaxStepsExceeded) as failure:
        agent.run_sync("go")
    spans = exporter.get_finished_spans()
    root = root_of(spans)
    assert root.status.status_code is StatusCode.ERROR
    assert root.status.description == str(failure.value)
    assert attrs(root)["error.type"] == "MaxStepsExceeded"
    assert attrs(root)["agentloop.stop_reason"] == "max_steps"
    tools = by_name(spans)["execute_tool flaky"]
    assert len(tools) == 2
    for span in tools:
        assert span.status.status_code is StatusCode.ERROR
        assert attrs(span)["error.type"] == "retry"
    assert all(s.status.status_code is StatusCode.UNSET for s in by_name(spans)["chat scripted"])


def test_a_model_error_marks_the_request_it_happened_in(
    tmp_path: Path, memory: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = memory
    failing = ModelHTTPError("server said 500", status=500, model="scripted")
    agent = Agent(ScriptedModel([failing]), trace_dir=tmp_path, otel=provider)
    with pytest.raises(ModelHTTPError):
        agent.run_sync("go")
    spans = exporter.get_finished_spans()
    (chat,) = by_name(spans)["chat scripted"]
    assert chat.status.status_code is StatusCode.ERROR
    assert attrs(chat)["error.type"] == "ModelHTTPError"
    assert "gen_ai.response.model" not in attrs(chat)
    root = root_of(spans)
    assert attrs(root)["error.type"] == "ModelHTTPError"
    assert attrs(root)["agentloop.stop_reason"] == "model_error"
    assert chat.end_time == root.end_time


def secret_run(tmp_path: Path, provider: TracerProvider) -> Path:
    script = [ModelResponse.tool_call("lookup", {"key": "db"}), f"the password is {SECRET}"]
    agent = Agent(
        ScriptedModel(script),
        tools=[lookup],
        instructions=f"Never say {SECRET}.",
        secrets=[SECRET],
        trace_dir=tmp_path,
        otel=provider,
    )
    result = agent.run_sync(f"what is the db password? (it is {SECRET})")
    assert result.trace_path is not None
    return result.trace_path


def every_value(spans: tuple[ReadableSpan, ...]) -> str:
    return json.dumps([[s.name, {k: str(v) for k, v in attrs(s).items()}] for s in spans])


def test_content_is_left_out_unless_asked_for(
    tmp_path: Path,
    memory: tuple[TracerProvider, InMemorySpanExporter],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(CAPTURE_CONTENT_ENV, raising=False)
    provider, exporter = memory
    secret_run(tmp_path, provider)
    spans = exporter.get_finished_spans()
    assert len(spans) == 4
    for span in spans:
        assert not CONTENT_ATTRIBUTES & set(attrs(span)), span.name
    assert "password" not in every_value(spans) and SECRET not in every_value(spans)


@pytest.mark.parametrize("switch", ["true", "SPAN_ONLY"])
def test_captured_content_is_redacted_exactly_as_the_trace_is(
    tmp_path: Path,
    memory: tuple[TracerProvider, InMemorySpanExporter],
    monkeypatch: pytest.MonkeyPatch,
    switch: str,
) -> None:
    monkeypatch.setenv(CAPTURE_CONTENT_ENV, switch)
    provider, exporter = memory
    trace = read_trace(secret_run(tmp_path, provider))
    spans = exporter.get_finished_spans()
    assert SECRET not in every_value(spans)
    assert "[REDACTED]" in every_value(spans)
    names = by_name(spans)
    root = root_of(spans)
    task = json.loads(attrs(root)["gen_ai.input.messages"])
    assert task == [{"role": "user", "parts": [{"type": "text", "content": trace.header.task}]}]
    assert json.loads(attrs(root)["gen_ai.system_instructions"]) == [
        {"type": "text", "content": "Never say [REDACTED]."}
    ]
    answer = json.loads(attrs(root)["gen_ai.output.messages"])
    assert answer[0]["parts"][0]["content"] == trace.output == "the password is [REDACTED]"
    (tool_span,) = names["execute_tool lookup"]
    (result,) = trace.tool_results()
    (call,) = trace.tool_calls()
    assert attrs(tool_span)["gen_ai.tool.call.result"] == result.content
    assert attrs(tool_span)["gen_ai.tool.call.arguments"] == call.raw_arguments
    first, last = sorted(names["chat scripted"], key=lambda s: attrs(s)["agentloop.step"])
    history = json.loads(attrs(last)["gen_ai.input.messages"])
    assert [m["role"] for m in history] == ["system", "user", "assistant", "tool"]
    assert history[2]["parts"] == [
        {"type": "tool_call", "id": call.call_id, "name": "lookup", "arguments": {"key": "db"}}
    ]
    seen = delimit_untrusted("lookup", result.content)  # what the model was sent
    assert history[3]["parts"] == [
        {"type": "tool_call_response", "id": call.call_id, "response": seen}
    ]
    said = json.loads(attrs(first)["gen_ai.output.messages"])
    assert said[0]["role"] == "assistant" and said[0]["finish_reason"] == "tool_call"
    assert json.loads(attrs(last)["gen_ai.output.messages"])[0]["finish_reason"] == "stop"


def comparable(spans: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            s.name,
            s.context.trace_id,
            s.context.span_id,
            s.parent.span_id if s.parent else None,
            s.start_time,
            s.end_time,
            attrs(s),
            s.status.status_code,
            s.status.description,
            [(link.context.span_id, dict(link.attributes or {})) for link in s.links],
        )
        for s in spans
    )


def test_live_spans_are_the_spans_exported_from_the_trace(
    tmp_path: Path,
    memory: tuple[TracerProvider, InMemorySpanExporter],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(CAPTURE_CONTENT_ENV, "true")
    provider, exporter = memory
    path = secret_run(tmp_path, provider)
    live = exporter.get_finished_spans()
    exported = trace_spans([read_trace(path)], capture_content=True)
    assert comparable(exported) == comparable(live)
    again = trace_spans([read_trace(path)], capture_content=True)
    assert comparable(again) == comparable(exported)  # same ids: a second export duplicates nothing


def test_a_replay_links_to_the_run_it_replays(
    tmp_path: Path, memory: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = memory
    source = Agent(ScriptedModel(parallel_script()), tools=[add], trace_dir=tmp_path, otel=provider)
    original = source.run_sync("add two pairs")
    assert original.trace_path is not None
    exporter.clear()
    replaying = Agent(ScriptedModel([]), tools=[add], trace_dir=tmp_path / "r", otel=provider)
    replayed = replay_sync(original.trace_path, replaying)
    assert replayed.output == original.output
    spans = exporter.get_finished_spans()
    root = root_of(spans)
    assert attrs(root)["agentloop.parent.run_id"] == original.run_id
    assert attrs(root)["agentloop.parent.kind"] == "replay"
    assert "agentloop.parent.step" not in attrs(root)  # a whole replay has no step
    (link,) = root.links
    (parent_root,) = [s for s in trace_spans([read_trace(original.trace_path)]) if s.parent is None]
    assert (link.context.trace_id, link.context.span_id) == (
        parent_root.context.trace_id,
        parent_root.context.span_id,
    )
    assert root.context.trace_id != parent_root.context.trace_id


async def test_a_cancelled_run_marks_its_interrupted_tool_calls(
    tmp_path: Path, memory: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = memory

    @tool
    async def slow(x: int) -> int:
        """Take a long time."""
        await asyncio.sleep(30)
        return x

    model = ScriptedModel([ModelResponse.tool_call("slow", {"x": 1})])
    agent = Agent(model, tools=[slow], trace_dir=tmp_path, otel=provider)
    async with agent.iter("go") as run:
        async for event in run:
            if event.type == "tool_call":  # type: ignore[attr-defined]
                break
    await run.cancel()
    spans = exporter.get_finished_spans()
    (tool_span,) = by_name(spans)["execute_tool slow"]
    assert tool_span.status.status_code is StatusCode.ERROR
    assert attrs(tool_span)["error.type"] == "interrupted"
    root = root_of(spans)
    assert attrs(root)["error.type"] == "CancelledError"
    assert attrs(root)["agentloop.stop_reason"] == "cancelled"


async def test_the_spans_of_a_running_run_arrive_before_it_ends(
    tmp_path: Path,
    memory: tuple[TracerProvider, InMemorySpanExporter],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ended spans wait to be made in a batch, but not for the run's end: the batch is made
    after ``BATCH_SECONDS`` (here none) on the run's event loop."""
    provider, exporter = memory
    monkeypatch.setattr(_spans, "BATCH_SECONDS", 0.0)
    seen: list[list[str]] = []

    @tool
    async def slow(x: int) -> int:
        """Take a while, then look at what has arrived."""
        await asyncio.sleep(0.05)
        seen.append([s.name for s in exporter.get_finished_spans()])
        return x

    model = ScriptedModel([ModelResponse.tool_call("slow", {"x": 1}), "done"])
    agent = Agent(model, tools=[slow], trace_dir=tmp_path, otel=provider)
    assert (await agent.run("go")).output == "done"
    assert seen == [["chat scripted"]]  # the first request, while its tool call still ran
    names = [s.name for s in exporter.get_finished_spans()]
    assert names == ["chat scripted", "execute_tool slow", "chat scripted", "invoke_agent agent"]


def test_a_killed_run_exports_as_incomplete(tmp_path: Path) -> None:
    path = (
        Agent(ScriptedModel(parallel_script()), tools=[add], trace_dir=tmp_path)
        .run_sync("add")
        .trace_path
    )
    assert path is not None
    lines = path.read_text().splitlines(keepends=True)
    cut = [line for line in lines if '"type":"tool_result"' not in line][:-2]  # no end either
    path.write_text("".join(cut))
    trace = read_trace(path)
    spans = trace_spans([trace])
    root = root_of(spans)
    assert attrs(root)["error.type"] == "incomplete"
    assert root.end_time == int(trace.events[-1].ts * 1e9)
    for span in by_name(spans)["execute_tool add"]:
        assert attrs(span)["error.type"] == "interrupted"


class Broken(SpanProcessor):
    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if span.name.startswith("execute_tool"):
            raise RuntimeError("the tracing backend fell over")


def test_a_failing_tracer_never_breaks_the_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(Broken())
    agent = Agent(ScriptedModel(parallel_script()), tools=[add], trace_dir=tmp_path, otel=provider)
    with caplog.at_level(logging.WARNING, logger="agentloop.otel"):
        result = agent.run_sync("add")
    assert result.output == "3 and 7"
    assert "could not record a ToolResultRecorded event" in caplog.text

    class Unreachable(TracerProvider):
        def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("no tracer today")

    agent = Agent(ScriptedModel(["fine"]), trace_dir=tmp_path, otel=Unreachable())
    with caplog.at_level(logging.WARNING, logger="agentloop.otel"):
        assert agent.run_sync("go").output == "fine"
    assert "OpenTelemetry: no spans for run" in caplog.text


def test_otel_true_uses_the_application_provider_or_one_from_the_environment(
    tmp_path: Path,
    memory: tuple[TracerProvider, InMemorySpanExporter],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider, exporter = memory
    monkeypatch.setattr(_setup, "_default", provider)
    Agent(ScriptedModel(["hi"]), trace_dir=None, otel=True).run_sync("hello")
    assert [s.name for s in exporter.get_finished_spans()] == [
        "chat scripted",
        "invoke_agent agent",
    ]
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert _setup.resource().attributes["service.name"] == "agentloop"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "billing-bot")
    assert _setup.resource().attributes["service.name"] == "billing-bot"
    # Its hash is worked out once, and is the hash an equal SDK resource has.
    made = _setup.resource()
    plain = Resource(made.attributes, made.schema_url)
    assert made == plain and hash(made) == hash(plain)
    assert {plain: 1}[made] == 1


def test_an_agent_without_otel_makes_no_spans_and_imports_no_sdk() -> None:
    code = (
        "import sys, agentloop\n"
        "from agentloop.testing import ScriptedModel\n"
        "agentloop.Agent(ScriptedModel(['hi']), trace_dir=None).run_sync('x')\n"
        "print(any(m.startswith('opentelemetry') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_export_reports_spans_the_endpoint_did_not_take(tmp_path: Path) -> None:
    path = (
        Agent(ScriptedModel(parallel_script()), tools=[add], trace_dir=tmp_path)
        .run_sync("add")
        .trace_path
    )
    assert path is not None
    url = f"http://127.0.0.1:{closed_port()}"
    report = export_traces([read_trace(path)], url, timeout=0.5)
    assert (report.traces, report.spans, report.failed) == (1, 5, 5)


def test_cli_export_otel_needs_an_endpoint_and_says_when_it_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    Agent(ScriptedModel(["hi"]), trace_dir=tmp_path).run_sync("hello")
    assert main(["export", "otel", str(tmp_path)]) == 2
    assert "give --endpoint URL or set OTEL_EXPORTER_OTLP_ENDPOINT" in capsys.readouterr().err
    url = f"http://127.0.0.1:{closed_port()}"
    assert main(["export", "otel", str(tmp_path), "--endpoint", url, "--timeout", "0.5"]) == 1
    err = capsys.readouterr().err
    assert f"the endpoint did not take 2 of 2 span(s) from 1 trace(s): {url}/v1/traces" in err


def test_agent_files_and_the_run_command_switch_spans_on(
    tmp_path: Path,
    memory: tuple[TracerProvider, InMemorySpanExporter],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    openai_server: FakeOpenAIServer,
) -> None:
    provider, exporter = memory
    monkeypatch.setattr(_setup, "_default", provider)  # what otel=True sends to
    file = tmp_path / "a.toml"
    file.write_text('model = "openai:x"\nname = "filed"\notel = true\n')
    load_agent(file, model=ScriptedModel(["hi"]), trace_dir=None).run_sync("hello")
    assert "invoke_agent filed" in [s.name for s in exporter.get_finished_spans()]
    exporter.clear()
    file.write_text('model = "openai:x"\nname = "quiet"\n')
    load_agent(file, model=ScriptedModel(["hi"]), trace_dir=None).run_sync("hello")
    assert exporter.get_finished_spans() == ()
    openai_server.script(answer("hi there"))
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789abcdefghij")
    args = ["run", "say hi", "--model", "openai:fake-model", "--otel"]
    assert main([*args, "--trace-dir", str(tmp_path / "t")]) == 0
    names = [s.name for s in exporter.get_finished_spans()]
    assert names == ["chat fake-model", "invoke_agent agent"]
    assert "hi there" in capsys.readouterr().out


def test_the_turns_of_a_conversation_share_its_id(
    tmp_path: Path, memory: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    from agentloop.conversation import Conversation

    provider, exporter = memory
    agent = Agent(ScriptedModel(["hello", "again"]), trace_dir=tmp_path, otel=provider)
    talk = Conversation(agent, "chat-42")
    talk.run_sync("hi")
    talk.run_sync("and now?")
    spans = exporter.get_finished_spans()
    roots = [s for s in spans if s.parent is None]
    assert [attrs(r)["agentloop.conversation.turn"] for r in roots] == [0, 1]
    assert {attrs(s)["gen_ai.conversation.id"] for s in spans} == {"chat-42"}
    assert len({r.context.trace_id for r in roots}) == 2  # a trace per run, one id per talk
