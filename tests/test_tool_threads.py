"""How a run executes its tools: each sync call in a thread of its own, each result in the trace
as soon as it exists, and a tool that raises SystemExit/KeyboardInterrupt still leaves a trace
with a terminal event.

A timed-out sync tool cannot be stopped (Python threads cannot be killed): the sync doors
return at the timeout anyway, the model is told the call timed out and may still be running,
the trace gets a warning, and later tools and process exit are never held up by it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from agentloop import Agent, ModelResponse, read_trace, tool
from agentloop.replay import resume_sync
from agentloop.testing import ScriptedModel

RELEASE = threading.Event()


@tool(timeout=0.2)
def stuck(n: int) -> str:
    """Hangs (a stuck network call)."""
    RELEASE.wait(4)
    return f"finally {n}"


@tool
def quick(n: int) -> int:
    """Returns at once."""
    return n * 10


@pytest.fixture(autouse=True)
def _release_stuck_threads() -> object:
    RELEASE.clear()
    yield
    RELEASE.set()


def test_run_sync_returns_at_a_sync_tools_timeout(tmp_path: Path) -> None:
    script: list[ModelResponse | str] = [ModelResponse.tool_call("stuck", {"n": 1}), "gave up"]
    agent = Agent(ScriptedModel(script), tools=[stuck], trace_dir=tmp_path)
    started = time.perf_counter()
    result = agent.run_sync("try it")
    elapsed = time.perf_counter() - started
    assert result.output == "gave up"
    assert elapsed < 0.2 + 1.0, elapsed  # not the 4 s the thread keeps running
    trace = read_trace(result.trace_path)  # type: ignore[arg-type]
    [observed] = trace.tool_results()
    assert observed.error == "timeout"
    assert "timed out after 0.2 s" in observed.content
    assert "may still be running" in observed.content and "stopped" not in observed.content
    warnings = [e for e in trace.events if e.type == "warning"]
    assert [w.kind for w in warnings] == ["tool_still_running"]  # type: ignore[union-attr]


def test_stuck_threads_never_starve_later_sync_tools(tmp_path: Path) -> None:
    """Six stuck calls (more than a small default pool's spare threads), then a sync tool:
    it runs at once, because no call waits for another's thread."""
    six = [("stuck", {"n": n}) for n in range(6)]
    script: list[ModelResponse | str] = [
        ModelResponse.tool_calls_of(six),  # type: ignore[arg-type]
        ModelResponse.tool_calls_of([("quick", {"n": n}) for n in range(4)]),  # type: ignore[arg-type]
        "done",
    ]
    agent = Agent(ScriptedModel(script), tools=[stuck, quick], trace_dir=tmp_path, retry_budget=9)
    started = time.perf_counter()
    result = agent.run_sync("go")
    assert time.perf_counter() - started < 2.0
    results = read_trace(result.trace_path).tool_results()  # type: ignore[arg-type]
    assert sorted(r.content for r in results if r.name == "quick") == ["0", "10", "20", "30"]


def test_quick_sync_calls_reuse_idle_threads_and_a_stuck_one_keeps_its_own(
    tmp_path: Path,
) -> None:
    """Sequential quick calls run on one reused thread (no thread start per call); a call that
    is stuck keeps its thread, and the next call gets another."""
    seen: list[int] = []

    @tool
    def where(n: int) -> int:
        """Notes which thread ran it."""
        seen.append(threading.get_ident())
        return n

    calls = [ModelResponse.tool_call("where", {"n": n}) for n in range(5)]
    Agent(ScriptedModel([*calls, "done"]), tools=[where], trace_dir=None).run_sync("go")
    assert len(set(seen)) == 1 and seen[0] != threading.get_ident()
    script: list[ModelResponse | str] = [
        ModelResponse.tool_call("stuck", {"n": 1}),
        ModelResponse.tool_call("where", {"n": 2}),
        "done",
    ]
    agent = Agent(ScriptedModel(script), tools=[stuck, where], trace_dir=tmp_path)
    assert agent.run_sync("go").output == "done"  # `where` ran while `stuck` still ran
    assert len(seen) == 6
    assert len([t for t in threading.enumerate() if t.name == "agentloop-tool"]) >= 2


def test_process_exit_is_not_held_by_a_stuck_tool_thread(tmp_path: Path) -> None:
    program = textwrap.dedent(
        """
        import time
        from agentloop import Agent, ModelResponse, tool
        from agentloop.testing import ScriptedModel

        @tool(timeout=0.2)
        def stuck() -> str:
            \"\"\"Hangs.\"\"\"
            time.sleep(30)
            return "late"

        agent = Agent(
            ScriptedModel([ModelResponse.tool_call("stuck"), "gave up"]),
            tools=[stuck],
            trace_dir=None,
        )
        print(agent.run_sync("x").output, flush=True)
        """
    )
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=20, check=True
    )
    assert done.stdout.strip() == "gave up"
    assert time.perf_counter() - started < 15  # well short of the 30 s sleep


@pytest.mark.parametrize("escape", [SystemExit, KeyboardInterrupt])
@pytest.mark.parametrize("parallel", [False, True], ids=["one call", "parallel"])
def test_a_tool_raising_systemexit_ends_the_trace_before_it_propagates(
    tmp_path: Path, escape: type[BaseException], parallel: bool
) -> None:
    @tool
    def leave() -> str:
        """Exits."""
        raise escape(3)

    calls = [("leave", None), ("quick", {"n": 1})] if parallel else [("leave", None)]
    script: list[ModelResponse | str] = [ModelResponse.tool_calls_of(calls)]  # type: ignore[arg-type]
    agent = Agent(ScriptedModel(script), tools=[leave, quick], trace_dir=tmp_path)
    with pytest.raises(escape):
        agent.run_sync("go")
    [path] = tmp_path.glob("*.jsonl")
    trace = read_trace(path)
    end = trace.terminal
    assert end is not None and end.type == "run_failed"
    assert end.error_type == escape.__name__  # type: ignore[union-attr]
    assert not trace.torn


PARALLEL = textwrap.dedent(
    """
    import sys, time
    from agentloop import Agent, ModelResponse, tool
    from agentloop.testing import ScriptedModel

    @tool
    def receipt(order: int) -> str:
        \"\"\"Pay an order; returns the receipt (not idempotent).\"\"\"
        if order == 2:
            print("first done", flush=True)
            time.sleep(60)  # the test kills the process here
        return f"receipt-{order}"

    agent = Agent(
        ScriptedModel([
            ModelResponse.tool_calls_of([("receipt", {"order": 1}), ("receipt", {"order": 2})]),
        ]),
        tools=[receipt],
        trace_dir=sys.argv[1],
    )
    agent.run_sync("pay both orders")
    """
)


@pytest.mark.slow
def test_sigkill_after_one_of_two_parallel_calls_keeps_its_result(tmp_path: Path) -> None:
    program = tmp_path / "parallel.py"
    program.write_text(PARALLEL)
    traces = tmp_path / "traces"
    with subprocess.Popen(
        [sys.executable, str(program), str(traces)], stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "first done"
        [path] = traces.glob("*.jsonl")
        deadline = time.monotonic() + 10
        while '"receipt-1"' not in path.read_text() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    crashed = read_trace(path)
    assert crashed.terminal is None
    [kept] = crashed.tool_results()
    assert kept.content == "receipt-1"

    @tool(name="receipt")
    def receipt_again(order: int) -> str:
        """Pay an order; returns the receipt (not idempotent)."""
        raise AssertionError("a paid order is never paid again on resume")

    model = ScriptedModel(["order 1 paid; order 2 unknown"])
    agent = Agent(model, tools=[receipt_again], trace_dir=tmp_path / "resumed")
    result = resume_sync(crashed, agent)
    assert result.output == "order 1 paid; order 2 unknown"
    seen = [m.content for m in model.calls[0].messages if m.role == "tool"]
    assert "receipt-1" in seen[0] and "interrupted" in seen[1]
    json.dumps(seen)
