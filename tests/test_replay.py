"""Replay, divergence, fork and resume."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agentloop import Agent, ModelResponse, ToolRetry, UserError, read_trace, tool
from agentloop.events import ToolCallRequested
from agentloop.replay.runner import agent_from_trace, replay_sync, resume_sync
from agentloop.testing import ScriptedModel


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def mul(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def script() -> list[ModelResponse | str]:
    return [
        ModelResponse.tool_call("add", {"a": 2, "b": 3}),
        ModelResponse.tool_call("mul", {"a": 5, "b": "4"}),
        "20",
    ]


def record(tmp_path: Path, **kwargs: object) -> Path:
    agent = Agent(ScriptedModel(script()), tools=[add, mul], trace_dir=tmp_path / "src", **kwargs)  # type: ignore[arg-type]
    result = agent.run_sync("compute (2+3)*4")
    assert result.trace_path is not None
    return result.trace_path


def actions(path: Path | None) -> list[tuple[str, str | None]]:
    assert path is not None
    return [
        (e.name, e.raw_arguments)
        for e in read_trace(path).events
        if isinstance(e, ToolCallRequested)
    ]


def test_offline_replay_reproduces_output_and_actions(tmp_path: Path, no_network: None) -> None:
    source = record(tmp_path)

    @tool(name="add")
    def add_never(a: int, b: int) -> int:
        """Add two integers."""
        raise AssertionError("recorded replay must not run tools")

    agent = Agent(ScriptedModel([]), tools=[add_never, mul], trace_dir=tmp_path / "replays")
    result = replay_sync(source, agent)
    assert result.output == "20"
    assert actions(result.trace_path) == actions(source)
    header = read_trace(result.trace_path).header  # type: ignore[arg-type]
    assert header.parent == {
        "run_id": read_trace(source).run_id,
        "kind": "replay",
        "step": None,
        "trace": str(source),
    }
    assert [d.kind for d in result.divergences] == ["tool_code_changed"]  # add_never's body


def test_replay_without_an_agent_rebuilds_it_from_the_header(
    tmp_path: Path, no_network: None
) -> None:
    source = record(tmp_path, instructions="Be exact.")
    result = replay_sync(source, trace_dir=tmp_path / "replays")
    assert (result.output, result.diverged) == ("20", False)
    assert read_trace(result.trace_path).header.config_hash == read_trace(source).header.config_hash  # type: ignore[arg-type]
    rebuilt = agent_from_trace(read_trace(source))
    assert rebuilt.instructions == "Be exact." and set(rebuilt.tools) == {"add", "mul"}
    assert all(t.stand_in for t in rebuilt.tools.values())  # they only serve the recording
    with pytest.raises(UserError, match="not available in an offline replay"):
        rebuilt.tools["add"].function(a=1, b=2)


@pytest.mark.parametrize(
    "scenario",
    [
        [ModelResponse.tool_call("add", "{bad json"), "x"],
        [ModelResponse.tool_call("nope", {}), "x"],
        [ModelResponse.tool_call("add", {"a": 1}), "x"],
        [ModelResponse.tool_calls_of([("add", {"a": 1, "b": 2}), ("mul", {"a": 3, "b": 4})]), "x"],
        [ModelResponse(), "after a nudge"],
        [ModelResponse.tool_call("retry", {}), "x"],
        [ModelResponse.tool_call("boom", {}), "x"],
    ],
    ids=[
        "bad-json",
        "unknown-tool",
        "invalid-args",
        "parallel",
        "empty",
        "tool-retry",
        "tool-error",
    ],
)
def test_every_kind_of_step_replays_offline(
    tmp_path: Path, no_network: None, scenario: list[ModelResponse | str]
) -> None:
    @tool
    def retry() -> str:
        """Ask again."""
        raise ToolRetry("again")

    @tool
    def boom() -> str:
        """Fail."""
        raise ValueError("boom")

    agent = Agent(
        ScriptedModel(scenario),
        tools=[add, mul, retry, boom],
        tool_errors="observe",
        trace_dir=tmp_path,
    )
    source = agent.run_sync("go").trace_path
    result = replay_sync(source, trace_dir=tmp_path / "replays")  # type: ignore[arg-type]
    assert result.divergences == []
    assert result.output == read_trace(source).output  # type: ignore[arg-type]
    assert actions(result.trace_path) == actions(source)


def test_a_failed_run_replays_to_the_same_failure(tmp_path: Path) -> None:
    looping = [ModelResponse.tool_call("add", {"a": 1, "b": 1})] * 2
    agent = Agent(ScriptedModel(looping), tools=[add], max_steps=2, trace_dir=tmp_path)
    with pytest.raises(Exception, match="max_steps") as info:
        agent.run_sync("go")
    result = replay_sync(info.value.trace_path, trace_dir=tmp_path / "r")  # type: ignore[attr-defined]
    assert (result.diverged, result.stop_reason) == (False, "max_steps")


def test_instructions_changed_is_reported_and_stops_strict_replay(tmp_path: Path) -> None:
    source = record(tmp_path, instructions="v1")
    agent = Agent(ScriptedModel([]), tools=[add, mul], instructions="v2", trace_dir=tmp_path)
    result = replay_sync(source, agent)
    assert [(d.step, d.kind) for d in result.divergences] == [
        (None, "instructions_changed"),
        (0, "model_input_changed"),
    ]
    assert result.divergence is not None and result.divergence.expected == "v1"
    assert result.output is None and result.stop_reason == "replay_diverged"
    assert "step 0: model_input_changed" in result.report()


def test_settings_and_schema_changes_are_config_divergences(tmp_path: Path) -> None:
    source = record(tmp_path)

    @tool(name="mul")
    def mul_documented(a: int, b: int) -> int:
        """Multiply two integers.

        Args:
            a: The first factor.
            b: The second factor.
        """
        return a * b

    agent = Agent(ScriptedModel([]), tools=[add, mul_documented], max_steps=9, trace_dir=tmp_path)
    result = replay_sync(source, agent)
    kinds = {(d.kind, d.detail) for d in result.divergences}
    assert ("tool_schema_changed", "mul") in kinds
    assert ("tool_code_changed", "mul") in kinds
    assert ("limits_changed", "") in kinds
    assert result.output == "20"  # configuration changes alone do not stop a replay


def test_missing_tool_diverges_at_the_step_that_calls_it(tmp_path: Path) -> None:
    source = record(tmp_path)
    result = replay_sync(source, Agent(ScriptedModel([]), tools=[add], trace_dir=tmp_path))
    assert [(d.step, d.kind) for d in result.divergences] == [
        (None, "tool_missing"),
        (1, "tool_call_changed"),
    ]
    assert result.divergences[1].actual == "rejected (unknown_tool)"


def test_changed_tool_result_with_live_tools(tmp_path: Path) -> None:
    source = record(tmp_path)

    @tool(name="add")
    def add_wrong(a: int, b: int) -> int:
        """Add two integers."""
        return a + b + 1

    agent = Agent(ScriptedModel([]), tools=[add_wrong, mul], trace_dir=tmp_path)
    strict = replay_sync(source, agent, tools="live")
    step_divergences = [(d.step, d.kind) for d in strict.divergences if d.step is not None]
    assert step_divergences == [(0, "tool_result_changed")]
    assert (
        strict.divergence and strict.divergences[-1].expected,
        strict.divergences[-1].actual,
    ) == ("5", "6")

    lenient = replay_sync(source, agent, tools="live", strict=False)
    assert lenient.output == "20"  # recorded model answers, live tools ran
    assert [d.kind for d in lenient.divergences if d.step is not None] == ["tool_result_changed"]


def test_a_live_model_that_acts_differently(tmp_path: Path) -> None:
    source = record(tmp_path)
    other = ScriptedModel([ModelResponse.tool_call("add", {"a": 2, "b": 3}), "I give up"])
    result = replay_sync(source, Agent(other, tools=[add, mul], trace_dir=tmp_path), model="live")
    [divergence] = [d for d in result.divergences if d.step is not None]
    assert (divergence.step, divergence.kind) == (1, "action_changed")
    assert divergence.actual == [{"answer": "I give up"}]


def test_more_steps_than_a_crashed_recording(tmp_path: Path) -> None:
    source = record(tmp_path)
    lines = source.read_text().splitlines(keepends=True)
    cut = next(i for i, line in enumerate(lines) if '"step":1' in line and "model_request" in line)
    source.write_text("".join(lines[:cut]))
    result = replay_sync(source, trace_dir=tmp_path / "r")
    assert [(d.step, d.kind) for d in result.divergences] == [(1, "more_steps")]


def test_fewer_steps_and_changed_outcome(tmp_path: Path) -> None:
    source = record(tmp_path)
    agent = Agent(ScriptedModel([]), tools=[add, mul], max_steps=1, trace_dir=tmp_path)
    result = replay_sync(source, agent, strict=False)
    kinds = [(d.step, d.kind) for d in result.divergences]
    assert (1, "fewer_steps") in kinds
    assert (1, "outcome_changed") in kinds
    assert result.stop_reason == "max_steps"


def test_fork_serves_the_prefix_then_goes_live(tmp_path: Path) -> None:
    five = [ModelResponse.tool_call("add", {"a": i, "b": 1}) for i in range(4)] + ["done"]
    parent = Agent(ScriptedModel(five), tools=[add], trace_dir=tmp_path).run_sync("count")
    new_model = ScriptedModel(
        [ModelResponse.tool_call("mul", {"a": 7, "b": 7}), "forked answer"], name="other"
    )
    agent = Agent(new_model, tools=[add, mul], instructions="new", trace_dir=tmp_path)
    result = replay_sync(parent.trace_path, agent, fork_at=2)  # type: ignore[arg-type]
    assert result.output == "forked answer"
    assert len(new_model.calls) == 2  # steps 0-1 came from the recording
    seen = new_model.calls[0].messages
    assert [m.role for m in seen] == ["system", "user", "assistant", "tool", "assistant", "tool"]
    forked = read_trace(result.trace_path)  # type: ignore[arg-type]
    assert forked.header.parent is not None
    assert (
        forked.header.parent["run_id"],
        forked.header.parent["kind"],
        forked.header.parent["step"],
    ) == (
        parent.run_id,
        "fork",
        2,
    )
    assert [c.name for c in forked.tool_calls()] == ["add", "add", "mul"]
    assert forked.header.agent["model"]["name"] == "other"


RESUMABLE = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from agentloop import Agent, ModelResponse, tool
    from agentloop.testing import FunctionModel

    LOG = Path(sys.argv[2])

    @tool
    def append(n: int) -> str:
        \"\"\"Append n to the log (not idempotent).\"\"\"
        with LOG.open("a") as f:
            f.write(f"{n}\\n")
        print(f"wrote {n}", flush=True)
        if n == 2 and sys.argv[3] == "hang-at-2":
            time.sleep(60)  # the test kills the process here
        return f"appended {n}"

    def script(messages, call):
        done = sum(1 for m in messages if m.role == "assistant")
        if done < 5:
            return ModelResponse.tool_call("append", {"n": done})
        return f"appended {done} numbers"

    def agent():
        return Agent(FunctionModel(script), tools=[append], trace_dir=sys.argv[1])

    if __name__ == "__main__":
        print(agent().run_sync("append five numbers").output, flush=True)
    """
)


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    script_file = tmp_path / "resumable.py"
    script_file.write_text(RESUMABLE)
    log = tmp_path / "log.txt"
    with subprocess.Popen(
        [sys.executable, str(script_file), str(tmp_path / "traces"), str(log), "hang-at-2"],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        while proc.stdout.readline().strip() != "wrote 2":
            pass
        os.kill(proc.pid, signal.SIGKILL)  # mid-call: "2" is written, its result is not
        proc.wait(timeout=10)
    [crashed] = (tmp_path / "traces").glob("*.jsonl")
    assert read_trace(crashed).terminal is None

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["x", str(tmp_path / "resumed"), str(log), "no-hang"])
        mp.syspath_prepend(str(tmp_path))
        import resumable  # type: ignore[import-not-found]

        result = resume_sync(crashed, resumable.agent(), trace_dir=tmp_path / "resumed")
    assert result.output == "appended 5 numbers"
    assert log.read_text().split() == ["0", "1", "2", "3", "4"]  # "2" was not run twice
    resumed = read_trace(result.trace_path)  # type: ignore[arg-type]
    interrupted = [r for r in resumed.tool_results() if r.error == "interrupted"]
    assert len(interrupted) == 1 and resumed.header.parent is not None
    assert resumed.header.parent["kind"] == "resume"

    uninterrupted = subprocess.run(
        [sys.executable, str(script_file), str(tmp_path / "clean"), str(tmp_path / "log2"), "-"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert uninterrupted.stdout.splitlines()[-1] == result.output


def test_resume_reruns_an_interrupted_idempotent_call(tmp_path: Path) -> None:
    calls: list[int] = []
    gate = asyncio.Event()

    @tool(idempotent=True)
    async def fetch(n: int) -> str:
        """Fetch n."""
        calls.append(n)
        if len(calls) == 1:
            gate.set()
            await asyncio.sleep(3600)
        return f"got {n}"

    def model() -> ScriptedModel:
        return ScriptedModel([ModelResponse.tool_call("fetch", {"n": 1}), "done"])

    async def run_and_cancel() -> Path:
        agent = Agent(model(), tools=[fetch], trace_dir=tmp_path)
        task = asyncio.create_task(agent.run("go"))
        await gate.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        [path] = tmp_path.glob("*.jsonl")
        return path

    source = asyncio.run(run_and_cancel())
    resumed_model = ScriptedModel(["done"])
    result = resume_sync(source, Agent(resumed_model, tools=[fetch], trace_dir=tmp_path / "r"))
    assert result.output == "done"
    assert calls == [1, 1]  # idempotent: run again
    assert read_trace(result.trace_path).tool_results()[0].content == "got 1"  # type: ignore[arg-type]


def test_resume_refuses_a_finished_run(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="already finished"):
        resume_sync(record(tmp_path), Agent(ScriptedModel([]), tools=[add, mul]))


def test_diff_traces_aligns_a_fork_with_its_parent(tmp_path: Path) -> None:
    from agentloop.replay.divergence import diff_traces

    five = [ModelResponse.tool_call("add", {"a": i, "b": 1}) for i in range(4)] + ["done"]
    parent = Agent(ScriptedModel(five), tools=[add], trace_dir=tmp_path).run_sync("count")
    other = ScriptedModel([ModelResponse.tool_call("mul", {"a": 7, "b": 7}), "forked"])
    fork = replay_sync(
        parent.trace_path, Agent(other, tools=[add, mul], trace_dir=tmp_path), fork_at=2
    )  # type: ignore[arg-type]
    diff = diff_traces(read_trace(parent.trace_path), read_trace(fork.trace_path))  # type: ignore[arg-type]
    assert diff.first_difference == 2
    assert [s.same for s in diff.steps] == [True, True, False, False, False]
    assert diff.steps[2].left == ['call add({"a": 2, "b": 1})', "  -> 3"]
    assert diff.steps[2].right == ['call mul({"a": 7, "b": 7})', "  -> 49"]
    assert diff.steps[3].right == ["answer: forked"] and diff.steps[4].right == []
    assert [d.kind for d in diff.config] == ["tool_added"]
    by_path = diff_traces(parent.trace_path, str(fork.trace_path))  # type: ignore[arg-type]
    assert by_path == diff  # paths, as the CLI takes them
