"""Every trace the test suite wrote replays offline to the same outcome, actions and tool lists.

This file's name sorts last, so it runs after the others in the same process; conftest.py
records the path of every trace written until then. Offline replay rebuilds each agent from
its trace header and serves the recorded model responses and tool results with sockets
blocked; a tool list a source changed mid-run (``tools_changed``) changes at the same step.
Left out, because no recording can reproduce them: runs that were cancelled or never
finished (killed), runs stopped by the wall clock or by a tool's SystemExit/KeyboardInterrupt
(the process was leaving), and runs whose last model request got no response (a transport
failure, an exhausted script). Runs against the fake OpenAI server are in the corpus: it mints
fresh ids on every response, as real servers do.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agentloop import replay_sync
from agentloop.errors import TraceError
from agentloop.events import ToolCallRequested, ToolsChanged, json_line
from agentloop.trace import Trace, read_trace
from conftest import WRITTEN_TRACES


def replayable(path: Path) -> Trace | None:
    try:
        trace = read_trace(path)
    except TraceError:
        return None  # a test broke it on purpose, or removed it
    end = trace.terminal
    if end is None or end.type == "run_cancelled":
        return None
    requests = sum(1 for e in trace.events if e.type == "model_request")
    if end.type == "run_failed" and (
        getattr(end, "reason", "") in ("run_timeout", "replay_diverged")
        or getattr(end, "error_type", "") in ("SystemExit", "KeyboardInterrupt")
        or requests != trace.steps
    ):
        return None
    return trace


def actions(trace: Trace) -> list[tuple[int, str, str]]:
    return [
        (e.step, e.name, e.raw_arguments) for e in trace.events if isinstance(e, ToolCallRequested)
    ]


def tool_lists(trace: Trace) -> list[tuple[int, str, list[str]]]:
    """Where the tool list changed (``tools_changed``), and to what."""
    return [
        (e.step, e.source, [t["name"] for t in e.tools])
        for e in trace.events
        if isinstance(e, ToolsChanged)
    ]


def test_every_trace_the_suite_wrote_replays_offline(tmp_path: Path, no_network: None) -> None:
    corpus = [t for t in map(replayable, dict.fromkeys(WRITTEN_TRACES)) if t is not None]
    if len(WRITTEN_TRACES) < 50:
        pytest.skip("run with the whole suite: only it writes a corpus of traces to replay")
    failures = []
    for trace in corpus:
        result = replay_sync(trace, trace_dir=tmp_path)
        replayed = read_trace(result.trace_path) if result.trace_path else None
        same = (
            not result.diverged
            and replayed is not None
            and replayed.output == trace.output
            and actions(replayed) == actions(trace)
            and tool_lists(replayed) == tool_lists(trace)
        )
        if not same:
            failures.append(f"{trace.path}: {result.report()} {result.error or ''}")
    assert len(corpus) > 200
    assert failures == [], "\n".join(failures[:10])


def test_every_event_the_suite_wrote_has_the_line_its_values_give() -> None:
    """A run writes each event's line from its values (``json_line``) without building the
    event: for every event of every trace the suite wrote (hostile text, odd arguments,
    cancelled and failed runs), that line is the one pydantic gives of the event itself."""
    if len(WRITTEN_TRACES) < 50:
        pytest.skip("run with the whole suite: only it writes a corpus of traces")
    checked, failures = 0, []
    for path in dict.fromkeys(WRITTEN_TRACES):
        try:
            trace = read_trace(path)
        except TraceError:
            continue  # a test broke it on purpose, or removed it
        for event in trace.events:
            checked += 1
            if json_line(type(event).values(event.__dict__)) != event.model_dump_json():
                failures.append(f"{path}: seq {event.seq} ({event.type})")
    assert checked > 2000
    assert failures == [], "\n".join(failures[:10])
