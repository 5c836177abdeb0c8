"""For every trace the test suite wrote, the OpenTelemetry spans agree with the JSONL trace:
the same steps, tool calls, tokens and errors, in one tree under the run's root span.

Like tests/test_zz_replay_corpus.py, this file's name sorts last so that it runs after the
others in the same process; conftest.py records every trace written until then. Every trace is
checked, including the ones a test cut short or a run that was cancelled or failed, since those
are where spans and trace are most likely to part ways. Spans are made from the trace the way
``agentloop export otel`` makes them, which is also how a live run makes them
(tests/test_otel.py checks that live and exported spans are identical).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from agentloop.errors import TraceError
from agentloop.events import (
    ModelRequested,
    ModelResponded,
    ToolCallRequested,
    ToolResultRecorded,
    ToolsChanged,
)
from agentloop.otel import trace_id, trace_spans
from agentloop.testing import ScriptedModel
from agentloop.trace import Trace, read_trace
from conftest import WRITTEN_TRACES


def readable(path: Path) -> Trace | None:
    try:
        return read_trace(path)
    except TraceError:
        return None  # a test broke it on purpose, or removed it


def disagreements(trace: Trace, spans: list[ReadableSpan]) -> list[str]:
    problems: list[str] = []

    def check(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    roots = [s for s in spans if s.parent is None]
    check(len(roots) == 1, f"{len(roots)} root spans")
    root = roots[0]
    root_attrs = dict(root.attributes or {})
    check({s.context.trace_id for s in spans} == {trace_id(trace.run_id)}, "trace id")
    check(
        all(s.parent.span_id == root.context.span_id for s in spans if s.parent is not None),
        "a span outside the run's root",
    )
    kinds = Counter(str((s.attributes or {})["gen_ai.operation.name"]) for s in spans)
    requests = [e for e in trace.events if isinstance(e, ModelRequested)]
    calls = [e for e in trace.events if isinstance(e, ToolCallRequested)]
    check(kinds == Counter(invoke_agent=1, chat=len(requests), execute_tool=len(calls)), "counts")

    # Steps: one chat span per model request, carrying its response's model and tokens.
    chats = {(s.attributes or {})["agentloop.step"]: s for s in spans if s.name.startswith("chat ")}
    responses = {e.step: e.response for e in trace.events if isinstance(e, ModelResponded)}
    check(sorted(chats) == [e.step for e in requests], "chat steps")
    for step, chat in chats.items():
        attrs = dict(chat.attributes or {})
        response = responses.get(step)
        if response is None:
            check(chat.status.status_code is StatusCode.ERROR, f"step {step}: unanswered, no error")
            continue
        check(chat.status.status_code is StatusCode.UNSET, f"step {step}: answered, but error")
        got = (attrs.get("gen_ai.usage.input_tokens"), attrs.get("gen_ai.usage.output_tokens"))
        want = (response.usage.input_tokens, response.usage.output_tokens)
        check(got == want, f"step {step}: tokens {got} != {want}")
        reasons = attrs.get("gen_ai.response.finish_reasons")
        want_reasons = (response.finish_reason,) if response.finish_reason else None
        check(reasons == want_reasons, f"step {step}: finish reasons")

    # Tools: one span per call the model made, erring exactly where the trace records an error
    # (or where the call never got a result).
    tools = {
        (attrs["agentloop.step"], attrs["gen_ai.tool.call.id"]): (attrs, s)
        for s in spans
        if (attrs := dict(s.attributes or {}))["gen_ai.operation.name"] == "execute_tool"
    }
    results = {(e.step, e.call_id): e for e in trace.events if isinstance(e, ToolResultRecorded)}
    check(sorted(tools) == sorted((e.step, e.call_id) for e in calls), "tool calls")
    for call in calls:
        attrs, span = tools.get((call.step, call.call_id), ({}, None))
        if span is None:
            continue
        check(attrs["gen_ai.tool.name"] == call.name, f"tool name of {call.call_id}")
        result = results.get((call.step, call.call_id))
        error = "interrupted" if result is None else result.error
        check(attrs.get("error.type") == error, f"{call.call_id}: error {attrs.get('error.type')}")
        erred = span.status.status_code is StatusCode.ERROR
        check(erred == (error is not None), f"{call.call_id}: status")

    # Tool lists changed mid-run: one span event on the run each, at its step.
    changed = [e.step for e in trace.events if isinstance(e, ToolsChanged)]
    noted = [
        (e.attributes or {})["agentloop.step"]
        for e in root.events
        if e.name == "agentloop.tools_changed"
    ]
    check(noted == changed, f"tools_changed span events at {noted}, not {changed}")

    # The run: its tokens, steps and how it ended.
    end = trace.terminal
    if end is None:
        check(root_attrs.get("error.type") == "incomplete", "unfinished run not incomplete")
        return problems
    usage = (end.usage.input_tokens, end.usage.output_tokens)  # type: ignore[union-attr]
    got = (root_attrs["gen_ai.usage.input_tokens"], root_attrs["gen_ai.usage.output_tokens"])
    check(got == usage, f"run tokens {got} != {usage}")
    summed = tuple(
        sum(int((c.attributes or {}).get(f"gen_ai.usage.{kind}_tokens", 0)) for c in chats.values())
        for kind in ("input", "output")
    )
    check(summed == usage, f"chat tokens add up to {summed}, not {usage}")
    check(root_attrs["agentloop.steps"] == end.steps, "steps")  # type: ignore[union-attr]
    check(root_attrs["agentloop.tool_calls"] == end.tool_calls, "tool calls")  # type: ignore[union-attr]
    if end.type == "run_finished":
        check(root.status.status_code is StatusCode.UNSET, "finished run has an error status")
    else:
        want = end.error_type if end.type == "run_failed" else "CancelledError"
        check(root.status.status_code is StatusCode.ERROR, "failed run without error status")
        check(root_attrs.get("error.type") == want, f"error.type {root_attrs.get('error.type')}")
    return problems


def test_spans_agree_with_every_trace_the_suite_wrote(tmp_path: Path) -> None:
    from agentloop import Agent

    # Run alone, this file still has a trace of its own to check.
    Agent(ScriptedModel(["ok"]), trace_dir=tmp_path).run_sync("a run of this file's own")
    corpus = [t for t in map(readable, dict.fromkeys(WRITTEN_TRACES)) if t is not None]
    assert corpus
    failures = []
    for trace in corpus:
        problems = disagreements(trace, trace_spans([trace], capture_content=True))
        if problems:
            failures.append(f"{trace.path}: {'; '.join(problems)}")
    assert failures == [], "\n".join(failures[:10])
